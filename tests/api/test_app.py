"""The application as it serves: how its routes are held, and what its lifespan does to the collector."""

import gc
import re

import anyio.to_thread
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

from src.api.v1 import API_PREFIX
from src.core.config import get_settings
from src.core.databases import DATABASES
from src.core.sessions import SPARE_WORKER_THREADS, RequestSessions
from src.main import create_app
from tests.conftest import UNREACHABLE_URL


def test_every_route_is_one_of_the_apps_own() -> None:
    # An included router is matched route by route through each of its levels on every request.
    routes = create_app().router.routes

    assert all(type(route) in (APIRoute, Route) for route in routes)
    assert f"{API_PREFIX}/users/me" in {route.path for route in routes if isinstance(route, APIRoute)}


def test_what_startup_made_is_left_out_of_collections_while_the_app_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "core_database_url", UNREACHABLE_URL)
    monkeypatch.setattr(get_settings(), "audit_relay_enabled", False)

    with TestClient(create_app()) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() > 0

    assert gc.get_freeze_count() == 0


def test_every_request_a_database_admits_has_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Admitted requests never queue for a thread: the threads cover every database's pool together, plus spares.
    monkeypatch.setattr(get_settings(), "db_pool_size", 30)
    monkeypatch.setattr(get_settings(), "audit_relay_enabled", False)
    for name in DATABASES:
        monkeypatch.setattr(get_settings(), DATABASES[name].url_setting, f"{UNREACHABLE_URL}_{name}")

    with TestClient(create_app()) as client:
        sessions: dict[str, RequestSessions] = client.app.state.sessions  # type: ignore[attr-defined]
        threads = client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)  # type: ignore[union-attr]

    assert {name: admitted.capacity for name, admitted in sessions.items()} == dict.fromkeys(DATABASES, 30)
    assert threads == 30 * len(DATABASES) + SPARE_WORKER_THREADS


@pytest.mark.parametrize("served", [True, False])
def test_the_interactive_docs_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, served: bool) -> None:
    monkeypatch.setattr(get_settings(), "docs_enabled", served)
    client = TestClient(create_app())

    paths = ("/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/openapi.json")
    statuses = [client.get(path).status_code for path in paths]

    assert statuses == [200 if served else 404] * len(paths)
    if served:
        page = client.get("/docs").text
        # Everything the page loads comes from the app: no script or style from elsewhere.
        loaded = re.findall(r"(?:src|href)=['\"]([^'\"]+)", page)
        assert sorted(loaded) == ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "data:,"]
        assert "http" not in page
