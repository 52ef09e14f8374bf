"""Command line behind ``make audit-relay`` and ``make audit-prune``.

python -m src.audit_jobs relay [--loop]   deliver the outbox to the audit database (once, or every interval)
python -m src.audit_jobs prune --days N   delete audit events older than N days
"""

import argparse
import asyncio
import sys
from contextlib import suppress

from src.api.v1.models import load_models
from src.core.cli import fail, run_command
from src.core.config import get_settings
from src.core.logs import configure_logging
from src.services.audit_relay import prune_audit_events, relay_forever, relay_pending


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.audit_jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    relay = commands.add_parser("relay", help="deliver outbox events to the audit database")
    relay.add_argument("--loop", action="store_true", help="keep delivering every AUDIT_RELAY_INTERVAL_SECONDS")
    prune = commands.add_parser("prune", help="delete audit events older than --days")
    prune.add_argument("--days", default="", help="age in days (a whole number, 0 or more)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    load_models()
    settings = get_settings()
    if args.command == "prune":
        deleted = prune_audit_events(older_than_days=int(args.days))
        print(f"deleted {deleted} audit event(s) older than {args.days} day(s)")
    elif args.loop:
        configure_logging(settings.effective_log_format, settings.log_level)
        interval, batch_size = settings.audit_relay_interval_seconds, settings.audit_relay_batch_size
        with suppress(KeyboardInterrupt):  # Ctrl-C is how a relay run by hand stops
            asyncio.run(relay_forever(interval=interval, batch_size=batch_size))
    else:
        delivered = relay_pending(batch_size=settings.audit_relay_batch_size)
        print(f"delivered {delivered} audit event(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "prune" and not args.days.isdigit():
        return fail("DAYS must be a whole number of days: make audit-prune DAYS=90")
    return run_command(lambda: run(args), doing=f"audit {args.command}")


if __name__ == "__main__":
    sys.exit(main())
