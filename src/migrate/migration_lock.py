"""Timeouts and the one-at-a-time lock for the connection that runs migrations (PostgreSQL only).

A revision that waits for a table lock makes every later read of that table queue
behind it, so its wait is bounded by ``lock_timeout``; a second migration waits
for the first one's advisory lock, but not forever.
"""

import re
import sys
import time
from datetime import UTC

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from src.core.config import get_settings

# Any fixed number shared by every process that migrates: one upgrade at a time, per database.
MIGRATION_LOCK_ID = 0x616C656D
POLL_INTERVAL_SECONDS = 0.5
CLIENT_CHECK_INTERVAL_SECONDS = 1

LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"

_NAME = r'(?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?'
# What a failing migration statement locks, read from its SQL: (pattern, kind of object).
_LOCKED_OBJECT = [
    (rf"ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?({_NAME})", "table"),
    (rf"CREATE\s+(?:UNIQUE\s+)?INDEX\s.*?\bON\s+(?:ONLY\s+)?({_NAME})", "table"),
    (rf"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?({_NAME})", "table"),
    (rf"DROP\s+INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?({_NAME})", "index"),
    (rf"ALTER\s+INDEX\s+(?:IF\s+EXISTS\s+)?({_NAME})", "index"),
    (rf"CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s.*?\bON\s+({_NAME})", "table"),
    (rf"(?:TRUNCATE|LOCK)\s+(?:TABLE\s+)?(?:ONLY\s+)?({_NAME})", "table"),
    (rf"UPDATE\s+(?:ONLY\s+)?({_NAME})", "table"),
    (rf"INSERT\s+INTO\s+({_NAME})", "table"),
    (rf"DELETE\s+FROM\s+(?:ONLY\s+)?({_NAME})", "table"),
    (rf"ALTER\s+TYPE\s+({_NAME})", "type"),
]
_REFERENCED_TABLE = re.compile(rf"\bREFERENCES\s+({_NAME})", re.IGNORECASE)
# PostgreSQL's CONTEXT line for a row lock names the relation: 'while updating tuple (0,1) in relation "users"'.
_CONTEXT_RELATION = re.compile(r'in relation "([^"]+)"')


class MigrationLockTimeout(Exception):
    """Another process kept the migration lock longer than MIGRATION_WAIT_TIMEOUT_SECONDS."""

    exit_code = 2


def prepare_migration_connection(connection: Connection, database_name: str, *, lock: bool = True) -> None:
    """Give the migration's own connection its timeouts, then take the migration lock (unless ``lock`` is false:
    a run that only compares the models with the schema must not wait for a deploy).

    Session settings, committed: they hold for every revision's transaction on this
    connection and end with it, so the connection must not go back to a pool (env.py's
    engine has none); the app's connections keep the server's defaults. The lock is
    released when the connection closes.
    """
    if connection.dialect.name != "postgresql":
        return
    version = connection.dialect.server_version_info
    settings = session_settings(client_check=version is not None and int(version[0]) >= 14)
    calls = ", ".join(f"set_config('{name}', :{name}, false)" for name in settings)
    connection.execute(text(f"SELECT {calls}"), settings)
    # So that pg_stat_activity (and a second migration waiting here) can tell who holds the lock.
    connection.execute(
        text("SELECT set_config('application_name', :name, false) WHERE current_setting('application_name') = ''"),
        {"name": f"migrate {database_name}"},
    )
    connection.commit()
    if lock:
        _take_migration_lock(connection, database_name)


def session_settings(*, client_check: bool) -> dict[str, str]:
    """The PostgreSQL settings of a migration's session, online and in make migrate-sql's output alike
    (``client_check`` where the server has client_connection_check_interval, PostgreSQL 14 and newer)."""
    settings = get_settings()
    values = {
        "lock_timeout": _milliseconds(settings.migration_lock_timeout_seconds),
        "statement_timeout": _milliseconds(settings.migration_statement_timeout_seconds),
    }
    if client_check:
        # The server checks the client is still there while a statement runs: a killed migration's backend stops
        # within a second, releasing its locks, instead of running its statement to the end.
        values["client_connection_check_interval"] = _milliseconds(CLIENT_CHECK_INTERVAL_SECONDS)
    return values


def _milliseconds(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _try_lock(connection: Connection) -> bool:
    # pg_try_advisory_lock never waits, so lock_timeout plays no part here.
    taken = bool(connection.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID}).scalar())
    connection.commit()
    return taken


