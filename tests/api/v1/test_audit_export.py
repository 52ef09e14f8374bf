"""GET /workspaces/{id}/audit-events/export: the whole trail as NDJSON or CSV, streamed from a real server, in the
memory of one batch whatever its size."""

import csv
import io
import json
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import uvicorn
from alembic import command
from sqlalchemy import insert
from sqlmodel import Session

from src.core.engines import get_engine
from src.core.schema_versions import alembic_config
from src.core.timestamps import utcnow
from src.main import create_app
from src.services import workspaces
from src.services.audit_chain import AUDIT_EVENTS
from tests.api.conftest import auth
from tests.conftest import DatabaseUrls, server_in_thread
from tests.factories import register


@dataclass(frozen=True)
class Trail:
    client: httpx.Client
    url: str
    owner_id: uuid.UUID
    owner_username: str
    workspace_id: uuid.UUID


@pytest.fixture
def trail(configured_databases: DatabaseUrls) -> Iterator[Trail]:
    command.upgrade(alembic_config(), "head")
    with Session(get_engine("core")) as session:
        owner = register(session, "exporter")
        workspace = workspaces.create_workspace(session, owner_id=owner.id, name="Exported").workspace
        session.commit()
        headers, owner_id, workspace_id = auth(owner), owner.id, workspace.id
    url = f"/api/v1/workspaces/{workspace_id}/audit-events/export"
    with (
        server_in_thread(uvicorn.Config(create_app(), log_level="warning")) as (host, port),
        httpx.Client(base_url=f"http://{host}:{port}", headers=headers, timeout=60) as client,
    ):
        yield Trail(client, url, owner_id, "exporter", workspace_id)


def add_events(trail: Trail, count: int, **columns: object) -> None:
    start = utcnow() - timedelta(days=1)
    rows = [
        {
            "id": uuid.uuid4(),
            "occurred_at": start + timedelta(milliseconds=index),
            "action": "workspace.renamed",
            "outcome": "success",
            "actor_type": "user",
            "actor_id": trail.owner_id,
            "workspace_id": trail.workspace_id,
            "context": {"ip": "10.0.0.1", "user_agent": "curl/8"},
            "details": {"n": index},
        }
        | columns
        for index in range(count)
    ]
    with get_engine("audit").begin() as audit:
        audit.execute(insert(AUDIT_EVENTS), rows)


def test_the_export_is_every_event_the_list_shows_with_its_filters(trail: Trail) -> None:
    add_events(trail, 150)
    add_events(trail, 3, action="workspace.member_added")
    listed, cursor = [], None
    while True:
        page = trail.client.get(trail.url.removesuffix("/export"), params={"limit": 100, "cursor": cursor}).json()
        listed += page["items"]
        if not (cursor := page["next_cursor"]):
            break

    response = trail.client.get(trail.url)
    only_added = trail.client.get(trail.url, params={"action": "workspace.member_added"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"] == f'attachment; filename="audit-events-{trail.workspace_id}.ndjson"'
    assert [json.loads(line) for line in response.text.splitlines()] == listed
    assert len(listed) == 153
    assert listed[-1]["actor"]["username"] == trail.owner_username
    assert [json.loads(line)["action"] for line in only_added.text.splitlines()] == ["workspace.member_added"] * 3


def test_the_csv_export_has_a_header_json_columns_and_no_formulas(trail: Trail) -> None:
    add_events(trail, 1, context={"ip": "10.0.0.1", "user_agent": '=HYPERLINK("http://evil")'})

    response = trail.client.get(trail.url, params={"format": "csv"})

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    header, row = list(csv.reader(io.StringIO(response.text)))
    assert header[:4] == ["id", "occurred_at", "action", "outcome"] and header[-2:] == ["context", "metadata"]
    record = dict(zip(header, row, strict=True))
    assert (record["action"], record["actor_username"], json.loads(record["metadata"])) == (
        "workspace.renamed",
        trail.owner_username,
        {"n": 0},
    )
    assert record["context"].startswith("{")  # JSON text starting with "{" is no formula: left as it is
    assert "=HYPERLINK" in record["context"]


def test_a_cell_that_would_be_a_formula_is_quoted() -> None:
    from src.api.v1.audit_export import spreadsheet_safe

    assert [spreadsheet_safe(text) for text in ("=1+1", "+1", "-1", "@SUM(A1)", "curl/8")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "curl/8",
    ]


def export_peak(trail: Trail) -> tuple[int, int]:
    """Lines exported, and the most memory this process (server and client) held at once meanwhile."""
    lines = 0
    tracemalloc.start()
    try:
        with trail.client.stream("GET", trail.url) as response:
            for _ in response.iter_lines():
                lines += 1
        return lines, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_export_streams_in_the_memory_of_a_batch(trail: Trail) -> None:
    add_events(trail, 2_000)
    lines, small_peak = export_peak(trail)
    add_events(trail, 8_000)
    more_lines, large_peak = export_peak(trail)

    assert (lines, more_lines) == (2_000, 10_000)
    assert large_peak < 1.5 * small_peak, f"{small_peak} bytes at most for 2,000 events, {large_peak} for 10,000"


def test_an_export_asks_for_the_audit_reader_role(trail: Trail) -> None:
    response = trail.client.get(trail.url, headers={"Authorization": "Bearer nope"})

    assert response.status_code == 401
