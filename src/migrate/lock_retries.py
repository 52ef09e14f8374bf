"""Lock retries (PostgreSQL): a revision that waits too long for a lock is rolled back and run again after a pause.

Each attempt waits at most MIGRATION_LOCK_TIMEOUT_SECONDS for a lock, so reads and
writes queue behind it no longer than that; between attempts, holding nothing, it
pauses MIGRATION_LOCK_RETRY_PAUSE_SECONDS, doubled each time up to a minute, for
at most MIGRATION_LOCK_ATTEMPTS attempts. Each retry is printed with the sessions
that held the lock. A concurrent index build that failed leaves an INVALID index;
it is dropped, so that the retry, or the next upgrade, can build it again.
"""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from src.core.config import get_settings
from src.core.databases import Database
from src.core.engines import own_connection
from src.migrate.failures import RevisionFailed, reporting_errors
from src.migrate.migration_lock import LOCK_NOT_AVAILABLE, concurrent_index, locked_tables, prepare_migration_connection

DUPLICATE_TABLE = "42P07"  # also what CREATE INDEX says of an index that exists
MAX_PAUSE_SECONDS = 60.0
SESSIONS_SHOWN = 3


def _is_lock_timeout(error: DBAPIError) -> bool:
    return _code(error) == LOCK_NOT_AVAILABLE


def _retry_pauses() -> Iterator[float]:
    """The pause before each retry: MIGRATION_LOCK_ATTEMPTS - 1 of them, doubling up to a minute."""
    settings = get_settings()
    pause = settings.migration_lock_retry_pause_seconds
    for _ in range(settings.migration_lock_attempts - 1):
        yield pause
        pause = min(pause * 2, MAX_PAUSE_SECONDS)


def with_lock_retries(database: Database, run: Callable[[], object]) -> None:
    """Run one database's migration, ``run`` (an Alembic command), again while it fails waiting for a lock, up to
    the attempts allowed; any failure is told in one line (``reporting_errors``)."""
    pauses = _retry_pauses()
    attempts = get_settings().migration_lock_attempts
    attempt = 1
    while True:
        try:
            with reporting_errors(database):
                run()
            return
        except RevisionFailed as failure:
            error = failure.__cause__
            if not isinstance(error, DBAPIError) or not _is_postgresql(database):
                raise
            debris = _drop_invalid_index(database, error)
            retry = _is_lock_timeout(error) or (bool(debris) and _code(error) == DUPLICATE_TABLE)
            if not retry and not debris:
                raise
            reason = failure.reason + (_holders(database, error) if _is_lock_timeout(error) else "")
            reason += f"; {debris}" if debris else ""
            pause = next(pauses, None) if retry else None
            if pause is None:
                tried = f"; gave up after {attempt} attempts (MIGRATION_LOCK_ATTEMPTS)" if retry else ""
                raise RevisionFailed(failure.where, reason + tried, failure.advice) from error
            print(
                f"{failure.where}: {reason}; attempt {attempt} of {attempts}, trying again in {pause:g}s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(pause)
            attempt += 1


def _is_postgresql(database: Database) -> bool:
    return get_settings().database_url(database.name).startswith("postgresql")


def _code(error: DBAPIError) -> str | None:
    return getattr(error.orig, "pgcode", None)


@contextmanager
def _connect(database: Database) -> Iterator[Connection]:
    """A connection of its own in autocommit, with the migration's timeouts."""
    with own_connection(database.name) as connection:
        prepare_migration_connection(connection, database.name, lock=False)
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


def _drop_invalid_index(database: Database, error: DBAPIError) -> str:
    """What became of the index a failed ``CREATE INDEX CONCURRENTLY`` left INVALID ("" when there is none).

    Dropping it waits for the table's transactions too; when that takes too long, the next attempt (or run)
    meets the index again and drops it then.
    """
    index = concurrent_index(error.statement or "")
    if index is None:
        return ""
    with _connect(database) as connection:
        invalid = connection.execute(
            text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:index)"), {"index": index}
        ).scalar()
        if not invalid:
            return ""
        quoted = connection.dialect.identifier_preparer.quote(index)
        try:
            connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}"))
        except DBAPIError:
            return (
                f"the INVALID index {index} it left is still there (dropping it waited too long as well):"
                " the next attempt or run drops it"
            )
    return f"the INVALID index {index} it left was dropped"


def _holders(database: Database, error: DBAPIError) -> str:
    """', held by pid 4242 (psql, idle in transaction since 11:33:01 UTC)': who kept what the statement waited for.

    For a table, the sessions holding a lock on it; for a concurrent index, which waits for every older
    transaction, the oldest transactions of the database.
    """
    tables = locked_tables(error)
    if tables and not concurrent_index(error.statement or "", verb="(?:CREATE|DROP)"):
        query = (
            "SELECT pid, application_name, state, xact_start FROM pg_stat_activity WHERE pid IN"
            " (SELECT pid FROM pg_locks WHERE granted AND relation = ANY(CAST(:tables AS regclass[]))"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
            " AND pid <> pg_backend_pid() ORDER BY xact_start NULLS LAST LIMIT :shown"
        )
        label = "held by"
    else:
        query = (
            "SELECT pid, application_name, state, xact_start FROM pg_stat_activity"
            " WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' ORDER BY xact_start LIMIT :shown"
        )
        label = "the oldest open transactions"
    try:
        with _connect(database) as connection:
            rows = connection.execute(text(query), {"tables": tables, "shown": SESSIONS_SHOWN}).all()
    except DBAPIError:
        return ""
    if not rows:
        return ""
    return f", {label} " + ", ".join(_session(*row) for row in rows)


def _session(pid: int, application: str | None, state: str | None, since: object) -> str:
    details = [detail for detail in (application, state) if detail]
    if since is not None and hasattr(since, "astimezone"):
        details.append(f"in a transaction since {since.astimezone(UTC):%H:%M:%S} UTC")
    return f"pid {pid}" + (f" ({', '.join(details)})" if details else "")
