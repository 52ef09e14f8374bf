"""The named databases: their model bases, URLs, engines and sessions.

``DATABASES`` is the one source of truth: migrations, settings lookups, the
Makefile's DB= check and the tests all read it. Adding a database is one base
class, one entry here and one URL setting.
"""

import re
import select
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import registry
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.sql.schema import ColumnCollectionConstraint
from sqlmodel import SQLModel

from src.core.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class CoreModel(SQLModel, registry=registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))):
    """Base of the tables in the core database (users, workspaces, members)."""


class AuditModel(SQLModel, registry=registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))):
    """Base of the tables in the audit database (audit events)."""


@dataclass(frozen=True)
class Database:
    name: str
    base: type[SQLModel]
    url_setting: str
    # The API serves requests without an optional database; while it is unreachable the service is degraded.
    required: bool = True

    @property
    def metadata(self) -> MetaData:
        return self.base.metadata

    @property
    def url(self) -> str:
        return str(getattr(get_settings(), self.url_setting))


DATABASES: dict[str, Database] = {
    "core": Database("core", CoreModel, "core_database_url"),
    "audit": Database("audit", AuditModel, "audit_database_url", required=False),
}


class UnknownDatabaseError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown database {name!r}; choose one of: {', '.join(DATABASES)}")


def get_database(name: str) -> Database:
    try:
        return DATABASES[name]
    except KeyError:
        raise UnknownDatabaseError(name) from None


def mask_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def database_error_reason(error: DBAPIError) -> str:
    """The driver's own first line (it names host and port, never the password)."""
    text = str(error.orig).strip()
    return text.splitlines()[0] if text else type(error.orig or error).__name__


def unique_violation_columns(error: DBAPIError, table: Table) -> set[str]:
    """The columns of ``table`` whose unique constraint or index ``error`` reports; empty for any other error.

    PostgreSQL names the constraint, looked up in the table's metadata; SQLite names the columns.
    """
    constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    if constraint:
        constraints = {
            named.name: named.columns for named in table.constraints if isinstance(named, ColumnCollectionConstraint)
        }
        indexes = {index.name: index.columns for index in table.indexes}
        return {column.name for column in (constraints | indexes).get(constraint, ())}
    message = str(error.orig)
    if message.startswith("UNIQUE constraint failed: "):
        named = message.removeprefix("UNIQUE constraint failed: ").split(", ")
        return {name.partition(".")[2] for name in named if name.startswith(f"{table.name}.")}
    return set()


# PostgreSQL's integrity error classes, and what each names.
_VIOLATIONS = {
    "23502": "the not-null constraint",
    "23503": "the foreign key",
    "23505": "the unique constraint",
    "23514": "the check constraint",
    "23P01": "the exclusion constraint",
}
_SQLITE_VIOLATION = re.compile(r"(NOT NULL|UNIQUE|CHECK|FOREIGN KEY) constraint failed(?:: (.+))?")


def constraint_violation(error: DBAPIError) -> str:
    """What an integrity error violates, by name: 'the not-null constraint on users.nickname', 'the unique
    constraint uq_users_email', 'the check constraint ck_users_age'."""
    diag = getattr(error.orig, "diag", None)
    kind = _VIOLATIONS.get(getattr(error.orig, "pgcode", None) or "")
    if diag is not None and kind:
        if diag.constraint_name:
            return f"{kind} {diag.constraint_name} of {diag.table_name}"
        return f"{kind} on {diag.table_name}.{diag.column_name}"
    found = _SQLITE_VIOLATION.match(str(error.orig))
    if found is None:
        return "a constraint"
    kind, named = found.group(1).lower().replace("not null", "not-null"), found.group(2)
    if kind == "foreign key" or not named:
        return f"a {kind} constraint"
    # SQLite names the columns of a not-null or unique constraint, and a check constraint by its name.
    return f"the {kind} constraint {'' if kind == 'check' else 'on '}{named}"


def create_database_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for a database URL; SQLite files get their folder created on demand.

    Errors leave the statement's parameters out: they hold emails and password hashes, and errors are logged.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A writer waits for the write lock as long as a request waits for a connection.
        connect_args = {"check_same_thread": False, "timeout": get_settings().db_pool_timeout}
        return create_engine(url, connect_args=connect_args, hide_parameters=True, **kwargs)
    # Fail fast on an unreachable server instead of waiting for the OS timeout.
    engine = create_engine(url, connect_args={"connect_timeout": 5}, hide_parameters=True, **kwargs)
    event.listen(engine, "checkout", _discard_if_closed_by_server)
    return engine


def _discard_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server has closed (a restart, pg_terminate_backend) is replaced, not handed out.

    An idle connection has nothing to read unless the server said goodbye (a termination
    message, then end of file), so one non-blocking poll of its socket tells, without the
    round trip of ``pool_pre_ping``. SQLAlchemy discards the connection and checks out another.
    """
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    if readable or dbapi_connection.closed:
        raise DisconnectionError("the server closed this pooled connection")


# Execution option of a connection (or engine) whose SQLite transactions only read: they begin without the write lock.
READS_ONLY = "reads_only"


def begin_sqlite_transactions(engine: Engine, begin: str = "BEGIN") -> None:
    """Make an SQLite engine's transactions cover every statement.

    pysqlite opens a transaction only before INSERT, UPDATE or DELETE, so reads and
    DDL before the first write run outside it; the driver's own handling is turned
    off and ``begin`` is sent when SQLAlchemy begins (a plain BEGIN for READS_ONLY).
    """

    def driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    def begin_transaction(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(READS_ONLY) else begin)

    event.listen(engine, "connect", driver_autocommit)
    event.listen(engine, "begin", begin_transaction)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=ON")
    # Write-ahead log: readers and the one writer never wait for each other. Kept in the file once set;
    # setting it again would wait for the write lock.
    if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        dbapi_connection.execute("PRAGMA journal_mode=WAL")


def create_app_engine(url: str, *, pooled: bool = True) -> Engine:
    """An engine as the app uses it: pooled per settings, or unpooled; SQLite with real transactions."""
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    options: dict[str, Any] = {"poolclass": NullPool}
    if pooled:
        settings = get_settings()
        options = {
            "poolclass": QueuePool,
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": settings.db_pool_timeout,
        }
    engine = create_database_engine(url, **options)
    if is_sqlite:
        event.listen(engine, "connect", _configure_sqlite_connection)
        # One writer at a time, decided when a transaction starts: a read that later writes cannot
        # deadlock with another one ("database is locked"), and what it read stays true until it commits.
        # Transactions that only read (READS_ONLY) take no lock and, in WAL mode, wait for no writer.
        begin_sqlite_transactions(engine, "BEGIN IMMEDIATE")
    return engine


_engines: dict[tuple[str, bool], Engine] = {}


def _engine(name: str, *, pooled: bool) -> Engine:
    key = (get_database(name).url, pooled)
    if key not in _engines:
        _engines[key] = create_app_engine(key[0], pooled=pooled)
    return _engines[key]


def get_engine(name: str) -> Engine:
    """The pooled engine that requests use for a named database (see src/core/sessions.py)."""
    return _engine(name, pooled=True)


def get_unpooled_engine(name: str) -> Engine:
    """An engine for work outside requests (the audit relay, /ready, jobs): it never takes a connection
    from the pool that admitted requests count on."""
    return _engine(name, pooled=False)


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
