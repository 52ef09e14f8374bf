"""Log-in throttling: failures counted per account at each client address, per address, and per account from
the addresses it has not logged in from, in the core database.

Kept in the database, the counts hold across workers and instances. A locked-out
attempt is refused before its password is hashed, and writes nothing. Failures for a
login that names no user are counted under a digest of that login, so throttling
behaves the same whether or not the account exists. A stranger's failures lock out the
stranger's address, never the owner's: the account-wide count spares the addresses the
account has logged in from (docs/decisions/0011-lockouts-spare-the-owner.md).
"""

import hmac
import ipaddress
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha256

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from src.api.v1.models.login_failure import LoginFailure
from src.core.config import get_settings
from src.core.databases import upsert_insert
from src.core.request_context import current_request_context
from src.core.text import fold
from src.core.timestamps import utcnow

KEY_LENGTH = 400
KNOWN_ADDRESSES = 20
# The kind of the account-wide limit, which spares the addresses the account is known at.
FROM_NEW_ADDRESSES = "account from new addresses"


@dataclass(frozen=True)
class Limit:
    """One counter an attempt is held against: ``kind`` is "account" (at this address), "address", or
    FROM_NEW_ADDRESSES."""

    kind: str
    key: str
    max_failures: int


@dataclass(frozen=True)
class Lockout:
    limit: Limit
    retry_after_seconds: int


def login_digest(login: str) -> str:
    """How a login that names no user is kept: it may be anything, a password typed in the wrong field included.
    Keyed with the secret key, so that it cannot be matched against guessed emails."""
    return hmac.new(get_settings().secret_key.encode(), fold(login.strip()).encode(), sha256).hexdigest()


def limits_for(session: Session, login: str, user_id: uuid.UUID | None) -> tuple[Limit, ...]:
    """The counters an attempt is held against: the account at this address, the address, and the account from
    anywhere unless this address is one the account logged in from."""
    account = f"account:{user_id}" if user_id else f"login:{login_digest(login)}"
    settings = get_settings()
    network = _requesting_network()
    if network is None:
        return (Limit("account", account, settings.login_failures_per_account),)
    limits = [
        Limit("account", f"{account}|address:{network}"[:KEY_LENGTH], settings.login_failures_per_account),
        Limit("address", f"address:{network}"[:KEY_LENGTH], settings.login_failures_per_address),
    ]
    if session.get(LoginFailure, _known_key(account, network)) is None:
        limits.append(Limit(FROM_NEW_ADDRESSES, account, settings.login_failures_per_account_from_anywhere))
    return tuple(limits)


def sign_up_limit() -> tuple[Limit, ...]:
    network = _requesting_network()
    if network is None:
        return ()
    return (Limit("address", f"sign-up:{network}"[:KEY_LENGTH], get_settings().sign_ups_per_address),)


def account_mail_limits(email: str) -> tuple[Limit, ...]:
    """What a request for account mail (a password reset, a confirmation link) counts against: the email, whether
    or not an account has it, at this client address (so that a stranger's requests cannot keep the owner from
    getting a reset), and the client address."""
    settings = get_settings()
    email_key = f"mail:{login_digest(email)}"
    network = _requesting_network()
    if network is None:
        return (Limit("email", email_key, settings.account_mail_per_email),)
    return (
        Limit("email", f"{email_key}|address:{network}"[:KEY_LENGTH], settings.account_mail_per_email),
        Limit("address", f"mail-address:{network}"[:KEY_LENGTH], settings.account_mail_per_address),
    )


def forget_account(session: Session, user_id: uuid.UUID) -> None:
    """Delete the counters and known addresses of a deleted account."""
    keys = col(LoginFailure.key)
    account = f"account:{user_id}"
    session.exec(
        delete(LoginFailure).where(
            (keys == account) | keys.startswith(f"{account}|") | keys.startswith(_known_key(account, ""))
        )
    )


def _known_key(account: str, network: str) -> str:
    return f"known:{account}|address:{network}"[:KEY_LENGTH]


def _requesting_network() -> str | None:
    """The current request's client, as it is counted (``client_network``); None outside a request."""
    request = current_request_context()
    return client_network(request.ip) if request and request.ip else None


