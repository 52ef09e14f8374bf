"""Every error a client can get has one JSON shape, with a stable code and no stack trace."""

import asyncio
import json
import threading
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import OperationalError
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from src.api.allowed_hosts import AllowedHostsMiddleware
from src.api.error_handling import handle_error
from src.core.config import get_settings
from src.main import create_app
from tests.api.conftest import MakeUser, MakeWorkspace, auth, create_test_app


def test_an_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}


def test_a_wrong_method_is_405_in_the_error_shape_with_allow(client: TestClient) -> None:
    response = client.put("/api/v1/users/me")

    assert response.status_code == 405
    assert response.json() == {"error": "method_not_allowed", "detail": "Method Not Allowed"}
    assert "GET" in response.headers["allow"]


def test_malformed_json_is_400_bad_request(client: TestClient) -> None:
    response = client.post("/api/v1/users", content=b'{"email": ', headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "detail": "the request body is not valid JSON"}


def test_a_validation_error_names_each_field(client: TestClient) -> None:
    response = client.post("/api/v1/users", json={"email": "not-an-email"})

    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "detail", "fields"}
    assert {tuple(field["loc"]) for field in body["fields"]} == {
        ("body", "email"),
        ("body", "username"),
        ("body", "password"),
        ("body", "first_name"),
        ("body", "last_name"),
    }
    assert all(set(field) == {"loc", "message", "type"} for field in body["fields"])


@pytest.fixture
def failing_client() -> TestClient:
    app: FastAPI = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    return TestClient(app, raise_server_exceptions=False)


def test_an_unexpected_error_is_500_without_a_trace(failing_client: TestClient) -> None:
    response = failing_client.get("/boom")

    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "internal server error"}
    assert "secret internals" not in response.text


def whole_body_over_the_limit() -> bytes:
    return b'{"email": "' + b"a" * (2 * 1024 * 1024) + b'"}'


def streamed_body_over_the_limit() -> Iterator[bytes]:
    yield b'{"email": "'
    for _ in range(40):  # 40 x 64 KiB: over the 1 MiB limit, without a Content-Length
        yield b"a" * 65536
    yield b'"}'


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(whole_body_over_the_limit, id="with-a-content-length"),
        pytest.param(streamed_body_over_the_limit, id="streamed"),
    ],
)
def test_a_body_over_the_limit_is_413_in_the_error_shape(
    client: TestClient, body: Callable[[], bytes | Iterator[bytes]]
) -> None:
    response = client.post("/api/v1/users", content=body(), headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_cors_preflight_from_an_allowed_origin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "cors_origins", ["https://app.example.com"])
    client = TestClient(create_test_app())
    preflight = {"Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "authorization"}

    allowed = client.options("/api/v1/users/me", headers={"Origin": "https://app.example.com", **preflight})
    refused = client.options("/api/v1/users/me", headers={"Origin": "https://evil.example", **preflight})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.example.com", True),
        ("API.Example.com:8443", True),
        ("eu.apps.example.com", True),
        ("evil.example", False),
        ("example.com.evil.example", False),
        ("apps.example.com", False),
        ("", False),
    ],
)
def test_only_allowed_hosts_are_answered(monkeypatch: pytest.MonkeyPatch, host: str, allowed: bool) -> None:
    monkeypatch.setattr(get_settings(), "allowed_hosts", ["api.example.com", "*.apps.example.com"])
    client = TestClient(create_test_app())

    response = client.get("/api/v1/nowhere", headers={"Host": host})

    if allowed:
        assert (response.status_code, response.json()["error"]) == (404, "not_found")
    else:
        assert (response.status_code, response.json()["error"]) == (400, "invalid_host")
        assert not host or host not in response.text


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
def test_the_probes_and_the_metrics_answer_whatever_the_host(path: str) -> None:
    async def answered(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("answered")(scope, receive, send)

    client = TestClient(AllowedHostsMiddleware(answered, allowed=["api.example.com"]))

    assert client.get(path, headers={"Host": "10.1.2.3:8000"}).text == "answered"
    assert client.get("/api/v1/users/me", headers={"Host": "10.1.2.3:8000"}).status_code == 400


def test_a_refused_host_is_echoed_nowhere_not_even_in_a_redirect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "allowed_hosts", ["api.example.com"])
    client = TestClient(create_test_app(), follow_redirects=False)

    refused = client.get("/api/v1/workspaces/", headers={"Host": "evil.example"})
    allowed = client.get("/api/v1/workspaces/", headers={"Host": "api.example.com"})

    assert refused.status_code == 400
    assert "evil.example" not in refused.text + str(refused.headers)
    assert allowed.status_code == 307
    assert allowed.headers["location"] == "http://api.example.com/api/v1/workspaces"


