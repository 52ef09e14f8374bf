"""Log-in sessions: refresh tokens that rotate, reuse detection, log-out, and the sessions a user can list and end,
on both dialects."""

import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select

from src.api.v1.models.login_session import LoginSession, RefreshToken
from src.api.v1.models.outbox_event import OutboxEvent
from src.core.timestamps import utcnow
from tests.api.conftest import PASSWORD, MakeUser, auth, bearer

ME = "/api/v1/users/me"


def log_in(client: TestClient, login: str, user_agent: str = "test/1.0") -> dict[str, Any]:
    form = {"username": login, "password": PASSWORD}
    answer = client.post("/api/v1/auth/token", data=form, headers={"User-Agent": user_agent})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def refresh(client: TestClient, refresh_token: str) -> tuple[int, dict[str, Any]]:
    answer = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    return answer.status_code, answer.json()


def status_with(client: TestClient, tokens: dict[str, Any]) -> int:
    return int(client.get(ME, headers=bearer(tokens["access_token"])).status_code)


def test_a_refresh_rotates_the_refresh_token_and_a_reused_one_ends_the_session(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada = make_user()
    first = log_in(client, ada.username)
    assert first["refresh_expires_in"] > 29 * 24 * 3600  # SESSION_DAYS: 30

    status, second = refresh(client, first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert status_with(client, second) == 200
    stored = session.exec(select(RefreshToken.digest)).all()
    assert first["refresh_token"] not in stored and second["refresh_token"] not in stored  # digests only

    reused, error = refresh(client, first["refresh_token"])  # a copy of the used token: the session ends

    assert (reused, error["error"]) == (401, "invalid_token")
    assert refresh(client, second["refresh_token"])[0] == 401
    assert status_with(client, second) == 401
    assert session.exec(select(LoginSession).where(LoginSession.user_id == ada.id)).all() == []
    reuse = session.exec(select(OutboxEvent).where(OutboxEvent.action == "user.refresh_token_reused")).one()
    assert (reuse.target_id, reuse.outcome) == (ada.id, "failure")


def test_log_out_ends_the_session_and_only_it(client: TestClient, make_user: MakeUser) -> None:
    ada = make_user()
    laptop, phone = log_in(client, ada.username), log_in(client, ada.username)

    answer = client.post("/api/v1/auth/logout", headers=bearer(laptop["access_token"]))

    assert answer.status_code == 204
    assert status_with(client, laptop) == 401 and refresh(client, laptop["refresh_token"])[0] == 401
    assert status_with(client, phone) == 200 and refresh(client, phone["refresh_token"])[0] == 200


def test_sessions_are_listed_and_one_can_be_ended_from_another(client: TestClient, make_user: MakeUser) -> None:
    ada, bob = make_user(), make_user()
    laptop = log_in(client, ada.username, "Laptop/1.0")
    phone = log_in(client, ada.username, "Phone/2.0")
    bobs = log_in(client, bob.username)

    listed = client.get(f"{ME}/sessions", headers=bearer(laptop["access_token"])).json()

    assert [(item["user_agent"], item["current"]) for item in listed] == [("Phone/2.0", False), ("Laptop/1.0", True)]
    assert {item["ip"] for item in listed} == {"testclient"}
    phone_id = listed[0]["id"]
    [bob_session] = client.get(f"{ME}/sessions", headers=bearer(bobs["access_token"])).json()
    for unknown in (bob_session["id"], str(uuid.uuid4())):
        answer = client.delete(f"{ME}/sessions/{unknown}", headers=bearer(laptop["access_token"]))
        assert (answer.status_code, answer.json()["error"]) == (404, "session_not_found")
    assert client.delete(f"{ME}/sessions/{phone_id}", headers=bearer(laptop["access_token"])).status_code == 204
    assert status_with(client, phone) == 401 and status_with(client, laptop) == 200 and status_with(client, bobs) == 200


def test_a_password_change_ends_every_session(client: TestClient, make_user: MakeUser) -> None:
    ada = make_user()
    laptop, phone = log_in(client, ada.username), log_in(client, ada.username)
    change = {"current_password": PASSWORD, "new_password": "a brand new password"}

    assert client.put(f"{ME}/password", json=change, headers=bearer(laptop["access_token"])).status_code == 204

    for tokens in (laptop, phone):
        assert status_with(client, tokens) == 401 and refresh(client, tokens["refresh_token"])[0] == 401


def test_an_expired_session_refreshes_nothing(client: TestClient, session: Session, make_user: MakeUser) -> None:
    ada = make_user()
    tokens = log_in(client, ada.username)
    session.exec(
        update(LoginSession)
        .where(col(LoginSession.user_id) == ada.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()

    assert refresh(client, tokens["refresh_token"])[0] == 401
    assert status_with(client, tokens) == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": "not-a-token"}).status_code == 401


def test_a_token_from_before_sessions_works_until_it_expires(client: TestClient, make_user: MakeUser) -> None:
    ada = make_user()
    legacy = auth(ada)  # no sid claim

    assert client.get(ME, headers=legacy).status_code == 200
    answer = client.post("/api/v1/auth/logout", headers=legacy)
    assert (answer.status_code, answer.json()["error"]) == (404, "session_not_found")
