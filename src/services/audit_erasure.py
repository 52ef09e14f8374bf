"""Erasing a person from the audit trail: the personal part (``context``, ``details``) of every event they did or
that was done to them is emptied, with its salt. The chain covers that part only through a digest, so it still
verifies (docs/decisions/0012-audit-hash-chains-and-erasure.md); the events stay, with their actor and target ids.

An account's deletion erases its events waiting in the core outbox at once, and records ``user.deleted``; the relay
erases the delivered ones in the transaction that delivers that event, so erasure reaches the audit database exactly
when, and as surely as, any other event does.
"""

import uuid

from sqlalchemy import Connection, Table, or_, update

from src.api.v1.models.outbox_event import OutboxEvent
from src.services.audit_chain import AUDIT_EVENTS, ERASED

OUTBOX: Table = OutboxEvent.metadata.tables[OutboxEvent.__tablename__]
ERASING_ACTION = "user.deleted"


def erase_in_outbox(core: Connection, user_id: uuid.UUID) -> None:
    """Empty the personal part of the person's events still waiting in the outbox, in the caller's transaction."""
    waiting = or_(OUTBOX.c.actor_id == user_id, OUTBOX.c.target_id == user_id)
    core.execute(update(OUTBOX).where(waiting).values(context=ERASED, details=ERASED))


def erase_in_audit(audit: Connection, user_id: uuid.UUID) -> int:
    """Empty the personal part of the person's delivered events, in the caller's transaction; returns how many."""
    about = or_(AUDIT_EVENTS.c.actor_id == user_id, AUDIT_EVENTS.c.target_id == user_id)
    erased = audit.execute(update(AUDIT_EVENTS).where(about).values(context=ERASED, details=ERASED, personal_salt=None))
    return erased.rowcount
