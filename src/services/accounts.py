"""Accounts beyond sign-up and log-in: password recovery, email confirmation and change, and deactivation.

Every message is queued in the change's own transaction (src/services/mail_outbox.py) and every step is an audit
event. A password reset goes to an address whether or not it is confirmed: following the link proves the mailbox
is the reader's, and confirms the address too.
"""

import uuid
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from src.api.v1.models.user import User
from src.core.config import get_settings
from src.core.errors import AdminOnly, Conflict, TooManyAttempts
from src.core.text import fold
from src.core.timestamps import utcnow
from src.services import login_sessions, login_throttle
from src.services.account_links import (
    EMAIL_CONFIRMATION,
    PASSWORD_RESET,
    create_link,
    forget_links,
    use_link,
    valid_link,
)
from src.services.account_mail import send_confirmation
from src.services.audit_log import Target, record_event
from src.services.mail_outbox import queue_mail
from src.services.members import UserNotFound
from src.services.users import EmailTaken, email_in_use, find_user_by_login


class SameEmail(Conflict):
    code = "same_email"


class OwnAccount(Conflict):
    code = "own_account"


def count_mail_request(session: Session, email: str) -> None:
    """``TooManyAttempts`` past ACCOUNT_MAIL_PER_EMAIL requests for ``email`` or ACCOUNT_MAIL_PER_ADDRESS from the
    client address lately; counts this one."""
    limits = login_throttle.account_mail_limits(email)
    lockout = login_throttle.current_lockout(session, limits, lock=True)
    if lockout:
        raise TooManyAttempts(
            f"too many requests for this {lockout.limit.kind}; retry in {lockout.retry_after_seconds}s",
            retry_after_seconds=lockout.retry_after_seconds,
        )
    login_throttle.count_attempt(session, limits)


def _requested_for(session: Session, email: str, action: str) -> User | None:
    """Count a request for account mail to ``email`` and record it, about the account that has that email (an
    event erasure finds), or under a keyed digest of the email when none has; the account, when there is one."""
    count_mail_request(session, email)
    user = find_user_by_login(session, email) if "@" in email else None
    if user is None:
        details = {"login_digest": login_throttle.login_digest(email)}
        record_event(session, action=action, actor_id=None, details=details)
    else:
        record_event(session, action=action, actor_id=None, target=Target("user", user.id))
    return user


def request_password_reset(session: Session, email: str) -> None:
    """Mail a reset link to ``email`` when an active account has it; the same (nothing to tell) when none has."""
    user = _requested_for(session, email, "user.password_reset_requested")
    if user is None or not user.is_active:
        return
    minutes = get_settings().password_reset_minutes
    link = create_link(session, user, purpose=PASSWORD_RESET, email=user.email, lifetime=timedelta(minutes=minutes))
    queue_mail(
        session,
        user.id,
        recipient=user.email,
        subject="Reset your password",
        body=(
            f"Hello {user.first_name},\n\nSomeone asked to reset the password of your account ({user.username}).\n"
            f"To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n"
            "If it was not you, ignore this message: your password stays as it is.\n"
        ),
    )


def check_reset_link(session: Session, token: str) -> None:
    """``InvalidLink`` unless ``token`` opens a password reset: checked before the new password is hashed, so that
    made-up tokens cost no hashing."""
    valid_link(session, token, purpose=PASSWORD_RESET)


def reset_password(session: Session, token: str, *, new_password_hash: str) -> None:
    """Set the password a reset link allows; every token and link issued before stops working."""
    _link, user = use_link(session, token, purpose=PASSWORD_RESET)
    user.hashed_password = new_password_hash
    user.email_verified_at = user.email_verified_at or utcnow()
    user.updated_at = utcnow()
    forget_links(session, user, purpose=PASSWORD_RESET)
    login_sessions.end_all(session, user.id)
    session.add(user)
    record_event(session, action="user.password_reset", actor_id=user.id, target=Target("user", user.id))


def request_confirmation(session: Session, email: str) -> None:
    """Mail a new confirmation link when an active account has ``email`` unconfirmed; the same (nothing to tell)
    otherwise."""
    user = _requested_for(session, email, "user.email_confirmation_requested")
    if user is not None and user.is_active and user.email_verified_at is None:
        send_confirmation(session, user)


