"""Workspaces and their members: who may see, change and delete what.

Roles rank owner > admin > member. Members read; admins and owners manage
members; only owners delete the workspace, grant the owner role or touch an
owner's membership; a workspace always keeps at least one owner. To anyone who
is not a member, a workspace does not exist.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.core.errors import Conflict, Forbidden, NotFound
from src.core.pagination import Cursor, PageRequest, keyset_statement, split_page
from src.core.text import fold
from src.services.audit_log import Target, record_event

RANK = {Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"


class MemberNotFound(NotFound):
    code = "member_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class AlreadyMember(Conflict):
    code = "already_member"


class LastOwner(Conflict):
    code = "last_owner"


@dataclass(frozen=True)
class Membership:
    """A workspace as seen by one of its members."""

    workspace: Workspace
    user_id: uuid.UUID
    role: Role


@dataclass(frozen=True)
class Member:
    """One member of a workspace, with the user behind it."""

    membership: WorkspaceMember
    user: User


def create_workspace(session: Session, *, owner_id: uuid.UUID, name: str) -> Membership:
    """A new workspace whose only member, its creator, is an owner."""
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    session.add(WorkspaceMember(workspace_id=workspace.id, user_id=owner_id, role=Role.OWNER))
    session.flush()
    membership = Membership(workspace=workspace, user_id=owner_id, role=Role.OWNER)
    _record(session, membership, "workspace.created", Target("workspace", workspace.id), {"name": name})
    return membership


def get_membership(
    session: Session, *, workspace_id: uuid.UUID, user_id: uuid.UUID, minimum_role: Role = Role.MEMBER
) -> Membership:
    """The workspace as the user sees it: ``WorkspaceNotFound`` to non-members, ``Forbidden`` below the role."""
    row = session.exec(
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, col(WorkspaceMember.workspace_id) == Workspace.id)
        .where(Workspace.id == workspace_id, WorkspaceMember.user_id == user_id)
    ).first()
    if row is None:
        raise WorkspaceNotFound(f"workspace {workspace_id} not found")
    workspace, role = row
    membership = Membership(workspace=workspace, user_id=user_id, role=Role(role))
    _require(membership, minimum_role)
    return membership


def _record(session: Session, actor: Membership, action: str, target: Target, details: dict[str, Any]) -> None:
    record_event(
        session, action=action, actor_id=actor.user_id, workspace_id=actor.workspace.id, target=target, details=details
    )


def _require(actor: Membership, minimum_role: Role) -> None:
    if RANK[actor.role] < RANK[minimum_role]:
        raise Forbidden(f"this needs the {minimum_role} role in the workspace; you are {actor.role}")


def list_workspaces(session: Session, *, user_id: uuid.UUID, page: PageRequest) -> tuple[list[Membership], str | None]:
    """The user's workspaces, oldest first, and the cursor of the next page."""
    statement = (
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, col(WorkspaceMember.workspace_id) == Workspace.id)
        .where(WorkspaceMember.user_id == user_id)
    )
    statement = keyset_statement(statement, page, created_at=col(Workspace.created_at), id_=col(Workspace.id))
    rows, next_cursor = split_page(
        session.exec(statement).all(), page, lambda row: Cursor(row[0].created_at, row[0].id)
    )
    return [Membership(workspace=workspace, user_id=user_id, role=Role(role)) for workspace, role in rows], next_cursor


def rename_workspace(session: Session, actor: Membership, *, name: str) -> Workspace:
    """Give the workspace a new name; admins and owners."""
    _require(actor, Role.ADMIN)
    workspace = actor.workspace
    _record(
        session,
        actor,
        "workspace.updated",
        Target("workspace", workspace.id),
        {"before": {"name": workspace.name}, "after": {"name": name}},
    )
    workspace.name = name
    session.add(workspace)
    session.flush()
    return workspace


def delete_workspace(session: Session, actor: Membership) -> None:
    """Delete the workspace and its memberships; owners only."""
    _require(actor, Role.OWNER)
    _record(
        session, actor, "workspace.deleted", Target("workspace", actor.workspace.id), {"name": actor.workspace.name}
    )
    session.exec(delete(WorkspaceMember).where(col(WorkspaceMember.workspace_id) == actor.workspace.id))
    session.delete(actor.workspace)
    session.flush()


