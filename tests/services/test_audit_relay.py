"""The outbox relay and retention, against real core and audit databases on both dialects."""

import asyncio
import itertools
import threading
import uuid
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

from src.api.v1.models.audit_daily_count import AuditDailyCount
from src.api.v1.models.audit_event import AuditEvent
from src.core.config import get_settings
from src.core.engines import get_engine, get_unpooled_engine
from src.core.timestamps import utcnow
from src.services import audit_chain, audit_relay
from src.services.audit_chain import verify
from src.services.audit_erasure import OUTBOX
from src.services.audit_relay import deliver_batch, outbox_backlog, relay_connections, relay_pending, store
from src.services.audit_retention import prune_audit_events
from tests.factories import record


def delivered() -> list[AuditEvent]:
    with Session(get_engine("audit")) as session:
        return list(session.exec(select(AuditEvent).order_by(col(AuditEvent.occurred_at))))


def test_relay_moves_events_to_audit_and_empties_the_outbox(migrated_databases) -> None:
    ids = record(5)

    assert relay_pending(batch_size=2) == 5

    events = delivered()
    assert [event.id for event in events] == ids
    assert [event.details for event in events] == [{"index": index} for index in range(5)]
    assert events[0].context == {"ip": "127.0.0.1"}
    assert events[0].occurred_at.tzinfo is not None
    assert outbox_backlog() == 0


def test_relay_run_twice_delivers_once(migrated_databases) -> None:
    ids = record(3)

    assert relay_pending(batch_size=10) == 3
    assert relay_pending(batch_size=10) == 0

    assert sorted(event.id for event in delivered()) == sorted(ids)


def test_crash_between_audit_insert_and_outbox_delete_delivers_once(migrated_databases) -> None:
    ids = record(4)
    # A relay that died after committing to audit and before deleting from the outbox left this behind.
    with get_engine("core").connect() as core, get_engine("audit").begin() as audit:
        first_two = [
            dict(row) for row in core.execute(OUTBOX.select().order_by(OUTBOX.c.occurred_at).limit(2)).mappings()
        ]
        store(audit, first_two, signing_key=get_settings().audit_signing_key)

    assert relay_pending(batch_size=10) == 4

    assert [event.id for event in delivered()] == ids
    assert [event.chain_seq for event in delivered()] == [1, 2, 3, 4]  # linked once each
    assert outbox_backlog() == 0
    with get_engine("audit").connect() as audit:
        assert verify(audit, key=get_settings().audit_signing_key).ok


def daily_counts() -> dict[tuple[uuid.UUID, date, str], int]:
    with get_engine("audit").connect() as audit:
        rows = audit.execute(AuditDailyCount.metadata.tables[AuditDailyCount.__tablename__].select())
        return {(workspace_id, day, action): count for workspace_id, day, action, count in rows}


def test_relay_counts_each_workspace_event_once_per_utc_day_and_action(migrated_databases) -> None:
    workspace_id = uuid.uuid4()
    record(3, workspace_id=workspace_id, start_minutes_ago=60 * 24 * 3)
    record(2, workspace_id=workspace_id, start_minutes_ago=0)
    record(4)  # of no workspace: no activity to count
    with get_engine("core").connect() as core, get_engine("audit").begin() as audit:
        # A relay that died between its two commits stored these; the relay delivers them again.
        first_two = [
            dict(row) for row in core.execute(OUTBOX.select().order_by(OUTBOX.c.occurred_at).limit(2)).mappings()
        ]
        store(audit, first_two, signing_key=get_settings().audit_signing_key)

    relay_pending(batch_size=4)

    days = [(utcnow() - timedelta(days=days)).date() for days in (3, 0)]
    assert daily_counts() == {
        (workspace_id, days[0], "workspace.created"): 3,
        (workspace_id, days[1], "workspace.created"): 2,
    }


def test_the_loop_rests_after_each_full_batch_for_the_share_it_may_take(
    migrated_databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(5)
    ticks = itertools.count()  # every batch seems to take one second
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        if seconds == 60:  # the interval: the backlog is gone
            raise asyncio.CancelledError

    monkeypatch.setattr(audit_relay, "time", SimpleNamespace(monotonic=lambda: float(next(ticks))))
    monkeypatch.setattr(audit_relay, "asyncio", SimpleNamespace(sleep=pause))

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(audit_relay.relay_forever(interval=60, batch_size=2, busy_share=0.25))

    assert pauses == [3, 3, 60]  # resting three seconds for each second of work, then the interval
    assert outbox_backlog() == 0


def test_a_drain_keeps_one_connection_to_each_database_for_all_its_batches(migrated_databases) -> None:
    record(7)
    connects: list[str] = []
    counters = {name: lambda *_, name=name: connects.append(name) for name in ("core", "audit")}
    for name, count in counters.items():
        event.listen(get_unpooled_engine(name), "connect", count)
    try:
        asyncio.run(audit_relay.drain(batch_size=2, busy_share=1))
    finally:
        for name, count in counters.items():
            event.remove(get_unpooled_engine(name), "connect", count)

    assert len(delivered()) == 7
    assert sorted(connects) == ["audit", "core"]


def test_relay_takes_the_oldest_events_first(migrated_databases) -> None:
    ids = record(5)

    with relay_connections() as (core, audit):
        assert deliver_batch(core, audit, batch_size=2, signing_key=get_settings().audit_signing_key) == 2

    assert [event.id for event in delivered()] == ids[:2]
    assert outbox_backlog() == 3


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_concurrent_relays_deliver_and_count_each_event_exactly_once(migrated_databases) -> None:
    workspace_id = uuid.uuid4()
    ids = record(600, workspace_id=workspace_id, start_minutes_ago=1)
    counts: list[int] = []
    start = threading.Barrier(2)

    def relay() -> None:
        start.wait()
        counts.append(relay_pending(batch_size=25))

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(counts) == 600  # no event was claimed by both relays
    assert sorted(event.id for event in delivered()) == sorted(ids)
    assert sum(daily_counts().values()) == 600
    assert outbox_backlog() == 0


def test_prune_deletes_only_events_recorded_before_the_given_days(migrated_databases, monkeypatch) -> None:
    with monkeypatch.context() as clock:
        recorded_long_ago = utcnow() - timedelta(days=40)
        clock.setattr(audit_chain, "utcnow", lambda: recorded_long_ago)
        record(3, start_minutes_ago=60 * 24 * 40)
        relay_pending(batch_size=10)
    recent = record(2, start_minutes_ago=60 * 24 * 40)  # as old, but delivered now: after an outage
    relay_pending(batch_size=10)

    assert (
        prune_audit_events(older_than_days=30, signing_key=get_settings().audit_signing_key, batch_size=2).deleted == 3
    )

    assert [event.id for event in delivered()] == recent
    # The prune is an audit event of its own, the service's: delivered as any other.
    relay_pending(batch_size=10)
    [pruned] = [event for event in delivered() if event.action == "audit.pruned"]
    assert (pruned.actor_type, pruned.details["deleted"], pruned.details["older_than_days"]) == ("system", 3, 30)
