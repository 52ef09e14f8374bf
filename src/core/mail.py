"""Sending one message: by SMTP when SMTP_HOST is set, else as an .eml file under MAIL_DIRECTORY (local use)."""

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from src.core.config import PROJECT_ROOT, Settings, project_path
from src.core.timestamps import utcnow

logger = logging.getLogger(__name__)


class MailNotSent(Exception):
    """The message was not handed over; the worker tries again later."""


def compose(settings: Settings, *, recipient: str, subject: str, body: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{message_id}@{settings.mail_from.rpartition('@')[2].strip('> ') or 'localhost'}>"
    # Lines as written (no quoted-printable), so that a link stays whole in a saved .eml too.
    message.set_content(body, cte="7bit" if body.isascii() else "8bit")
    return message


def send(settings: Settings, message: EmailMessage) -> None:
    """Hand the message to the SMTP server, or write it to MAIL_DIRECTORY; ``MailNotSent`` when that fails."""
    try:
        if settings.smtp_host:
            _send_by_smtp(settings, message)
            where = f"sent to {settings.smtp_host}"
        else:
            where = f"written to {project_path(_write_file(settings, message))} (no SMTP_HOST)"
    except (OSError, smtplib.SMTPException) as error:
        raise MailNotSent(_reason(error)) from None
    # The recipient and subject only: the body may hold a link that logs its reader in.
    logger.info("mail to %s, %r: %s", message["To"], message["Subject"], where)


def _send_by_smtp(settings: Settings, message: EmailMessage) -> None:
    context = ssl.create_default_context()
    timeout = settings.smtp_timeout_seconds
    if settings.smtp_tls == "tls":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    with smtp:
        if settings.smtp_tls == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(message)


def _write_file(settings: Settings, message: EmailMessage) -> Path:
    """The message as ``<time>-<id>.eml``: names sort by when they were written."""
    folder = PROJECT_ROOT / settings.mail_directory  # an absolute MAIL_DIRECTORY stays as it is
    folder.mkdir(parents=True, exist_ok=True)
    message_id = message["Message-ID"].strip("<>").partition("@")[0]
    path = folder / f"{utcnow():%Y%m%dT%H%M%S%f}-{message_id}.eml"
    path.write_bytes(message.as_bytes())
    return path


def _reason(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error
        return f"SMTP {error.smtp_code}: {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"[:500]
    return (f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)[:500]
