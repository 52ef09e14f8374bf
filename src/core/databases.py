"""The named databases: their model bases, URLs, engines and sessions.

``DATABASES`` is the one source of truth: migrations, settings lookups, the
Makefile's DB= check and the tests all read it. Adding a database is one base
class, one entry here and one URL setting.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from src.core.config import settings

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
        return str(getattr(settings, self.url_setting))


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


def create_database_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for a database URL; SQLite files get their folder created on demand."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
    # Fail fast on an unreachable server instead of waiting for the OS timeout.
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5}, **kwargs)


_engines: dict[str, Engine] = {}


def _create_app_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_database_engine(url)
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    return create_database_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
    )


def _enable_sqlite_foreign_keys(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine(name: str) -> Engine:
    """The app's pooled engine for a named database, created once per URL."""
    url = get_database(name).url
    if url not in _engines:
        _engines[url] = _create_app_engine(url)
    return _engines[url]


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