def request_email_change(session: Session, user: User, new_email: str) -> None:
    """Mail a confirmation link to ``new_email`` and a notice to the current address; the email changes only once
    the link is followed. When an account has the new address already, that address is told so instead: the
    answer is the same, so that no one learns here which addresses have accounts."""
    new_email = fold(new_email)
    if new_email == user.email:
        raise SameEmail(f"{new_email} is already the account's email")
    count_mail_request(session, new_email)
    if email_in_use(session, new_email):
        queue_mail(
            session,
            user.id,
            recipient=new_email,
            subject="Your email address was offered for another account",
            body=(
                f"Hello,\n\nSomeone signed in to another account asked to make {new_email} its email. This address "
                "already has an account, so nothing changed.\n\nIf it was you, delete one of the two accounts first. "
                "If not, you need not do anything.\n"
            ),
        )
    else:
        send_confirmation(session, user, email=new_email)
    queue_mail(
        session,
        user.id,
        recipient=user.email,
        subject="A change of your email address was requested",
        body=(
            f"Hello {user.first_name},\n\nSomeone signed in to your account ({user.username}) asked to change its "
            f"email to {new_email}. It changes once that address confirms it.\n\nIf it was not you, change your "
            "password now.\n"
        ),
    )
    details = {"new_email": new_email}
    record_event(
        session, action="user.email_change_requested", actor_id=user.id, target=Target("user", user.id), details=details
    )


def confirm_email(session: Session, token: str) -> User:
    """Confirm the address a confirmation link was sent to: the user's own, or the new one of a change, which then
    becomes the user's email (``EmailTaken`` when another account took it meanwhile)."""
    link, user = use_link(session, token, purpose=EMAIL_CONFIRMATION)
    now = utcnow()
    if link.email == user.email:
        user.email_verified_at = user.email_verified_at or now
        session.add(user)
        record_event(session, action="user.email_confirmed", actor_id=user.id, target=Target("user", user.id))
        return user
    details = {"before": user.email, "after": link.email}
    taken = EmailTaken(f"the email {link.email!r} was registered meanwhile")
    if email_in_use(session, link.email):
        raise taken
    user.email, user.email_verified_at, user.updated_at = link.email, now, now
    session.add(user)
    try:
        with session.begin_nested():  # a sign-up taking the address at this moment fails only this
            session.flush()
    except IntegrityError:
        raise taken from None
    forget_links(session, user)  # a reset link sent to the old address must not open the account now
    record_event(
        session, action="user.email_changed", actor_id=user.id, target=Target("user", user.id), details=details
    )
    return user


def set_active(session: Session, admin: User, user_id: uuid.UUID, *, active: bool) -> User:
    """Deactivate an account (it cannot log in, its tokens stop working) or reactivate it; only an admin may, and
    not on their own account. Setting the state it has changes nothing."""
    if not admin.is_admin:
        raise AdminOnly("only an admin of the service may deactivate or reactivate accounts")
    if user_id == admin.id:
        raise OwnAccount("an admin cannot deactivate or reactivate their own account")
    user = session.get(User, user_id, with_for_update=True)
    if user is None:
        raise UserNotFound(f"user {user_id} not found")
    if user.is_active != active:
        now = utcnow()
        user.is_active, user.updated_at = active, now
        if not active:
            user.tokens_revoked_at = now
            login_sessions.end_all(session, user.id)
        session.add(user)
        action = "user.reactivated" if active else "user.deactivated"
        record_event(session, action=action, actor_id=admin.id, target=Target("user", user.id))
    return user


def make_admin(session: Session, email: str) -> User:
    """Give the account with ``email`` the admin flag (`make create-admin`); ``UserNotFound`` when none has it."""
    user = find_user_by_login(session, email) if "@" in email else None
    if user is None:
        raise UserNotFound(f"no account has the email {email!r}; sign up first")
    if not user.is_admin:
        user.is_admin = True
        session.add(user)
        record_event(
            session, action="user.admin_granted", actor_id=None, actor_type="system", target=Target("user", user.id)
        )
    return user
