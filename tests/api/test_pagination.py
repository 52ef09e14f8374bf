"""Keyset pages (src/core/pagination.py) on the migrated workspaces table: every row once, ties broken by id."""

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlmodel import Session, col, select

from src.api.v1.models.audit_event import AuditEvent
from src.api.v1.models.workspace import Workspace
from src.core.pagination import (
    CURSOR_PARAMETER_PATTERN,
    CURSOR_PATTERN,
    Cursor,
    PageRequest,
    keyset_statement,
    split_page,
)
from tests.api.conftest import MakeUser, auth
from tests.conftest import DatabaseUrls

START = datetime(2026, 1, 1, tzinfo=UTC)


def all_pages(session: Session, *, limit: int, newest_first: bool) -> list[list[uuid.UUID]]:
    pages, cursor = [], None
    while True:
        page = PageRequest(limit=limit, cursor=Cursor.decode(cursor) if cursor else None)
        statement = keyset_statement(
            select(Workspace),
            page,
            created_at=col(Workspace.created_at),
            id_=col(Workspace.id),
            newest_first=newest_first,
        )
        rows, cursor = split_page(session.exec(statement).all(), page, lambda row: Cursor(row.created_at, row.id))
        pages.append([row.id for row in rows])
        if cursor is None:
            return pages


@pytest.fixture
def workspaces(session: Session) -> list[Workspace]:
    """Five workspaces, three of them created in the same microsecond, in (created_at, id) order."""
    moments = [START, START + timedelta(seconds=1), START + timedelta(seconds=1), START + timedelta(seconds=1)]
    rows = [Workspace(name=f"W{number}", created_at=moment) for number, moment in enumerate(moments)]
    rows.append(Workspace(name="W4", created_at=START + timedelta(days=1)))
    session.add_all(rows)
    session.commit()
    return sorted(rows, key=lambda row: (row.created_at, row.id))


@pytest.mark.parametrize("newest_first", [False, True])
def test_pages_cover_every_row_once_in_order(session: Session, workspaces: list[Workspace], newest_first: bool) -> None:
    expected = [row.id for row in workspaces]
    if newest_first:
        expected.reverse()

    pages = all_pages(session, limit=2, newest_first=newest_first)

    assert pages == [expected[0:2], expected[2:4], expected[4:5]]


def test_a_cursor_survives_the_round_trip_and_matches_the_published_pattern() -> None:
    cursor = Cursor(START, uuid.uuid4())

    assert Cursor.decode(cursor.encode()) == cursor
    assert re.fullmatch(CURSOR_PATTERN, cursor.encode())


@pytest.mark.parametrize("token", ["0." + "0" * 32, "9" * 17 + "." + "f" * 32, "63900000000000000." + "a1" * 16])
def test_every_string_of_the_published_pattern_is_a_cursor(token: str) -> None:
    microseconds, id_ = token.split(".")

    assert Cursor.decode(token).encode() == f"{int(microseconds)}.{id_}"


def test_a_cursor_of_the_previous_format_still_reads_during_a_rolling_deploy() -> None:
    previous = "WyIyMDI2LTExLTI2VDEwOjU3OjM2LjkyNjU1MiswMDowMCIsImQ3MWVjODkzLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMCJd"

    assert Cursor.decode(previous) == Cursor(
        datetime(2026, 11, 26, 10, 57, 36, 926552, tzinfo=UTC), uuid.UUID("d71ec893-0000-4000-8000-000000000000")
    )


@pytest.mark.parametrize(
    "token",
    [
        "",
        "%%%",
        "bnVsbA",
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwiMSJd",
        "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzA1OjAwIiwiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwIl0",
    ],
)
def test_a_malformed_cursor_is_a_value_error(token: str) -> None:
    with pytest.raises(ValueError, match="cursor is malformed"):
        Cursor.decode(token)


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_page_deep_in_the_audit_trail_starts_from_the_index(migrated_databases: DatabaseUrls) -> None:
    """The cursor is a row comparison, which the (workspace_id, occurred_at, id) index serves as an index condition,
    however deep the page: spelled with OR, every row before it was read and filtered out."""
    workspace_id = uuid.uuid4()
    page = PageRequest(limit=20, cursor=Cursor(START, uuid.uuid4()))
    statement = keyset_statement(
        select(AuditEvent).where(AuditEvent.workspace_id == workspace_id),
        page,
        created_at=col(AuditEvent.occurred_at),
        id_=col(AuditEvent.id),
        newest_first=True,
    )
    engine = create_engine(migrated_databases["audit"])
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))  # a handful of rows would be scanned whole
        plan = json.dumps(connection.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one())
    engine.dispose()

    assert "ROW(occurred_at, id) < ROW(" in plan and '"Index Cond"' in plan
    assert '"Filter"' not in plan


def test_an_empty_cursor_is_the_first_page_as_the_document_says(client: TestClient, make_user: MakeUser) -> None:
    pattern = re.compile(CURSOR_PARAMETER_PATTERN)

    response = client.get("/api/v1/workspaces", headers=auth(make_user()), params={"cursor": ""})

    assert (response.status_code, response.json()) == (200, {"items": [], "next_cursor": None})
    assert pattern.fullmatch("") and pattern.fullmatch(Cursor(START, uuid.uuid4()).encode())