def test_no_cross_origin_access_by_default(client: TestClient) -> None:
    response = client.get("/health", headers={"Origin": "https://app.example.com"})

    assert "access-control-allow-origin" not in response.headers


def test_a_json_body_sent_as_plain_text_is_415(client: TestClient) -> None:
    response = client.post(
        "/api/v1/users", content=b'{"email": "a@example.com"}', headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 415
    assert response.json() == {"error": "unsupported_media_type", "detail": "send the body as application/json"}


def deadlock_error(url: str) -> OperationalError:
    """What PostgreSQL says to one of two transactions that each wait for the other's row."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE probe (id int PRIMARY KEY, v int)"))
        connection.execute(text("INSERT INTO probe VALUES (1, 0), (2, 0)"))
    errors: list[OperationalError] = []

    def update(connection: Connection, row: int) -> None:
        try:
            connection.execute(text("UPDATE probe SET v = 1 WHERE id = :id"), {"id": row})
        except OperationalError as error:
            errors.append(error)
            connection.rollback()

    with engine.connect() as first, engine.connect() as second:
        update(first, 1)
        update(second, 2)
        crossing = threading.Thread(target=update, args=(first, 2))
        crossing.start()
        update(second, 1)
        second.rollback()
        crossing.join(timeout=10)
        first.rollback()
    engine.dispose()
    [error] = errors
    return error


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_deadlock_is_a_409_to_retry_not_the_database_being_down(database_urls: dict[str, str]) -> None:
    request = Request({"type": "http", "method": "PATCH", "path": "/", "headers": []})

    response = asyncio.run(handle_error(request, deadlock_error(database_urls["core"])))

    assert response.status_code == 409
    assert json.loads(bytes(response.body))["error"] == "concurrent_change"


# Every text a client sends, each with a NUL in it (PostgreSQL refuses NUL in text), and each name with a
# character that NFC normalisation turns into three, a hundred times over (past the column's 100).
NUL = "a\x00b"
LONG_ONCE_NORMALISED = "\ufb2c" * 100
EDGE_INPUTS = [
    pytest.param("POST", "/api/v1/users", "email", NUL, id="sign-up-email-nul"),
    pytest.param("POST", "/api/v1/users", "username", NUL, id="sign-up-username-nul"),
    pytest.param("POST", "/api/v1/users", "password", "long enough" + NUL, id="sign-up-password-nul"),
    pytest.param("POST", "/api/v1/users", "first_name", NUL, id="sign-up-first-name-nul"),
    pytest.param("POST", "/api/v1/users", "last_name", LONG_ONCE_NORMALISED, id="sign-up-last-name-normalised"),
    pytest.param("PATCH", "/api/v1/users/me", "first_name", NUL, id="profile-first-name-nul"),
    pytest.param("PATCH", "/api/v1/users/me", "last_name", LONG_ONCE_NORMALISED, id="profile-last-name-normalised"),
    pytest.param("POST", "/api/v1/workspaces", "name", NUL, id="workspace-name-nul"),
    pytest.param("POST", "/api/v1/workspaces", "name", LONG_ONCE_NORMALISED, id="workspace-name-normalised"),
    pytest.param("POST", "/api/v1/workspaces/{id}/members", "email", NUL, id="member-email-nul"),
    pytest.param("GET", "/api/v1/workspaces/{id}/audit-events", "action", NUL, id="audit-action-nul"),
    pytest.param("GET", "/api/v1/workspaces/{id}/members", "cursor", NUL, id="members-cursor-nul"),
    pytest.param("GET", "/api/v1/workspaces/{id}%00", None, None, id="path-nul"),
]
VALID_BODIES = {
    "/api/v1/users": {
        "email": "e@example.com",
        "username": "edge",
        "password": "long enough",
        "first_name": "E",
        "last_name": "E",
    },
    "/api/v1/users/me": {"first_name": "E"},
    "/api/v1/workspaces": {"name": "Edge"},
    "/api/v1/workspaces/{id}/members": {"email": "other@example.com", "role": "member"},
}


@pytest.mark.parametrize(("method", "path", "field", "value"), EDGE_INPUTS)
def test_edge_input_anywhere_is_422_never_500(
    client: TestClient,
    make_user: MakeUser,
    make_workspace: MakeWorkspace,
    method: str,
    path: str,
    field: str | None,
    value: str | None,
) -> None:
    owner = make_user()
    make_user(email="other@example.com")
    workspace = make_workspace(owner)
    url = path.replace("{id}", str(workspace.id))
    if method == "GET":
        response = client.get(url, params={field: value} if field else None, headers=auth(owner))
    else:
        body = VALID_BODIES[path] | {field: value}
        response = client.request(method, url, json=body, headers=auth(owner))

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
