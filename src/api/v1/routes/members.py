"""Members of a workspace: listing, adding, changing roles, removing and leaving."""

import uuid

from fastapi import APIRouter, Response, status

from src.api.dependencies import PageParams, SessionDep, WorkspaceForAdmin, WorkspaceForMember
from src.api.errors import error_responses
from src.api.v1.schemas.workspaces import MemberCreate, MemberPublic, MemberUpdate
from src.core.pagination import Page
from src.services import workspaces
from src.services.workspaces import Member

router = APIRouter(prefix="/workspaces/{workspace_id}/members", tags=["members"])


def member_public(member: Member) -> MemberPublic:
    user, membership = member.user, member.membership
    return MemberPublic(
        user_id=user.id,
        email=user.email,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        full_name=user.full_name,
        role=membership.role,
        joined_at=membership.created_at,
    )


@router.get("", responses=error_responses(401, 404, 422))
def list_members(membership: WorkspaceForMember, page: PageParams, session: SessionDep) -> Page[MemberPublic]:
    """The workspace's members in the order they joined."""
    items, next_cursor = workspaces.list_members(session, workspace_id=membership.workspace.id, page=page)
    return Page(items=[member_public(item) for item in items], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 401, 403, 404, 409, 422))
def add_member(body: MemberCreate, membership: WorkspaceForAdmin, session: SessionDep) -> MemberPublic:
    """Add a user by email or id; admins and owners, and only owners grant the owner role."""
    member = workspaces.add_member(session, membership, role=body.role, user_id=body.user_id, email=body.email)
    return member_public(member)


@router.patch("/{user_id}", responses=error_responses(400, 401, 403, 404, 409, 422))
def change_role(
    user_id: uuid.UUID, body: MemberUpdate, membership: WorkspaceForAdmin, session: SessionDep
) -> MemberPublic:
    """Change a member's role; 409 when it would leave the workspace without an owner."""
    return member_public(workspaces.change_role(session, membership, user_id=user_id, role=body.role))


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 403, 404, 409, 422))
def remove_member(user_id: uuid.UUID, membership: WorkspaceForMember, session: SessionDep) -> Response:
    """Remove a member (admins and owners), or leave when ``user_id`` is the caller's own."""
    workspaces.remove_member(session, membership, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
