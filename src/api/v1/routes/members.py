"""Members of a workspace: listing, adding, changing roles, removing and leaving."""

import uuid

from fastapi import Request, Response, status
from sqlmodel import Session

from src.api.contract import VERSIONED, created_response, link, location, tagged_router
from src.api.dependencies import IfMatch, PageParams, ValidToken, get_caller_workspace, request_sessions
from src.api.error_handling import error_responses
from src.api.idempotency import IdempotencyKeyHeader, created_once
from src.api.v1 import API_PREFIX
from src.api.v1.schemas.workspaces import MemberCreate, MemberPublic, MemberUpdate
from src.core.errors import AdminOnly, Forbidden
from src.core.pagination import Page
from src.services import members
from src.services.members import AlreadyMember, LastOwner, MemberNotFound, UserNotFound
from src.services.workspaces import WorkspaceNotFound

router = tagged_router("members", API_PREFIX + "/workspaces/{workspace_id}/members")

_CHANGING_A_MEMBER = (WorkspaceNotFound, Forbidden, MemberNotFound, LastOwner)


@router.get("", responses=error_responses(WorkspaceNotFound))
async def list_members(
    request: Request, workspace_id: uuid.UUID, token: ValidToken, page: PageParams
) -> Page[MemberPublic]:
    """The workspace's members in the order they joined."""

    def list_page(session: Session) -> Page[MemberPublic]:
        access = get_caller_workspace(session, token, workspace_id)
        items, next_cursor = members.list_members(session, workspace_id=access.workspace.id, page=page)
        return Page(items=[MemberPublic.of(item.membership, item.user) for item in items], next_cursor=next_cursor)

    return await request_sessions(request, "core").run(list_page, reads_only=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberPublic,
    responses=created_response(
        replayable=True,
        **{
            operation: link(operation, workspace_id="$request.path.workspace_id", user_id="$response.body#/user_id")
            for operation in ("members-read_member", "members-change_role", "members-remove_member")
        },
    )
    | error_responses(WorkspaceNotFound, AdminOnly, Forbidden, UserNotFound, AlreadyMember),
)
async def add_member(
    request: Request, workspace_id: uuid.UUID, body: MemberCreate, token: ValidToken, key: IdempotencyKeyHeader = None
) -> Response:
    """Add a user by email or id, without their consent: admins of the service only (403 ``admin_only``), who are
    also the workspace's admins, or owners to grant the owner role. Everyone else invites (``POST
    /workspaces/{workspace_id}/invitations``)."""

    def add_once(session: Session) -> Response:
        access = get_caller_workspace(session, token, workspace_id)
        # A retry under an Idempotency-Key too, before its answer is replayed.
        members.require_may_add(session, access, body.role)

        def add() -> tuple[MemberPublic, str]:
            added = members.add_member(session, access, role=body.role, user_id=body.user_id, email=body.email)
            path = {"workspace_id": str(access.workspace.id), "user_id": str(added.user.id)}
            return MemberPublic.of(added.membership, added.user), location(request, "read_member", **path)

        return created_once(session, request, key, owner_id=access.user_id, request_body=body.model_dump(), create=add)

    return await request_sessions(request, "core").run(add_once)


@router.get("/{user_id}", responses=VERSIONED | error_responses(WorkspaceNotFound, MemberNotFound))
async def read_member(
    request: Request, response: Response, workspace_id: uuid.UUID, user_id: uuid.UUID, token: ValidToken
) -> MemberPublic:
    """One member of the workspace, with the membership's version in ETag."""

    def read(session: Session) -> tuple[MemberPublic, str]:
        found = members.get_member(session, get_caller_workspace(session, token, workspace_id), user_id=user_id)
        return MemberPublic.of(found.membership, found.user), members.version(found.membership)

    member, response.headers["ETag"] = await request_sessions(request, "core").run(read, reads_only=True)
    return member


@router.patch("/{user_id}", responses=VERSIONED | error_responses(*_CHANGING_A_MEMBER))
async def change_role(
    request: Request,
    response: Response,
    workspace_id: uuid.UUID,
    user_id: uuid.UUID,
    body: MemberUpdate,
    token: ValidToken,
    if_match: IfMatch,
) -> MemberPublic:
    """Change a member's role; admins and owners, and only owners touch the owner role; 409 when it would leave
    the workspace without an owner. With If-Match, only if the membership is still that version (412 otherwise)."""

    def change(session: Session) -> tuple[MemberPublic, str]:
        access = get_caller_workspace(session, token, workspace_id, changing=True)
        changed = members.change_role(session, access, user_id=user_id, role=body.role, if_match=if_match)
        return MemberPublic.of(changed.membership, changed.user), members.version(changed.membership)

    member, response.headers["ETag"] = await request_sessions(request, "core").run(change)
    return member


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(*_CHANGING_A_MEMBER))
async def remove_member(
    request: Request, workspace_id: uuid.UUID, user_id: uuid.UUID, token: ValidToken, if_match: IfMatch
) -> Response:
    """Remove a member (admins and owners), or leave when ``user_id`` is the caller's own. With If-Match, only if
    the membership is still that version."""

    def remove(session: Session) -> None:
        access = get_caller_workspace(session, token, workspace_id, changing=True)
        members.remove_member(session, access, user_id=user_id, if_match=if_match)

    await request_sessions(request, "core").run(remove)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
