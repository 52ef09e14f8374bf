from sqlalchemy import Index

from src.api.v1.models.audit_event import AuditEventBase
from src.core.databases import CoreModel


class OutboxEvent(AuditEventBase, CoreModel, table=True):
    """An audit event waiting in core, written in the same transaction as the change it records."""

    __tablename__ = "audit_outbox"
    __table_args__ = (Index("ix_audit_outbox_occurred_at", "occurred_at", "id"),)
