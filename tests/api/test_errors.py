"""Every error a client can get has one JSON shape, with a stable code and no stack trace."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from src.main import create_app


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
