"""Command line behind ``make audit-relay`` and ``make audit-prune``.

python -m src.audit_jobs relay [--loop]   deliver the outbox to the audit database (once, or every interval)
python -m src.audit_jobs prune --days N   delete audit events older than N days
"""

import argparse
import asyncio
import sys

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from src.core.cli import fail, invalid_settings


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.audit_jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    relay = commands.add_parser("relay", help="deliver outbox events to the audit database")
    relay.add_argument("--loop", action="store_true", help="keep delivering every AUDIT_RELAY_INTERVAL_SECONDS")
    prune = commands.add_parser("prune", help="delete audit events older than --days")
    prune.add_argument("--days", default="", help="age in days (a whole number, 0 or more)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "prune" and not args.days.isdigit():
        return fail("DAYS must be a whole number of days: make audit-prune DAYS=90")
    try:
        # Imported here so that invalid settings are reported in one line too.
        from src.api.v1.models import load_models
        from src.core.config import settings
        from src.core.databases import database_error_reason
        from src.core.logs import configure_logging
        from src.services.audit_relay import prune_audit_events, relay_forever, relay_pending

        load_models()
        try:
            if args.command == "prune":
                deleted = prune_audit_events(older_than_days=int(args.days))
                print(f"deleted {deleted} audit event(s) older than {args.days} day(s)")
            elif args.loop:
                configure_logging(settings.effective_log_format, settings.log_level)
                interval, batch_size = settings.audit_relay_interval_seconds, settings.audit_relay_batch_size
                asyncio.run(relay_forever(interval=interval, batch_size=batch_size))
            else:
                delivered = relay_pending(batch_size=settings.audit_relay_batch_size)
                print(f"delivered {delivered} audit event(s)")
        except DBAPIError as error:
            return fail(f"audit {args.command}: {database_error_reason(error)}")
        except KeyboardInterrupt:
            return 0
    except ValidationError as error:
        return invalid_settings(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
