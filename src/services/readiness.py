"""Whether each database answers and stands at the migrations' head, and how far audit delivery lags."""

from typing import Literal

from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError

from src.core.databases import DATABASES, database_error_reason, get_unpooled_engine
from src.core.schema_versions import current_revision
from src.services.audit_relay import outbox_backlog

DatabaseStatus = Literal["ok", "unreachable", "not_migrated", "behind"]


class DatabaseReadiness(BaseModel):
    status: DatabaseStatus
    revision: str | None
    head: str | None
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not_ready"]
    databases: dict[str, DatabaseReadiness]
    audit_backlog: int | None  # events recorded in core, not yet delivered to audit; None when core is down


def check_database(name: str, head: str | None) -> DatabaseReadiness:
    try:
        with get_unpooled_engine(name).connect() as connection:
            revision = current_revision(connection)
    except DBAPIError as error:
        return DatabaseReadiness(status="unreachable", revision=None, head=head, detail=database_error_reason(error))
    status: DatabaseStatus = "ok" if revision == head else "not_migrated" if revision is None else "behind"
    return DatabaseReadiness(status=status, revision=revision, head=head)


def check_readiness(head: str | None) -> Readiness:
    """Ready when every database is at head; degraded (still serving) when only an optional one is unreachable."""
    databases = {name: check_database(name, head) for name in DATABASES}
    problems = {name for name, database in databases.items() if database.status != "ok"}
    tolerated = {name for name in problems if databases[name].status == "unreachable" and not DATABASES[name].required}
    status = "ready" if not problems else "degraded" if problems == tolerated else "not_ready"
    backlog = outbox_backlog() if databases["core"].status == "ok" else None
    return Readiness(status=status, databases=databases, audit_backlog=backlog)
