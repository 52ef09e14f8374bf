"""make migrate-rollback: one revision back, through merges and branches, per database or all alike."""

from pathlib import Path

from alembic.script import ScriptDirectory

from src.core.schema_versions import different_revisions_message
from src.migrate.failures import MigrateError


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


def refuse_different_revisions(currents: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The one revision the databases stand at; stepping databases at different revisions back would move each
    somewhere else."""
    if len(set(currents.values())) > 1:
        raise MigrateError(different_revisions_message(currents))
    current = next(iter(currents.values()))
    if not current:
        raise MigrateError(f"nothing to roll back: {', '.join(currents)} at base")
    return current
