"""make migrate-status: one row per database, whatever state each is in."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from src.api.v1.models import load_models
from src.core.config import get_settings
from src.core.databases import Database, mask_url
from src.core.schema_versions import COMPARE_OPTIONS, SchemaState, read_schema_state, show_revisions
from src.migrate.failures import MigrateError
from src.migrate.revisions import UNKNOWN_REVISION_ADVICE, plain_connection


def describe_change(diff: Any) -> str:
    """One autogenerate difference as ``op table.column`` (a list of modifications counts as its first)."""
    op, *args = diff[0] if isinstance(diff, list) else diff
    names = [getattr(arg, "name", arg) for arg in args if isinstance(arg, str) or hasattr(arg, "name")]
    return f"{op} {'.'.join(str(name) for name in names[:2] if name)}"


def model_changes(connection: Connection, database: Database) -> list[str]:
    """What the models have that the database's schema lacks, or the other way round.

    Compared with the options env.py gives autogenerate, but without running env.py: no migration
    lock to wait for, and no second pass over the revision files.
    """
    load_models()
    context = MigrationContext.configure(connection, opts=dict(COMPARE_OPTIONS))
    return [describe_change(diff) for diff in compare_metadata(context, database.metadata)]


def describe_state(connection: Connection, database: Database, state: SchemaState) -> str:
    """The MODELS column: how the schema compares with the models, or why it cannot be compared yet."""
    if state.status == "unknown_revision":
        return "unknown revision: migrated by newer code, or a revision file is missing"
    if state.status == "not_migrated":
        return "not migrated"
    if len(state.current) > 1:
        return "branches applied without their merge revision; make migrate-upgrade joins them"
    if state.status == "post_deploy_pending":
        return "post-deploy pending: make migrate-post-deploy once the new code serves everywhere"
    if state.pending:
        return "upgrade pending"
    changes = model_changes(connection, database)
    return f"differ: {', '.join(changes)}" if changes else "match"


def database_row(
    database: Database, scripts: ScriptDirectory, heads: tuple[str, ...]
) -> tuple[tuple[str, ...], SchemaState | None, str | None]:
    """The database's row, its state, and why it could not be read (state None); one connection for all of it."""
    url, head = mask_url(get_settings().database_url(database.name)), show_revisions(heads)
    try:
        with plain_connection(database) as connection:
            state = read_schema_state(connection, scripts)
            merged = len(heads) == 1
            models = describe_state(connection, database, state) if merged else "not compared: the heads are not merged"
    except MigrateError as error:
        return (database.name, url, "unreachable", head, "?", "?"), None, str(error)
    pending = "?" if state.unknown else str(len(state.pending))
    if state.post_deploy:
        pending += f" ({len(state.post_deploy)} post-deploy)"
    return (database.name, url, show_revisions(state.current), head, pending, models), state, None


def status_rows(scripts: ScriptDirectory, databases: list[Database]) -> tuple[list[tuple[str, ...]], list[str]]:
    """A header and one row per database: URL (password masked), current, head, pending, model differences;
    and what is wrong, if anything. Each database is read and compared on a connection of its own, all at once."""
    load_models()
    heads = tuple(sorted(scripts.get_heads()))
    with ThreadPoolExecutor(max_workers=len(databases)) as pool:
        results = list(pool.map(lambda database: database_row(database, scripts, heads), databases))
    rows = [("DATABASE", "URL", "CURRENT", "HEAD", "PENDING", "MODELS"), *(row for row, _, _ in results)]
    problems = [problem for _, _, problem in results if problem]
    unknown = [f"{row[0]} at {show_revisions(state.unknown)}" for row, state, _ in results if state and state.unknown]
    if unknown:
        problems.append(f"{', '.join(unknown)}: not in migrations/versions: {UNKNOWN_REVISION_ADVICE}")
    return rows, problems
