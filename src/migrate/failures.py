"""Failures of the migrate commands, told in one line that names the database and the revision that failed."""

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlalchemy.exc import DBAPIError, OperationalError

from src.core.config import get_settings, project_path
from src.core.databases import Database, database_error_reason, mask_url
from src.core.schema_versions import script_directory
from src.migrate.migration_lock import timeout_reason


class MigrateError(Exception):
    """A failure told to the user in one line; the command exits with ``exit_code``."""

    exit_code = 1


class SeveralHeadsError(MigrateError):
    """The revision files have several heads: two branches were made from one revision and not merged yet."""

    exit_code = 2


class RevisionFailed(MigrateError):
    """A revision file raised; its traceback is printed on request.

    Told as ``where: reason; advice``: which database and revision, what stopped it, and what to do.
    """

    def __init__(self, where: str, reason: str, advice: str = "") -> None:
        super().__init__(f"{where}: {reason}" + (f"; {advice}" if advice else ""))
        self.where = where
        self.reason = reason
        self.advice = advice


@dataclass(frozen=True)
class FailedRevision:
    revision: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"revision {self.revision} ({project_path(self.path)}:{self.line})"

    @property
    def had_committed(self) -> bool:
        """Whether the function that failed had left its transaction before the failing line (autocommit_block and
        op.backfill commit what came before them): no rollback undoes that."""
        tree = ast.parse(self.path.read_text())
        failed = [
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.lineno <= self.line <= (node.end_lineno or node.lineno)
        ]
        return any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("autocommit_block", "backfill")
            and node.lineno <= self.line
            for function in failed
            for node in ast.walk(function)
        )


def versions_folder() -> Path:
    return Path(script_directory().versions).resolve()


def failed_revision(tb: TracebackType | None, versions: Path) -> FailedRevision | None:
    """The innermost frame of a traceback that runs a revision file: where the revision failed."""
    found = None
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename).resolve()
        if path.parent == versions:
            found = FailedRevision(str(tb.tb_frame.f_globals.get("revision")), path, tb.tb_lineno)
        tb = tb.tb_next
    return found


def revision_failure(database: Database, revision: FailedRevision, error: Exception) -> RevisionFailed:
    timed_out = timeout_reason(error) if isinstance(error, DBAPIError) else None
    reason = timed_out or (
        database_error_reason(error) if isinstance(error, DBAPIError) else f"{type(error).__name__}: {error}"
    )
    if revision.had_committed:
        return RevisionFailed(
            f"{database.name}: {revision} failed",
            reason,
            "what it committed before that stays (a backfill continues after its last batch when run again):"
            " check the database before retrying",
        )
    safe = "retrying is safe" if timed_out else ""
    return RevisionFailed(f"{database.name}: {revision} failed and its transaction was rolled back", reason, safe)


@contextmanager
def reporting_errors(database: Database) -> Iterator[None]:
    """Turn a driver error, or an exception raised by a revision, into one line naming the database.

    The original exception stays chained, for ``--verbose``.
    """
    try:
        yield
    except MigrateError:
        raise
    except Exception as error:
        revision = failed_revision(error.__traceback__, versions_folder())
        if revision is not None:
            raise revision_failure(database, revision, error) from error
        if isinstance(error, OperationalError):
            url = mask_url(get_settings().database_url(database.name))
            raise MigrateError(f"{database.name}: cannot use {url}: {database_error_reason(error)}") from error
        if isinstance(error, DBAPIError):
            raise MigrateError(f"{database.name}: database error: {database_error_reason(error)}") from error
        raise
