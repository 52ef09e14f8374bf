"""What endpoints share: the request's token, its sessions, and the one check of who may act on what.

An endpoint that takes ``ValidToken`` cannot be reached without a valid token. Its work runs in one trip to a
worker thread (``request_sessions(request, "core").run(work)``), where ``get_current_user`` reads the caller and
``get_caller_workspace`` lets only a member of the workspace go on: the caller, the rows and the commit together,
where a dependency for each would take a trip of its own (src/core/sessions.py).
"""

import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from src.api.v1 import API_PREFIX
from src.api.v1.models.user import User
from src.api.v1.models.workspace_member import Role
from src.core.databases import get_database
from src.core.errors import Unauthorized
from src.core.pagination import (
    CURSOR_PARAMETER_PATTERN,
    DEFAULT_LIMIT,
    MAX_CURSOR_LENGTH,
    MAX_LIMIT,
    Cursor,
    PageRequest,
)
from src.core.request_context import current_request_context
from src.core.security import ApiKeyCredentials, Credentials, read_credentials
from src.core.sessions import RequestSessions
from src.services import api_keys, audit_log, users, workspaces
from src.services.workspaces import WorkspaceAccess

TOKEN_URL = f"{API_PREFIX}/auth/token"
# Requests that change nothing: their transactions need no write lock.
SAFE_METHODS = frozenset({"GET", "HEAD"})


def request_sessions(request: Request, database: str) -> RequestSessions:
    """The app's request sessions on the named database (made by the lifespan, one per entry of DATABASES)."""
    sessions: dict[str, RequestSessions] = request.app.state.sessions
    return sessions[database]


def database_session(database: str) -> Any:
    """The dependency that gives an endpoint the request's unit of work on the named database: committed after the
    endpoint returns, rolled back if it raises. ``Annotated[Session, database_session("reports")]``.

    Async on purpose: waiting for admission and creating the session take no worker thread
    (see src/core/sessions.py for why that keeps the server answering under load).
    """
    get_database(database)  # a name not in DATABASES fails at import, not on the first request

    async def get_session(request: Request) -> AsyncIterator[Session]:
        sessions = request_sessions(request, database)
        async with sessions.unit_of_work(reads_only=request.method in SAFE_METHODS) as session:
            yield session

    # scope="function": the commit happens before the response is sent, so a failed commit is never reported as
    # success.
    return Depends(get_session, scope="function")


AuditSessionDep = Annotated[Session, database_session("audit")]

bearer_token = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


async def get_valid_token(
    request: Request, background: BackgroundTasks, token: Annotated[str | None, Depends(bearer_token)]
) -> Credentials:
    """The request's credentials: an access token's claims, checked (signature, issuer, expiry) before anything else,
    the body included, or an API key's digest. Whose user or key they name is read by ``get_current_user`` or
    ``get_caller_workspace``. Async: an HMAC check is cheaper on the event loop than the trip to a worker thread
    FastAPI makes for a sync dependency."""
    if token is None:
        raise Unauthorized("not authenticated: send Authorization: Bearer <token> from POST " + TOKEN_URL)
    credentials = read_credentials(token)
    if isinstance(credentials, ApiKeyCredentials):
        background.add_task(note_key_use, request, credentials)
    return credentials


ValidToken = Annotated[Credentials, Depends(get_valid_token)]

# When this process last noted each key's use: a key's last use is written at most once a minute per process,
# after the response, never on a request's own path.
_noted_key_use: dict[uuid.UUID, float] = {}


async def note_key_use(request: Request, credentials: ApiKeyCredentials) -> None:
    key_id, now = credentials.key_id, time.monotonic()
    if key_id is None or now - _noted_key_use.get(key_id, -math.inf) < api_keys.LAST_USED_PRECISION.total_seconds():
        return
    if len(_noted_key_use) > 10_000:
        _noted_key_use.clear()
    _noted_key_use[key_id] = now
    await request_sessions(request, "core").run(lambda session: api_keys.note_use(session, key_id))


