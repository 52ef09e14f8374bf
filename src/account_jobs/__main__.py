"""Command line behind ``make mail-worker`` and ``make create-admin``.

python -m src.account_jobs mail [--loop]            send the mail that is due (once, or every interval)
python -m src.account_jobs create-admin --email E   give the account with that email the admin flag
"""

import argparse
import asyncio
import sys
from contextlib import suppress

from sqlmodel import Session

from src.api.v1.models import load_models
from src.core.cli import fail, run_command
from src.core.config import get_settings
from src.core.engines import get_unpooled_engine
from src.core.errors import AppError
from src.core.logs import configure_logging
from src.services.accounts import make_admin
from src.services.mail_outbox import mail_forever, send_due


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.account_jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    mail = commands.add_parser("mail", help="send the queued mail that is due")
    mail.add_argument("--loop", action="store_true", help="keep sending every MAIL_WORKER_INTERVAL_SECONDS")
    admin = commands.add_parser("create-admin", help="make an existing account an admin of the service")
    admin.add_argument("--email", default="", help="the account's email")
    return parser.parse_args(argv)


def grant_admin(email: str) -> int:
    with Session(get_unpooled_engine("core")) as session:
        user = make_admin(session, email)
        session.commit()
        print(f"{user.email} ({user.username}) is an admin")
    return 0


def run(args: argparse.Namespace) -> int:
    load_models()
    settings = get_settings()
    if args.command == "create-admin":
        return grant_admin(args.email)
    configure_logging(settings.effective_log_format, settings.log_level)
    if args.loop:
        with suppress(KeyboardInterrupt):  # Ctrl-C is how a worker run by hand stops
            asyncio.run(mail_forever(interval=settings.mail_worker_interval_seconds))
        return 0
    outcome = send_due()
    print(f"sent {outcome.sent} message(s), {outcome.failed} failed (tried again later)")
    return 1 if outcome.failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "create-admin" and "@" not in args.email:
        return fail("EMAIL must be an account's email: make create-admin EMAIL=ada@example.com")
    return run_command(lambda: run(args), reported=(AppError,), doing=args.command)


if __name__ == "__main__":
    sys.exit(main())
