"""RFC 9110 methods: a 405's Allow names every method the path serves, and HEAD answers wherever GET does."""

import logging
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from httpx import Response

from src.main import create_app
from tests.api.conftest import MakeUser, MakeWorkspace, auth
from tests.conftest import point_settings_at, server_in_thread, sqlite_urls

# Fixed ids: the test ids name them, and xdist workers must collect the same ones.
WORKSPACE = f"/api/v1/workspaces/{uuid.UUID(int=1)}"

ALLOWED = {
    "/api/v1/workspaces": "GET, HEAD, POST",
    "/api/v1/users/me": "DELETE, GET, HEAD, PATCH",
    WORKSPACE: "DELETE, GET, HEAD, PATCH",
    f"{WORKSPACE}/members": "GET, HEAD, POST",
    f"{WORKSPACE}/members/{uuid.UUID(int=2)}": "DELETE, GET, HEAD, PATCH",
    "/health": "GET, HEAD",
    "/ready": "GET, HEAD",
}


def without_request_id(response: Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "x-request-id"}


@pytest.mark.parametrize("method", ["OPTIONS", "PUT"])
@pytest.mark.parametrize("path", ALLOWED)
def test_a_405_allows_every_method_the_path_serves(client: TestClient, path: str, method: str) -> None:
    response = client.request(method, path)

    assert response.status_code == 405
    assert response.json() == {"error": "method_not_allowed", "detail": "Method Not Allowed"}
    assert response.headers["allow"] == ALLOWED[path]


def test_head_answers_what_get_does_without_the_body(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    user = make_user()
    make_workspace(user)

    for path, headers in [
        ("/api/v1/users/me", auth(user)),
        ("/api/v1/workspaces", auth(user)),
        ("/health", {}),
        ("/docs", {}),
    ]:
        got, head = client.get(path, headers=headers), client.head(path, headers=headers)

        assert (head.status_code, got.status_code) == (200, 200), path
        assert without_request_id(head) == without_request_id(got), path
        assert int(head.headers["content-length"]) == len(got.content) > 0, path
        assert head.content == b"", path


def test_head_without_a_token_is_401_as_get_is(client: TestClient) -> None:
    got, head = client.get("/api/v1/users/me"), client.head("/api/v1/users/me")

    assert (head.status_code, got.status_code) == (401, 401)
    assert without_request_id(head) == without_request_id(got)
    assert head.content == b""


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/auth/token"])
def test_head_where_no_get_is_served_is_405(client: TestClient, path: str) -> None:
    response = client.head(path)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.content == b""


def test_head_is_no_operation_of_the_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert [path for path, operations in paths.items() if "head" in operations] == []
    assert "get" in paths["/api/v1/users/me"]


def test_a_head_is_logged_as_head_under_its_route(
    client: TestClient, make_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user()

    with caplog.at_level(logging.INFO, logger="src.requests"):
        client.head("/api/v1/users/me", headers=auth(user))

    [record] = [record for record in caplog.records if record.name == "src.requests"]
    assert record.getMessage() == "HEAD /api/v1/users/me 200"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    point_settings_at(sqlite_urls(tmp_path), monkeypatch)
    with server_in_thread(uvicorn.Config(create_app(), log_level="warning")) as address:
        yield address


def test_a_head_sends_no_body_on_the_wire(server: tuple[str, int]) -> None:
    # Pipelined on one connection: a body after the HEAD's headers would be read as the next answer.
    head = b"HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    get = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with socket.create_connection(server, timeout=10) as connection:
        connection.sendall(head + get)
        response = b""
        while chunk := connection.recv(65536):
            response += chunk

    answers = re.split(rb"(?=HTTP/1\.1 )", response)[1:]
    assert [answer.split(b"\r\n\r\n", 1)[1] for answer in answers] == [b"", b'{"status":"ok"}']
    assert all(b"content-length: 15\r\n" in answer.lower() for answer in answers)
