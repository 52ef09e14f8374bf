"""Deleting an account, and everything both databases hold about it.

In core the user, their memberships, links, throttling counters, kept idempotent answers and unsent mail go, and
their events still in the outbox are erased. ``user.deleted`` then travels through the outbox like any other event,
and the relay erases the person's delivered events in the transaction that delivers it
(src/services/audit_erasure.py): the events stay, with their ids, so the trail of what happened stays whole and
its hash chains verify.
"""

import uuid

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from src.api.v1.models.account_link import AccountLink
from src.api.v1.models.idempotency_key import IdempotencyKey
from src.api.v1.models.outbox_mail import OutboxMail
from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.core.errors import WrongPassword
from src.services import login_throttle
from src.services.audit_erasure import ERASING_ACTION, erase_in_outbox
from src.services.audit_log import Target, record_event
from src.services.members import LastOwner
from src.services.workspaces import lock_workspace


def last_owned_workspaces(session: Session, user_id: uuid.UUID) -> list[Workspace]:
    """The workspaces where the user is the only owner, each locked (in id order) until the transaction ends, so
    that two owners leaving at once cannot both go."""
    owned = sorted(
        session.exec(
            select(WorkspaceMember.workspace_id).where(
                WorkspaceMember.user_id == user_id, WorkspaceMember.role == Role.OWNER
            )
        )
    )
    for workspace_id in owned:
        lock_workspace(session, workspace_id)
    owners = (
        select(WorkspaceMember.workspace_id)
        .where(col(WorkspaceMember.workspace_id).in_(owned), WorkspaceMember.role == Role.OWNER)
        .group_by(col(WorkspaceMember.workspace_id))
        .having(func.count() == 1)
    )
    return list(session.exec(select(Workspace).where(col(Workspace.id).in_(owners)).order_by(col(Workspace.name))))


def delete_account(session: Session, user: User, *, checked_hash: str | None) -> None:
    """Delete ``user``, whose current password was found to match ``checked_hash``; ``LastOwner`` listing the
    workspaces they are the last owner of, which they must hand over or delete first."""
    if user.hashed_password != checked_hash:
        raise WrongPassword("the password was changed meanwhile; try again with the current one")
    last_owned = last_owned_workspaces(session, user.id)
    if last_owned:
        listed = ", ".join(f"{workspace.name!r} ({workspace.id})" for workspace in last_owned)
        raise LastOwner(f"you are the last owner of {listed}: make another member an owner, or delete it, first")
    erase_in_outbox(session.connection(), user.id)
    memberships = session.exec(select(WorkspaceMember).where(WorkspaceMember.user_id == user.id)).all()
    for member in memberships:
        record_event(
            session,
            action="workspace.member_removed",
            actor_id=user.id,
            workspace_id=member.workspace_id,
            target=Target("user", user.id),
            details={"role": member.role, "left": True},
        )
    session.exec(delete(WorkspaceMember).where(col(WorkspaceMember.user_id) == user.id))
    session.exec(delete(AccountLink).where(col(AccountLink.user_id) == user.id))
    session.exec(delete(IdempotencyKey).where(col(IdempotencyKey.owner_id) == user.id))
    session.exec(delete(OutboxMail).where(col(OutboxMail.user_id) == user.id))
    login_throttle.forget_account(session, user.id)
    record_event(session, action=ERASING_ACTION, actor_id=user.id, target=Target("user", user.id))
    session.delete(user)
    session.flush()
