"""The named databases: their model bases, and how to read what a database reports.

``DATABASES`` is the one source of truth: its URL setting (src/core/config.py),
the app's request sessions and session dependencies, the migrations, the
Makefile's DB= check and the tests all read it. Adding a database is one base
class and one entry here.
"""

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import registry
from sqlalchemy.sql.schema import ColumnCollectionConstraint
from sqlmodel import SQLModel

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
    # The API serves requests without an optional database; while it is unreachable the service is degraded.
    required: bool = True

    @property
    def metadata(self) -> MetaData:
        return self.base.metadata

    @property
    def url_setting(self) -> str:
        """The setting that holds its URL (src/core/config.py): core_database_url, read from CORE_DATABASE_URL."""
        return f"{self.name}_database_url"


DATABASES: dict[str, Database] = {
    "core": Database("core", CoreModel),
    "audit": Database("audit", AuditModel, required=False),
}


class UnknownDatabaseError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown database {name!r}; choose one of: {', '.join(DATABASES)}")


def get_database(name: str) -> Database:
    try:
        return DATABASES[name]
    except KeyError:
        raise UnknownDatabaseError(name) from None


def selected_databases(name: str | None) -> list[Database]:
    """The named database, or every database when no name is given (DB= left empty)."""
    return [get_database(name)] if name else list(DATABASES.values())


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


def upsert_insert(bind: Connection | Engine, table: Table | type[SQLModel]) -> Any:
    """An INSERT into ``table`` that can say what to do ON CONFLICT, in the dialect of ``bind`` (PostgreSQL's and
    SQLite's are written alike)."""
    return (postgresql if bind.dialect.name == "postgresql" else sqlite).insert(table)
