"""The command line of the migrate commands: ``python -m src.migrate COMMAND [--option VALUE]``.

Built from the functions in src/migrate/commands.py: a function is a command (``post_deploy`` is
``post-deploy``), its docstring the help, each parameter an option whose default is read from the
Make variable it is annotated with. So ``make migrate-create MSG="..." DB=audit`` runs
``python -m src.migrate create`` with MSG and DB in its environment. ``--targets`` lists the
``make migrate-*`` targets for ``make help``.
"""

import argparse
import inspect
import os
import sys
import typing
from collections.abc import Callable

from alembic.util import CommandError

from src.api.v1.models import UnassignedModelError
from src.core.cli import run_command
from src.core.databases import DATABASES, UnknownDatabaseError
from src.migrate.commands import COMMANDS, Option
from src.migrate.failures import MigrateError, RevisionFailed
from src.migrate.migration_lock import MigrationLockTimeout

Command = Callable[..., None]


def command_name(function: Command) -> str:
    return function.__name__.replace("_", "-")


def summary(function: Command) -> str:
    return inspect.getdoc(function).splitlines()[0].rstrip(".")  # type: ignore[union-attr]


def options(function: Command) -> dict[str, tuple[Option, object]]:
    """Each parameter's option and its type."""
    hints = typing.get_type_hints(function, include_extras=True)
    found = {}
    for name in inspect.signature(function).parameters:
        base, option = typing.get_args(hints[name])
        found[name] = (option, base)
    return found


def from_environment(option: Option, kind: object) -> object:
    value = os.environ.get(option.variable, "")
    if kind is bool:
        return value == "1"
    return value if value or kind is str else None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (python -m src.migrate --help lists the commands)\n")


def parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m src.migrate")
    parser.add_argument("--targets", action="store_true", help="list the make migrate-* targets")
    verbose = _Parser(add_help=False)
    verbose.add_argument(
        "--verbose",
        action="store_true",
        default=os.environ.get("VERBOSE") == "1",
        help="print the traceback of a failure (VERBOSE=1)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for function in COMMANDS:
        sub = commands.add_parser(
            command_name(function), help=summary(function), description=summary(function), parents=[verbose]
        )
        sub.set_defaults(run=function)
        for name, (option, kind) in options(function).items():
            flag = "--" + name.rstrip("_").replace("_", "-")
            default = from_environment(option, kind)
            helped = f"{option.help} ({option.variable}=)"
            if kind is bool:
                sub.add_argument(flag, dest=name, action="store_true", default=default, help=helped)
            else:
                sub.add_argument(flag, dest=name, default=default, help=helped)
    return parser


def targets() -> str:
    """One line per make migrate-* target, as make help prints them."""
    lines = []
    for function in COMMANDS:
        variables = " ".join(
            f"[{option.variable}=1]" if kind is bool else f"[{option.variable}=]"
            for option, kind in options(function).values()
        )
        lines.append(f"  {'migrate-' + command_name(function):<19} {summary(function)} {variables}".rstrip())
    return "\n".join(lines)


def describe(error: Exception) -> str:
    if isinstance(error, RevisionFailed):
        return f"{error} (VERBOSE=1 prints the traceback)"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.targets or args.command is None:
        print(targets())
        print(f"DB= names one of: {', '.join(DATABASES)}")
        return 0
    given = {name: getattr(args, name) for name in options(args.run)}

    def run() -> int:
        args.run(**given)
        return 0

    return run_command(
        run,
        reported=(MigrateError, MigrationLockTimeout, CommandError, UnknownDatabaseError, UnassignedModelError),
        describe=str if args.verbose else describe,
        verbose=args.verbose,
    )


if __name__ == "__main__":
    sys.exit(main())
