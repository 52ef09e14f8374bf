"""GET /metrics: what a Prometheus scrape sees after known traffic, in one process and across two workers."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, insert, text

from src.core.config import PROJECT_ROOT, get_settings
from src.core.metrics import forget_dead_processes
from src.core.schema_versions import script_directory
from src.core.timestamps import utcnow
from src.main import create_app
from src.services.audit_erasure import OUTBOX
from src.services.readiness import RecentReadiness
from tests.api.conftest import PASSWORD
from tests.conftest import DatabaseUrls, free_port, url_variables

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text_format: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text_format)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def sign_up(client: TestClient | httpx.Client, name: str) -> None:
    user = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, "first_name": "A", "last_name": "B"}
    assert client.post("/api/v1/users", json=user).status_code == 201


def test_a_scrape_counts_requests_by_route_and_reads_the_databases(migrated_databases: DatabaseUrls) -> None:
    with TestClient(create_app()) as client:
        before = scrape(client.get("/metrics").text)
        sign_up(client, "ada")
        for _ in range(3):
            client.get("/api/v1/users/me", headers={"Authorization": "Bearer nonsense"})
        for _ in range(get_settings().login_failures_per_account + 1):
            client.post("/api/v1/auth/token", data={"username": "ada", "password": "wrong password"})
        for method in ("BREW", "WHEN"):
            client.request(method, "/api/v1/users/me")
        response = client.get("/metrics")
    after = scrape(response.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert response.headers["content-type"].startswith("text/plain")
    assert grew("http_requests_total", method="GET", route="/api/v1/users/me", status="401") == 3
    assert grew("http_requests_total", method="POST", route="/api/v1/users", status="201") == 1
    assert grew("http_request_duration_seconds_count", method="GET", route="/api/v1/users/me", status="401") == 3
    assert grew("http_requests_total", method="other", route="/api/v1/users/me", status="405") == 2
    assert grew("login_throttled_attempts_total", limit="account") == 1
    assert value(after, "http_requests_in_progress") == 1  # the scrape itself
    assert value(after, "db_pool_connections_in_use", database="core") == 0
    assert value(after, "database_up", database="core") == 1
    [schema] = [labels for (name, labels) in after if name == "database_schema_info" and ("database", "core") in labels]
    assert dict(schema)["status"] == "ok" and dict(schema)["revision"] == dict(schema)["head"]
    # The relay is off in tests: the sign-up and the log-ins wait in the outbox.
    assert value(after, "audit_outbox_backlog") == 1 + get_settings().login_failures_per_account + 1
    assert value(after, "audit_relay_lag_seconds") > 0


def test_the_live_gauges_of_a_dead_worker_stop_counting(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")

    forget_dead_processes(str(tmp_path))

    assert sorted(path.name for path in tmp_path.iterdir()) == [f"gauge_livesum_{os.getpid()}.db"]


def test_metrics_can_be_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "metrics_enabled", False)

    assert TestClient(create_app()).get("/metrics").status_code == 404


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_two_workers_deliver_every_event_once_and_report_together(migrated_databases: DatabaseUrls) -> None:
    events = 600
    core = create_engine(migrated_databases["core"])
    with core.begin() as connection:
        rows = [
            {"id": uuid.uuid4(), "occurred_at": utcnow(), "action": "workspace.updated", "outcome": "success"}
            | {"actor_type": "user", "context": {}, "details": {}}
            for _ in range(events)
        ]
        connection.execute(insert(OUTBOX), rows)
    port = free_port()
    env = os.environ | {
        "WEB_CONCURRENCY": "2",
        "AUDIT_RELAY_ENABLED": "true",
        "AUDIT_RELAY_INTERVAL_SECONDS": "0.2",
        "AUDIT_RELAY_BATCH_SIZE": "50",
        **url_variables(migrated_databases),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "src.serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    metrics = scrape(client.get("/metrics").text)
                    if value(metrics, "audit_relay_delivered_events_total") >= events:
                        break
                except httpx.TransportError:
                    assert server.poll() is None, "make serve exited"
                assert time.monotonic() < deadline, "the relay did not deliver every event in time"
                time.sleep(0.2)
            # A new connection for each request, so that both workers answer some of the probes and the scrapes.
            for _ in range(20):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
            scrapes = [scrape(httpx.get(f"http://127.0.0.1:{port}/metrics").text) for _ in range(4)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    audit = create_engine(migrated_databases["audit"])
    with audit.connect() as connection:
        delivered, distinct = connection.execute(text("SELECT count(*), count(DISTINCT id) FROM audit_events")).one()
    with core.connect() as connection:
        left = connection.execute(text("SELECT count(*) FROM audit_outbox")).scalar_one()
    core.dispose()
    audit.dispose()

    assert (delivered, distinct, left) == (events, events, 0)
    for metrics in scrapes:  # whichever worker answered, the counts are the sum of both
        assert value(metrics, "http_requests_total", method="GET", route="/health", status="200") == 20
        assert value(metrics, "audit_relay_delivered_events_total") == events
        assert value(metrics, "audit_outbox_backlog") == 0


def test_metrics_can_ask_for_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "metrics_token", "s" * 40)
    monkeypatch.setattr(get_settings(), "core_database_url", "postgresql://app:pw@127.0.0.1:1/app")
    client = TestClient(create_app())
    client.app.state.readiness = RecentReadiness(script_directory(), max_age=0)  # type: ignore[attr-defined]

    refused = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {'s' * 40}"})

    assert (refused.status_code, refused.json()["error"]) == (401, "not_authenticated")
    assert scraped.status_code == 200 and "http_requests_total" in scraped.text
