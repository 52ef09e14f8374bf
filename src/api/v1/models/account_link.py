import uuid
from datetime import datetime

from sqlmodel import Field

from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime, utcnow


class AccountLink(CoreModel, table=True):
    """A single-use link sent by mail: a password reset, or the confirmation of an email address
    (src/services/account_links.py). Only a digest of its token is kept; using it deletes it."""

    __tablename__ = "account_links"

    digest: str = Field(primary_key=True, max_length=64)  # SHA-256 of the token, hex
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    purpose: str = Field(max_length=32)  # "password_reset" or "email_confirmation"
    # The address it was sent to: the one to confirm (the new one, for a change of email).
    email: str = Field(max_length=320)
    # The user's token stamp when it was made: a password changed since (another way) makes it useless.
    stamp: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)  # expired links are deleted by it
