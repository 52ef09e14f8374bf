"""Moves audit events from the core outbox to the audit database, and prunes old ones.

Delivery is at-least-once made exactly-once: a batch is deleted from the outbox
in a core transaction that commits only after audit committed the batch, its
ids already there skipped. A crash between the two commits re-delivers the
batch, and the insert skips what arrived.

On PostgreSQL a batch is claimed with ``FOR UPDATE SKIP LOCKED``, so concurrent
relays take disjoint batches; on SQLite the delete takes the write lock, so
relays take turns.
"""

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import anyio.to_thread
from sqlalchemy import Connection, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import Session

from src.api.v1.models.audit_event import AuditEvent
from src.api.v1.models.outbox_event import OutboxEvent
from src.core.databases import database_error_reason
from src.core.engines import get_unpooled_engine
from src.core.metrics import RELAY_DELIVERED, RELAY_FAILURES
from src.core.timestamps import utcnow
from src.services.audit_log import record_event

logger = logging.getLogger(__name__)

OUTBOX: Table = OutboxEvent.metadata.tables[OutboxEvent.__tablename__]
AUDIT_EVENTS: Table = AuditEvent.metadata.tables[AuditEvent.__tablename__]


def insert_ignoring_delivered(connection: Connection) -> ReturningInsert[tuple[uuid.UUID]]:
    # RETURNING lets SQLAlchemy send a batch as multi-row INSERTs; without it each event is a round trip.
    if connection.dialect.name == "postgresql":
        return (
            postgresql.insert(AUDIT_EVENTS).on_conflict_do_nothing(index_elements=["id"]).returning(AUDIT_EVENTS.c.id)
        )
    return sqlite.insert(AUDIT_EVENTS).on_conflict_do_nothing(index_elements=["id"]).returning(AUDIT_EVENTS.c.id)


@contextmanager
def relay_connections() -> Iterator[tuple[Connection, Connection]]:
    """A connection to core and one to audit, kept for every batch of a run."""
    with get_unpooled_engine("core").connect() as core, get_unpooled_engine("audit").connect() as audit:
        yield core, audit


def deliver_batch(core: Connection, audit: Connection, *, batch_size: int) -> int:
    """Deliver up to ``batch_size`` of the oldest outbox events; returns how many.

    The events leave the outbox in one statement, whose deletion commits only after audit
    committed them: a failure on the way leaves them in the outbox.
    """
    oldest = select(OUTBOX.c.id).order_by(OUTBOX.c.occurred_at, OUTBOX.c.id).limit(batch_size)
    if core.dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    with core.begin():
        taken = delete(OUTBOX).where(OUTBOX.c.id.in_(oldest.scalar_subquery())).returning(*OUTBOX.c)
        events = [dict(row) for row in core.execute(taken).mappings()]
        if events:
            with audit.begin():
                audit.execute(insert_ignoring_delivered(audit), events)
    return len(events)


def relay_pending(*, batch_size: int, max_batches: int | None = None) -> int:
    """Deliver batches until the outbox is empty (or ``max_batches`` were sent); returns how many events."""
    delivered, batches = 0, 0
    with relay_connections() as (core, audit):
        while count := deliver_batch(core, audit, batch_size=batch_size):
            delivered, batches = delivered + count, batches + 1
            if count < batch_size or batches == max_batches:
                break
    return delivered


async def relay_forever(*, interval: float, batch_size: int) -> None:
    """Deliver the outbox every interval; while a database is down, log it and try again next time."""
    while True:
        try:
            delivered = await anyio.to_thread.run_sync(lambda: relay_pending(batch_size=batch_size))
            if delivered:
                RELAY_DELIVERED.inc(delivered)
                logger.info("delivered %d audit event(s)", delivered)
        except DBAPIError as error:
            RELAY_FAILURES.inc()
            logger.warning("audit relay: %s; retrying in %gs", database_error_reason(error), interval)
        except Exception:
            # Anything else is a bug, but the relay must keep running: events keep arriving.
            RELAY_FAILURES.inc()
            logger.exception("audit relay failed; retrying in %gs", interval)
        await asyncio.sleep(interval)


def outbox_backlog() -> int:
    """Events recorded in core and not yet delivered to audit."""
    return outbox_state()[0]


def outbox_state() -> tuple[int, datetime | None]:
    """How many events wait in the outbox, and when the oldest of them happened."""
    with get_unpooled_engine("core").connect() as core:
        count, oldest = core.execute(select(func.count(), func.min(OUTBOX.c.occurred_at))).one()
    return int(count), oldest


def prune_audit_events(*, older_than_days: int, batch_size: int = 5000) -> int:
    """Delete audit events older than the given number of days, a batch per transaction; returns how many. The
    prune is itself an audit event (``audit.pruned``: before when, how many), recorded once it is done."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    oldest = select(AUDIT_EVENTS.c.id).where(AUDIT_EVENTS.c.occurred_at < cutoff).limit(batch_size)
    deleted = 0
    while True:
        with get_unpooled_engine("audit").begin() as audit:
            count = audit.execute(delete(AUDIT_EVENTS).where(AUDIT_EVENTS.c.id.in_(oldest.scalar_subquery()))).rowcount
        deleted += count
        if count < batch_size:
            with Session(get_unpooled_engine("core")) as core:
                details = {"before": cutoff.isoformat(), "older_than_days": older_than_days, "deleted": deleted}
                record_event(core, action="audit.pruned", actor_id=None, actor_type="system", details=details)
                core.commit()
            return deleted
