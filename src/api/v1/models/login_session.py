import uuid
from datetime import datetime

from sqlmodel import Field

from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime, utcnow


class LoginSession(CoreModel, table=True):
    """One log-in and the tokens refreshed from it (src/services/login_sessions.py): an access token names it, and
    works only while it exists. Ended by log-out, by its owner, or by a password change or reset."""

    __tablename__ = "login_sessions"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The last log-in or refresh: an access token is used without writing.
    last_used_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)  # expired sessions are deleted by it
    user_agent: str | None = Field(default=None, max_length=500)
    ip: str | None = Field(default=None, max_length=64)


class RefreshToken(CoreModel, table=True):
    """A refresh token of a session, kept as a digest. Used once: it is then marked replaced, and presenting it
    again ends the session (reuse detection)."""

    __tablename__ = "refresh_tokens"

    digest: str = Field(primary_key=True, max_length=64)
    session_id: uuid.UUID = Field(foreign_key="login_sessions.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    replaced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
