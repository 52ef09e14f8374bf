"""Single-use links sent by mail: password resets and email confirmations.

The link carries a random token; the database keeps only its SHA-256 digest, so a copy of the database opens no
account. A link works once, until it expires, and only while the account's token stamp (its password, and any
revocation of its tokens) is the one it was made with: a password changed another way ends it.
"""

import secrets
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import delete
from sqlmodel import Session, col, select

from src.api.v1.models.account_link import AccountLink
from src.api.v1.models.user import User
from src.core.config import get_settings
from src.core.errors import NotFound
from src.core.security import new_secret, password_stamp, secret_digest
from src.core.timestamps import utcnow

PASSWORD_RESET = "password_reset"
EMAIL_CONFIRMATION = "email_confirmation"
# The page of the front end each purpose's link opens; it posts the token to the API.
PAGES = {PASSWORD_RESET: "/reset-password", EMAIL_CONFIRMATION: "/confirm-email"}


class InvalidLink(NotFound):
    code = "invalid_link"


def stamp(user: User) -> str:
    return password_stamp(user.hashed_password, user.tokens_revoked_at)


def create_link(session: Session, user: User, *, purpose: str, email: str, lifetime: timedelta) -> str:
    """A new link for ``user``, sent to ``email``: its URL. Expired links of every account are deleted on the way."""
    now = utcnow()
    session.exec(delete(AccountLink).where(col(AccountLink.expires_at) <= now))
    token = new_secret()
    session.add(
        AccountLink(
            digest=secret_digest(token),
            user_id=user.id,
            purpose=purpose,
            email=email,
            stamp=stamp(user),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return public_link(PAGES[purpose], token)


def public_link(page: str, token: str) -> str:
    """The address of the front end's ``page`` (PUBLIC_URL) that posts ``token`` to the API, for a mail."""
    return f"{get_settings().public_url.rstrip('/')}{page}?{urlencode({'token': token})}"


def valid_link(session: Session, token: str, *, purpose: str, lock: bool = False) -> tuple[AccountLink, User]:
    """The link ``token`` opens and its active user (with ``lock``, both locked until the transaction ends);
    ``InvalidLink`` for a token that is unknown, used, expired, for another purpose, made before the password
    changed, or a password reset sent to an address the account no longer has."""
    statement = select(AccountLink).where(AccountLink.digest == secret_digest(token))
    link = session.exec(statement.with_for_update() if lock else statement).first()
    user = session.get(User, link.user_id, with_for_update=lock) if link else None
    if (
        link is None
        or user is None
        or link.purpose != purpose
        or link.expires_at <= utcnow()
        or not user.is_active
        or not secrets.compare_digest(link.stamp, stamp(user))
        or (purpose == PASSWORD_RESET and link.email != user.email)
    ):
        raise InvalidLink("the link is invalid, used or expired; ask for a new one")
    return link, user


def use_link(session: Session, token: str, *, purpose: str) -> tuple[AccountLink, User]:
    """``valid_link``, locked, and deleted: it is used."""
    link, user = valid_link(session, token, purpose=purpose, lock=True)
    session.delete(link)
    return link, user


def forget_links(session: Session, user: User, *, purpose: str | None = None) -> None:
    """Delete the user's other links for ``purpose``, or all of them."""
    statement = delete(AccountLink).where(col(AccountLink.user_id) == user.id)
    session.exec(statement if purpose is None else statement.where(col(AccountLink.purpose) == purpose))
