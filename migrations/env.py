"""One environment for every named database in src/core/databases.py.

``-x db=NAME`` restricts any command to one database. URLs come from the app's
settings; alembic.ini holds none.
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
from sqlalchemy import Connection, pool, text
from sqlalchemy.types import TypeDecorator

from src.api.v1.models import UnassignedModelError, load_models
from src.core.databases import (
    DATABASES,
    UnknownDatabaseError,
    begin_sqlite_transactions,
    create_database_engine,
    get_database,
)

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Any fixed number shared by every process that migrates: one upgrade at a time.
MIGRATION_LOCK_ID = 0x616C656D


def selected_databases() -> list[str]:
    name = context.get_x_argument(as_dictionary=True).get("db")
    try:
        return [get_database(name).name] if name else list(DATABASES)
    except UnknownDatabaseError as error:
        raise CommandError(str(error)) from None


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the app's column types as their plain SQLAlchemy type, so revisions never import the app."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def skip_empty_revision(migration_context: MigrationContext, revision: Any, directives: list[MigrationScript]) -> None:
    """Write no file when no database changed; decided once the last database was compared."""
    script = directives[0]
    if not getattr(config.cmd_opts, "autogenerate", False):
        return
    if len(script.upgrade_ops_list) < len(names):
        return
    if all(ops.is_empty() for ops in script.upgrade_ops_list):
        directives[:] = []


def configure(name: str, **options: Any) -> None:
    context.configure(
        target_metadata=DATABASES[name].metadata,
        upgrade_token=f"{name}_upgrades",
        downgrade_token=f"{name}_downgrades",
        compare_type=True,
        render_item=render_item,
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
        url = DATABASES[name].url
        with sql_output(name, out) as buffer:
            configure(name, url=url, output_buffer=buffer, literal_binds=True, render_as_batch=url.startswith("sqlite"))
            with context.begin_transaction():
                context.run_migrations(engine_name=name)


def run_migrations_online() -> None:
    for name in names:
        engine = create_database_engine(DATABASES[name].url, poolclass=pool.NullPool)
        is_sqlite = engine.dialect.name == "sqlite"
        if is_sqlite:
            # So that a failed revision rolls back whole, DDL included.
            begin_sqlite_transactions(engine)
        with engine.connect() as connection:
            lock(connection)
            configure(
                name,
                connection=connection,
                render_as_batch=is_sqlite,
                transaction_per_migration=True,
                process_revision_directives=skip_empty_revision,
            )
            # Read under the lock, so callers can tell what this run itself changed.
            config.attributes.setdefault("revisions_before", {})[name] = context.get_context().get_current_revision()
            with context.begin_transaction():
                context.run_migrations(engine_name=name)
        engine.dispose()


def lock(connection: Connection) -> None:
    """Serialize concurrent migrations on PostgreSQL; released when the connection closes."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()


try:
    load_models()
except UnassignedModelError as error:
    raise CommandError(str(error)) from None
names = selected_databases()

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
