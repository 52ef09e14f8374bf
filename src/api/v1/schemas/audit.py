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
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0b6f3c1e-2d4a-4f5b-9c8d-7e6f5a4b3c2d",
                    "occurred_at": "2026-11-26T10:57:36.926552Z",
                    "action": "workspace.member_added",
                    "outcome": "success",
                    "actor": {"type": "user", "id": "d71ec893-6c2e-4a57-9c1d-2b3f4a5e6d7c", "username": "ada"},
                    "workspace_id": "97915d76-0e0a-4c53-8f64-3a1c2b9d8e7f",
                    "target": {"type": "user", "id": "12add8fb-5b7a-4e21-a0c9-6f8e7d6c5b4a"},
                    "context": {"request_id": "5f0c…", "ip": "198.51.100.7", "user_agent": "curl/8.5.0"},
                    "metadata": {"role": "admin"},
                }
            ]
        },
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "since": "2026-11-27",
                    "days": 30,
                    "counts": [{"day": "2026-11-26", "action": "workspace.member_added", "count": 3}],
                }
            ]
        }
    )

    since: date
    days: int
    counts: list[ActivityCountPublic]
