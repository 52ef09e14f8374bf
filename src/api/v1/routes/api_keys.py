"""A workspace's API keys: made, listed and revoked by its admins (never by keys)."""

import uuid

from fastapi import Request, Response, status
from sqlmodel import Session

from src.api.contract import created_response, location, tagged_router
from src.api.dependencies import ValidToken, get_caller_workspace, request_sessions
from src.api.error_handling import error_responses
from src.api.idempotency import created
from src.api.v1 import API_PREFIX
from src.api.v1.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from src.core.errors import Forbidden
from src.services import api_keys
from src.services.api_keys import ApiKeyNotAllowed, ApiKeyNotFound
from src.services.workspaces import WorkspaceNotFound

router = tagged_router("keys", API_PREFIX + "/workspaces/{workspace_id}/api-keys")

_MANAGING = (WorkspaceNotFound, Forbidden, ApiKeyNotAllowed)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    # Not replayable: a stored answer would keep the secret.
    responses=created_response(replayable=False) | error_responses(*_MANAGING),
)
async def create_api_key(request: Request, workspace_id: uuid.UUID, body: ApiKeyCreate, token: ValidToken) -> Response:
    """Make a key for programs; admins, for a role up to their own. Its ``secret`` is in this answer only."""

    def create(session: Session) -> Response:
        access = get_caller_workspace(session, token, workspace_id)
        key, secret = api_keys.create_key(session, access, **body.model_dump())
        session.flush()
        view = ApiKeyCreated(**ApiKeyPublic.model_validate(key).model_dump(), secret=secret)
        return created(view, location(request, "list_api_keys", workspace_id=str(workspace_id)))

    return await request_sessions(request, "core").run(create)


@router.get("", responses=error_responses(*_MANAGING))
async def list_api_keys(request: Request, workspace_id: uuid.UUID, token: ValidToken) -> list[ApiKeyPublic]:
    """The workspace's keys, oldest first (prefix, name, role, created, last used); admins."""

    def read(session: Session) -> list[ApiKeyPublic]:
        access = get_caller_workspace(session, token, workspace_id)
        return [ApiKeyPublic.model_validate(key) for key in api_keys.list_keys(session, access)]

    return await request_sessions(request, "core").run(read, reads_only=True)


@router.delete(
    "/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(*_MANAGING, ApiKeyNotFound)
)
async def revoke_api_key(request: Request, workspace_id: uuid.UUID, key_id: uuid.UUID, token: ValidToken) -> Response:
    """Revoke a key: it stops working at once; admins."""

    def revoke(session: Session) -> None:
        api_keys.revoke_key(session, get_caller_workspace(session, token, workspace_id), key_id)

    await request_sessions(request, "core").run(revoke)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
