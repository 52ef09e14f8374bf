"""The mail outbox and its worker, against a real SMTP server (aiosmtpd) and real databases on both dialects."""

import email
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from sqlmodel import Session, select

from src.api.v1.models.outbox_mail import OutboxMail
from src.core.config import get_settings
from src.core.engines import get_engine
from src.core.metrics import MAIL_FAILED, MAIL_SEND_ERRORS, MAIL_SENT
from src.core.timestamps import utcnow
from src.services.mail_outbox import queue_mail, send_due
from tests.conftest import free_port


class Inbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


class SmtpServer:
    """A real SMTP server on a fixed port, which the test can stop (an outage) and start again."""

    def __init__(self, port: int, **options: Any) -> None:
        self.port, self.options, self.inbox = port, options, Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **self.options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(migrated_databases: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A running SMTP server the settings point at (plain SMTP, as a local relay would be)."""
    server = SmtpServer(free_port())
    server.start()
    settings = get_settings()
    monkeypatch.setattr(settings, "smtp_host", "127.0.0.1")
    monkeypatch.setattr(settings, "smtp_port", server.port)
    monkeypatch.setattr(settings, "smtp_tls", "none")
    yield server
    server.stop()


def queue(recipient: str = "ada@example.com", *, commit: bool = True) -> None:
    with Session(get_engine("core")) as session:
        body = "A link: http://x/reset-password?token=abc"
        queue_mail(session, uuid.uuid4(), recipient=recipient, subject="Hello", body=body)
        if commit:
            session.commit()


def waiting() -> list[OutboxMail]:
    with Session(get_engine("core")) as session:
        return list(session.exec(select(OutboxMail)))


def counted(metric: object) -> float:
    return float(metric._value.get())  # type: ignore[attr-defined]


def test_committed_mail_is_sent_by_smtp_and_leaves_the_outbox(smtp: SmtpServer) -> None:
    queue("ada@example.com")
    queue("bob@example.com", commit=False)  # rolled back: never sent
    sent_before = counted(MAIL_SENT)

    outcome = send_due()

    assert (outcome.sent, outcome.failed) == (1, 0)
    [message] = smtp.inbox.messages
    assert (message["To"], message["Subject"], message["From"]) == (
        "ada@example.com",
        "Hello",
        get_settings().mail_from,
    )
    assert "token=abc" in message.get_payload()
    assert waiting() == []
    assert counted(MAIL_SENT) == sent_before + 1


def test_an_smtp_outage_delays_mail_and_loses_none(smtp: SmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    queue()
    smtp.stop()
    errors_before = counted(MAIL_SEND_ERRORS)

    assert send_due().failed == 1
    [pending] = waiting()
    assert pending.attempts == 1
    assert pending.last_error and "Connection" in pending.last_error
    assert pending.next_attempt_at > utcnow() + timedelta(seconds=20)  # MAIL_RETRY_SECONDS: 30
    assert pending.failed_at is None
    assert counted(MAIL_SEND_ERRORS) == errors_before + 1
    assert "retrying in 30s" in caplog.text

    smtp.start()
    assert send_due().sent == 0  # not due yet
    assert send_due(now=utcnow() + timedelta(seconds=31)).sent == 1
    assert [message["To"] for message in smtp.inbox.messages] == ["ada@example.com"]
    assert waiting() == []


def test_mail_is_given_up_after_the_last_attempt(smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "mail_max_attempts", 2)
    queue()
    smtp.stop()
    failed_before = counted(MAIL_FAILED)

    send_due()
    send_due(now=utcnow() + timedelta(hours=2))
    smtp.start()
    send_due(now=utcnow() + timedelta(hours=4))

    [given_up] = waiting()
    assert (given_up.attempts, given_up.failed_at is not None) == (2, True)
    assert given_up.body == ""  # kept without the link it held
    assert smtp.inbox.messages == []
    assert counted(MAIL_FAILED) == failed_before + 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_credentials_are_used(migrated_databases: object, monkeypatch: pytest.MonkeyPatch) -> None:
    def authenticate(server: object, session: object, envelope: object, mechanism: str, auth: object) -> AuthResult:
        given = (auth.login, auth.password) if isinstance(auth, LoginPassword) else None
        return AuthResult(success=given == (b"mailer", b"s3cret"), handled=False)

    server = SmtpServer(free_port(), authenticator=authenticate, auth_required=True, auth_require_tls=False)
    server.start()
    settings = get_settings()
    for name, value in {"smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_tls": "none"}.items():
        monkeypatch.setattr(settings, name, value)
    try:
        queue()
        monkeypatch.setattr(settings, "smtp_user", "mailer")
        monkeypatch.setattr(settings, "smtp_password", "wrong")
        assert send_due().failed == 1
        assert "535" in waiting()[0].last_error  # type: ignore[operator]

        monkeypatch.setattr(settings, "smtp_password", "s3cret")
        assert send_due(now=utcnow() + timedelta(minutes=1)).sent == 1
        assert len(server.inbox.messages) == 1
    finally:
        server.stop()


def test_without_smtp_host_mail_is_written_to_the_mail_directory(
    migrated_databases: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(get_settings(), "mail_directory", tmp_path / "mail")
    queue()
    caplog.set_level(logging.INFO)

    assert send_due().sent == 1

    [written] = (tmp_path / "mail").glob("*.eml")
    message = email.message_from_bytes(written.read_bytes())
    assert (message["To"], message["Subject"]) == ("ada@example.com", "Hello")
    assert "token=abc" in message.get_payload()
    [line] = [record.getMessage() for record in caplog.records if record.name == "src.core.mail"]
    assert "ada@example.com" in line and "Hello" in line and "token" not in line
