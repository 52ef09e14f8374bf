"""Audit events and activity counts as the API shows them."""

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Actor(BaseModel):
    type: str
    id: uuid.UUID | None


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


class ActivityCountPublic(BaseModel):
    day: date
    action: str
    count: int


class ActivityPublic(BaseModel):
    """Events per UTC day and action, from ``since`` to today; days without events are left out."""

    since: date
    days: int
    counts: list[ActivityCountPublic]
