"""A workspace's audit events as one streamed download, NDJSON or CSV, read a batch at a time.

Each batch is a keyset page read in a short unit of work of its own: the export holds no connection or
admission slot while the client reads, and its memory stays that of one batch whatever the trail's size.
"""

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from functools import partial
from typing import Literal

import anyio.to_thread
from fastapi import Request
from sqlalchemy import ColumnElement
from sqlmodel import Session

from src.api.dependencies import current_usernames, request_sessions
from src.api.v1.schemas.audit import AuditEventView, public_event
from src.core.pagination import Cursor, PageRequest
from src.services import audit_log

BATCH = 1000
ExportFormat = Literal["ndjson", "csv"]
MEDIA_TYPES: dict[str, str] = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_COLUMNS = [
    "id", "occurred_at", "action", "outcome", "actor_type", "actor_id", "actor_username", "workspace_id",
    "target_type", "target_id", "context", "metadata",
]  # fmt: skip


async def read_events(
    request: Request,
    session: Session,
    scope: ColumnElement[bool],
    filters: audit_log.EventFilter,
    page: PageRequest,
    *,
    person: uuid.UUID | None = None,
) -> tuple[list[AuditEventView], str | None]:
    """A page of the events in ``scope`` as the API shows them, actors with their current usernames, and the
    next page's cursor. For one ``person``'s own trail, where another user's request (an admin's, say) made the
    event, its address and user agent are not shown: they are that user's."""
    read = partial(audit_log.list_events, session, scope=scope, filters=filters, page=page)
    events, next_cursor = await anyio.to_thread.run_sync(read)
    names = await current_usernames(request, {event.actor_id for event in events if event.actor_id})
    shown = [
        public_event(event, names, with_context=person is None or event.actor_id in (None, person)) for event in events
    ]
    return shown, next_cursor


async def batches(
    request: Request,
    scope: ColumnElement[bool],
    filters: audit_log.EventFilter,
    *,
    person: uuid.UUID | None = None,
) -> AsyncIterator[list[AuditEventView]]:
    """The events in ``scope``, newest first, a batch at a time (``person``: as ``read_events``)."""
    cursor: Cursor | None = None
    while True:
        page = PageRequest(limit=BATCH, cursor=cursor)
        async with request_sessions(request, "audit").unit_of_work(reads_only=True) as session:
            # Made public inside the unit of work: its commit expires what it read.
            events, next_cursor = await read_events(request, session, scope, filters, page, person=person)
        yield events
        if next_cursor is None:
            return
        cursor = Cursor.decode(next_cursor)


def ndjson_lines(events: Iterable[AuditEventView]) -> str:
    return "".join(event.model_dump_json() + "\n" for event in events)


def spreadsheet_safe(value: str) -> str:
    # A cell starting so is a formula to a spreadsheet; the user agent, for one, is the caller's to choose.
    return "'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


def csv_rows(events: Iterable[AuditEventView], *, header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    for event in events:
        recorded = event.model_dump(mode="json", include={"context", "metadata"})
        row = [
            event.id, event.occurred_at.isoformat(), event.action, event.outcome, event.actor.type, event.actor.id,
            event.actor.username, event.workspace_id, event.target.type, event.target.id,
            json.dumps(recorded["context"], ensure_ascii=False), json.dumps(recorded["metadata"], ensure_ascii=False),
        ]  # fmt: skip
        writer.writerow([spreadsheet_safe("" if value is None else str(value)) for value in row])
    return out.getvalue()


async def export(
    request: Request, scope: ColumnElement[bool], filters: audit_log.EventFilter, kind: ExportFormat
) -> AsyncIterator[str]:
    """The export's body. The first batch is read before the first byte is sent, so that a database that does not
    answer is a 503 like any other request's, not a cut-off download."""
    pages = batches(request, scope, filters)
    first = await anext(pages)

    async def body() -> AsyncIterator[str]:
        yield csv_rows(first, header=True) if kind == "csv" else ndjson_lines(first)
        async for events in pages:
            yield csv_rows(events, header=False) if kind == "csv" else ndjson_lines(events)

    return body()
