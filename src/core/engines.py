"""Engines for the named databases: the pooled ones requests use, and unpooled ones for everything else."""

import select
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool, QueuePool

from src.core.config import get_settings


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
    # poll(), not select(): select() refuses descriptors above 1023, which a busy worker's connections reach.
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0) or dbapi_connection.closed:
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
    key = (get_settings().database_url(name), pooled)
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


@contextmanager
def own_connection(name: str) -> Iterator[Connection]:
    """A connection on an engine of its own, closed and disposed after: for a command's or a migration's work,
    which must neither take a connection from the app's pools nor (on SQLite) wait for the write lock to read.
    On SQLite its transactions cover DDL too, so that a failed migration is rolled back whole."""
    engine = create_database_engine(get_settings().database_url(name), poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        begin_sqlite_transactions(engine)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
