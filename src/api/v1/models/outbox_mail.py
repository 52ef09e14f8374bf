import uuid
from datetime import datetime

from sqlalchemy import Text
from sqlmodel import Field

from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime, utcnow


class OutboxMail(CoreModel, table=True):
    """A message waiting to be sent, written in the same transaction as the change it tells of
    (src/services/mail_outbox.py). Deleted once sent; kept with ``failed_at`` once the worker gave up."""

    __tablename__ = "mail_outbox"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The account it is about: its deletion deletes the mail it has not been sent yet.
    user_id: uuid.UUID = Field(index=True)
    recipient: str = Field(max_length=320)
    subject: str = Field(max_length=200)
    body: str = Field(sa_type=Text)
    # When a worker may next take it: now for a new message, later after a failure or while a worker sends it.
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
