"""Members of a workspace: listing, adding, changing roles, removing and leaving.

Admins and owners manage members; only owners grant or take away the owner role,
or remove an owner; anyone may leave; a workspace always keeps at least one owner.
"""

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.core.databases import unique_violation_columns
from src.core.errors import AdminOnly, Conflict, NotFound
from src.core.pagination import Cursor, PageRequest, keyset_statement, split_page
from src.core.text import fold
from src.core.timestamps import utcnow
from src.core.versions import entity_tag, require_match
from src.services.audit_log import Target
from src.services.workspaces import WorkspaceAccess, WorkspaceNotFound, hold_lock, record, require_role


class MemberNotFound(NotFound):
    code = "member_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class AlreadyMember(Conflict):
    code = "already_member"


_MEMBERS = WorkspaceMember.metadata.tables[WorkspaceMember.__tablename__]
_MEMBERSHIP_KEY = {column.name for column in _MEMBERS.primary_key.columns}


class LastOwner(Conflict):
    code = "last_owner"


@dataclass(frozen=True)
class MemberWithUser:
    """One member of a workspace: the membership row, with the user behind it."""

    membership: WorkspaceMember
    user: User


def list_members(
    session: Session, *, workspace_id: uuid.UUID, page: PageRequest
) -> tuple[list[MemberWithUser], str | None]:
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
    return [MemberWithUser(membership=membership, user=user) for membership, user in rows], next_cursor


def require_may_add(session: Session, actor: WorkspaceAccess, role: Role) -> None:
    """``Forbidden`` unless the actor may add a member with ``role`` directly: an admin of the service, and in the
    workspace an admin for members and admins, an owner also for owners. Everyone else invites
    (src/services/invitations.py): a direct add needs no consent, and its answer tells who has an account."""
    user = session.get(User, actor.user_id) if actor.actor_type == "user" else None
    if user is None or not user.is_admin:
        raise AdminOnly("adding a member directly is for admins of the service; invite them instead")
    require_may_grant(actor, role)


def require_may_grant(actor: WorkspaceAccess, role: Role) -> None:
    """``Forbidden`` unless the actor may give someone ``role``: admins members and admins, owners also owners."""
    require_role(actor, Role.OWNER if role == Role.OWNER else Role.ADMIN)


def add_member(
    session: Session, actor: WorkspaceAccess, *, role: Role, user_id: uuid.UUID | None = None, email: str | None = None
) -> MemberWithUser:
    """Add the user with this id or email; see ``require_may_add``."""
    require_may_add(session, actor, role)
    user = _find_user(session, user_id=user_id, email=email)
    if _membership_row(session, workspace_id=actor.workspace.id, user_id=user.id) is not None:
        raise AlreadyMember(f"{user.username} is already a member of this workspace")
    membership = WorkspaceMember(workspace_id=actor.workspace.id, user_id=user.id, role=role)
    try:
        # A savepoint: after a refused insert the request's transaction can still ask why.
        with session.begin_nested():
            session.add(membership)
    except IntegrityError as error:
        # Added by a concurrent request between the check above and this insert; any other violation is its own.
        if unique_violation_columns(error, _MEMBERS) == _MEMBERSHIP_KEY:
            raise AlreadyMember(f"{user.username} is already a member of this workspace") from None
        if session.get(Workspace, actor.workspace.id, populate_existing=True) is None:
            raise WorkspaceNotFound("the workspace was deleted") from None
        raise
    record(session, actor, "workspace.member_added", Target("user", user.id), {"role": role})
    return MemberWithUser(membership=membership, user=user)


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


def version(membership: WorkspaceMember) -> str:
    """The membership's entity tag: it changes with each change of the role (one by an older version of the code,
    which sets no updated_at, too, unless it gives back a role the member had)."""
    return entity_tag(membership.workspace_id, membership.user_id, membership.role, membership.updated_at)


def change_role(
    session: Session,
    actor: WorkspaceAccess,
    *,
    user_id: uuid.UUID,
    role: Role,
    if_match: Collection[str] | None = None,
) -> MemberWithUser:
    """Give a member another role; owners only when the owner role is granted or taken away. Only while the
    membership's version is one of ``if_match``, when given."""
    require_role(actor, Role.ADMIN)
    hold_lock(session, actor)
    member = _get_member(session, workspace_id=actor.workspace.id, user_id=user_id)
    target = member.membership
    require_match(if_match, version(target))
    if Role.OWNER in (role, target.role):
        require_role(actor, Role.OWNER)
    if target.role == Role.OWNER and role != Role.OWNER:
        _ensure_another_owner(session, workspace_id=actor.workspace.id, user_id=user_id)
    record(
        session,
        actor,
        "workspace.member_role_changed",
        Target("user", user_id),
        {"before": {"role": target.role}, "after": {"role": role}},
    )
    target.role, target.updated_at = role, utcnow()
    session.add(target)
    session.flush()
    return member


def remove_member(
    session: Session, actor: WorkspaceAccess, *, user_id: uuid.UUID, if_match: Collection[str] | None = None
) -> None:
    """Remove a member, or leave when it is the actor; admins remove others, only owners remove owners. Only while
    the membership's version is one of ``if_match``, when given."""
    leaving = user_id == actor.user_id
    if not leaving:
        require_role(actor, Role.ADMIN)
    hold_lock(session, actor)
    target = _get_member(session, workspace_id=actor.workspace.id, user_id=user_id).membership
    require_match(if_match, version(target))
    if target.role == Role.OWNER:
        if not leaving:
            require_role(actor, Role.OWNER)
        _ensure_another_owner(session, workspace_id=actor.workspace.id, user_id=user_id)
    record(session, actor, "workspace.member_removed", Target("user", user_id), {"role": target.role, "left": leaving})
    session.delete(target)
    session.flush()


def _membership_row(session: Session, *, workspace_id: uuid.UUID, user_id: uuid.UUID) -> WorkspaceMember | None:
    return session.get(WorkspaceMember, (workspace_id, user_id))


def get_member(session: Session, actor: WorkspaceAccess, *, user_id: uuid.UUID) -> MemberWithUser:
    """One member of the workspace, as every member may see it."""
    return _get_member(session, workspace_id=actor.workspace.id, user_id=user_id, changing=False)


def _get_member(
    session: Session, *, workspace_id: uuid.UUID, user_id: uuid.UUID, changing: bool = True
) -> MemberWithUser:
    statement = (
        select(WorkspaceMember, User)
        .join(User, col(User.id) == WorkspaceMember.user_id)
        .where(WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.user_id == user_id)
    )
    if changing:
        # Locked until the request's commit (PostgreSQL): a concurrent change or removal of the same member
        # waits, then finds it gone (404) instead of acting twice.
        statement = statement.with_for_update(of=WorkspaceMember)
    row = session.exec(statement).first()
    if row is None:
        raise MemberNotFound(f"user {user_id} is not a member of this workspace")
    membership, user = row
    membership.role = Role(membership.role)
    return MemberWithUser(membership=membership, user=user)


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
