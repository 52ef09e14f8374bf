"""Liveness and readiness, against real databases."""

import pytest
from alembic import command
from fastapi.testclient import TestClient

from src.core.config import settings
from src.core.databases import DATABASES
from src.core.schema_versions import alembic_config, script_directory
from src.main import create_app
from tests.conftest import UNREACHABLE_URL
from tests.factories import record

HEAD = script_directory().get_current_head()


def get(path: str) -> tuple[int, dict[str, object]]:
    with TestClient(create_app()) as client:
        response = client.get(path)
    return response.status_code, response.json()


def test_health_answers_without_touching_the_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "core_database_url", UNREACHABLE_URL)

    assert get("/health") == (200, {"status": "ok"})


def test_ready_when_every_database_is_at_head(migrated_databases) -> None:
    status, body = get("/ready")

    assert status == 200
    assert body == {
        "status": "ready",
        "databases": {name: {"status": "ok", "revision": HEAD, "head": HEAD, "detail": None} for name in DATABASES},
        "audit_backlog": 0,
    }


def test_not_ready_while_a_database_is_unmigrated(configured_databases) -> None:
    command.upgrade(alembic_config(db="core"), "head")

    status, body = get("/ready")

    assert status == 503
    assert body["status"] == "not_ready"
    assert body["databases"]["core"]["status"] == "ok"  # type: ignore[index]
    assert body["databases"]["audit"] == {"status": "not_migrated", "revision": None, "head": HEAD, "detail": None}  # type: ignore[index]


def test_not_ready_when_core_is_unreachable(migrated_databases, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "core_database_url", UNREACHABLE_URL)

    status, body = get("/ready")

    assert status == 503
    assert body["status"] == "not_ready"
    assert body["databases"]["core"]["status"] == "unreachable"  # type: ignore[index]
    assert body["audit_backlog"] is None


def test_degraded_with_backlog_while_audit_is_unreachable(migrated_databases, monkeypatch: pytest.MonkeyPatch) -> None:
    record(3)
    monkeypatch.setattr(settings, "audit_database_url", UNREACHABLE_URL)

    status, body = get("/ready")

    assert status == 200
    assert body["status"] == "degraded"
    assert body["audit_backlog"] == 3
    audit = body["databases"]["audit"]  # type: ignore[index]
    assert audit["status"] == "unreachable"
    assert "127.0.0.1" in audit["detail"] and "secret" not in audit["detail"]
