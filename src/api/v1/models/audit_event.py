import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field

from src.core.databases import AuditModel
from src.core.timestamps import UTCDateTime, utcnow


class AuditEvent(AuditModel, table=True):
    """One recorded change; ``id`` is the event's idempotency key."""

    __tablename__ = "audit_events"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    action: str = Field(max_length=64)
    outcome: str = Field(max_length=16)
    actor_type: str = Field(max_length=32)
    actor_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    target_type: str | None = Field(default=None, max_length=32)
    target_id: uuid.UUID | None = None
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
