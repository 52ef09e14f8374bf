"""Invitations: how people join a workspace, with their consent.

A workspace admin invites an email, whether or not an account has it: the answer is the same either way, so it
tells no one who signed up. The invitee gets a link by mail (through the mail outbox); the membership exists only
once they accept it, logged in with that email, confirmed. An invitation is single-use, expires after
INVITATION_DAYS, can be listed and revoked by the workspace's admins, and grants no role above the inviter's.
Every step is an audit event in the workspace; accepting and declining are also recorded in the invitee's own trail.
"""

import uuid
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from src.api.v1.models.invitation import Invitation
from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.core.config import get_settings
from src.core.errors import Forbidden, NotFound
from src.core.security import new_secret, secret_digest
from src.core.text import fold
from src.core.timestamps import utcnow
from src.services.account_links import InvalidLink, public_link
from src.services.accounts import count_mail_request
from src.services.api_keys import refuse_keys, require_admin_in_person
from src.services.audit_log import Target, record_event
from src.services.mail_outbox import queue_mail
from src.services.members import AlreadyMember, require_may_grant
from src.services.users import EmailNotConfirmed
from src.services.workspaces import RANK, WorkspaceAccess, lock_workspace, record


class InvitationNotFound(NotFound):
    code = "invitation_not_found"


class InvitationForAnotherEmail(Forbidden):
    code = "invitation_for_another_email"


def invite(session: Session, actor: WorkspaceAccess, *, email: str, role: Role) -> Invitation:
    """Invite ``email`` with ``role`` (admins; owners to invite owners), and mail the link; an earlier pending
    invitation of that email to the workspace is replaced. ``AlreadyMember`` when that email's account is a member."""
    refuse_keys(actor)
    require_may_grant(actor, role)
    email = fold(email)
    count_mail_request(session, email)
    member = select(WorkspaceMember.user_id).join(User, col(User.id) == WorkspaceMember.user_id)
    if session.exec(member.where(WorkspaceMember.workspace_id == actor.workspace.id, User.email == email)).first():
        raise AlreadyMember(f"{email} is already a member of this workspace")
    session.exec(
        delete(Invitation).where(col(Invitation.workspace_id) == actor.workspace.id, col(Invitation.email) == email)
    )
    token = new_secret()
    days = get_settings().invitation_days
    invitation = Invitation(
        workspace_id=actor.workspace.id,
        email=email,
        role=role,
        invited_by=actor.user_id,
        digest=secret_digest(token),
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(invitation)
    link = public_link("/accept-invitation", token)
    queue_mail(
        session,
        actor.user_id,
        recipient=email,
        # The name is the inviter's to choose: it stays out of the subject, and is quoted as theirs in the body.
        subject="You are invited to a workspace",
        body=(
            f'Hello,\n\nYou are invited to join a workspace named "{actor.workspace.name}" as {role}. To accept or'
            f" decline, open this link within {days} days, logged in with this email (sign up with it first if you"
            f" have no account):\n\n{link}\n\nIf you did not expect this, ignore this message.\n"
        ),
    )
    details = {"email": email, "role": role}
    record(session, actor, "workspace.invitation_created", Target("invitation", invitation.id), details)
    return invitation


def pending(session: Session, actor: WorkspaceAccess) -> list[Invitation]:
    """The workspace's invitations not yet accepted, declined, revoked or expired, oldest first; admins."""
    require_admin_in_person(actor)
    statement = select(Invitation).where(
        Invitation.workspace_id == actor.workspace.id, col(Invitation.expires_at) > utcnow()
    )
    return list(session.exec(statement.order_by(col(Invitation.created_at), col(Invitation.id))))


def revoke(session: Session, actor: WorkspaceAccess, invitation_id: uuid.UUID) -> None:
    """Withdraw a pending invitation: its link stops working; admins."""
    require_admin_in_person(actor)
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.workspace_id != actor.workspace.id:
        raise InvitationNotFound(f"invitation {invitation_id} not found")
    session.delete(invitation)
    details = {"email": invitation.email, "role": invitation.role}
    record(session, actor, "workspace.invitation_revoked", Target("invitation", invitation.id), details)


def _for_invitee(session: Session, user: User, token: str) -> Invitation:
    """The pending invitation ``token`` opens, locked, for ``user``, who must have its email, confirmed."""
    statement = select(Invitation).where(Invitation.digest == secret_digest(token)).with_for_update()
    invitation = session.exec(statement).first()
    if invitation is None or invitation.expires_at <= utcnow():
        raise InvalidLink("the invitation is invalid, used, revoked or expired; ask for a new one")
    if invitation.email != user.email:
        raise InvitationForAnotherEmail("this invitation is for another email; log in with the invited one")
    if user.email_verified_at is None:
        raise EmailNotConfirmed(f"confirm {user.email} first: follow the link mailed to it, or ask for a new one")
    return invitation


def _record_answer(session: Session, user: User, invitation: Invitation, answer: str) -> None:
    """The invitee's answer, in the workspace's trail and in the invitee's own."""
    details = {"invitation_id": str(invitation.id), "role": invitation.role}
    for workspace_id in (invitation.workspace_id, None):
        record_event(
            session,
            action=f"{'workspace' if workspace_id else 'user'}.invitation_{answer}",
            actor_id=user.id,
            workspace_id=workspace_id,
            target=Target("user", user.id),
            details=details | ({"workspace_id": str(invitation.workspace_id)} if workspace_id is None else {}),
        )


def accept(session: Session, user: User, token: str) -> tuple[WorkspaceMember, Workspace]:
    """Make ``user`` a member with the invitation's role, if its inviter may still grant that role (one removed or
    demoted since takes back what they offered); the invitation is used up."""
    invitation = _for_invitee(session, user, token)
    lock_workspace(session, invitation.workspace_id)
    inviter = session.get(WorkspaceMember, (invitation.workspace_id, invitation.invited_by))
    needed = Role.OWNER if invitation.role == Role.OWNER else Role.ADMIN
    if inviter is None or RANK[Role(inviter.role)] < RANK[needed]:
        raise InvalidLink("the invitation was withdrawn: its sender may no longer grant that role; ask for a new one")
    if session.get(WorkspaceMember, (invitation.workspace_id, user.id)) is not None:
        raise AlreadyMember("you are already a member of this workspace")
    membership = WorkspaceMember(workspace_id=invitation.workspace_id, user_id=user.id, role=invitation.role)
    session.add(membership)
    session.delete(invitation)
    _record_answer(session, user, invitation, "accepted")
    workspace = session.get(Workspace, invitation.workspace_id)
    assert workspace is not None  # locked above
    session.flush()
    return membership, workspace


def decline(session: Session, user: User, token: str) -> None:
    """Turn the invitation down; it is used up."""
    invitation = _for_invitee(session, user, token)
    session.delete(invitation)
    _record_answer(session, user, invitation, "declined")
