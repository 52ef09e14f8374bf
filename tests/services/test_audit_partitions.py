"""PostgreSQL's month partitions of the audit events: made ahead, filled from the default one, dropped by a prune."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Connection, text

from src.core.config import get_settings
from src.core.engines import get_engine
from src.core.partitions import month_partitions
from src.core.timestamps import utcnow
from src.services import audit_chain
from src.services.audit_chain import verify
from src.services.audit_partitions import ensure_partitions
from src.services.audit_relay import relay_pending
from src.services.audit_retention import prune_audit_events
from tests.factories import record

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)]


def where_events_are(audit: Connection) -> dict[str, int]:
    rows = audit.execute(text("SELECT tableoid::regclass::text, count(*) FROM audit_events GROUP BY 1"))
    return {name: count for name, count in rows}


def deliver_as_if_at(monkeypatch: pytest.MonkeyPatch, moment_days: int, count: int) -> None:
    """Relay ``count`` new events with the relay's clock ``moment_days`` days from now."""
    with monkeypatch.context() as clock:
        moment = utcnow() + timedelta(days=moment_days)
        clock.setattr(audit_chain, "utcnow", lambda: moment)
        record(count, workspace_id=uuid.uuid4())
        relay_pending(batch_size=100)


def test_events_of_a_month_with_no_partition_wait_in_the_default_one_until_it_is_made(
    migrated_databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = (utcnow() + timedelta(days=200)).date()
    deliver_as_if_at(monkeypatch, 200, 3)
    with get_engine("audit").connect() as audit:
        waiting = where_events_are(audit)

    with get_engine("audit").begin() as audit:
        created = ensure_partitions(audit, later, later)
        again = ensure_partitions(audit, later, later)

    assert waiting == {"audit_events_default": 3}
    assert created == [f"audit_events_p{later:%Y_%m}"] and again == []
    with get_engine("audit").connect() as audit:
        assert where_events_are(audit) == {f"audit_events_p{later:%Y_%m}": 3}
        assert verify(audit, key=get_settings().audit_signing_key).ok


def test_a_prune_drops_the_months_it_removes_whole_and_makes_the_months_ahead(
    migrated_databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_ago = (utcnow() - timedelta(days=400)).date()
    with get_engine("audit").begin() as audit:
        ensure_partitions(audit, long_ago, utcnow().date())
    deliver_as_if_at(monkeypatch, -400, 3)
    deliver_as_if_at(monkeypatch, 0, 2)

    pruned = prune_audit_events(older_than_days=365, signing_key=get_settings().audit_signing_key)

    cutoff_month = (utcnow() - timedelta(days=365)).date().replace(day=1)
    assert pruned.deleted == 3
    assert f"audit_events_p{long_ago:%Y_%m}" in pruned.dropped_partitions
    with get_engine("audit").connect() as audit:
        months = month_partitions(audit, "audit_events")
        assert min(months) == cutoff_month
        assert max(months) >= (utcnow() + timedelta(days=85)).date().replace(day=1)  # three months ahead
        assert sum(where_events_are(audit).values()) == 2
        assert verify(audit, key=get_settings().audit_signing_key).ok
