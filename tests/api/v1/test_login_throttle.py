"""Log-in throttling: per account and per client address, kept in the core database, with no hashing when locked."""

import concurrent.futures
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from src.api.v1.models.login_failure import LoginFailure
from src.api.v1.models.outbox_event import OutboxEvent
from src.core import security
from src.core.config import get_settings
from src.core.engines import get_engine
from src.core.request_context import RequestContext, _current
from src.services import login_throttle
from tests.api.conftest import PASSWORD, MakeUser
from tests.conftest import DatabaseUrls

TOKEN_URL = "/api/v1/auth/token"


def log_in(client: TestClient, login: str, password: str = "wrong password") -> tuple[int, dict[str, str], str]:
    response = client.post(TOKEN_URL, data={"username": login, "password": password})
    return response.status_code, dict(response.headers), response.json().get("error", "")


def log_in_from(client: TestClient, address: str, login: str, password: str = "wrong password") -> int:
    """A log-in as a client at ``address`` makes it: its status."""
    return log_in(TestClient(client.app, client=(address, 50000)), login, password)[0]


def fail(client: TestClient, login: str, times: int) -> list[int]:
    return [log_in(client, login)[0] for _ in range(times)]


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords whose hash was checked, in order: a throttled attempt must add none."""
    checked: list[str] = []

    async def counting_check(password: str, hashed: str) -> bool:
        checked.append(password)
        return await security.password_matches_hash(password, hashed)

    monkeypatch.setattr("src.services.users.password_matches_hash", counting_check)
    return checked


def age_failures(session: Session, seconds: float) -> None:
    """Move every recorded failure ``seconds`` into the past, as if that much time had gone by."""
    for row in session.exec(select(LoginFailure)).all():
        row.last_failure_at -= timedelta(seconds=seconds)
        session.add(row)
    session.commit()


def test_an_account_is_locked_out_after_its_limit_and_even_its_password_is_refused(
    client: TestClient, make_user: MakeUser, hashes: list[str]
) -> None:
    make_user(username="ada")

    assert (
        fail(client, "ada", get_settings().login_failures_per_account)
        == [401] * get_settings().login_failures_per_account
    )
    status, headers, error = log_in(client, "ada", PASSWORD)

    assert (status, error) == (429, "too_many_attempts")
    assert 0 < int(headers["retry-after"]) <= get_settings().login_lockout_seconds
    assert PASSWORD not in hashes  # refused before the hash was checked
    assert len(hashes) == get_settings().login_failures_per_account


def test_a_lockout_is_one_audit_event_with_its_count_and_refusals_write_nothing(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada = make_user(username="ada")
    limit = get_settings().login_failures_per_account
    fail(client, "ada", limit)
    events = session.exec(select(func.count()).select_from(OutboxEvent)).one()

    assert fail(client, "ada", 20) == [429] * 20
    assert session.exec(select(func.count()).select_from(OutboxEvent)).one() == events
    throttled = session.exec(select(OutboxEvent).where(OutboxEvent.action == "user.login_throttled")).all()
    assert [(event.outcome, event.target_id, event.details) for event in throttled] == [
        (
            "failure",
            ada.id,
            {
                "login": "ada",
                "limit": "account",
                "failures": limit,
                "lockout_seconds": get_settings().login_lockout_seconds,
            },
        )
    ]


def test_an_unknown_login_is_recorded_as_a_digest_never_as_typed(client: TestClient, session: Session) -> None:
    # What a user types into the login field may be their password.
    fail(client, "my secret password", 1)

    [failed] = session.exec(select(OutboxEvent).where(OutboxEvent.action == "user.login_failed")).all()
    assert failed.details == {"login_digest": login_throttle.login_digest("my secret password")}
    assert "secret" not in str(failed.details)


def test_a_stranger_locks_out_their_own_address_not_the_owner(
    client: TestClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user(username="ada")
    at_home = "198.51.100.1"
    assert log_in_from(client, at_home, "ada", PASSWORD) == 200  # the owner's address is now known

    stranger = "203.0.113.66"
    refused = [log_in_from(client, stranger, "ada") for _ in range(get_settings().login_failures_per_account + 1)]

    assert refused[-1] == 429
    assert log_in_from(client, at_home, "ada", PASSWORD) == 200
    assert log_in_from(client, "192.0.2.40", "ada", PASSWORD) == 200


def test_guesses_spread_over_many_addresses_lock_the_account_but_not_at_its_known_address(
    client: TestClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "login_failures_per_account_from_anywhere", 6)
    make_user(username="ada")
    at_home = "198.51.100.1"
    assert log_in_from(client, at_home, "ada", PASSWORD) == 200

    for number in range(6):
        assert log_in_from(client, f"203.0.113.{number}", "ada") == 401

    assert log_in_from(client, "203.0.113.99", "ada", PASSWORD) == 429
    assert log_in_from(client, at_home, "ada", PASSWORD) == 200


def test_email_and_username_share_one_account_budget(client: TestClient, make_user: MakeUser) -> None:
    make_user(username="ada", email="ada@example.com")
    attempts = get_settings().login_failures_per_account + 1

    statuses = [log_in(client, "ada" if number % 2 else "ADA@example.com")[0] for number in range(attempts)]

    assert statuses[-1] == 429


def test_an_unknown_login_is_throttled_like_an_account(client: TestClient) -> None:
    statuses = fail(client, "nobody", get_settings().login_failures_per_account + 1)

    assert statuses == [401] * get_settings().login_failures_per_account + [429]


def test_a_successful_log_in_forgets_the_accounts_failures(client: TestClient, make_user: MakeUser) -> None:
    make_user(username="ada")
    below_limit = get_settings().login_failures_per_account - 1
    fail(client, "ada", below_limit)

    assert log_in(client, "ada", PASSWORD)[0] == 200
    assert fail(client, "ada", below_limit) == [401] * below_limit


def test_the_lockout_ends_and_grows_with_each_further_failure(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    make_user(username="ada")
    fail(client, "ada", get_settings().login_failures_per_account)
    age_failures(session, get_settings().login_lockout_seconds)

    status, _, _ = log_in(client, "ada")  # allowed again, and wrong again
    _, headers, error = log_in(client, "ada", PASSWORD)

    assert status == 401
    assert error == "too_many_attempts"
    assert (
        get_settings().login_lockout_seconds < int(headers["retry-after"]) <= 2 * get_settings().login_lockout_seconds
    )


def test_failures_are_forgotten_after_a_quiet_window(client: TestClient, session: Session, make_user: MakeUser) -> None:
    make_user(username="ada")
    fail(client, "ada", get_settings().login_failures_per_account)
    age_failures(session, get_settings().login_lockout_seconds + get_settings().login_failure_window_seconds)

    assert (
        fail(client, "ada", get_settings().login_failures_per_account)
        == [401] * get_settings().login_failures_per_account
    )


def test_one_address_failing_across_accounts_is_throttled(
    client: TestClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "login_failures_per_address", 3)
    for name in ("ada", "bob", "cy", "dee"):
        make_user(username=name)

    statuses = [log_in(client, name)[0] for name in ("ada", "bob", "cy")]
    status, _, error = log_in(client, "dee", PASSWORD)

    assert statuses == [401, 401, 401]
    assert (status, error) == (429, "too_many_attempts")


def test_a_count_below_the_limit_locks_nothing_even_when_stamped_after_the_check(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    """A check that waited for another attempt's lock may find that failure stamped after its own start."""
    make_user(username="ada")
    fail(client, "ada", get_settings().login_failures_per_account - 1)
    age_failures(session, -5)  # stamped in the future

    assert log_in(client, "ada", PASSWORD)[0] == 200


