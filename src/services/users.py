"""Users and their credentials: sign-up, log-in, bearer tokens and profile changes."""

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from src.api.v1.models.user import User
from src.core.config import get_settings
from src.core.databases import unique_violation_columns
from src.core.errors import Conflict, Forbidden, InvalidCredentials, InvalidToken, TooManyAttempts, WrongPassword
from src.core.metrics import LOGINS_THROTTLED
from src.core.security import (
    TokenClaims,
    checks_in_flight,
    password_matches_hash,
    spend_verification_time,
)
from src.core.text import fold
from src.core.timestamps import utcnow
from src.core.versions import entity_tag, require_match
from src.services import login_sessions, login_throttle
from src.services.account_mail import send_confirmation
from src.services.audit_log import Target, record_event


class EmailTaken(Conflict):
    code = "email_taken"


class UsernameTaken(Conflict):
    code = "username_taken"


class EmailNotConfirmed(Forbidden):
    """The password is right, but LOGIN_REQUIRES_VERIFIED_EMAIL holds the account until its email is confirmed."""

    code = "email_not_confirmed"


def _full_name(first_name: str, last_name: str) -> str:
    return f"{first_name} {last_name}"


def refuse_sign_up_while_throttled(session: Session, *, lock: bool = False) -> None:
    """``TooManyAttempts`` while this client address has signed up SIGN_UPS_PER_ADDRESS times lately; with ``lock``,
    the count is read locked, so that sign-ups at once are judged one after another."""
    lockout = login_throttle.current_lockout(session, login_throttle.sign_up_limit(), lock=lock)
    if lockout:
        raise TooManyAttempts(
            f"too many sign-ups from this address; retry in {lockout.retry_after_seconds}s",
            retry_after_seconds=lockout.retry_after_seconds,
        )


