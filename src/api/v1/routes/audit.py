"""Audit trails read from the audit database: a workspace's and its activity (admins and owners), and the caller's
own events of no workspace."""

import re
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BeforeValidator
from sqlalchemy import ColumnElement
from sqlmodel import Session

from src.api.contract import tagged_router
from src.api.dependencies import (
    AuditSessionDep,
    PageParams,
    ValidToken,
    allow_audit_read,
    allow_own_audit_read,
)
from src.api.error_handling import error_responses
from src.api.v1 import API_PREFIX, audit_export
from src.api.v1.schemas.audit import ActivityCountPublic, ActivityPublic, AuditEventPage
from src.api.v1.schemas.fields import SearchText
from src.core.errors import Forbidden
from src.core.pagination import PageRequest
from src.services import audit_log
from src.services.workspaces import WorkspaceNotFound

router = tagged_router("audit", API_PREFIX)


# RFC 3339's date-time, its zone optional: pydantic alone would also take a number of seconds since 1970.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def date_time(value: str) -> str:
    if not _DATE_TIME.fullmatch(value):
        raise ValueError("give a date and time as in 2026-01-31T09:30:00Z")
    return value


def as_utc(moment: datetime) -> datetime:
    """A timestamp without a zone is taken as UTC; one whose UTC time has no year 1 to 9999 is refused."""
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time in UTC falls outside the years 1 to 9999") from None


UtcTime = Annotated[datetime, BeforeValidator(date_time), AfterValidator(as_utc)]


async def event_filter(
    action: Annotated[SearchText | None, Query(max_length=64, description="e.g. workspace.member_added")] = None,
    action_prefix: Annotated[
        SearchText | None, Query(max_length=64, description="actions starting so, e.g. workspace.member")
    ] = None,
    actor_id: Annotated[uuid.UUID | None, Query(description="who did it")] = None,
    target_id: Annotated[uuid.UUID | None, Query(description="what it was done to: a user, a workspace")] = None,
    outcome: Annotated[Literal["success", "failure"] | None, Query()] = None,
    since: Annotated[UtcTime | None, Query(description="from this time on (UTC when no zone is given)")] = None,
    until: Annotated[UtcTime | None, Query(description="before this time (UTC when no zone is given)")] = None,
) -> audit_log.EventFilter:
    return audit_log.EventFilter(
        action=action,
        action_prefix=action_prefix,
        actor_id=actor_id,
        target_id=target_id,
        outcome=outcome,
        since=since,
        until=until,
    )


EventFilterParams = Annotated[audit_log.EventFilter, Depends(event_filter)]


async def event_page(
    request: Request,
    session: Session,
    scope: ColumnElement[bool],
    filters: audit_log.EventFilter,
    page: PageRequest,
    *,
    person: uuid.UUID | None = None,
) -> AuditEventPage:
    events, next_cursor = await audit_export.read_events(request, session, scope, filters, page, person=person)
    return AuditEventPage(items=events, next_cursor=next_cursor)


@router.get("/workspaces/{workspace_id}/audit-events", responses=error_responses(WorkspaceNotFound, Forbidden))
async def list_audit_events(
    request: Request,
    workspace_id: uuid.UUID,
    token: ValidToken,
    page: PageParams,
    audit_session: AuditSessionDep,
    filters: EventFilterParams,
) -> AuditEventPage:
    """The workspace's audit events, newest first, each actor with their current username."""
    await allow_audit_read(request, token, workspace_id)
    return await event_page(request, audit_session, audit_log.in_workspace(workspace_id), filters, page)


@router.get(
    "/workspaces/{workspace_id}/audit-events/export",
    responses=error_responses(WorkspaceNotFound, Forbidden)
    | {200: {"content": {media_type: {} for media_type in audit_export.MEDIA_TYPES.values()}}},
    response_class=StreamingResponse,
)
async def export_audit_events(
    request: Request,
    workspace_id: uuid.UUID,
    token: ValidToken,
    filters: EventFilterParams,
    format: Annotated[audit_export.ExportFormat, Query(description="one JSON event per line, or CSV")] = "ndjson",
) -> StreamingResponse:
    """All of the workspace's audit events that match the filters, newest first, streamed as one download: each
    line is an event as the list shows it (NDJSON), or a CSV row (context and metadata as JSON)."""
    await allow_audit_read(request, token, workspace_id)
    body = await audit_export.export(request, audit_log.in_workspace(workspace_id), filters, format)
    filename = f"audit-events-{workspace_id}.{format}"
    return StreamingResponse(
        body,
        media_type=audit_export.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/users/me/audit-events")
async def list_my_audit_events(
    request: Request,
    token: ValidToken,
    page: PageParams,
    audit_session: AuditSessionDep,
    filters: EventFilterParams,
) -> AuditEventPage:
    """The caller's own events of no workspace, newest first: sign-up, log-ins (failed and throttled ones too),
    password and profile changes."""
    user_id = await allow_own_audit_read(request, token)
    return await event_page(request, audit_session, audit_log.about_user(user_id), filters, page, person=user_id)


@router.get("/workspaces/{workspace_id}/activity", responses=error_responses(WorkspaceNotFound, Forbidden))
async def read_activity(
    request: Request,
    workspace_id: uuid.UUID,
    token: ValidToken,
    audit_session: AuditSessionDep,
    days: Annotated[int, Query(ge=1, le=36500, description="how many UTC days back, today included")] = 30,
) -> ActivityPublic:
    """How many events of each action the workspace had per UTC day."""
    await allow_audit_read(request, token, workspace_id)
    count = partial(audit_log.activity, audit_session, workspace_id=workspace_id, days=days)
    since, counts = await anyio.to_thread.run_sync(count)
    return ActivityPublic(
        since=since,
        days=days,
        counts=[ActivityCountPublic(day=count.day, action=count.action, count=count.count) for count in counts],
    )
