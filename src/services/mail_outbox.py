"""Mail that goes out with the change that causes it, and only then.

A message is queued in the core ``mail_outbox`` in the transaction of its change (``queue_mail``): a change that
rolls back sends nothing. A worker (``mail_forever``, in the app's lifespan or `make mail-worker LOOP=1`) takes the
messages that are due, sends each (src/core/mail.py) and deletes it; a failed send is tried again after
MAIL_RETRY_SECONDS, doubling up to an hour, and kept as failed after MAIL_MAX_ATTEMPTS. A message is taken for
LEASE at a time: workers at once never take the same one, and one that died mid-send has it sent again after the
lease (a message may then arrive twice, never not at all).
"""

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio.to_thread
from sqlalchemy import Connection, Table, delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from src.api.v1.models.outbox_mail import OutboxMail
from src.core import mail
from src.core.config import Settings, get_settings
from src.core.databases import database_error_reason
from src.core.engines import get_unpooled_engine
from src.core.metrics import MAIL_FAILED, MAIL_SEND_ERRORS, MAIL_SENT
from src.core.timestamps import utcnow

logger = logging.getLogger(__name__)

MAIL: Table = OutboxMail.metadata.tables[OutboxMail.__tablename__]
LEASE = timedelta(minutes=5)
MAX_RETRY_PAUSE = timedelta(hours=1)
BATCH = 20


def queue_mail(session: Session, user_id: uuid.UUID, *, recipient: str, subject: str, body: str) -> None:
    """Queue a message about the account ``user_id`` in ``session``: it is sent only if the session commits."""
    session.add(OutboxMail(user_id=user_id, recipient=recipient, subject=subject, body=body))


def retry_pause(attempts: int, settings: Settings) -> timedelta:
    """How long after its ``attempts``-th failed attempt a message is tried again."""
    return min(timedelta(seconds=settings.mail_retry_seconds) * (1 << min(attempts - 1, 20)), MAX_RETRY_PAUSE)


def take_due(core: Connection, *, limit: int, now: datetime) -> list[dict[str, object]]:
    """The oldest messages due by ``now``, taken for LEASE and counted as attempted, in a transaction of their own."""
    due = (
        select(MAIL.c.id)
        .where(MAIL.c.failed_at.is_(None), MAIL.c.next_attempt_at <= now)
        .order_by(MAIL.c.next_attempt_at)
        .limit(limit)
    )
    if core.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    with core.begin():
        taken = (
            update(MAIL)
            .where(MAIL.c.id.in_(due.scalar_subquery()))
            .values(next_attempt_at=now + LEASE, attempts=MAIL.c.attempts + 1)
            .returning(*MAIL.c)
        )
        return [dict(row) for row in core.execute(taken).mappings()]


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0  # attempts that failed, the given-up ones included


def send_taken(core: Connection, message: dict[str, object], settings: Settings) -> bool:
    """Send one taken message; deleted once sent, rescheduled (or given up) when not. Whether it was sent."""
    try:
        mail.send(
            settings,
            mail.compose(
                settings,
                recipient=str(message["recipient"]),
                subject=str(message["subject"]),
                body=str(message["body"]),
                message_id=str(message["id"]),
            ),
        )
    except mail.MailNotSent as error:
        attempts = int(str(message["attempts"]))
        MAIL_SEND_ERRORS.inc()
        given_up = attempts >= settings.mail_max_attempts
        pause = retry_pause(attempts, settings)
        changes: dict[str, object] = {"last_error": str(error), "next_attempt_at": utcnow() + pause}
        if given_up:  # kept to be looked into, without the link it held
            changes |= {"failed_at": utcnow(), "body": ""}
        with core.begin():
            core.execute(update(MAIL).where(MAIL.c.id == message["id"]).values(**changes))
        if given_up:
            MAIL_FAILED.inc()
            logger.error("mail to %s given up after %d attempts: %s", message["recipient"], attempts, error)
        else:
            pause_seconds = pause.total_seconds()
            logger.warning("mail to %s not sent: %s; retrying in %gs", message["recipient"], error, pause_seconds)
        return False
    with core.begin():
        core.execute(delete(MAIL).where(MAIL.c.id == message["id"]))
    MAIL_SENT.inc()
    return True


def send_due(*, now: datetime | None = None) -> Outcome:
    """Send every message due by ``now`` (default: now); returns how many were sent and how many failed."""
    settings = get_settings()
    outcome = Outcome()
    with get_unpooled_engine("core").connect() as core:
        while taken := take_due(core, limit=BATCH, now=now or utcnow()):
            for message in taken:
                if send_taken(core, message, settings):
                    outcome.sent += 1
                else:
                    outcome.failed += 1
            if len(taken) < BATCH:
                break
    return outcome


async def mail_forever(*, interval: float) -> None:
    """Send what is due every interval. While core is down, log it and try again next time."""
    while True:
        try:
            await anyio.to_thread.run_sync(send_due)
        except DBAPIError as error:
            logger.warning("mail worker: %s; retrying in %gs", database_error_reason(error), interval)
        except Exception:
            # Anything else is a bug, but the worker must keep running: mail keeps being queued.
            logger.exception("mail worker failed; retrying in %gs", interval)
        await asyncio.sleep(interval)


def mail_state() -> tuple[int, int]:
    """How many messages wait to be sent, and how many were given up."""
    with get_unpooled_engine("core").connect() as core:
        waiting, failed = core.execute(
            select(func.count(MAIL.c.id).filter(MAIL.c.failed_at.is_(None)), func.count(MAIL.c.failed_at))
        ).one()
    return int(waiting), int(failed)
