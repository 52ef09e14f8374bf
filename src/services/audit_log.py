"""Recording audit events with the change they describe, and reading them back: the events, and the activity.

Events are written to the core outbox in the caller's session, so the change and
its event commit together or not at all; src/services/audit_relay.py moves them
to the audit database. Reads go to the audit database.
"""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import Session, col, select

from src.api.v1.models.audit_daily_count import AuditDailyCount
from src.api.v1.models.audit_event import AuditEvent
from src.api.v1.models.outbox_event import OutboxEvent
from src.core.pagination import Cursor, PageRequest, keyset_statement, split_page
from src.core.request_context import current_request_context
from src.core.timestamps import utcnow


@dataclass(frozen=True)
class Target:
    type: str
    id: uuid.UUID


def record_event(
    session: Session,
    *,
    action: str,
    actor_id: uuid.UUID | None,
    target: Target | None = None,
    workspace_id: uuid.UUID | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    actor_type: str | None = None,
) -> OutboxEvent:
    """Add an event to the outbox in ``session``; it is delivered only if the session commits. The actor is a user,
    anonymous, or (``actor_type="system"``) the service's own jobs."""
    request = current_request_context()
    event = OutboxEvent(
        action=action,
        outcome=outcome,
        actor_type=actor_type or ("user" if actor_id else "anonymous"),
        actor_id=actor_id,
        workspace_id=workspace_id,
        target_type=target.type if target else None,
        target_id=target.id if target else None,
        context=request.as_dict() if request else {},
        details=details or {},
    )
    session.add(event)
    return event


def record_read(
    session: Session, *, actor_id: uuid.UUID, workspace_id: uuid.UUID | None, asked: str, actor_type: str = "user"
) -> None:
    """Who read an audit trail (a user, or an API key), and what they asked for (the path and query, cut at 2,000
    characters)."""
    details = {"asked": asked[:2000]}
    target = Target("user", actor_id) if workspace_id is None else Target("workspace", workspace_id)
    record_event(
        session,
        action="audit.read",
        actor_id=actor_id,
        actor_type=actor_type,
        target=target,
        workspace_id=workspace_id,
        details=details,
    )


@dataclass(frozen=True)
class EventFilter:
    action: str | None = None
    action_prefix: str | None = None
    actor_id: uuid.UUID | None = None
    target_id: uuid.UUID | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def in_workspace(workspace_id: uuid.UUID) -> ColumnElement[bool]:
    """A workspace's events."""
    return col(AuditEvent.workspace_id) == workspace_id


def about_user(user_id: uuid.UUID) -> ColumnElement[bool]:
    """The events of no workspace that concern a user: their sign-up, log-ins, failed ones included, and changes
    to their account."""
    return and_(
        col(AuditEvent.workspace_id).is_(None),
        col(AuditEvent.target_type) == "user",
        col(AuditEvent.target_id) == user_id,
    )


def done_by_or_to(user_id: uuid.UUID) -> ColumnElement[bool]:
    """Every event a user did, in any workspace, or that was done to their account: what erasure empties."""
    return or_(col(AuditEvent.actor_id) == user_id, col(AuditEvent.target_id) == user_id)


def list_events(
    session: Session, *, scope: ColumnElement[bool], filters: EventFilter, page: PageRequest
) -> tuple[list[AuditEvent], str | None]:
    """The events in ``scope`` (``in_workspace``, ``about_user``), newest first, and the cursor of the next page."""
    statement = select(AuditEvent).where(scope)
    if filters.action:
        statement = statement.where(AuditEvent.action == filters.action)
    if filters.action_prefix:
        statement = statement.where(col(AuditEvent.action).startswith(filters.action_prefix, autoescape=True))
    if filters.actor_id:
        statement = statement.where(AuditEvent.actor_id == filters.actor_id)
    if filters.target_id:
        statement = statement.where(AuditEvent.target_id == filters.target_id)
    if filters.outcome:
        statement = statement.where(AuditEvent.outcome == filters.outcome)
    if filters.since:
        statement = statement.where(AuditEvent.occurred_at >= filters.since)
    if filters.until:
        statement = statement.where(AuditEvent.occurred_at < filters.until)
    statement = keyset_statement(
        statement, page, created_at=col(AuditEvent.occurred_at), id_=col(AuditEvent.id), newest_first=True
    )
    rows = session.exec(statement).all()
    return split_page(rows, page, lambda event: Cursor(event.occurred_at, event.id))


def activity(session: Session, *, workspace_id: uuid.UUID, days: int) -> tuple[date, list[AuditDailyCount]]:
    """Events per UTC day and action over the last ``days`` days (today included), oldest day first, read from the
    daily counts: the cost follows the days, not the events they hold."""
    first_day = utcnow().date() - timedelta(days=days - 1)
    statement = (
        select(AuditDailyCount)
        .where(AuditDailyCount.workspace_id == workspace_id, col(AuditDailyCount.day) >= first_day)
        .order_by(col(AuditDailyCount.day), col(AuditDailyCount.action))
    )
    return first_day, list(session.exec(statement))
