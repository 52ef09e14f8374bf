"""Command line behind the Makefile's migrate-* targets: ``python -m src.migrate COMMAND [--db NAME]``."""

import argparse
import sys

from alembic.util import CommandError

from src.api.v1.models import UnassignedModelError
from src.core.cli import run_command
from src.core.databases import UnknownDatabaseError
from src.core.migration_lock import MigrationLockTimeout
from src.migrate.errors import MigrateError, RevisionFailed

COMMANDS = ("upgrade", "rollback", "status", "history", "check", "create", "merge", "sql", "lint")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.migrate")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--db", default="", help="act on this database only")
    parser.add_argument("--message", default="", help="create, merge: the revision's message")
    parser.add_argument("--out", default="", help="sql: write <db>.sql files into this folder")
    parser.add_argument("--from", dest="start", default="", help="sql: start from this revision")
    parser.add_argument(
        "--post-deploy",
        action="store_true",
        help="upgrade, sql: post-deploy revisions too; create: a post-deploy revision",
    )
    parser.add_argument("--verbose", action="store_true", help="print the traceback of a failure")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    # Each command imports only its own module: `make migrate-status` starts about as fast as `alembic current`.
    db = args.db or None
    match args.command:
        case "status":
            from src.migrate import status

            status.status(db)
        case "rollback":
            from src.migrate import rollback

            rollback.rollback(db)
        case "merge":
            from src.migrate import merge

            merge.merge(args.message)
        case "lint":
            from src.migrate import lint

            lint.lint(db)
        case "create":
            from src.migrate import commands

            commands.create(args.message, db, post_deploy=args.post_deploy)
        case "sql":
            from src.migrate import commands

            commands.sql(db, args.out or None, args.start or None, post_deploy=args.post_deploy)
        case "upgrade":
            from src.migrate import commands

            commands.upgrade(db, post_deploy=args.post_deploy)
        case _:
            from src.migrate import commands

            getattr(commands, args.command)(db)
    return 0


def describe(error: Exception) -> str:
    if isinstance(error, RevisionFailed):
        return f"{error} (VERBOSE=1 prints the traceback)"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    return run_command(
        lambda: run(args),
        reported=(MigrateError, MigrationLockTimeout, CommandError, UnknownDatabaseError, UnassignedModelError),
        describe=str if args.verbose else describe,
        verbose=args.verbose,
    )


if __name__ == "__main__":
    sys.exit(main())
