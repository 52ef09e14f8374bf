"""One log line per request, as JSON outside local and test, with nothing secret in it."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from src.core.config import get_settings
from src.core.databases import DATABASES
from src.core.logs import HANDLER_NAME, JsonFormatter, TextFormatter
from src.core.schema_versions import script_directory
from src.services.readiness import RecentReadiness
from tests.api.conftest import PASSWORD, MakeUser, create_test_app, join_test_transactions, logged_in


class LoggedClient(TestClient):
    """A client of an app whose logs are configured as JSON and kept in ``log``."""

    log: io.StringIO

    def request_lines(self) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in self.log.getvalue().splitlines()]
        self.log.truncate(0)
        self.log.seek(0)
        return [line for line in lines if line["logger"] == "src.requests"]


@pytest.fixture
def json_client(connections: dict[str, Connection], monkeypatch: pytest.MonkeyPatch) -> Iterator[LoggedClient]:
    monkeypatch.setattr(get_settings(), "log_format", "json")
    app = create_test_app()  # configures the logs
    join_test_transactions(app, connections)
    [handler] = [handler for handler in logging.getLogger().handlers if handler.get_name() == HANDLER_NAME]
    with LoggedClient(app) as client:
        client.log = io.StringIO()
        previous = handler.setStream(client.log)  # type: ignore[attr-defined]
        yield client
        handler.setStream(previous)  # type: ignore[attr-defined]


def test_each_request_is_one_json_line_with_who_what_and_how_long(
    json_client: LoggedClient, make_user: MakeUser
) -> None:
    user = make_user(username="ada")
    headers = logged_in(json_client, "ada")
    workspace = json_client.post("/api/v1/workspaces", json={"name": "Engines"}, headers=headers).json()
    json_client.request_lines()

    response = json_client.get(
        f"/api/v1/workspaces/{workspace['id']}",
        headers=headers | {"X-Request-ID": "req-7"},
    )

    [line] = json_client.request_lines()
    assert response.status_code == 200
    assert line["level"] == "INFO"
    assert {key: line[key] for key in ("request_id", "method", "route", "status", "user_id", "client")} == {
        "request_id": "req-7",
        "method": "GET",
        "route": "/api/v1/workspaces/{workspace_id}",
        "status": 200,
        "user_id": str(user.id),
        "client": "testclient",
    }
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert str(line["time"]).endswith("+00:00")


def test_failed_and_unknown_requests_are_logged_too(json_client: LoggedClient) -> None:
    json_client.post("/api/v1/auth/token", data={"username": "nobody", "password": PASSWORD})
    json_client.get("/nowhere")

    lines = json_client.request_lines()
    assert [(line["route"], line["status"], line["user_id"]) for line in lines] == [
        ("/api/v1/auth/token", 401, None),
        (None, 404, None),
    ]
    assert PASSWORD not in json.dumps(lines)


def test_probes_are_logged_only_when_they_fail(json_client: LoggedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    json_client.get("/health")
    assert json_client.request_lines() == []

    # Set by the lifespan.
    json_client.app.state.readiness = RecentReadiness(script_directory(), max_age=0)  # type: ignore[attr-defined]
    monkeypatch.setattr(get_settings(), "core_database_url", "postgresql://app:pw@127.0.0.1:1/app")
    json_client.get("/ready")
    assert [(line["route"], line["status"]) for line in json_client.request_lines()] == [("/ready", 503)]


def test_text_lines_carry_the_same_fields() -> None:
    record = logging.LogRecord("src.requests", logging.INFO, __file__, 1, "GET %s %d", ("/health", 200), None)
    record.fields = {"request_id": "r1", "status": 200, "user_id": None}

    text = TextFormatter().format(record)
    entry = json.loads(JsonFormatter().format(record))

    assert text.endswith("INFO    src.requests: GET /health 200 request_id=r1 status=200")
    assert entry["message"] == "GET /health 200"
    assert (entry["request_id"], entry["status"], entry["user_id"]) == ("r1", 200, None)


def test_the_log_format_follows_the_environment_unless_set() -> None:
    def log_format(**values: object) -> str:
        return type(get_settings()).model_validate(values).effective_log_format

    production = {
        "environment": "production",
        "secret_key": "x" * 40,
        "audit_signing_key": "y" * 40,
        "allowed_hosts": ["api.example.com"],
        "smtp_host": "smtp.example.com",
    } | {database.url_setting: f"postgresql://app@db/app_{name}" for name, database in DATABASES.items()}
    assert log_format(environment="local") == "text"
    assert log_format(**production) == "json"
    assert log_format(**production, log_format="text") == "text"
