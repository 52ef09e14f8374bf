"""The revision files and where each database stands against them, with the refusals every command shares."""

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from src.core.databases import DATABASES, Database, create_database_engine, get_database
from src.core.schema_versions import SchemaState, read_schema_state, show_revisions
from src.migrate.errors import MigrateError, SeveralHeadsError, reporting_errors


def selected(db: str | None) -> list[Database]:
    return [get_database(db)] if db else list(DATABASES.values())


@contextmanager
def plain_connection(database: Database) -> Iterator[Connection]:
    """A connection of its own, errors told in one line. Not the app's engine: its SQLite transactions take
    the write lock, so a read would wait for any writer."""
    engine = create_database_engine(database.url, poolclass=NullPool)
    try:
        with reporting_errors(database), engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def read_state(database: Database, scripts: ScriptDirectory) -> SchemaState:
    with plain_connection(database) as connection:
        return read_schema_state(connection, scripts)


def require_one_head(scripts: ScriptDirectory) -> str:
    """The head revision; several mean two branches each added a revision, and must be merged first."""
    heads = scripts.get_heads()
    if len(heads) == 1:
        return heads[0]
    named = ", ".join(f"{head} ({scripts.get_revision(head).doc})" for head in sorted(heads))
    raise SeveralHeadsError(
        f"the migrations have {len(heads)} heads: {named}; two branches each added a revision."
        ' Join them with: make migrate-merge MSG="Merge ...", then make migrate-upgrade'
    )


def refuse_unknown(database: Database, state: SchemaState) -> None:
    if state.unknown:
        raise MigrateError(f"{database.name}: {unknown_revision_reason(state)}")


UNKNOWN_REVISION_ADVICE = (
    "the database was migrated by newer code, or a revision file is missing; run the code that has the revision"
    " (on a laptop: check out the branch that made it and make migrate-rollback there), or restore the file"
)


def unknown_revision_reason(state: SchemaState) -> str:
    return (
        f"at revision {show_revisions(state.unknown)}, which is not in migrations/versions: {UNKNOWN_REVISION_ADVICE}"
    )


def read_known_states(databases: list[Database], scripts: ScriptDirectory) -> dict[str, SchemaState]:
    """Each database's state, refusing any at a revision this code does not know."""
    states = {database.name: read_state(database, scripts) for database in databases}
    for database in databases:
        refuse_unknown(database, states[database.name])
    return states


def refuse_pending(databases: list[Database], states: dict[str, SchemaState]) -> None:
    """Autogenerate compares models with the schema, so the schema must be at head first."""
    for database in databases:
        pending = states[database.name].pending
        if pending:
            raise MigrateError(
                f"{database.name}: {len(pending)} revision(s) not applied; run make migrate-upgrade first"
            )


@contextmanager
def noting_what_was_done(databases: list[Database], current: Database, done: str) -> Iterator[None]:
    """Add to a failure which databases were already done: no transaction spans two of them."""
    try:
        yield
    except MigrateError as error:
        before = [database.name for database in databases[: databases.index(current)]]
        if before:
            error.args = (f"{error} ({', '.join(before)} already {done}; check with make migrate-status)",)
        raise


def touched_databases(path: str | Path) -> list[str]:
    """The databases whose upgrade or downgrade function in a revision file does something."""
    tree = ast.parse(Path(path).read_text())
    bodies = {node.name: node.body for node in tree.body if isinstance(node, ast.FunctionDef)}

    def does_something(body: list[ast.stmt]) -> bool:
        return any(
            not isinstance(statement, ast.Pass)
            and not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
            for statement in body
        )

    return [
        name
        for name in DATABASES
        if any(does_something(bodies.get(f"{step}_{name}", [])) for step in ("upgrade", "downgrade"))
    ]
