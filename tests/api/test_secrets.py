"""No response and no log line carries a password, a token, a password hash, the secret key or a database password."""

import logging
import uuid

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from src.api.dependencies import TOKEN_URL
from src.api.v1 import API_PREFIX
from src.api.v1.models.user import User
from src.core.config import get_settings
from src.main import create_app
from tests.api.conftest import bearer, logged_in
from tests.conftest import DatabaseUrls

PASSWORD = "first-Secret-9731"
WRONG_PASSWORD = "wrong-Secret-2864"
NEW_PASSWORD = "second-Secret-5519"
DATABASE_PASSWORD = "db-Secret-4408"


def exposed(response: httpx.Response) -> str:
    return f"{response.headers}\n{response.text}"


def every_endpoint(client: TestClient, headers: dict[str, str]) -> list[httpx.Response]:
    """One request to each operation of the API, path parameters pointing at a real workspace and member."""
    workspace = client.post("/api/v1/workspaces", json={"name": "Engines"}, headers=headers).json()["id"]
    me = client.get("/api/v1/users/me", headers=headers).json()["id"]
    responses = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or not route.path.startswith(API_PREFIX) or route.path == TOKEN_URL:
            continue
        ids = {"session_id": uuid.uuid4(), "key_id": uuid.uuid4(), "invitation_id": uuid.uuid4()}
        path = route.path.format(workspace_id=workspace, user_id=me, **ids)
        for method in sorted(route.methods or ()):
            responses.append(client.request(method, path, headers=headers, json={"role": "member"}))
    responses.append(client.get(f"/api/v1/workspaces/{uuid.uuid4()}", headers=headers))
    return responses


def test_an_account_lifecycle_exposes_no_secret(
    client: TestClient, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sign_up = {"email": "ada@example.com", "username": "ada", "password": PASSWORD, "first_name": "A", "last_name": "L"}
    shown = [client.post("/api/v1/users", json=sign_up)]
    shown.append(client.post("/api/v1/users", json=sign_up | {"email": "bad", "password": PASSWORD[:5]}))
    shown.append(client.post("/api/v1/auth/token", data={"username": "ada", "password": WRONG_PASSWORD}))
    issued = client.post("/api/v1/auth/token", data={"username": "ada", "password": PASSWORD})
    token, refresh_token = issued.json()["access_token"], issued.json()["refresh_token"]
    headers = bearer(token)
    shown.append(client.get("/api/v1/users/me", headers=headers))
    change = "/api/v1/users/me/password"
    shown.append(client.put(change, headers=headers, json={"new_password": NEW_PASSWORD}))
    shown.append(client.put(change, headers=headers, json={"new_password": NEW_PASSWORD, "current_password": "x"}))
    shown.append(client.put(change, headers=headers, json={"new_password": NEW_PASSWORD, "current_password": PASSWORD}))
    shown.append(client.get("/api/v1/users/me", headers=headers))  # revoked by the change
    shown += every_endpoint(client, logged_in(client, "ada", NEW_PASSWORD))
    shown += [client.post("/api/v1/auth/token", data={"username": "ada", "password": WRONG_PASSWORD}) for _ in range(6)]
    hashed = session.exec(select(User.hashed_password).where(User.username == "ada")).one()

    everything = "\n".join(exposed(response) for response in shown) + caplog.text
    assert [response.status_code for response in shown[:2]] == [201, 422]
    assert shown[-1].status_code == 429
    assert {response.status_code for response in shown} >= {200, 201, 204, 401, 403, 404, 422, 429}
    for secret in (PASSWORD, WRONG_PASSWORD, NEW_PASSWORD, token, refresh_token, hashed, get_settings().secret_key):
        assert secret not in everything
    assert token not in caplog.text


def test_an_unreachable_database_does_not_expose_its_password(
    migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(get_settings(), "core_database_url", f"postgresql://app:{DATABASE_PASSWORD}@127.0.0.1:1/app")

    with TestClient(create_app()) as client:
        shown = [
            client.get("/ready"),
            client.post("/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}),
            client.get("/api/v1/users/me", headers={"Authorization": "Bearer x.y.z"}),
        ]

    assert [response.status_code for response in shown] == [503, 503, 401]
    assert "database unavailable" in caplog.text  # the operator is told
    assert DATABASE_PASSWORD not in "\n".join(exposed(response) for response in shown) + caplog.text