def _take_migration_lock(connection: Connection, database_name: str) -> None:
    if _try_lock(connection):
        return
    wait = get_settings().migration_wait_timeout_seconds
    print(
        f"{database_name}: another migration is running: the migration lock is held by {_holder(connection)};"
        f" waiting up to {_seconds(wait)} (MIGRATION_WAIT_TIMEOUT_SECONDS)",
        file=sys.stderr,
        flush=True,
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(min(POLL_INTERVAL_SECONDS, max(deadline - time.monotonic(), 0)))
        if _try_lock(connection):
            return
    raise MigrationLockTimeout(
        f"{database_name}: another migration still holds the migration lock after {_seconds(wait)}"
        f" (MIGRATION_WAIT_TIMEOUT_SECONDS): {_holder(connection)}; retry when it finishes"
    )


def _holder(connection: Connection) -> str:
    """The session holding the migration lock in this database, as 'pid N (application, connected since T)'."""
    row = connection.execute(
        text(
            "SELECT l.pid, a.application_name, a.backend_start FROM pg_locks l"
            " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.classid = :high AND l.objid = :low"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"high": MIGRATION_LOCK_ID >> 32, "low": MIGRATION_LOCK_ID & 0xFFFFFFFF},
    ).first()
    connection.commit()
    if row is None:  # released in the meantime
        return "a session that just ended"
    pid, application, started = row
    details = [application] if application else []
    if started is not None:  # hidden when the holder is another role without pg_read_all_stats
        details.append(f"connected since {started.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    return f"pid {pid}" + (f" ({', '.join(details)})" if details else "")


def timeout_reason(error: DBAPIError) -> str | None:
    """What stopped a migration statement, when lock_timeout or statement_timeout did; None for other errors."""
    code = getattr(error.orig, "pgcode", None)
    message = str(error.orig)
    locked = _locked_object(error)
    if code == LOCK_NOT_AVAILABLE:
        waited = f"waited {_seconds(get_settings().migration_lock_timeout_seconds)}"
        if concurrent_index(error.statement or "", verb="(?:CREATE|DROP)"):
            return (
                f"{waited} for older transactions to end (lock_timeout; MIGRATION_LOCK_TIMEOUT_SECONDS): an index"
                " built or dropped concurrently waits for every transaction of the database that began before it,"
                " whatever table that transaction uses"
            )
        return f"{waited} for a lock{f' on {locked}' if locked else ''} (lock_timeout; MIGRATION_LOCK_TIMEOUT_SECONDS)"
    # The same code is used for a cancel by pg_cancel_backend, which is no timeout.
    if code == QUERY_CANCELED and "statement timeout" in message:
        return (
            f"a statement{f' on {locked}' if locked else ''} ran longer than"
            f" {_seconds(get_settings().migration_statement_timeout_seconds)}"
            " (statement_timeout; MIGRATION_STATEMENT_TIMEOUT_SECONDS: raise it if the statement needs longer)"
        )
    return None


def concurrent_index(statement: str, *, verb: str = "CREATE") -> str | None:
    """The index a ``CREATE INDEX CONCURRENTLY`` statement (or another ``verb``) names, unquoted; None for others."""
    found = re.match(
        rf"{verb}\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?({_NAME})",
        _strip_comments(statement),
        re.IGNORECASE,
    )
    return _unquote(found.group(1)) if found else None


def locked_tables(error: DBAPIError) -> list[str]:
    """The tables whose lock a failing statement wanted, when they can be told (a foreign key names two)."""
    kind, names = _locked_objects(error)
    return names if kind == "table" else []


def _locked_object(error: DBAPIError) -> str | None:
    """What the failing statement locks, e.g. 'table users' or 'table members or users'; None when it cannot be told."""
    kind, names = _locked_objects(error)
    return f"{kind} {' or '.join(names)}" if names else None


def _locked_objects(error: DBAPIError) -> tuple[str, list[str]]:
    context = getattr(getattr(error.orig, "diag", None), "context", None) or ""
    in_relation = _CONTEXT_RELATION.search(context)
    if in_relation:
        return "table", [in_relation.group(1)]
    statement = _strip_comments(error.statement or "")
    # A foreign key locks the table it references too; a new table is the only one nobody else can hold.
    referenced = [_unquote(name) for name in _REFERENCED_TABLE.findall(statement)]
    names: list[str] = []
    kind = "table"
    for pattern, object_kind in _LOCKED_OBJECT:
        found = re.match(pattern, statement, re.IGNORECASE | re.DOTALL)
        if found:
            names, kind = [_unquote(found.group(1))], object_kind
            break
    return kind, names + [name for name in referenced if name not in names]


def _strip_comments(statement: str) -> str:
    return re.sub(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/)*", "", statement, flags=re.DOTALL)


def _unquote(name: str) -> str:
    return name.replace('"', "")
