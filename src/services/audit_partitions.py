"""The audit events' month partitions on PostgreSQL (src/core/partitions.py): ``make audit-prune`` creates the
months ahead and drops the months retention no longer keeps. SQLite has no partitions; these do nothing there."""

from datetime import date, datetime, timedelta

from sqlalchemy import Connection, text

from src.core.partitions import drop_months_before, ensure_months, first_of_month, is_partitioned
from src.core.timestamps import utcnow
from src.services.audit_chain import AUDIT_EVENTS

MONTHS_AHEAD = 3
# Dropping a month waits for readers of the table; a long export must not hold back every read queued behind it.
LOCK_TIMEOUT = "5s"


def ensure_partitions(audit: Connection, first: date, last: date) -> list[str]:
    """Create the partitions of the months from ``first``'s to ``last``'s that are missing; returns their names."""
    if not is_partitioned(audit, AUDIT_EVENTS.name):
        return []
    audit.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    return ensure_months(audit, AUDIT_EVENTS.name, "recorded_at", first, last)


def prepare_months_ahead(audit: Connection) -> list[str]:
    """This month's partition and the next MONTHS_AHEAD months', where missing."""
    this_month = first_of_month(utcnow().date())
    return ensure_partitions(audit, this_month, this_month + timedelta(days=31 * MONTHS_AHEAD))


def drop_months_recorded_before(audit: Connection, cutoff: datetime) -> tuple[list[str], int]:
    """Drop the partitions holding only events recorded before ``cutoff``; their names and how many events."""
    if not is_partitioned(audit, AUDIT_EVENTS.name):
        return [], 0
    audit.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    return drop_months_before(audit, AUDIT_EVENTS.name, cutoff)