def register_user(
    session: Session, *, email: str, username: str, hashed_password: str, first_name: str, last_name: str
) -> User:
    """Create an active user with a password hashed beforehand (outside the transaction), email lowercased;
    ``EmailTaken`` or ``UsernameTaken`` when either is in use. Counted against the client address's sign-ups."""
    refuse_sign_up_while_throttled(session, lock=True)
    email = fold(email)
    _ensure_available(session, email=email, username=username)
    user = User(
        email=email,
        username=username,
        first_name=first_name,
        last_name=last_name,
        full_name=_full_name(first_name, last_name),
        hashed_password=hashed_password,
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
    login_throttle.count_attempt(session, login_throttle.sign_up_limit())
    login_throttle.remember_address(session, user.id)
    record_event(session, action="user.signed_up", actor_id=user.id, target=Target("user", user.id))
    send_confirmation(session, user)
    return user


def email_in_use(session: Session, email: str) -> bool:
    """Whether an account has ``email`` (in its stored form)."""
    return session.exec(select(User.id).where(User.email == email)).first() is not None


def _ensure_available(session: Session, *, email: str, username: str) -> None:
    if email_in_use(session, email):
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
    if user is None:
        limits = login_throttle.limits_for(session, login, None)
        return LoginAttempt(login, None, None, False, limits, login_throttle.current_lockout(session, limits))
    return password_check(session, user, login)


def password_check(session: Session, user: User, login: str | None = None) -> LoginAttempt:
    """What checking the user's password needs: a log-in's, or a password change's (``current_password``), which
    counts against the same limits."""
    limits = login_throttle.limits_for(session, login or user.username, user.id)
    lockout = login_throttle.current_lockout(session, limits)
    return LoginAttempt(login or user.username, user.id, user.hashed_password, user.is_active, limits, lockout)


async def password_matches(attempt: LoginAttempt, password: str) -> bool:
    """Checked outside any transaction: a hash takes a quarter second, and must hold no connection or lock.

    A locked-out attempt is refused (``TooManyAttempts``) with no hashing and no writing, and so is one past
    PASSWORD_CHECKS_PER_CLIENT checks in flight for its account or address.
    """
    if attempt.lockout:
        raise throttled(attempt.lockout)
    with checks_in_flight.holding(login_throttle.in_flight_keys(attempt.limits)):
        if attempt.hashed_password is None:
            await spend_verification_time(password)
            return False
        return await password_matches_hash(password, attempt.hashed_password) and attempt.is_active


def record_login(session: Session, attempt: LoginAttempt, *, succeeded: bool) -> login_sessions.Tokens:
    """A new session's tokens for a successful log-in; ``InvalidCredentials`` without saying which part was wrong, and
    ``TooManyAttempts`` while the account or the client address is locked out.
    """
    user = session.get(User, attempt.user_id) if attempt.user_id else None
    # The password is checked against the hash read before: a change in between fails the log-in.
    if succeeded and user is not None and user.hashed_password == attempt.hashed_password and user.is_active:
        refuse_while_locked_out(session, attempt)
        if user.email_verified_at is None and get_settings().login_requires_verified_email:
            raise EmailNotConfirmed(f"confirm {user.email} first: follow the link mailed to it, or ask for a new one")
        login_throttle.clear_account(session, user.id, attempt.limits)
        record_event(session, action="user.logged_in", actor_id=user.id, target=Target("user", user.id))
        return login_sessions.start(session, user)
    record_failure(session, attempt, "user.login_failed")
    raise InvalidCredentials("incorrect username, email or password")


def throttled(lockout: login_throttle.Lockout) -> TooManyAttempts:
    LOGINS_THROTTLED.labels(lockout.limit.kind).inc()
    return TooManyAttempts(
        f"too many failed log-ins for this {lockout.limit.kind}; retry in {lockout.retry_after_seconds}s",
        retry_after_seconds=lockout.retry_after_seconds,
    )


def record_wrong_password(session: Session, check: LoginAttempt) -> None:
    """A wrong ``current_password``: counted like a failed log-in of the account, recorded, and refused."""
    record_failure(session, check, "user.password_check_failed")
    raise WrongPassword("current_password is incorrect")


def refuse_while_locked_out(session: Session, attempt: LoginAttempt) -> None:
    """``TooManyAttempts``, writing nothing, when failures counted while this attempt's password was hashed began a
    lockout; read with the counters locked."""
    lockout = login_throttle.current_lockout(session, attempt.limits, lock=True)
    if lockout:
        raise throttled(lockout)


def record_failure(session: Session, attempt: LoginAttempt, action: str) -> None:
    """Count a wrong password and record it; each lockout it begins is recorded once, with its count."""
    refuse_while_locked_out(session, attempt)
    target = Target("user", attempt.user_id) if attempt.user_id else None
    # A login that names no user is kept as a digest: it may be a password typed in the wrong field.
    login = (
        {"login": attempt.login[:320]}
        if attempt.user_id
        else {"login_digest": login_throttle.login_digest(attempt.login)}
    )
    for limit, failures in login_throttle.count_attempt(session, attempt.limits):
        record_event(
            session,
            action="user.login_throttled",
            actor_id=None,
            target=target,
            outcome="failure",
            details=login
            | {
                "limit": limit.kind,
                "failures": failures,
                "lockout_seconds": login_throttle.lockout_seconds(failures, limit.max_failures),
            },
        )
    record_event(session, action=action, actor_id=None, target=target, outcome="failure", details=login)


def usernames(session: Session, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The current username of each of these users that still exists."""
    if not user_ids:
        return {}
    return dict(session.exec(select(User.id, User.username).where(col(User.id).in_(user_ids))).all())


def user_for_token(session: Session, claims: TokenClaims) -> User:
    """The active user a valid bearer token (its claims) was issued to; ``InvalidToken`` otherwise."""
    user = session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise InvalidToken("the token's user does not exist or is inactive")
    if not claims.matches_password(user.hashed_password, user.tokens_revoked_at):
        raise InvalidToken(
            "the password was changed, or the account's tokens revoked, after this token was issued; log in again"
        )
    if claims.session_id is not None and not login_sessions.is_live(session, claims.session_id, user.id):
        raise InvalidToken("the token's session has ended; log in again")
    return user


def update_profile(
    session: Session,
    user: User,
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    if_match: Collection[str] | None = None,
) -> User:
    """Change names, keeping full_name in step; only while the user's version is one of ``if_match``, when given."""
    if if_match is not None:
        session.refresh(user, with_for_update=True)  # as it is now, and until the commit
        require_match(if_match, version(user))
    before = {"first_name": user.first_name, "last_name": user.last_name}
    user.first_name = first_name or user.first_name
    user.last_name = last_name or user.last_name
    after = {"first_name": user.first_name, "last_name": user.last_name}
    if after != before:
        user.full_name = _full_name(user.first_name, user.last_name)
        user.updated_at = utcnow()
        target = Target("user", user.id)
        details = {"before": before, "after": after}
        record_event(session, action="user.profile_updated", actor_id=user.id, target=target, details=details)
        session.add(user)
        session.flush()
    return user


def change_password(session: Session, user: User, *, new_password_hash: str, checked_hash: str | None) -> None:
    """Set ``new_password_hash``, made once the current password was found to match ``checked_hash``, which must
    still be the user's: tokens issued before stop working (they carry the old hash's stamp)."""
    if user.hashed_password != checked_hash:
        raise WrongPassword("the password was changed meanwhile; try again with the current one")
    user.hashed_password = new_password_hash
    user.updated_at = utcnow()
    login_sessions.end_all(session, user.id)
    record_event(session, action="user.password_changed", actor_id=user.id, target=Target("user", user.id))
    session.add(user)
    session.flush()


def version(user: User) -> str:
    """The user's entity tag: it changes with each change of the profile or the password (made by an older version
    of the code too, which sets no updated_at)."""
    return entity_tag(
        user.id, user.email, user.username, user.first_name, user.last_name, user.hashed_password, user.updated_at
    )
