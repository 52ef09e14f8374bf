"""Whether each database answers and its schema matches this code's migrations, and how far audit delivery lags."""

import logging
import threading
import time
from typing import Literal

from alembic.script import ScriptDirectory
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError

from src.core.databases import DATABASES, database_error_reason
from src.core.engines import READS_ONLY, get_unpooled_engine
from src.core.schema_versions import SchemaState, read_schema_state
from src.services.audit_relay import outbox_backlog

logger = logging.getLogger(__name__)

DatabaseStatus = Literal[
    "ok", "unreachable", "not_migrated", "behind", "post_deploy_pending", "unknown_revision", "unmerged_heads"
]


class DatabaseReadiness(BaseModel):
    status: DatabaseStatus
    revisions: list[str] | None  # recorded in the database: [] when never migrated, None when unreachable
    heads: list[str]  # of this code's migrations: several until a merge revision joins them
    detail: str | None = None


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "databases": {
                        "core": {"status": "ok", "revisions": ["f9aee0f7fc8f"], "heads": ["f9aee0f7fc8f"]},
                        "audit": {"status": "ok", "revisions": ["ef07bb56aa87"], "heads": ["ef07bb56aa87"]},
                    },
                    "audit_backlog": 0,
                }
            ]
        }
    )

    status: Literal["ready", "degraded", "not_ready"]
    databases: dict[str, DatabaseReadiness]
    audit_backlog: int | None  # events recorded in core, not yet delivered to audit; None when core is not ok


def unknown_revision_detail(unknown: tuple[str, ...]) -> str:
    subject = f"revision {unknown[0]} is" if len(unknown) == 1 else f"revisions {', '.join(unknown)} are"
    return (
        f"{subject} not in this code's migrations: the database was migrated by newer code,"
        " or a revision file is missing"
    )


def unmerged_heads_detail(heads: tuple[str, ...]) -> str:
    return (
        f"the migrations have several heads ({', '.join(heads)}):"
        " merge them with make migrate-merge, then make migrate-upgrade"
    )


def database_readiness(state: SchemaState) -> DatabaseReadiness:
    """The report for a database that answered, from its schema state."""
    revisions, heads = list(state.current), list(state.heads)
    if state.status == "unknown_revision":
        detail = unknown_revision_detail(state.unknown)
        return DatabaseReadiness(status="unknown_revision", revisions=revisions, heads=heads, detail=detail)
    if len(state.heads) > 1:
        # No database can be at "the" head, and upgrading to head fails, until the branches are merged.
        detail = unmerged_heads_detail(state.heads)
        return DatabaseReadiness(status="unmerged_heads", revisions=revisions, heads=heads, detail=detail)
    status: DatabaseStatus = "ok" if state.status == "at_head" else state.status
    return DatabaseReadiness(status=status, revisions=revisions, heads=heads)


def check_database(name: str, scripts: ScriptDirectory) -> DatabaseReadiness:
    try:
        # Reading only: on SQLite it need not wait for a writer.
        with get_unpooled_engine(name).execution_options(**{READS_ONLY: True}).connect() as connection:
            state = read_schema_state(connection, scripts)
    except DBAPIError as error:
        # Anyone may ask /ready: the driver's reason names hosts and ports, so it goes to the log only.
        logger.warning("readiness: %s does not answer: %s", name, database_error_reason(error))
        heads = sorted(scripts.get_heads())
        return DatabaseReadiness(status="unreachable", revisions=None, heads=heads, detail="does not answer")
    return database_readiness(state)


# A schema ahead of the code serves it: during a rolling deploy the new revisions are applied first, and they are
# written so that the previous code keeps working (make migrate-lint); taking old instances out would stop the service.
# Post-deploy revisions wait for the new code to serve everywhere: it must be ready without them.
SERVING = {"ok", "post_deploy_pending", "unknown_revision"}


class RecentReadiness:
    """The last readiness check, reused for ``max_age`` seconds: however many probes and scrapes arrive, each
    database is checked once per interval. While one caller checks, the others get the previous answer at once
    (they wait only for the very first): a database slow to answer holds up one thread, not every probe's."""

    def __init__(self, scripts: ScriptDirectory, *, max_age: float) -> None:
        self._scripts = scripts
        self._max_age = max_age
        self._lock = threading.Lock()
        self._checked: tuple[float, Readiness] | None = None

    def get(self) -> Readiness:
        if self._lock.acquire(blocking=self._checked is None):
            try:
                if self._checked is None or time.monotonic() - self._checked[0] >= self._max_age:
                    self._checked = (time.monotonic(), check_readiness(self._scripts))
            finally:
                self._lock.release()
        assert self._checked is not None
        return self._checked[1]


def check_readiness(scripts: ScriptDirectory) -> Readiness:
    """Ready when every database is at this code's one head (post-deploy revisions aside), or ahead of it;
    degraded (still serving) when only optional ones are unreachable or not at head."""
    databases = {name: check_database(name, scripts) for name in DATABASES}
    problems = {name for name, database in databases.items() if database.status not in SERVING}
    tolerated = {name for name in problems if not DATABASES[name].required}
    status = "ready" if not problems else "degraded" if problems == tolerated else "not_ready"
    backlog = outbox_backlog() if databases["core"].status in SERVING else None
    return Readiness(status=status, databases=databases, audit_backlog=backlog)
