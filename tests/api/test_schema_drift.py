"""Code deployed before its migrations ran: what the models ask for is missing, and the client is told to retry.

The schema changes run inside the test's rolled-back transaction (DDL is transactional on both dialects),
so they are gone after the test.
"""

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text
from sqlalchemy.exc import ProgrammingError

from src.main import create_app
from tests.api.conftest import PASSWORD, MakeUser, auth

SCHEMA_BEHIND = {
    "error": "schema_behind",
    "detail": "the database schema is older than this version of the service;"
    " try again once the deploy's migrations have run",
}


def test_a_request_for_a_column_the_database_lacks_is_503_schema_behind(
    client: TestClient, connection: Connection, make_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    headers = auth(make_user())
    connection.execute(text("ALTER TABLE users DROP COLUMN full_name"))

    with caplog.at_level(logging.WARNING, logger="src.api.error_handling"):
        response = client.get("/api/v1/users/me", headers=headers)

    assert response.status_code == 503
    assert response.json() == SCHEMA_BEHIND
    # The server log names the driver's reason; the client does not see it.
    assert any("schema behind" in message and "full_name" in message for message in caplog.messages)
    assert "full_name" not in response.text


def test_a_request_for_a_table_the_database_lacks_is_503_schema_behind(
    client: TestClient, connection: Connection
) -> None:
    connection.execute(text("DROP TABLE audit_outbox"))
    body = {
        "email": "ada@example.com",
        "username": "ada",
        "password": PASSWORD,
        "first_name": "Ada",
        "last_name": "Lovelace",
    }

    response = client.post("/api/v1/users", json=body)

    assert response.status_code == 503
    assert response.json() == SCHEMA_BEHIND


def test_any_other_programming_error_is_a_logged_500_without_details(caplog: pytest.LogCaptureFixture) -> None:
    app: FastAPI = create_app()

    @app.get("/bad-sql")
    def bad_sql() -> None:
        raise ProgrammingError("SELEC 1", {}, Exception("syntax error at or near SELEC"))

    with caplog.at_level(logging.ERROR, logger="src.api.error_handling"):
        response = TestClient(app).get("/bad-sql")

    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "internal server error"}
    assert any(record.exc_info for record in caplog.records if record.name == "src.api.error_handling")
