"""Workspaces the caller belongs to."""

import uuid

from fastapi import Request, Response, status
from sqlmodel import Session

from src.api.contract import VERSIONED, created_response, link, location, tagged_router
from src.api.dependencies import (
    IfMatch,
    PageParams,
    ValidToken,
    get_caller_workspace,
    get_current_user,
    request_sessions,
)
from src.api.error_handling import error_responses
from src.api.idempotency import IdempotencyKeyHeader, created_once
from src.api.v1 import API_PREFIX
from src.api.v1.models.workspace_member import Role
from src.api.v1.schemas.workspaces import WorkspaceCreate, WorkspacePublic, WorkspaceUpdate
from src.core.errors import Forbidden
from src.core.pagination import Page
from src.services import workspaces
from src.services.workspaces import WorkspaceNotFound

router = tagged_router("workspaces", f"{API_PREFIX}/workspaces")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkspacePublic,
    responses=created_response(
        replayable=True,
        **{
            operation: link(operation, workspace_id="$response.body#/id")
            for operation in (
                "workspaces-read_workspace",
                "workspaces-rename_workspace",
                "workspaces-delete_workspace",
                "members-list_members",
                "members-add_member",
            )
        },
    ),
)
async def create_workspace(
    request: Request, body: WorkspaceCreate, token: ValidToken, key: IdempotencyKeyHeader = None
) -> Response:
    """Create a workspace; the caller becomes its owner."""

    def create_once(session: Session) -> Response:
        user = get_current_user(session, token)

        def create() -> tuple[WorkspacePublic, str]:
            access = workspaces.create_workspace(session, owner_id=user.id, name=body.name)
            path = location(request, "read_workspace", workspace_id=str(access.workspace.id))
            return WorkspacePublic.of(access.workspace, access.role), path

        return created_once(session, request, key, owner_id=user.id, request_body=body.model_dump(), create=create)

    return await request_sessions(request, "core").run(create_once)


@router.get("")
async def list_workspaces(request: Request, token: ValidToken, page: PageParams) -> Page[WorkspacePublic]:
    """The caller's workspaces, oldest first."""

    def list_page(session: Session) -> Page[WorkspacePublic]:
        user = get_current_user(session, token)
        items, next_cursor = workspaces.list_workspaces(session, user_id=user.id, page=page)
        return Page(items=[WorkspacePublic.of(item, Role(item.role)) for item in items], next_cursor=next_cursor)

    return await request_sessions(request, "core").run(list_page, reads_only=True)


@router.get("/{workspace_id}", responses=VERSIONED | error_responses(WorkspaceNotFound))
async def read_workspace(
    request: Request, response: Response, workspace_id: uuid.UUID, token: ValidToken
) -> WorkspacePublic:
    """The workspace, with its version in ETag."""

    def read(session: Session) -> tuple[WorkspacePublic, str]:
        access = get_caller_workspace(session, token, workspace_id)
        return WorkspacePublic.of(access.workspace, access.role), workspaces.version(access.workspace)

    workspace, response.headers["ETag"] = await request_sessions(request, "core").run(read, reads_only=True)
    return workspace


@router.patch("/{workspace_id}", responses=VERSIONED | error_responses(WorkspaceNotFound, Forbidden))
async def rename_workspace(
    request: Request,
    response: Response,
    workspace_id: uuid.UUID,
    body: WorkspaceUpdate,
    token: ValidToken,
    if_match: IfMatch,
) -> WorkspacePublic:
    """Rename the workspace; admins and owners. With If-Match, only if it is still that version (412 otherwise)."""

    def rename(session: Session) -> tuple[WorkspacePublic, str]:
        access = get_caller_workspace(session, token, workspace_id, changing=True)
        workspaces.rename_workspace(session, access, name=body.name, if_match=if_match)
        return WorkspacePublic.of(access.workspace, access.role), workspaces.version(access.workspace)

    renamed, response.headers["ETag"] = await request_sessions(request, "core").run(rename)
    return renamed


@router.delete(
    "/{workspace_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(WorkspaceNotFound, Forbidden)
)
async def delete_workspace(request: Request, workspace_id: uuid.UUID, token: ValidToken, if_match: IfMatch) -> Response:
    """Delete the workspace with its memberships; owners only. With If-Match, only if it is still that version."""

    def delete(session: Session) -> None:
        workspaces.delete_workspace(session, get_caller_workspace(session, token, workspace_id), if_match=if_match)

    await request_sessions(request, "core").run(delete)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
