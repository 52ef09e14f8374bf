"""Users and their credentials: sign-up, log-in, bearer tokens and profile changes."""

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from src.api.v1.models.user import User
from src.core.databases import unique_violation_columns
from src.core.errors import Conflict, InvalidCredentials, InvalidToken, TooManyAttempts, WrongPassword
from src.core.metrics import LOGINS_THROTTLED
from src.core.security import (
    AccessToken,
    create_access_token,
    decode_access_token,
    hash_password,
    password_matches_hash,
    spend_verification_time,
    verify_password,
)
from src.core.text import fold
from src.services import login_throttle
from src.services.audit_log import Target, record_event


class EmailTaken(Conflict):
    code = "email_taken"


class UsernameTaken(Conflict):
    code = "username_taken"


def _full_name(first_name: str, last_name: str) -> str:
    return f"{first_name} {last_name}"


def register_user(
    session: Session, *, email: str, username: str, password: str, first_name: str, last_name: str
) -> User:
    """Create an active user, email lowercased; ``EmailTaken`` or ``UsernameTaken`` when either is in use."""
    email = fold(email)
    _ensure_available(session, email=email, username=username)
    user = User(
        email=email,
        username=username,
        first_name=first_name,
        last_name=last_name,
        full_name=_full_name(first_name, last_name),
        hashed_password=hash_password(password),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as error:
        # A concurrent sign-up took the email or username between the check above and this insert; any other
        # violation (a column a newer schema requires, say) is answered as what it is.
        clashing = unique_violation_columns(error, User.metadata.tables[User.__tablename__])
        if "username" in clashing:
            raise UsernameTaken(f"the username {username!r} is already taken") from None
        if "email" in clashing:
            raise EmailTaken(f"the email {email!r} is already registered") from None
        raise
    record_event(session, action="user.signed_up", actor_id=user.id, target=Target("user", user.id))
    return user


def _ensure_available(session: Session, *, email: str, username: str) -> None:
    if session.exec(select(User.id).where(User.email == email)).first() is not None:
        raise EmailTaken(f"the email {email!r} is already registered")
    if session.exec(select(User.id).where(User.username == username)).first() is not None:
        raise UsernameTaken(f"the username {username!r} is already taken")


def find_user_by_login(session: Session, login: str) -> User | None:
    """The user whose email (when ``login`` has an @) or username is ``login``, in any letter case."""
    login = fold(login.strip())
    # Nothing unprintable is a valid email or username, and PostgreSQL rejects NUL in text outright.
    if not login or not login.isprintable():
        return None
    column = User.email if "@" in login else User.username
    return session.exec(select(User).where(column == login)).first()


@dataclass(frozen=True)
class LoginAttempt:
    """What a log-in needs of the user and of its throttling, read before the password is checked."""

    login: str
    user_id: uuid.UUID | None
    hashed_password: str | None
    is_active: bool
    limits: tuple[login_throttle.Limit, ...]
    lockout: login_throttle.Lockout | None


def find_login(session: Session, login: str) -> LoginAttempt:
    user = find_user_by_login(session, login)
    user_id = user.id if user else None
    limits = login_throttle.limits_for(login, user_id)
    lockout = login_throttle.current_lockout(session, limits)
    if user is None:
        return LoginAttempt(login, None, None, False, limits, lockout)
    return LoginAttempt(login, user_id, user.hashed_password, user.is_active, limits, lockout)


async def password_matches(attempt: LoginAttempt, password: str) -> bool:
    """Checked outside any transaction: a hash takes a quarter second, and must hold no connection or lock.

    A locked-out attempt spends no hashing time at all.
    """
    if attempt.lockout:
        return False
    if attempt.hashed_password is None:
        await spend_verification_time(password)
        return False
    return await password_matches_hash(password, attempt.hashed_password) and attempt.is_active


def record_login(session: Session, attempt: LoginAttempt, *, succeeded: bool) -> AccessToken:
    """A token for a successful log-in; ``InvalidCredentials`` without saying which part was wrong, and
    ``TooManyAttempts`` while the account or the client address is locked out.
    """
    target = Target("user", attempt.user_id) if attempt.user_id else None
    # Checked again, rows locked: failures counted while this attempt's password was hashed may have locked it out.
    lockout = attempt.lockout or login_throttle.current_lockout(session, attempt.limits, lock=True)
    if lockout:
        LOGINS_THROTTLED.labels(lockout.limit.kind).inc()
        record_event(
            session,
            action="user.login_throttled",
            actor_id=None,
            target=target,
            outcome="failure",
            details={"login": attempt.login[:320], "limit": lockout.limit.kind},
        )
        raise TooManyAttempts(
            f"too many failed log-ins for this {lockout.limit.kind}; retry in {lockout.retry_after_seconds}s",
            retry_after_seconds=lockout.retry_after_seconds,
        )
    user = session.get(User, attempt.user_id) if attempt.user_id else None
    # The password is checked against the hash read before: a change in between fails the log-in.
    if succeeded and user is not None and user.hashed_password == attempt.hashed_password and user.is_active:
        login_throttle.clear_account(session, attempt.limits)
        record_event(session, action="user.logged_in", actor_id=user.id, target=target)
        return create_access_token(user.id, password_hash=user.hashed_password)
    login_throttle.count_failure(session, attempt.limits)
    record_event(
        session,
        action="user.login_failed",
        actor_id=None,
        target=target,
        outcome="failure",
        details={"login": attempt.login[:320]},
    )
    raise InvalidCredentials("incorrect username, email or password")


def user_for_token(session: Session, token: str) -> User:
    """The active user a bearer token was issued to; ``InvalidToken`` otherwise."""
    claims = decode_access_token(token)
    user = session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise InvalidToken("the token's user does not exist or is inactive")
    if not claims.matches_password(user.hashed_password):
        raise InvalidToken("the password was changed after this token was issued; request a new token")
    return user


def update_profile(
    session: Session,
    user: User,
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    password: str | None = None,
    current_password: str | None = None,
) -> User:
    """Change names (keeping full_name in step) and the password, which needs the current one."""
    if password is not None:
        if current_password is None or not verify_password(current_password, user.hashed_password):
            raise WrongPassword("current_password is missing or incorrect")
        user.hashed_password = hash_password(password)
        record_event(session, action="user.password_changed", actor_id=user.id, target=Target("user", user.id))
    names_before = {"first_name": user.first_name, "last_name": user.last_name}
    if first_name is not None:
        user.first_name = first_name
    if last_name is not None:
        user.last_name = last_name
    names_after = {"first_name": user.first_name, "last_name": user.last_name}
    if names_after != names_before:
        user.full_name = _full_name(user.first_name, user.last_name)
        record_event(
            session,
            action="user.profile_updated",
            actor_id=user.id,
            target=Target("user", user.id),
            details={"before": names_before, "after": names_after},
        )
    session.add(user)
    session.flush()
    return user
