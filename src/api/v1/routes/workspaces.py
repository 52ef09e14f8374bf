"""Workspaces the caller belongs to."""

from fastapi import Request, Response, status

from src.api.contract import VERSIONED, created_response, link, location, tagged_router
from src.api.dependencies import CallerWorkspace, CurrentUser, IfMatch, PageParams, SessionDep
from src.api.error_handling import error_responses
from src.api.idempotency import IdempotencyKeyHeader, created_once
from src.api.v1 import API_PREFIX
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
def create_workspace(
    request: Request, body: WorkspaceCreate, user: CurrentUser, session: SessionDep, key: IdempotencyKeyHeader = None
) -> Response:
    """Create a workspace; the caller becomes its owner."""

    def create() -> tuple[WorkspacePublic, str]:
        access = workspaces.create_workspace(session, owner_id=user.id, name=body.name)
        path = location(request, "read_workspace", workspace_id=str(access.workspace.id))
        return WorkspacePublic.of(access.workspace, access.role), path

    return created_once(session, request, key, owner_id=user.id, request_body=body.model_dump(), create=create)


@router.get("")
def list_workspaces(user: CurrentUser, page: PageParams, session: SessionDep) -> Page[WorkspacePublic]:
    """The caller's workspaces, oldest first."""
    items, next_cursor = workspaces.list_workspaces(session, user_id=user.id, page=page)
    return Page(items=[WorkspacePublic.of(item.workspace, item.role) for item in items], next_cursor=next_cursor)


@router.get("/{workspace_id}", responses=VERSIONED | error_responses(WorkspaceNotFound))
async def read_workspace(response: Response, access: CallerWorkspace) -> WorkspacePublic:
    """The workspace, with its version in ETag."""
    response.headers["ETag"] = workspaces.version(access.workspace)
    return WorkspacePublic.of(access.workspace, access.role)


@router.patch("/{workspace_id}", responses=VERSIONED | error_responses(WorkspaceNotFound, Forbidden))
def rename_workspace(
    response: Response, body: WorkspaceUpdate, access: CallerWorkspace, if_match: IfMatch, session: SessionDep
) -> WorkspacePublic:
    """Rename the workspace; admins and owners. With If-Match, only if it is still that version (412 otherwise)."""
    workspaces.rename_workspace(session, access, name=body.name, if_match=if_match)
    response.headers["ETag"] = workspaces.version(access.workspace)
    return WorkspacePublic.of(access.workspace, access.role)


@router.delete(
    "/{workspace_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(WorkspaceNotFound, Forbidden)
)
def delete_workspace(access: CallerWorkspace, if_match: IfMatch, session: SessionDep) -> Response:
    """Delete the workspace with its memberships; owners only. With If-Match, only if it is still that version."""
    workspaces.delete_workspace(session, access, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