def get_current_user(session: Session, token: Credentials) -> User:
    """The person the credentials are a log-in of; a valid API key gets 403 ``api_key_not_allowed``."""
    if isinstance(token, ApiKeyCredentials):
        api_keys.refuse_outside_workspace(session, token)
    user = users.user_for_token(session, token)
    if context := current_request_context():
        context.user_id = user.id  # for the request's log line
    return user


def get_caller_workspace(
    session: Session, token: Credentials, workspace_id: uuid.UUID, *, changing: bool = False
) -> WorkspaceAccess:
    """The workspace as the caller may act on it; 404 when the caller is not a member (or it does not exist), or is
    an API key of another workspace. ``changing``: read with its row locked for a change of it or its members.

    Each action's role rule is decided by its service (src/services/workspaces.py, src/services/members.py), which
    answers 403 when the role is too low.
    """
    if isinstance(token, ApiKeyCredentials):
        return api_keys.key_access(session, token, workspace_id, locking=changing)
    user = get_current_user(session, token)
    return workspaces.get_access(session, workspace_id=workspace_id, user_id=user.id, locking=changing)


async def allow_audit_read(request: Request, token: Credentials, workspace_id: uuid.UUID) -> None:
    """Let the caller read the workspace's audit trail: admins and owners. The read is itself an audit event.

    Called first by each route that reads the trail, once the request passed validation: a refused request reads
    nothing and records nothing. Checked in a core unit of work of its own that ends before the audit database is
    asked, so a slow or unreachable audit database holds no core connection and no admission slot.
    """

    def audit_reader_access(session: Session) -> None:
        access = get_caller_workspace(session, token, workspace_id)
        workspaces.require_role(access, Role.ADMIN)  # the audit trail's rule, decided here only
        audit_log.record_read(
            session,
            actor_id=access.user_id,
            actor_type=access.actor_type,
            workspace_id=workspace_id,
            asked=asked_for(request),
        )

    await request_sessions(request, "core").run(audit_reader_access)


def asked_for(request: Request) -> str:
    """What a request asked for: its path and query."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def allow_own_audit_read(request: Request, token: Credentials) -> uuid.UUID:
    """The caller, whose own events (those of no workspace) they may read; checked, and the read recorded, like a
    workspace's audit reader (``allow_audit_read``)."""

    def audit_reader(session: Session) -> uuid.UUID:
        user_id = get_current_user(session, token).id
        audit_log.record_read(session, actor_id=user_id, workspace_id=None, asked=asked_for(request))
        return user_id

    return await request_sessions(request, "core").run(audit_reader)


async def current_usernames(request: Request, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The usernames of these users, from core, in a read-only unit of work of its own (for the audit trails,
    once the audit database has answered)."""
    return await request_sessions(request, "core").run(
        lambda session: users.usernames(session, user_ids), reads_only=True
    )


async def get_page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            max_length=MAX_CURSOR_LENGTH,
            description="next_cursor of the previous page; empty or absent for the first page",
            json_schema_extra={"pattern": CURSOR_PARAMETER_PATTERN},
        ),
    ] = None,
) -> PageRequest:
    if not cursor:
        return PageRequest(limit=limit)
    try:
        return PageRequest(limit=limit, cursor=Cursor.decode(cursor))
    except ValueError as error:
        raise RequestValidationError(
            [{"type": "invalid_cursor", "loc": ("query", "cursor"), "msg": str(error)}]
        ) from None


PageParams = Annotated[PageRequest, Depends(get_page_request)]


# RFC 9110 13.1.1: "*", or entity tags ("...", weak ones W/"...") separated by commas.
_ENTITY_TAG = r'(W/)?"[\x21\x23-\x7e]*"'
IF_MATCH_PATTERN = rf"^(\*|{_ENTITY_TAG}( *, *{_ENTITY_TAG})*)$"


async def get_if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=1024,
            pattern=IF_MATCH_PATTERN,
            description="Change only the version with this ETag (from a GET or an earlier change), or `*`; 412 when"
            " the resource changed since",
        ),
    ] = None,
) -> frozenset[str] | None:
    """The entity tags of an If-Match header (RFC 9110 13.1.1), None without one."""
    return None if if_match is None else frozenset(tag.strip() for tag in if_match.split(","))


IfMatch = Annotated[frozenset[str] | None, Depends(get_if_match)]
