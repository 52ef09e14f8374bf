"""Command line behind ``make audit-relay``, ``audit-prune``, ``audit-verify`` and ``audit-stream``.

python -m src.audit_jobs relay [--loop]              deliver the outbox to the audit database (once, or every interval)
python -m src.audit_jobs prune --days N              delete audit events recorded more than N days ago
python -m src.audit_jobs verify [--workspace ID]     walk the hash chains; exit 1 at the first event that does not fit
python -m src.audit_jobs stream --position FILE [--follow]   new events as NDJSON on stdout, from the saved position
"""

import argparse
import asyncio
import sys
import time
import uuid
from contextlib import suppress
from pathlib import Path

from src.api.v1.models import load_models
from src.core.cli import fail, run_command
from src.core.config import get_settings
from src.core.engines import get_unpooled_engine
from src.core.logs import configure_logging
from src.services.audit_chain import Verification, verify
from src.services.audit_relay import relay_forever, relay_pending
from src.services.audit_retention import prune_audit_events
from src.services.audit_stream import stream_once


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.audit_jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    relay = commands.add_parser("relay", help="deliver outbox events to the audit database")
    relay.add_argument("--loop", action="store_true", help="keep delivering every AUDIT_RELAY_INTERVAL_SECONDS")
    prune = commands.add_parser("prune", help="delete audit events recorded more than --days ago")
    prune.add_argument("--days", default="", help="age in days (a whole number, 0 or more)")
    check = commands.add_parser("verify", help="verify the audit hash chains")
    check.add_argument("--workspace", default="", help="one workspace's chain (its id); default: every chain")
    stream = commands.add_parser("stream", help="write new audit events to stdout as NDJSON")
    stream.add_argument("--position", required=True, help="the file that keeps where the stream is")
    stream.add_argument("--follow", action="store_true", help="keep writing every AUDIT_RELAY_INTERVAL_SECONDS")
    return parser.parse_args(argv)


def stream(position: Path, *, follow: bool, interval: float) -> None:
    while True:
        with get_unpooled_engine("audit").connect() as audit:
            stream_once(audit, sys.stdout, position)
        if not follow:
            return
        time.sleep(interval)


def report(verification: Verification) -> int:
    for problem in verification.problems:
        print(f"FAILED: {problem}")
    for walk in verification.chains:
        erased = f", {walk.erased} erased" if walk.erased else ""
        state = f"FAILED: {walk.problem}" if walk.problem else f"ok, head #{walk.seq} {walk.hash}"
        print(f"chain {walk.chain}: {walk.events} event(s) verified{erased}; {state}")
    if verification.unchained:
        print(f"{verification.unchained} event(s) delivered before chaining began: not verifiable")
    if not verification.ok:
        return fail("the audit trail does not verify: see the FAILED line(s) above")
    print(f"verified {len(verification.chains)} chain(s)")
    return 0


def run(args: argparse.Namespace) -> int:
    load_models()
    settings = get_settings()
    if args.command == "prune":
        pruned = prune_audit_events(older_than_days=int(args.days), signing_key=settings.audit_signing_key)
        print(f"deleted {pruned.deleted} audit event(s) recorded more than {args.days} day(s) ago")
        if pruned.dropped_partitions:
            print(f"dropped month partition(s) {', '.join(pruned.dropped_partitions)}")
        if pruned.created_partitions:
            print(f"created month partition(s) {', '.join(pruned.created_partitions)}")
    elif args.command == "stream":
        with suppress(KeyboardInterrupt):
            stream(Path(args.position), follow=args.follow, interval=settings.audit_relay_interval_seconds)
    elif args.command == "verify":
        workspace_id = uuid.UUID(args.workspace) if args.workspace else None
        with get_unpooled_engine("audit").connect() as audit:
            return report(verify(audit, key=settings.audit_signing_key, workspace_id=workspace_id))
    elif args.loop:
        configure_logging(settings.effective_log_format, settings.log_level)
        interval, batch_size = settings.audit_relay_interval_seconds, settings.audit_relay_batch_size
        with suppress(KeyboardInterrupt):  # Ctrl-C is how a relay run by hand stops
            asyncio.run(
                relay_forever(interval=interval, batch_size=batch_size, busy_share=settings.audit_relay_busy_share)
            )
    else:
        delivered = relay_pending(batch_size=settings.audit_relay_batch_size)
        print(f"delivered {delivered} audit event(s)")
    return 0


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "prune" and not args.days.isdigit():
        return fail("DAYS must be a whole number of days: make audit-prune DAYS=90")
    if args.command == "verify" and args.workspace and not is_uuid(args.workspace):
        return fail("WORKSPACE must be a workspace id: make audit-verify WORKSPACE=<uuid>")
    return run_command(lambda: run(args), doing=f"audit {args.command}")


if __name__ == "__main__":
    sys.exit(main())
