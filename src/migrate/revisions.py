"""The revision files, the connections the commands work on, and where each database stands against the
revisions, with the refusals every command shares."""

import ast
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from src.core.config import project_path
from src.core.databases import DATABASES, Database
from src.core.engines import own_connection
from src.core.schema_versions import SchemaState, read_schema_state, script_directory, show_revisions
from src.migrate.failures import (
    MigrateError,
    RevisionFailed,
    SeveralHeadsError,
    failed_revision,
    reporting_errors,
    versions_folder,
)
from src.migrate.migration_lock import prepare_migration_connection


def load_scripts() -> ScriptDirectory:
    """The revision files, read once per command; a file that cannot be read is one line naming it."""
    scripts = script_directory()
    try:
        scripts.revision_map.heads  # noqa: B018 -- reading it loads every revision file
    except SyntaxError as error:
        where = f"{project_path(error.filename)}:{error.lineno}" if error.filename else "a revision file"
        raise MigrateError(f"{where}: cannot read the revision: {error.msg}") from error
    except Exception as error:
        revision = failed_revision(error.__traceback__, versions_folder())
        if revision is None:
            raise
        raise RevisionFailed(f"{revision} cannot be loaded", f"{type(error).__name__}: {error}") from error
    return scripts


@contextmanager
def plain_connection(database: Database) -> Iterator[Connection]:
    """A connection of its own, errors told in one line naming the database."""
    with reporting_errors(database), own_connection(database.name) as connection:
        yield connection


@contextmanager
def database_connections(databases: list[Database], *, migrating: bool = False) -> Iterator[dict[str, Connection]]:
    """One connection of its own per database, for the whole command; ``migrating``: with the migration's
    timeouts, and holding each database's migration lock (PostgreSQL), so that what the command reads is
    what it migrates."""
    with ExitStack() as stack:
        connections = {}
        for database in databases:
            with reporting_errors(database):
                connection = stack.enter_context(own_connection(database.name))
                if migrating:
                    prepare_migration_connection(connection, database.name)
            connections[database.name] = connection
        yield connections


def read_state(connection: Connection, database: Database, scripts: ScriptDirectory) -> SchemaState:
    """The database's state; the read's transaction is ended, so that migrations can begin their own."""
    with reporting_errors(database):
        try:
            return read_schema_state(connection, scripts)
        finally:
            connection.rollback()


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


def read_known_states(
    connections: dict[str, Connection], databases: list[Database], scripts: ScriptDirectory
) -> dict[str, SchemaState]:
    """Each database's state, refusing any at a revision this code does not know."""
    states = {database.name: read_state(connections[database.name], database, scripts) for database in databases}
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
