"""Log-in throttling: failures counted per account and per client address, in the core database.

Kept in the database, the counts hold across workers and instances. A locked-out
attempt is refused before its password is hashed. Failures for a login that names
no user are counted under that login, so throttling behaves the same whether or not
the account exists.
"""

import ipaddress
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha256

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from src.api.v1.models.login_failure import LoginFailure
from src.core.config import get_settings
from src.core.request_context import current_request_context
from src.core.text import fold
from src.core.timestamps import utcnow

KEY_LENGTH = 400


@dataclass(frozen=True)
class Limit:
    """One counter an attempt is held against: ``kind`` is "account" or "address"."""

    kind: str
    key: str
    max_failures: int


@dataclass(frozen=True)
class Lockout:
    limit: Limit
    retry_after_seconds: int


def limits_for(login: str, user_id: uuid.UUID | None) -> tuple[Limit, ...]:
    # A login naming no user is kept as a digest: it may be anything, a mistyped password included.
    account = f"account:{user_id}" if user_id else f"login:{sha256(fold(login.strip()).encode()).hexdigest()}"
    settings = get_settings()
    limits = [Limit("account", account, settings.login_failures_per_account)]
    request = current_request_context()
    if request and request.ip:
        address = f"address:{client_network(request.ip)}"[:KEY_LENGTH]
        limits.append(Limit("address", address, settings.login_failures_per_address))
    return tuple(limits)


def client_network(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address as its /64, which one client is usually given whole."""
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


def count_failure(session: Session, limits: tuple[Limit, ...]) -> None:
    """Add one failure to each of ``limits``; concurrent failures are all counted."""
    now = utcnow()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for limit in limits:
        # The row exists before it is locked, so two first failures at once do not clash on the key.
        session.exec(
            insert(LoginFailure)
            .values(key=limit.key, failures=0, last_failure_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = session.exec(select(LoginFailure).where(LoginFailure.key == limit.key).with_for_update()).one()
        row.failures = 1 if _forgotten(row, limit.max_failures, now) else row.failures + 1
        row.last_failure_at = now
        session.add(row)
    # Counters are forgotten at the latest a window after a lockout of at most a window: older rows go.
    stale = now - timedelta(seconds=2 * get_settings().login_failure_window_seconds)
    session.exec(delete(LoginFailure).where(col(LoginFailure.last_failure_at) < stale))
    session.flush()


def clear_account(session: Session, limits: tuple[Limit, ...]) -> None:
    """A successful log-in forgets its account's failures; the address keeps its own.

    The count is set to zero rather than the row deleted: a failure being counted at the same
    moment finds the row it has just made sure of.
    """
    keys = [limit.key for limit in limits if limit.kind == "account"]
    session.exec(update(LoginFailure).where(col(LoginFailure.key).in_(keys)).values(failures=0))
