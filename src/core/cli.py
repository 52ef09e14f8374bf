"""What the command-line entry points share: one line on stderr and an exit status for every failure they expect."""

import os
import sys
import traceback
from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from src.core.databases import database_error_reason


def fail(message: str, exit_code: int = 1) -> int:
    """Print one error line to stderr; returns the exit status."""
    print(f"error: {message}", file=sys.stderr)
    return exit_code


def invalid_settings(error: ValidationError) -> int:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
    return fail(f"invalid settings: {problems}")


def run_command(
    command: Callable[[], int],
    *,
    reported: tuple[type[Exception], ...] = (),
    describe: Callable[[Exception], str] = str,
    verbose: bool = False,
    doing: str = "",
) -> int:
    """Run a command; invalid settings, a database that does not answer and the ``reported`` errors end it with
    one line (``describe``'d, the error's ``exit_code`` or 1, after ``doing`` when given), and ``verbose`` adds
    the traceback.
    """
    expected: tuple[type[Exception], ...] = (DBAPIError, *reported)
    try:
        return command()
    except ValidationError as error:
        return invalid_settings(error)
    except expected as error:
        if verbose:
            traceback.print_exception(error.__cause__ or error)
        message = database_error_reason(error) if isinstance(error, DBAPIError) else describe(error)
        return fail(f"{doing}: {message}" if doing else message, getattr(error, "exit_code", 1))
    except BrokenPipeError:  # the reader went away (piped to head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
