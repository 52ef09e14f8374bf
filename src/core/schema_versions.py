"""Where each database's schema stands against the migrations in migrations/versions."""

import io
from argparse import Namespace

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from src.core.config import PROJECT_ROOT

ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


def alembic_config(*, db: str | None = None, autogenerate: bool = False, **x_args: str) -> Config:
    """An Alembic config as the command line would build it, with ``-x db=NAME`` when given."""
    x = [f"{key}={value}" for key, value in {"db": db, **x_args}.items() if value]
    # Alembic's own chatter is silenced: the callers say what happened, per database.
    return Config(ALEMBIC_INI, stdout=io.StringIO(), cmd_opts=Namespace(x=x, autogenerate=autogenerate, quiet=True))


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def current_revision(connection: Connection) -> str | None:
    """The revision recorded in the database, or None when it was never migrated."""
    return MigrationContext.configure(connection).get_current_revision()
