"""make migrate-rollback: one revision back, through merges and branches, per database or all alike."""

from functools import partial
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from src.core.databases import Database
from src.core.schema_versions import alembic_config, different_revisions_message, show_revisions
from src.migrate.errors import MigrateError, load_scripts
from src.migrate.lock_retries import with_lock_retries
from src.migrate.revisions import noting_what_was_done, read_known_states, read_state, selected


def step_back_target(scripts: ScriptDirectory, current: tuple[str, ...]) -> str:
    """The downgrade target that undoes exactly one revision of ``current``.

    Undoing a merge leaves both branches applied; with both applied, the newer branch steps back first.
    Alembic's plain ``-1`` is ambiguous in either case.
    """
    if len(current) > 1:
        # File names start with their creation time.
        newest = max(current, key=lambda revision: Path(scripts.get_revision(revision).path).name)
        return f"{newest}@-1"
    script = scripts.get_revision(current[0])
    assert script is not None
    parents = script._versioned_down_revisions
    return parents[0] if len(parents) > 1 else "-1"


def rollback(db: str | None) -> None:
    """Step back one revision; across all databases only when they stand at the same revision."""
    # Several heads are no reason to refuse: a developer may step back from a branch to redo it on the other one.
    scripts = load_scripts()
    databases: list[Database] = selected(db)
    currents = {name: state.current for name, state in read_known_states(databases, scripts).items()}
    if len(set(currents.values())) > 1:
        raise MigrateError(different_revisions_message(currents))
    current = currents[databases[0].name]
    if not current:
        raise MigrateError(f"nothing to roll back: {', '.join(currents)} at base")
    target = step_back_target(scripts, current)
    for database in databases:
        config = alembic_config(db=database.name)
        with noting_what_was_done(databases, database, "rolled back"):
            with_lock_retries(database, partial(command.downgrade, config, target))
        after = read_state(database, scripts).current
        print(f"{database.name}: rolled back {show_revisions(current)} -> {show_revisions(after)}")
