"""make migrate-merge: one revision that joins the heads left by two branches."""

import io
from contextlib import redirect_stdout

from alembic import command

from src.core.config import project_path
from src.core.schema_versions import alembic_config
from src.migrate.errors import MigrateError, load_scripts


def merge(message: str) -> None:
    """Write the merge revision of every head; it changes no schema, it only joins the branches."""
    heads = sorted(load_scripts().get_heads())
    if len(heads) < 2:
        raise MigrateError(f"nothing to merge: the migrations have one head ({', '.join(heads) or 'none'})")
    with redirect_stdout(io.StringIO()):  # the post-write hooks announce themselves
        script = command.merge(alembic_config(), "heads", message=message.strip() or f"Merge {' and '.join(heads)}")
    assert script is not None
    print(f"created {project_path(script.path)} (merges {', '.join(heads)})")
