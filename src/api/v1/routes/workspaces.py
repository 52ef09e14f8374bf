"""Workspaces the caller belongs to."""

from fastapi import APIRouter, Response, status

from src.api.dependencies import CallerWorkspace, CurrentUser, PageParams, SessionDep
from src.api.error_handling import error_responses
from src.api.v1 import API_PREFIX
from src.api.v1.schemas.workspaces import WorkspaceCreate, WorkspacePublic, WorkspaceUpdate
from src.core.pagination import Page
from src.services import workspaces

router = APIRouter(prefix=f"{API_PREFIX}/workspaces", tags=["workspaces"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 401, 422))
def create_workspace(body: WorkspaceCreate, user: CurrentUser, session: SessionDep) -> WorkspacePublic:
    """Create a workspace; the caller becomes its owner."""
    access = workspaces.create_workspace(session, owner_id=user.id, name=body.name)
    return WorkspacePublic.of(access.workspace, access.role)


@router.get("", responses=error_responses(401, 422))
def list_workspaces(user: CurrentUser, page: PageParams, session: SessionDep) -> Page[WorkspacePublic]:
    """The caller's workspaces, oldest first."""
    items, next_cursor = workspaces.list_workspaces(session, user_id=user.id, page=page)
    return Page(items=[WorkspacePublic.of(item.workspace, item.role) for item in items], next_cursor=next_cursor)


@router.get("/{workspace_id}", responses=error_responses(401, 404, 422))
async def read_workspace(access: CallerWorkspace) -> WorkspacePublic:
    return WorkspacePublic.of(access.workspace, access.role)


@router.patch("/{workspace_id}", responses=error_responses(400, 401, 403, 404, 422))
def rename_workspace(body: WorkspaceUpdate, access: CallerWorkspace, session: SessionDep) -> WorkspacePublic:
    """Rename the workspace; admins and owners."""
    workspaces.rename_workspace(session, access, name=body.name)
    return WorkspacePublic.of(access.workspace, access.role)


@router.delete("/{workspace_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 403, 404, 422))
def delete_workspace(access: CallerWorkspace, session: SessionDep) -> Response:
    """Delete the workspace with its memberships; owners only."""
    workspaces.delete_workspace(session, access)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
