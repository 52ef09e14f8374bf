"""Command line behind the Makefile's migrate-* targets: ``python -m src.migrate COMMAND [--db NAME]``."""

import argparse
import os
import sys

from pydantic import ValidationError

from src.core.cli import fail, invalid_settings

COMMANDS = ("upgrade", "rollback", "status", "history", "check", "create", "sql")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.migrate")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--db", default="", help="act on this database only")
    parser.add_argument("--message", default="", help="create: the revision's message")
    parser.add_argument("--out", default="", help="sql: write <db>.sql files into this folder")
    parser.add_argument("--from", dest="start", default="", help="sql: start from this revision")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    db = args.db or None
    try:
        # Imported here so that invalid settings are reported in one line too.
        from alembic.util import CommandError

        from src.api.v1.models import UnassignedModelError
        from src.core.databases import UnknownDatabaseError
        from src.migrate import commands

        try:
            if args.command == "create":
                commands.create(args.message, db)
            elif args.command == "sql":
                commands.sql(db, args.out or None, args.start or None)
            else:
                getattr(commands, args.command)(db)
        except (commands.MigrateError, CommandError, UnknownDatabaseError, UnassignedModelError) as error:
            return fail(str(error))
    except BrokenPipeError:  # the reader went away (piped to head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ValidationError as error:
        return invalid_settings(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
