"""One environment for every named database in src/core/databases.py.

``-x db=NAME`` restricts any command to one database. URLs come from the app's
settings; alembic.ini holds none. The make migrate-* commands (src/migrate/commands.py)
hand over a connection per database, already holding its migration lock; run by
Alembic's own command line, this environment opens its own.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from logging.config import fileConfig
from pathlib import Path
from typing import Any, Literal, TextIO

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

from src.api.v1.models import UnassignedModelError, load_models
from src.core.config import get_settings
from src.core.databases import DATABASES, UnknownDatabaseError, selected_databases
from src.core.engines import own_connection
from src.core.schema_versions import COMPARE_OPTIONS, current_heads, different_revisions_message
from src.migrate.backfill import clear_progress  # also registers op.backfill for the revisions
from src.migrate.migration_lock import prepare_migration_connection, session_settings

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def selected_names() -> list[str]:
    try:
        return [database.name for database in selected_databases(context.get_x_argument(as_dictionary=True).get("db"))]
    except UnknownDatabaseError as error:
        raise CommandError(str(error)) from None


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the app's column types as their plain SQLAlchemy type, so revisions never import the app."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def changes_schema() -> bool:
    """False for autogenerate and check, which only compare the models with the schema."""
    return not (getattr(config.cmd_opts, "autogenerate", False) or alembic_command() == "check")


def skip_empty_revision(migration_context: MigrationContext, revision: Any, directives: list[MigrationScript]) -> None:
    """Write no file when no database changed; decided once the last database was compared."""
    script = directives[0]
    if not getattr(config.cmd_opts, "autogenerate", False):
        return
    if len(script.upgrade_ops_list) < len(names):
        return
    if all(ops.is_empty() for ops in script.upgrade_ops_list):
        directives[:] = []
        config.print_stdout(f"no changes detected in {', '.join(names)}; no revision written")


def configure(name: str, **options: Any) -> None:
    context.configure(
        target_metadata=DATABASES[name].metadata,
        upgrade_token=f"{name}_upgrades",
        downgrade_token=f"{name}_downgrades",
        render_item=render_item,
        database_name=name,
        **COMPARE_OPTIONS,
        **options,
    )


@contextmanager
def sql_output(name: str, out: str | None) -> Iterator[TextIO]:
    """OUT/<name>.sql, announced once written; or stdout under a header naming the database."""
    if not out:
        print(f"-- database: {name}")
        yield sys.stdout
        return
    path = Path(out) / f"{name}.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as buffer:
        yield buffer
    print(f"{name}: wrote {path}")


def run_migrations_offline() -> None:
    out = context.get_x_argument(as_dictionary=True).get("out")
    for name in names:
        url = get_settings().database_url(name)
        with sql_output(name, out) as buffer:
            configure(
                name,
                url=url,
                output_buffer=buffer,
                literal_binds=True,
                render_as_batch=url.startswith("sqlite"),
                # Each revision its own transaction, as online: a failure leaves the revisions before it applied.
                transaction_per_migration=True,
            )
            if url.startswith("postgresql"):
                # The timeouts an online upgrade runs with, for whoever applies this SQL.
                for setting, value in session_settings(client_check=False).items():
                    context.execute(f"SET {setting} = '{value}'")
            with context.begin_transaction():
                context.run_migrations(engine_name=name)


def read_current_heads(name: str) -> tuple[str, ...]:
    with own_connection(name) as connection:
        return current_heads(connection)


def print_current() -> None:
    """``alembic current``: one line per database, labelled, a database at base included."""
    known = {script.revision: script for script in context.script.walk_revisions()}
    for name in names:
        revisions = [
            known[rev].cmd_format(False) if rev in known else f"{rev} (unknown: not in migrations/versions)"
            for rev in read_current_heads(name)
        ]
        config.print_stdout(f"{name}: {', '.join(revisions) or 'base'}")


def refuse_downgrade_across_revisions() -> None:
    """Stepping databases at different revisions back would move each somewhere else (MIGRATION-NOTES 4)."""
    currents = {name: read_current_heads(name) for name in names}
    if len(set(currents.values())) > 1:
        raise CommandError(different_revisions_message(currents, select="-x db={}"))


def alembic_command() -> str | None:
    """The command of Alembic's own command line being run (current, downgrade, ...); None when called from code."""
    cmd = getattr(config.cmd_opts, "cmd", None)
    return cmd[0].__name__ if cmd else None


def run_migrations(connection: Connection, name: str) -> None:
    configure(
        name,
        connection=connection,
        # Batch operations run as plain ALTERs on PostgreSQL, so a revision made there runs on SQLite too.
        render_as_batch=True,
        transaction_per_migration=True,
        process_revision_directives=skip_empty_revision,
        on_version_apply=[clear_progress],
    )
    with context.begin_transaction():
        context.run_migrations(engine_name=name)


def run_migrations_online() -> None:
    handed_over: dict[str, Connection] | None = config.attributes.get("connections")
    if handed_over is not None:
        for name in names:
            run_migrations(handed_over[name], name)
        return
    # Alembic's own command line, or code calling alembic.command: the refusals and the lock made here.
    if alembic_command() == "downgrade":
        refuse_downgrade_across_revisions()
    for name in names:
        with own_connection(name) as connection:
            # Timeouts for this connection's statements, and one migration at a time (PostgreSQL).
            prepare_migration_connection(connection, name, lock=changes_schema())
            run_migrations(connection, name)


try:
    load_models()
except UnassignedModelError as error:
    raise CommandError(str(error)) from None
names = selected_names()

if context.is_offline_mode():
    run_migrations_offline()
elif alembic_command() == "current":
    print_current()
else:
    run_migrations_online()