def test_lockout_grows_by_doubling_up_to_the_window() -> None:
    limit = get_settings().login_failures_per_account
    base = get_settings().login_lockout_seconds

    lockouts = [login_throttle.lockout_seconds(limit + extra - 1, limit) for extra in range(6)]

    assert lockouts[0] == 0
    assert lockouts[1:4] == [base, 2 * base, 4 * base]
    assert login_throttle.lockout_seconds(limit + 1000, limit) == get_settings().login_failure_window_seconds


def test_stale_counters_are_deleted_when_failures_are_counted(client: TestClient, session: Session) -> None:
    fail(client, "old", 1)
    age_failures(session, 2 * get_settings().login_failure_window_seconds + 1)

    fail(client, "new", 1)

    keys = {row.key for row in session.exec(select(LoginFailure)).all()}
    assert len(keys) == 3  # the new login's at this address, the address's and the login's, counted afresh
    assert all(row.failures == 1 for row in session.exec(select(LoginFailure)).all())


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("testclient", "testclient"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_64(address: str, counted_as: str) -> None:
    assert login_throttle.client_network(address) == counted_as


def test_successes_and_failures_at_once_never_fail_the_request(migrated_databases: DatabaseUrls) -> None:
    """A success zeroes the account's count while failures add to it: every one of them completes."""
    limits = (login_throttle.Limit("account", "login:race", 5),)

    def count_one(number: int) -> None:
        with Session(get_engine("core")) as session:
            if number % 3:
                login_throttle.count_attempt(session, limits)
            else:
                login_throttle.clear_account(session, uuid.uuid4(), limits)
            session.commit()

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(count_one, range(60)))  # raises if any of them failed

    with Session(get_engine("core")) as session:
        assert session.exec(select(LoginFailure.failures)).one() <= 40


