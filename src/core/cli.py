"""What the command-line entry points share. Imports no settings, so it can report invalid ones."""

import sys

from pydantic import ValidationError


def fail(message: str, exit_code: int = 1) -> int:
    """Print one error line to stderr; returns the exit status."""
    print(f"error: {message}", file=sys.stderr)
    return exit_code


def invalid_settings(error: ValidationError) -> int:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
    return fail(f"invalid settings: {problems}")
