"""Moves audit events from the core outbox to the audit database, linking each into its hash chain.

Delivery is at-least-once made exactly-once: a batch is deleted from the outbox
in a core transaction that commits only after audit committed the batch, its
ids already there skipped. A crash between the two commits re-delivers the
batch, and what arrived is skipped before the rest is linked into its chains.

On PostgreSQL a batch is claimed with ``FOR UPDATE SKIP LOCKED``, so concurrent
relays take disjoint batches; on SQLite the delete takes the write lock, so
relays take turns.
"""

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import anyio.to_thread
from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.exc import DBAPIError

from src.core.config import get_settings
from src.core.databases import database_error_reason
from src.core.engines import get_unpooled_engine
from src.core.metrics import RELAY_DELIVERED, RELAY_FAILURES
from src.services.audit_chain import AUDIT_EVENTS, link_events
from src.services.audit_erasure import ERASING_ACTION, OUTBOX, erase_in_audit

logger = logging.getLogger(__name__)


@contextmanager
def relay_connections() -> Iterator[tuple[Connection, Connection]]:
    """A connection to core and one to audit, kept for every batch of a run."""
    with get_unpooled_engine("core").connect() as core, get_unpooled_engine("audit").connect() as audit:
        yield core, audit


def deliver_batch(core: Connection, audit: Connection, *, batch_size: int, signing_key: str) -> int:
    """Deliver up to ``batch_size`` of the oldest outbox events, linked into their hash chains; returns how many.

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
                store(audit, events, signing_key=signing_key)
    return len(events)


def store(audit: Connection, events: list[dict[str, Any]], *, signing_key: str) -> None:
    """Insert the ``events`` not delivered yet, linked into their chains, in the caller's transaction (a trigger adds
    them to the daily counts), and erase the people whose deletion they record."""
    new = link_events(audit, events, key=signing_key)
    if new:
        # RETURNING lets SQLAlchemy send the batch as multi-row INSERTs, not a round trip per event.
        audit.execute(insert(AUDIT_EVENTS).returning(AUDIT_EVENTS.c.id), new)
    # A deleted account's events are erased with the delivery of its deletion (again, harmlessly, on a re-delivery).
    for event in events:
        if event["action"] == ERASING_ACTION and event["actor_id"] is not None:
            erase_in_audit(audit, event["actor_id"])


def relay_pending(*, batch_size: int) -> int:
    """Deliver batches until the outbox is empty; returns how many events."""
    delivered = 0
    signing_key = get_settings().audit_signing_key
    with relay_connections() as (core, audit):
        while count := deliver_batch(core, audit, batch_size=batch_size, signing_key=signing_key):
            delivered += count
            if count < batch_size:
                break
    return delivered


async def relay_forever(*, interval: float, batch_size: int, busy_share: float) -> None:
    """Deliver the outbox every interval (stopping waits for one batch at most). While a database is down, log it and
    try again next time."""
    while True:
        try:
            await drain(batch_size=batch_size, busy_share=busy_share)
        except DBAPIError as error:
            RELAY_FAILURES.inc()
            logger.warning("audit relay: %s; retrying in %gs", database_error_reason(error), interval)
        except Exception:
            # Anything else is a bug, but the relay must keep running: events keep arriving.
            RELAY_FAILURES.inc()
            logger.exception("audit relay failed; retrying in %gs", interval)
        await asyncio.sleep(interval)


async def drain(*, batch_size: int, busy_share: float) -> None:
    """Deliver batches on one pair of connections until one comes back short of ``batch_size``, resting after each
    full batch so that delivering takes at most ``busy_share`` of the time."""
    signing_key = get_settings().audit_signing_key
    with ExitStack() as connections:
        core, audit = await anyio.to_thread.run_sync(lambda: connections.enter_context(relay_connections()))
        while True:
            started = time.monotonic()
            delivered = await anyio.to_thread.run_sync(
                lambda: deliver_batch(core, audit, batch_size=batch_size, signing_key=signing_key)
            )
            if delivered:
                RELAY_DELIVERED.inc(delivered)
                logger.info("delivered %d audit event(s)", delivered)
            if delivered < batch_size:
                return
            await asyncio.sleep((time.monotonic() - started) * (1 / busy_share - 1))


def outbox_backlog() -> int:
    """Events recorded in core and not yet delivered to audit."""
    return outbox_state()[0]


def outbox_state() -> tuple[int, datetime | None]:
    """How many events wait in the outbox, and when the oldest of them happened."""
    with get_unpooled_engine("core").connect() as core:
        count, oldest = core.execute(select(func.count(), func.min(OUTBOX.c.occurred_at))).one()
    return int(count), oldest
