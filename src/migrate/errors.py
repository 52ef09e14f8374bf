"""Failures of the migrate commands, told in one line that names the database and the revision that failed."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlalchemy.exc import DBAPIError, OperationalError

from src.core.config import project_path
from src.core.databases import Database, database_error_reason, mask_url
from src.core.migration_lock import timeout_reason
from src.core.schema_versions import script_directory


class MigrateError(Exception):
    """A failure told to the user in one line; the command exits with ``exit_code``."""

    exit_code = 1


class SeveralHeadsError(MigrateError):
    """The revision files have several heads: two branches were made from one revision and not merged yet."""

    exit_code = 2


@dataclass(frozen=True)
class FailedRevision:
    revision: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"revision {self.revision} ({project_path(self.path)}:{self.line})"


def failed_revision(tb: TracebackType | None) -> FailedRevision | None:
    """The innermost frame of a traceback that runs a revision file: where the revision failed."""
    versions = Path(script_directory().versions).resolve()
    found = None
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename).resolve()
        if path.parent == versions:
            found = FailedRevision(str(tb.tb_frame.f_globals.get("revision")), path, tb.tb_lineno)
        tb = tb.tb_next
    return found


def error_reason(error: Exception) -> str:
    if isinstance(error, DBAPIError):
        return timeout_reason(error) or database_error_reason(error)
    return f"{type(error).__name__}: {error}"


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
        revision = failed_revision(error.__traceback__)
        if revision is not None:
            raise MigrateError(
                f"{database.name}: {revision} failed and was rolled back: {error_reason(error)}"
                " (VERBOSE=1 prints the traceback)"
            ) from error
        if isinstance(error, OperationalError):
            raise MigrateError(
                f"{database.name}: cannot use {mask_url(database.url)}: {database_error_reason(error)}"
            ) from error
        if isinstance(error, DBAPIError):
            raise MigrateError(f"{database.name}: database error: {error_reason(error)}") from error
        raise
