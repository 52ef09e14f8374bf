"""Workspaces, and the role rules every action inside one is held to.

Roles rank owner > admin > member. Members read; admins rename the workspace and
manage members (src/services/members.py); only owners delete the workspace, grant
the owner role or touch an owner's membership. To anyone who is not a member, a
workspace does not exist: ``get_access`` is the one way in, and each action checks
its own role here, once.
"""

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.core.errors import Forbidden, NotFound
from src.core.pagination import Cursor, PageRequest, keyset_statement, split_page
from src.core.timestamps import utcnow
from src.core.versions import entity_tag, require_match
from src.services.audit_log import Target, record_event

RANK = {Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"


@dataclass(frozen=True)
class WorkspaceAccess:
    """A workspace as one of its members may act on it: with that member's role."""

    workspace: Workspace
    user_id: uuid.UUID  # the member's; an API key's id when a key acts (``actor_type``)
    role: Role
    locked: bool = False  # the workspace's row is locked for changes (``get_access(locking=True)``)
    actor_type: str = "user"  # or "api_key"


def create_workspace(session: Session, *, owner_id: uuid.UUID, name: str) -> WorkspaceAccess:
    """A new workspace whose only member, its creator, is an owner."""
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    session.add(WorkspaceMember(workspace_id=workspace.id, user_id=owner_id, role=Role.OWNER))
    session.flush()
    access = WorkspaceAccess(workspace=workspace, user_id=owner_id, role=Role.OWNER)
    record(session, access, "workspace.created", Target("workspace", workspace.id), {"name": name})
    return access


def _workspaces_of(user_id: uuid.UUID) -> Select[Workspace, str]:
    """The workspaces the user is a member of, each with the user's role."""
    return (
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, col(WorkspaceMember.workspace_id) == Workspace.id)
        .where(WorkspaceMember.user_id == user_id)
    )


def memberships_of(session: Session, user_id: uuid.UUID) -> list[tuple[Workspace, Role, datetime]]:
    """Each workspace the user is a member of, with their role and when they joined, by name."""
    statement = (
        select(Workspace, WorkspaceMember.role, WorkspaceMember.created_at)
        .join(WorkspaceMember, col(WorkspaceMember.workspace_id) == Workspace.id)
        .where(WorkspaceMember.user_id == user_id)
        .order_by(col(Workspace.name), col(Workspace.id))
    )
    return [(workspace, Role(role), joined_at) for workspace, role, joined_at in session.exec(statement)]


def get_access(
    session: Session, *, workspace_id: uuid.UUID, user_id: uuid.UUID, locking: bool = False
) -> WorkspaceAccess:
    """The workspace as the user may act on it; ``WorkspaceNotFound`` to anyone who is not a member. ``locking``:
    to change it or its members, with its row locked as ``lock_workspace`` locks it, in the same statement."""
    statement = _workspaces_of(user_id).where(Workspace.id == workspace_id)
    if locking:
        statement = statement.with_for_update(of=Workspace, key_share=True)
    row = session.exec(statement).first()
    if row is None:
        raise WorkspaceNotFound(f"workspace {workspace_id} not found")
    workspace, role = row
    return WorkspaceAccess(workspace=workspace, user_id=user_id, role=Role(role), locked=locking)


def record(session: Session, actor: WorkspaceAccess, action: str, target: Target, details: dict[str, Any]) -> None:
    """The audit event of ``actor``'s action inside the workspace."""
    record_event(
        session,
        action=action,
        actor_id=actor.user_id,
        actor_type=actor.actor_type,
        workspace_id=actor.workspace.id,
        target=target,
        details=details,
    )


def require_role(actor: WorkspaceAccess, minimum_role: Role) -> None:
    """``Forbidden`` when the actor's role ranks below ``minimum_role``."""
    if RANK[actor.role] < RANK[minimum_role]:
        raise Forbidden(f"this needs the {minimum_role} role in the workspace; you are {actor.role}")


# A listed workspace: id, name, created_at, updated_at and the user's role, by name.
Listed = Row[tuple[uuid.UUID, str, datetime, datetime | None, str]]


