import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index
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
    """One recorded change; ``id`` is the event's idempotency key (the relay delivers each id once).

    The relay links each event into its workspace's hash chain (src/services/audit_chain.py): ``chain_seq`` is its
    place there, ``hash`` covers its content and the previous event's hash. ``context`` and ``details`` hold the
    personal data and enter the hash only through ``personal_digest``, salted with ``personal_salt``: erasing them
    (and the salt) leaves the chain verifiable. Events delivered before chaining began have no ``chain_seq``.

    On PostgreSQL the table is partitioned by month of ``recorded_at`` (src/core/partitions.py), which is why the
    primary key holds it too. A trigger adds each event inserted to ``audit_daily_counts``.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_workspace_id_occurred_at", "workspace_id", "occurred_at", "id"),
        # The list's filters, each in the list's order: a filter matching few events, or none, reads only those.
        # On PostgreSQL it serves an action prefix too (LIKE 'workspace.%'), whatever the database's collation.
        Index(
            "ix_audit_events_workspace_id_action",
            "workspace_id",
            "action",
            "occurred_at",
            "id",
            postgresql_ops={"action": "varchar_pattern_ops"},
        ),
        Index("ix_audit_events_workspace_id_actor_id", "workspace_id", "actor_id", "occurred_at", "id"),
        Index("ix_audit_events_workspace_id_outcome", "workspace_id", "outcome", "occurred_at", "id"),
        # A user's own events (of no workspace), in the list's order.
        Index("ix_audit_events_target_id", "target_id", "occurred_at", "id"),
        Index("ix_audit_events_workspace_id_chain_seq", "workspace_id", "chain_seq"),
        Index("ix_audit_events_recorded_at", "recorded_at"),
        {"postgresql_partition_by": "RANGE (recorded_at)"},
    )

    chain_seq: int | None = Field(default=None, sa_type=BigInteger)
    # When the relay delivered it; never decreasing along a chain, so a prune by it cuts each chain at one place.
    recorded_at: datetime = Field(default_factory=utcnow, primary_key=True, sa_type=UTCDateTime)
    personal_salt: str | None = Field(default=None, max_length=32)
    personal_digest: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)