def test_concurrent_failures_are_all_counted(migrated_databases: DatabaseUrls) -> None:
    """Counted in the database with the row locked: every worker and instance adds to the same count."""
    attempts = 12
    context = RequestContext("req", "192.0.2.7", None)

    def count_one() -> None:
        token = _current.set(context)
        try:
            with Session(get_engine("core")) as session:
                login_throttle.count_attempt(session, login_throttle.limits_for(session, "nobody", None))
                session.commit()
        finally:
            _current.reset(token)

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda _: count_one(), range(attempts)))

    with Session(get_engine("core")) as session:
        rows = {row.key: row.failures for row in session.exec(select(LoginFailure)).all()}
    # The login at this address, the address, and the login from anywhere.
    assert sorted(rows.values()) == [attempts] * 3
    assert "address:192.0.2.7" in rows


def test_an_owner_who_never_logged_in_is_known_at_the_address_they_signed_up_from(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "login_failures_per_account_from_anywhere", 6)
    signed_up = TestClient(client.app, client=("198.51.100.1", 50000)).post(
        "/api/v1/users",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD, "first_name": "A", "last_name": "L"},
    )
    assert signed_up.status_code == 201

    for number in range(6):
        assert log_in_from(client, f"203.0.113.{number}", "ada") == 401

    assert log_in_from(client, "198.51.100.1", "ada", PASSWORD) == 200


def test_checks_in_flight_at_a_known_address_are_not_held_against_the_address(
    session: Session, make_user: MakeUser
) -> None:
    # Others at the owner's address (a NAT, an office) must not crowd the owner's log-in out.
    ada = make_user(username="ada")
    token = _current.set(RequestContext("home", "198.51.100.1", None))
    try:
        before = login_throttle.in_flight_keys(login_throttle.limits_for(session, "ada", ada.id))
        login_throttle.remember_address(session, ada.id)
        after = login_throttle.in_flight_keys(login_throttle.limits_for(session, "ada", ada.id))
    finally:
        _current.reset(token)

    assert "address:198.51.100.1" in before
    assert after == [f"account:{ada.id}|address:198.51.100.1"]