def list_workspaces(session: Session, *, user_id: uuid.UUID, page: PageRequest) -> tuple[list[Listed], str | None]:
    """The user's workspaces, oldest first, each a row of its columns and the user's ``role`` (a page is only shown:
    no entities to track), and the cursor of the next page."""
    statement = keyset_statement(
        select(Workspace.id, Workspace.name, Workspace.created_at, Workspace.updated_at)
        .add_columns(col(WorkspaceMember.role))
        .join(WorkspaceMember, col(WorkspaceMember.workspace_id) == Workspace.id)
        .where(col(WorkspaceMember.user_id) == user_id),
        page,
        created_at=col(Workspace.created_at),
        id_=col(Workspace.id),
    )
    # execute, not exec: SQLModel's exec types selects of at most four columns.
    return split_page(session.execute(statement).all(), page, lambda row: Cursor(row.created_at, row.id))


def version(workspace: Workspace) -> str:
    """The workspace's entity tag: it changes with each change (one by an older version of the code, which sets no
    updated_at, too, unless it renames the workspace back to a name it had)."""
    return entity_tag(workspace.id, workspace.name, workspace.updated_at)


def lock_current(session: Session, actor: WorkspaceAccess, *, if_match: Collection[str] | None, deleting: bool) -> None:
    """Lock the workspace and read it again as it is now; ``PreconditionFailed`` when ``if_match`` names another
    version."""
    if hold_lock(session, actor, deleting=deleting) and if_match is not None:
        session.refresh(actor.workspace)
    if if_match is not None:
        require_match(if_match, version(actor.workspace))


def rename_workspace(
    session: Session, actor: WorkspaceAccess, *, name: str, if_match: Collection[str] | None = None
) -> Workspace:
    """Give the workspace a new name; admins and owners. Only while its version is one of ``if_match``, when given."""
    require_role(actor, Role.ADMIN)
    lock_current(session, actor, if_match=if_match, deleting=False)
    workspace = actor.workspace
    record(
        session,
        actor,
        "workspace.updated",
        Target("workspace", workspace.id),
        {"before": {"name": workspace.name}, "after": {"name": name}},
    )
    workspace.name, workspace.updated_at = name, utcnow()
    session.add(workspace)
    session.flush()
    return workspace


def delete_workspace(session: Session, actor: WorkspaceAccess, *, if_match: Collection[str] | None = None) -> None:
    """Delete the workspace and its memberships; owners only. Only while its version is one of ``if_match``, when
    given."""
    require_role(actor, Role.OWNER)
    lock_current(session, actor, if_match=if_match, deleting=True)
    record(session, actor, "workspace.deleted", Target("workspace", actor.workspace.id), {"name": actor.workspace.name})
    session.exec(delete(WorkspaceMember).where(col(WorkspaceMember.workspace_id) == actor.workspace.id))
    session.delete(actor.workspace)
    session.flush()


def hold_lock(session: Session, actor: WorkspaceAccess, *, deleting: bool = False) -> bool:
    """Lock the actor's workspace for a change, unless ``get_access`` did when it read it (a deletion takes the
    stronger lock anyway); whether it locked it now, after reading it."""
    if actor.locked and not deleting:
        return False
    lock_workspace(session, actor.workspace.id, deleting=deleting)
    return True


def lock_workspace(session: Session, workspace_id: uuid.UUID, *, deleting: bool = False) -> None:
    """Make changes to a workspace, and to its members, take turns (PostgreSQL): each first locks the workspace's
    row, so that no two lock rows in opposite orders and deadlock. ``WorkspaceNotFound`` when it was deleted
    meanwhile. Adding a member does not wait, except for a deletion."""
    # key_share: FOR NO KEY UPDATE, which the foreign key check of a new member's row does not wait for.
    statement = select(Workspace.id).where(Workspace.id == workspace_id).with_for_update(key_share=not deleting)
    if session.exec(statement).first() is None:
        raise WorkspaceNotFound(f"workspace {workspace_id} not found")
