"""Whether each database answers and stands at the migrations' head."""

from typing import Literal

from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError

from src.core.databases import DATABASES, get_engine
from src.core.schema_versions import current_revision

DatabaseStatus = Literal["ok", "unreachable", "not_migrated", "behind"]


class DatabaseReadiness(BaseModel):
    status: DatabaseStatus
    revision: str | None
    head: str | None
    detail: str | None = None


def check_databases(head: str | None) -> dict[str, DatabaseReadiness]:
    """One entry per named database; ``ok`` only when reachable and at ``head``."""
    report = {}
    for name in DATABASES:
        try:
            with get_engine(name).connect() as connection:
                revision = current_revision(connection)
        except DBAPIError as error:
            detail = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            report[name] = DatabaseReadiness(status="unreachable", revision=None, head=head, detail=detail)
            continue
        status: DatabaseStatus = "ok" if revision == head else "not_migrated" if revision is None else "behind"
        report[name] = DatabaseReadiness(status=status, revision=revision, head=head)
    return report