def list_members(session: Session, *, workspace_id: uuid.UUID, page: PageRequest) -> tuple[list[Member], str | None]:
    """The workspace's members in the order they joined, and the cursor of the next page."""
    statement = (
        select(WorkspaceMember, User)
        .join(User, col(User.id) == WorkspaceMember.user_id)
        .where(WorkspaceMember.workspace_id == workspace_id)
    )
    statement = keyset_statement(
        statement, page, created_at=col(WorkspaceMember.created_at), id_=col(WorkspaceMember.user_id)
    )
    rows, next_cursor = split_page(
        session.exec(statement).all(), page, lambda row: Cursor(row[0].created_at, row[0].user_id)
    )
    return [Member(membership=membership, user=user) for membership, user in rows], next_cursor


def add_member(
    session: Session, actor: Membership, *, role: Role, user_id: uuid.UUID | None = None, email: str | None = None
) -> Member:
    """Add the user with this id or email; admins may add members and admins, owners also owners."""
    _require(actor, Role.OWNER if role == Role.OWNER else Role.ADMIN)
    user = _find_user(session, user_id=user_id, email=email)
    if _membership_row(session, workspace_id=actor.workspace.id, user_id=user.id) is not None:
        raise AlreadyMember(f"{user.username} is already a member of this workspace")
    membership = WorkspaceMember(workspace_id=actor.workspace.id, user_id=user.id, role=role)
    session.add(membership)
    try:
        session.flush()
    except IntegrityError:
        # Added by a concurrent request between the check above and this insert.
        raise AlreadyMember(f"{user.username} is already a member of this workspace") from None
    _record(session, actor, "workspace.member_added", Target("user", user.id), {"role": role})
    return Member(membership=membership, user=user)


def _find_user(session: Session, *, user_id: uuid.UUID | None, email: str | None) -> User:
    if user_id is not None:
        user = session.get(User, user_id)
    elif email is not None:
        user = session.exec(select(User).where(User.email == fold(email))).first()
    else:
        raise ValueError("pass user_id or email")
    if user is None or not user.is_active:
        raise UserNotFound(f"no active user with {'id ' + str(user_id) if user_id else 'email ' + repr(email)}")
    return user


def change_role(session: Session, actor: Membership, *, user_id: uuid.UUID, role: Role) -> Member:
    """Give a member another role; owners only when the owner role is granted or taken away."""
    _require(actor, Role.ADMIN)
    member = _get_member(session, workspace_id=actor.workspace.id, user_id=user_id)
    target = member.membership
    if Role.OWNER in (role, target.role):
        _require(actor, Role.OWNER)
    if target.role == Role.OWNER and role != Role.OWNER:
        _ensure_another_owner(session, workspace_id=actor.workspace.id, user_id=user_id)
    _record(
        session,
        actor,
        "workspace.member_role_changed",
        Target("user", user_id),
        {"before": {"role": target.role}, "after": {"role": role}},
    )
    target.role = role
    session.add(target)
    session.flush()
    return member


def remove_member(session: Session, actor: Membership, *, user_id: uuid.UUID) -> None:
    """Remove a member, or leave when it is the actor; admins remove others, only owners remove owners."""
    leaving = user_id == actor.user_id
    if not leaving:
        _require(actor, Role.ADMIN)
    target = _get_member(session, workspace_id=actor.workspace.id, user_id=user_id).membership
    if target.role == Role.OWNER:
        if not leaving:
            _require(actor, Role.OWNER)
        _ensure_another_owner(session, workspace_id=actor.workspace.id, user_id=user_id)
    _record(session, actor, "workspace.member_removed", Target("user", user_id), {"role": target.role, "left": leaving})
    session.delete(target)
    session.flush()


def _membership_row(session: Session, *, workspace_id: uuid.UUID, user_id: uuid.UUID) -> WorkspaceMember | None:
    return session.get(WorkspaceMember, (workspace_id, user_id))


def _get_member(session: Session, *, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Member:
    row = session.exec(
        select(WorkspaceMember, User)
        .join(User, col(User.id) == WorkspaceMember.user_id)
        .where(WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.user_id == user_id)
        # Locked until the request's commit (PostgreSQL): a concurrent change or removal of the same member
        # waits, then finds it gone (404) instead of acting twice.
        .with_for_update(of=WorkspaceMember)
    ).first()
    if row is None:
        raise MemberNotFound(f"user {user_id} is not a member of this workspace")
    membership, user = row
    membership.role = Role(membership.role)
    return Member(membership=membership, user=user)


def _ensure_another_owner(session: Session, *, workspace_id: uuid.UUID, user_id: uuid.UUID) -> None:
    # FOR UPDATE (PostgreSQL) makes two owners demoting each other at once take turns,
    # so the second one sees the first one's change and is refused.
    owners = session.exec(
        select(WorkspaceMember.user_id)
        .where(WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.role == Role.OWNER)
        .with_for_update()
    ).all()
    if not set(owners) - {user_id}:
        raise LastOwner("a workspace needs at least one owner; make someone else owner first")
