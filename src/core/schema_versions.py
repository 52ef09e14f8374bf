"""Where each database's schema stands against the migrations in migrations/versions."""

import io
from argparse import Namespace
from dataclasses import dataclass
from typing import Literal

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection

from src.core.config import PROJECT_ROOT
from src.core.databases import DATABASES
from src.core.partitions import is_partition

ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"

SchemaStatus = Literal["at_head", "not_migrated", "behind", "post_deploy_pending", "unknown_revision"]
# Where op.backfill keeps its progress while a revision runs (src/migrate/backfill.py); no model has it.
BACKFILL_PROGRESS_TABLE = "migration_backfills"


def _is_model_table(name: str | None, type_: str, _parent_names: object) -> bool:
    if type_ != "table" or name is None:
        return True
    # A partition is its parent's model (src/core/partitions.py).
    partition = any(is_partition(name, database.metadata) for database in DATABASES.values())
    return not (name == BACKFILL_PROGRESS_TABLE or partition)


# How the models are compared with a schema, by autogenerate in env.py and by make migrate-status alike.
COMPARE_OPTIONS = {"compare_type": True, "include_name": _is_model_table}


def alembic_config(
    *,
    db: str | None = None,
    connections: dict[str, Connection] | None = None,
    autogenerate: bool = False,
    **x_args: str,
) -> Config:
    """An Alembic config as the command line would build it, with ``-x db=NAME`` when given.

    ``connections``, by database name: migrations/env.py runs on these instead of opening its own.
    """
    x = [f"{key}={value}" for key, value in {"db": db, **x_args}.items() if value]
    # Alembic's own chatter is silenced: the callers say what happened, per database.
    config = Config(ALEMBIC_INI, stdout=io.StringIO(), cmd_opts=Namespace(x=x, autogenerate=autogenerate, quiet=True))
    if connections is not None:
        config.attributes["connections"] = connections
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def current_heads(connection: Connection) -> tuple[str, ...]:
    """The revisions recorded in the database: none when never migrated, several after ``alembic upgrade heads``."""
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


@dataclass(frozen=True)
class SchemaState:
    """One database's recorded revisions held against the revision files of this code."""

    current: tuple[str, ...]
    heads: tuple[str, ...]  # of the code; several until a merge revision joins them
    pending: tuple[str, ...]  # revisions of the code not applied, oldest first
    unknown: tuple[str, ...]  # recorded revisions with no file here: newer code ran, or a file was deleted
    # Pending post-deploy revisions and the pending ones after them: make migrate-upgrade leaves them for
    # make migrate-post-deploy, once the new code serves everywhere. Oldest first.
    post_deploy: tuple[str, ...] = ()

    @property
    def status(self) -> SchemaStatus:
        if self.unknown:
            return "unknown_revision"
        if not self.current:
            return "not_migrated"
        if self.pending and self.pending == self.post_deploy:
            return "post_deploy_pending"
        return "behind" if self.pending else "at_head"

    @property
    def before_deploy(self) -> tuple[str, ...]:
        """The pending revisions make migrate-upgrade applies, oldest first."""
        return tuple(revision for revision in self.pending if revision not in self.post_deploy)


def is_post_deploy(script: Script) -> bool:
    """A revision marked ``post_deploy = True``: the contract step, applied once no instance runs the old code."""
    return getattr(script.module, "post_deploy", False) is True


def ancestry(scripts: ScriptDirectory, revisions: tuple[str, ...]) -> set[str]:
    """The revisions and everything below them."""
    seen: set[str] = set()
    stack = list(revisions)
    while stack:
        revision = stack.pop()
        if revision in seen:
            continue
        seen.add(revision)
        script = scripts.get_revision(revision)
        assert script is not None
        stack.extend(script._all_down_revisions)
    return seen


def schema_state(scripts: ScriptDirectory, current: tuple[str, ...]) -> SchemaState:
    # walk_revisions goes newest first; pending is listed oldest first.
    oldest_first = [script.revision for script in reversed(list(scripts.walk_revisions()))]
    unknown = tuple(revision for revision in current if revision not in oldest_first)
    heads = tuple(sorted(scripts.get_heads()))
    applied = ancestry(scripts, current) if not unknown else set()
    pending = () if unknown else tuple(revision for revision in oldest_first if revision not in applied)
    waiting: list[str] = []
    for revision in pending:
        script = scripts.get_revision(revision)
        assert script is not None
        if is_post_deploy(script) or any(parent in waiting for parent in script._all_down_revisions):
            waiting.append(revision)
    return SchemaState(current=current, heads=heads, pending=pending, unknown=unknown, post_deploy=tuple(waiting))


def read_schema_state(connection: Connection, scripts: ScriptDirectory) -> SchemaState:
    return schema_state(scripts, current_heads(connection))


def show_revisions(revisions: tuple[str, ...] | str | None) -> str:
    """Recorded revisions or a revision's parents as one word: ``base``, ``abc``, or ``abc+def``."""
    if isinstance(revisions, str):
        return revisions
    return "+".join(revisions) if revisions else "base"


def different_revisions_message(currents: dict[str, tuple[str, ...]], *, select: str = "DB={}") -> str:
    """Why stepping every database back is refused; ``select`` spells the one-database option."""
    where = ", ".join(f"{name} at {show_revisions(revisions)}" for name, revisions in currents.items())
    choices = " or ".join(select.format(name) for name in currents)
    return f"databases are at different revisions ({where}); roll back one with {choices}"
