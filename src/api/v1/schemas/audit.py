"""Audit events and activity counts as the API shows them."""

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from src.api.v1.models.audit_event import AuditEvent


class Actor(BaseModel):
    type: str
    id: uuid.UUID | None
    username: str | None = Field(description="the actor's current username; null once the account is gone")


class EventTarget(BaseModel):
    type: str | None
    id: uuid.UUID | None


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    occurred_at: datetime
    action: str
    outcome: str
    actor: Actor
    workspace_id: uuid.UUID | None
    target: EventTarget
    context: dict[str, Any]
    metadata: dict[str, Any] = Field(description="what changed: before and after values, the role given, ...")

    @classmethod
    def of(cls, event: AuditEvent, usernames: Mapping[uuid.UUID, str]) -> "AuditEventPublic":
        return cls(
            id=event.id,
            occurred_at=event.occurred_at,
            action=event.action,
            outcome=event.outcome,
            actor=Actor(
                type=event.actor_type,
                id=event.actor_id,
                username=usernames.get(event.actor_id) if event.actor_id else None,
            ),
            workspace_id=event.workspace_id,
            target=EventTarget(type=event.target_type, id=event.target_id),
            context=event.context,
            metadata=event.details,
        )


class ActivityCountPublic(BaseModel):
    day: date
    action: str
    count: int


class ActivityPublic(BaseModel):
    """Events per UTC day and action, from ``since`` to today; days without events are left out."""

    since: date
    days: int
    counts: list[ActivityCountPublic]