def client_network(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address as its /64, which one client is usually given whole (the request
    context has already made an IPv4-mapped address IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a test client's name): counted as given
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def lockout_seconds(failures: int, max_failures: int) -> float:
    """No lockout below the limit; from it on, the base doubled for each further failure, up to the window."""
    if failures < max_failures:
        return 0.0
    doublings = min(failures - max_failures, 32)
    settings = get_settings()
    return min(settings.login_lockout_seconds * (1 << doublings), settings.login_failure_window_seconds)


def _locked_until(row: LoginFailure, max_failures: int) -> datetime:
    return row.last_failure_at + timedelta(seconds=lockout_seconds(row.failures, max_failures))


def _forgotten(row: LoginFailure, max_failures: int, now: datetime) -> bool:
    return now >= _locked_until(row, max_failures) + timedelta(seconds=get_settings().login_failure_window_seconds)


def current_lockout(session: Session, limits: tuple[Limit, ...], *, lock: bool = False) -> Lockout | None:
    """The lockout in force for any of ``limits`` (the longest), or None.

    ``lock`` keeps the counters' rows locked until the transaction ends, so that attempts on one
    account are judged one after another: none is let through on a count another is changing.
    """
    by_key = {limit.key: limit for limit in limits}
    statement = select(LoginFailure).where(col(LoginFailure.key).in_(by_key)).order_by(col(LoginFailure.key))
    rows = session.exec(statement.with_for_update() if lock else statement).all()
    now = utcnow()  # after the rows: a locked read may have waited for a failure stamped later than its start
    lockouts = [
        Lockout(by_key[row.key], math.ceil((until - now).total_seconds()))
        for row in rows
        if row.failures >= by_key[row.key].max_failures
        and (until := _locked_until(row, by_key[row.key].max_failures)) > now
    ]
    return max(lockouts, key=lambda lockout: lockout.retry_after_seconds, default=None)


def count_attempt(session: Session, limits: tuple[Limit, ...]) -> list[tuple[Limit, int]]:
    """Add one to each of ``limits`` (a failed log-in, a sign-up); attempts at once are all counted. Returns the
    lockouts this attempt began, each with its count."""
    now = utcnow()
    began = []
    insert = upsert_insert(session.get_bind(), LoginFailure)
    # In key order, as current_lockout locks them: two attempts never lock the same rows in opposite orders.
    for limit in sorted(limits, key=lambda limit: limit.key):
        # The row exists before it is locked, so two first failures at once do not clash on the key.
        session.exec(
            insert.values(key=limit.key, failures=0, last_failure_at=now).on_conflict_do_nothing(index_elements=["key"])
        )
        row = session.exec(select(LoginFailure).where(LoginFailure.key == limit.key).with_for_update()).one()
        row.failures = 1 if _forgotten(row, limit.max_failures, now) else row.failures + 1
        row.last_failure_at = now
        session.add(row)
        if row.failures >= limit.max_failures:
            began.append((limit, row.failures))
    settings = get_settings()
    # Counters are forgotten at the latest a window after a lockout of at most a window: older rows go.
    stale = now - timedelta(seconds=2 * settings.login_failure_window_seconds)
    known = col(LoginFailure.key).startswith("known:")
    forgotten = now - timedelta(days=settings.login_known_address_days)
    session.exec(
        delete(LoginFailure).where(
            (~known & (col(LoginFailure.last_failure_at) < stale))
            | (known & (col(LoginFailure.last_failure_at) < forgotten))
        )
    )
    session.flush()
    return began


def clear_account(session: Session, user_id: uuid.UUID, limits: tuple[Limit, ...]) -> None:
    """A successful log-in forgets its account's failures (the address keeps its own), and makes this address one
    the account is known at.

    The count is set to zero rather than the row deleted: a failure being counted at the same
    moment finds the row it has just made sure of.
    """
    keys = [limit.key for limit in limits if limit.kind == "account"]
    session.exec(update(LoginFailure).where(col(LoginFailure.key).in_(keys)).values(failures=0))
    remember_address(session, user_id)


def remember_address(session: Session, user_id: uuid.UUID) -> None:
    """Make the client's address one the account is known at (a log-in, or the sign-up): the account-wide count
    spares it. An account keeps its KNOWN_ADDRESSES most recent ones."""
    network = _requesting_network()
    if network is None:
        return
    prefix = _known_key(f"account:{user_id}", "")
    statement = upsert_insert(session.get_bind(), LoginFailure).values(
        key=_known_key(f"account:{user_id}", network), failures=0, last_failure_at=utcnow()
    )
    session.exec(
        statement.on_conflict_do_update(
            index_elements=["key"], set_={"last_failure_at": statement.excluded.last_failure_at}
        )
    )
    newest = (
        select(LoginFailure.key)
        .where(col(LoginFailure.key).startswith(prefix))
        .order_by(col(LoginFailure.last_failure_at).desc())
        .limit(KNOWN_ADDRESSES)
    )
    session.exec(
        delete(LoginFailure).where(col(LoginFailure.key).startswith(prefix), col(LoginFailure.key).not_in(newest))
    )


def in_flight_keys(limits: tuple[Limit, ...]) -> list[str]:
    """What a password check in flight is held against: its account, and its address unless the account is known
    there (its limits then hold no account-wide counter): others at that address cannot crowd the owner out."""
    known = all(limit.kind != FROM_NEW_ADDRESSES for limit in limits)
    return [limit.key for limit in limits if limit.kind != "address" or not known]
