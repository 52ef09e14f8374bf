"""Invitations: a workspace's admins invite, list and revoke; the invitee accepts or declines with the mailed link."""

import uuid

from fastapi import Request, Response, status
from sqlmodel import Session

from src.api.contract import created_response, location, tagged_router
from src.api.dependencies import ValidToken, get_caller_workspace, get_current_user, request_sessions
from src.api.error_handling import error_responses
from src.api.idempotency import created
from src.api.v1 import API_PREFIX
from src.api.v1.schemas.users import EmailConfirmation
from src.api.v1.schemas.workspaces import InvitationCreate, InvitationPublic, MemberPublic
from src.core.errors import Forbidden, TooManyAttempts
from src.services import invitations
from src.services.account_links import InvalidLink
from src.services.api_keys import ApiKeyNotAllowed
from src.services.invitations import InvitationForAnotherEmail, InvitationNotFound
from src.services.members import AlreadyMember
from src.services.users import EmailNotConfirmed
from src.services.workspaces import WorkspaceNotFound

router = tagged_router("invitations", API_PREFIX)

_MANAGING = (WorkspaceNotFound, Forbidden, ApiKeyNotAllowed)
_ANSWERING = (InvalidLink, InvitationForAnotherEmail, EmailNotConfirmed, ApiKeyNotAllowed)


@router.post(
    "/workspaces/{workspace_id}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationPublic,
    responses=created_response(replayable=False) | error_responses(*_MANAGING, AlreadyMember, TooManyAttempts),
)
async def invite(request: Request, workspace_id: uuid.UUID, body: InvitationCreate, token: ValidToken) -> Response:
    """Invite an email, whether or not an account has it (the answer is the same); the link is mailed to it.
    Admins invite members and admins, owners also owners. A pending invitation of the same email is replaced.
    Throttled per email as password resets are (429)."""

    def create(session: Session) -> Response:
        access = get_caller_workspace(session, token, workspace_id)
        invitation = invitations.invite(session, access, email=body.email, role=body.role)
        path = location(request, "list_invitations", workspace_id=str(workspace_id))
        return created(InvitationPublic.model_validate(invitation), path)

    return await request_sessions(request, "core").run(create)


@router.get("/workspaces/{workspace_id}/invitations", responses=error_responses(*_MANAGING))
async def list_invitations(request: Request, workspace_id: uuid.UUID, token: ValidToken) -> list[InvitationPublic]:
    """The workspace's pending invitations, oldest first; admins."""

    def read(session: Session) -> list[InvitationPublic]:
        access = get_caller_workspace(session, token, workspace_id)
        return [InvitationPublic.model_validate(item) for item in invitations.pending(session, access)]

    return await request_sessions(request, "core").run(read, reads_only=True)


@router.delete(
    "/workspaces/{workspace_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*_MANAGING, InvitationNotFound),
)
async def revoke_invitation(
    request: Request, workspace_id: uuid.UUID, invitation_id: uuid.UUID, token: ValidToken
) -> Response:
    """Withdraw a pending invitation; admins."""

    def revoke(session: Session) -> None:
        invitations.revoke(session, get_caller_workspace(session, token, workspace_id), invitation_id)

    await request_sessions(request, "core").run(revoke)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/invitations/accept",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberPublic,
    responses=created_response(replayable=False) | error_responses(*_ANSWERING, AlreadyMember),
)
async def accept_invitation(request: Request, body: EmailConfirmation, token: ValidToken) -> Response:
    """Join the workspace with the token of an invitation's link, logged in with the invited email, confirmed (403
    otherwise); 404 ``invalid_link`` when it is unknown, used, revoked or expired."""

    def accept(session: Session) -> Response:
        user = get_current_user(session, token)
        membership, workspace = invitations.accept(session, user, body.token)
        path = {"workspace_id": str(workspace.id), "user_id": str(user.id)}
        return created(MemberPublic.of(membership, user), location(request, "read_member", **path))

    return await request_sessions(request, "core").run(accept)


@router.post("/invitations/decline", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(*_ANSWERING))
async def decline_invitation(request: Request, body: EmailConfirmation, token: ValidToken) -> Response:
    """Turn an invitation down, as its invitee; the link stops working."""

    def decline(session: Session) -> None:
        invitations.decline(session, get_current_user(session, token), body.token)

    await request_sessions(request, "core").run(decline)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
