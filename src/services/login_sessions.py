"""Log-in sessions: each log-in starts one, with a refresh token; refreshing rotates that token.

An access token names its session and works only while the session exists, so ending a session (log-out, its owner
from another device, a password change or reset, a deactivation) ends its tokens at once: the check is one lookup
by primary key, no password hash. Refresh tokens are kept only as digests. A refresh token is used once; presenting
a used one again means it was copied, so the whole session ends (reuse detection, OAuth 2.0 Security BCP 4.14).
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from src.api.v1.models.login_session import LoginSession, RefreshToken
from src.api.v1.models.user import User
from src.core.config import get_settings
from src.core.errors import InvalidToken, NotFound
from src.core.request_context import current_request_context
from src.core.security import AccessToken, create_access_token, new_secret, secret_digest
from src.core.timestamps import utcnow
from src.services.audit_log import Target, record_event


class SessionNotFound(NotFound):
    code = "session_not_found"


class RefreshTokenReused(InvalidToken):
    """A used refresh token presented again: its session is ended, and that stands although the request fails."""

    keeps_changes = True


@dataclass(frozen=True)
class Tokens:
    access: AccessToken
    refresh_token: str
    refresh_expires_in: int


def _tokens(session: Session, user: User, login: LoginSession) -> Tokens:
    """A new refresh token for ``login`` (kept as a digest), and an access token naming it."""
    refresh_token = new_secret()
    session.add(RefreshToken(digest=secret_digest(refresh_token), session_id=login.id))
    access = create_access_token(
        user.id, password_hash=user.hashed_password, session_id=login.id, revoked_at=user.tokens_revoked_at
    )
    return Tokens(access, refresh_token, int((login.expires_at - utcnow()).total_seconds()))


def start(session: Session, user: User) -> Tokens:
    """A new session for ``user``, who just logged in, with its first tokens; the user's expired sessions go."""
    now = utcnow()
    session.exec(delete(LoginSession).where(col(LoginSession.user_id) == user.id, col(LoginSession.expires_at) <= now))
    request = current_request_context()
    login = LoginSession(
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(days=get_settings().session_days),
        user_agent=request.user_agent if request else None,
        ip=request.ip if request else None,
    )
    session.add(login)
    return _tokens(session, user, login)


def refresh(session: Session, refresh_token: str) -> Tokens:
    """New tokens for the session ``refresh_token`` belongs to, that token used up; ``InvalidToken`` when it is
    unknown or its session ended, ``RefreshTokenReused`` (the session ended) when it was used already."""
    now = utcnow()
    used = session.exec(
        select(RefreshToken).where(RefreshToken.digest == secret_digest(refresh_token)).with_for_update()
    ).first()
    login = session.get(LoginSession, used.session_id, with_for_update=True) if used else None
    user = session.get(User, login.user_id) if login else None
    if used is None or login is None or user is None or login.expires_at <= now or not user.is_active:
        raise InvalidToken("the refresh token is invalid or its session has ended; log in again")
    if used.replaced_at is not None:
        session.delete(login)
        record_event(
            session,
            action="user.refresh_token_reused",
            actor_id=None,
            target=Target("user", user.id),
            outcome="failure",
            details={"session_id": str(login.id)},
        )
        raise RefreshTokenReused("this refresh token was used already: its session is ended; log in again")
    used.replaced_at = login.last_used_at = now
    session.add_all([used, login])
    return _tokens(session, user, login)


def is_live(session: Session, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Whether the session exists, is the user's, and has not expired: an access token's check."""
    login = session.get(LoginSession, session_id)
    return login is not None and login.user_id == user_id and login.expires_at > utcnow()


def sessions_of(session: Session, user_id: uuid.UUID) -> list[LoginSession]:
    """The user's live sessions, the most recently used first."""
    statement = (
        select(LoginSession)
        .where(LoginSession.user_id == user_id, col(LoginSession.expires_at) > utcnow())
        .order_by(col(LoginSession.last_used_at).desc(), col(LoginSession.id))
    )
    return list(session.exec(statement))


def end(session: Session, user_id: uuid.UUID, session_id: uuid.UUID, *, action: str) -> None:
    """End one of the user's sessions (``action``: how, for the audit event); ``SessionNotFound`` if there is none
    such."""
    login = session.get(LoginSession, session_id)
    if login is None or login.user_id != user_id:
        raise SessionNotFound(f"session {session_id} not found")
    session.delete(login)
    details = {"session_id": str(session_id)}
    record_event(session, action=action, actor_id=user_id, target=Target("user", user_id), details=details)


def end_all(session: Session, user_id: uuid.UUID) -> None:
    """End every session of the user (a password change or reset, a deactivation)."""
    session.exec(delete(LoginSession).where(col(LoginSession.user_id) == user_id))
