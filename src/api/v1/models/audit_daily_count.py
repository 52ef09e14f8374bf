import uuid
from datetime import date

from sqlalchemy import BigInteger, Index
from sqlmodel import Field

from src.core.databases import AuditModel


class AuditDailyCount(AuditModel, table=True):
    """How many events of an action a workspace had on a UTC day (of ``occurred_at``): a trigger on audit_events
    (revision ef07bb56aa87) adds each event as it is inserted, in the same transaction. A workspace's activity reads
    these, not the events; a prune leaves them."""

    __tablename__ = "audit_daily_counts"
    __table_args__ = (
        # With the count in it, PostgreSQL reads a workspace's days from the index alone: the rows of one workspace
        # are spread over the table, a row per day and action among every other workspace's.
        Index("ix_audit_daily_counts_workspace_id_day", "workspace_id", "day", "action", postgresql_include=["count"]),
    )

    workspace_id: uuid.UUID = Field(primary_key=True)
    day: date = Field(primary_key=True)
    action: str = Field(primary_key=True, max_length=64)
    count: int = Field(sa_type=BigInteger)
