"""Liveness and readiness, against real databases."""

import pytest
from alembic import command
from fastapi.testclient import TestClient

from src.core.config import settings
from src.core.schema_versions import alembic_config, script_directory
from src.main import create_app

HEAD = script_directory().get_current_head()


def get(path: str) -> tuple[int, dict[str, object]]:
    with TestClient(create_app()) as client:
        response = client.get(path)
    return response.status_code, response.json()


def test_health_answers_without_touching_the_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "core_database_url", "postgresql://app:pw@127.0.0.1:1/app")

    assert get("/health") == (200, {"status": "ok"})


def test_ready_when_every_database_is_at_head(configured_databases) -> None:
    command.upgrade(alembic_config(), "head")

    status, body = get("/ready")

    assert status == 200
    assert body == {
        "status": "ready",
        "databases": {
            name: {"status": "ok", "revision": HEAD, "head": HEAD, "detail": None} for name in ("core", "audit")
        },
    }


def test_not_ready_while_a_database_is_unmigrated(configured_databases) -> None:
    command.upgrade(alembic_config(db="core"), "head")

    status, body = get("/ready")

    assert status == 503
    assert body["status"] == "not_ready"
    assert body["databases"]["core"]["status"] == "ok"  # type: ignore[index]
    assert body["databases"]["audit"] == {"status": "not_migrated", "revision": None, "head": HEAD, "detail": None}  # type: ignore[index]


def test_not_ready_when_a_database_is_unreachable(configured_databases, monkeypatch: pytest.MonkeyPatch) -> None:
    command.upgrade(alembic_config(), "head")
    monkeypatch.setattr(settings, "audit_database_url", "postgresql://app:pw@127.0.0.1:1/audit")

    status, body = get("/ready")

    assert status == 503
    audit = body["databases"]["audit"]  # type: ignore[index]
    assert audit["status"] == "unreachable"
    assert "127.0.0.1" in audit["detail"] and "pw" not in audit["detail"]
