import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from src.core.databases import AuditModel
from src.core.timestamps import UTCDateTime, utcnow


class AuditEventBase(SQLModel):
    """What happened, who did it, to what, from where; shared by the outbox and the audit table."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    action: str = Field(max_length=64)
    outcome: str = Field(max_length=16)
    actor_type: str = Field(max_length=32)
    actor_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    target_type: str | None = Field(default=None, max_length=32)
    target_id: uuid.UUID | None = None
    context: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class AuditEvent(AuditEventBase, AuditModel, table=True):
    """One recorded change; ``id`` is the event's idempotency key."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_workspace_id_occurred_at", "workspace_id", "occurred_at", "id"),
        # The list's filters, each in the list's order: a filter matching few events, or none, reads only those.
        Index("ix_audit_events_workspace_id_action", "workspace_id", "action", "occurred_at", "id"),
        Index("ix_audit_events_workspace_id_actor_id", "workspace_id", "actor_id", "occurred_at", "id"),
        # A user's own events (of no workspace), in the list's order.
        Index("ix_audit_events_target_id", "target_id", "occurred_at", "id"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )
