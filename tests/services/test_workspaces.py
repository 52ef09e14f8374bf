"""Workspace rules under concurrency: two sessions at once on real databases."""

import threading
import uuid

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.core.engines import get_engine
from src.services import members, workspaces
from src.services.members import LastOwner, MemberNotFound
from tests.conftest import DatabaseUrls
from tests.factories import register


def workspace_of_two(second_role: Role) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A workspace owned by a first user, with a second one in ``second_role``: their three ids."""
    with Session(get_engine("core")) as session:
        first, second = (register(session, name) for name in ("first", "second"))
        owner = workspaces.create_workspace(session, owner_id=first.id, name="W")
        session.add(WorkspaceMember(workspace_id=owner.workspace.id, user_id=second.id, role=second_role))
        session.commit()
        return owner.workspace.id, first.id, second.id


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_member_removed_while_their_role_changes_is_acted_on_once(migrated_databases: DatabaseUrls) -> None:
    workspace_id, owner_id, member_id = workspace_of_two(Role.MEMBER)
    outcome: list[str] = []

    def change_role() -> None:
        with Session(get_engine("core")) as other:
            actor = workspaces.get_access(other, workspace_id=workspace_id, user_id=owner_id)
            try:
                members.change_role(other, actor, user_id=member_id, role=Role.ADMIN)
                other.commit()
                outcome.append("changed")
            except MemberNotFound:
                outcome.append("not found")

    with Session(get_engine("core")) as first:
        actor = workspaces.get_access(first, workspace_id=workspace_id, user_id=owner_id)
        members.remove_member(first, actor, user_id=member_id)  # holds the member's row lock until commit
        second = threading.Thread(target=change_role)
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive()  # waiting for the lock
        first.commit()
    second.join(timeout=10)

    assert outcome == ["not found"]
    with Session(get_engine("core")) as session:
        actions = [event.action for event in session.exec(select(OutboxEvent))]
    assert actions.count("workspace.member_removed") == 1
    assert "workspace.member_role_changed" not in actions


def test_two_owners_leaving_at_once_leave_one_owner(migrated_databases: DatabaseUrls) -> None:
    workspace_id, first_id, second_id = workspace_of_two(Role.OWNER)
    outcome: list[str] = []

    def leave(user_id: uuid.UUID) -> None:
        with Session(get_engine("core")) as other:
            try:
                actor = workspaces.get_access(other, workspace_id=workspace_id, user_id=user_id)
                members.remove_member(other, actor, user_id=user_id)
                other.commit()
                outcome.append("left")
            except LastOwner:
                outcome.append("last owner")

    with Session(get_engine("core")) as session:
        actor = workspaces.get_access(session, workspace_id=workspace_id, user_id=first_id)
        members.remove_member(session, actor, user_id=first_id)  # its transaction holds the owners until commit
        other = threading.Thread(target=leave, args=(second_id,))
        other.start()
        other.join(timeout=0.5)
        session.commit()
        outcome.append("left")
    other.join(timeout=10)

    assert sorted(outcome) == ["last owner", "left"]
    with Session(get_engine("core")) as session:
        owners = session.exec(select(WorkspaceMember).where(WorkspaceMember.workspace_id == workspace_id)).all()
    assert [(member.user_id, member.role) for member in owners] == [(second_id, "owner")]


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_membership_changes_lock_the_workspace_before_any_member(migrated_databases: DatabaseUrls) -> None:
    """Two owners demoting each other at once deadlocked: each locked the other's row, then all the owners'.
    Every change now locks the workspace's row first, so a second change waits there holding no member's row."""
    workspace_id, first_id, second_id = workspace_of_two(Role.OWNER)
    outcome: list[str] = []

    def demote_first() -> None:
        with Session(get_engine("core")) as other:
            other.connection().exec_driver_sql("SET application_name = 'second owner'")
            actor = workspaces.get_access(other, workspace_id=workspace_id, user_id=second_id)
            try:
                members.change_role(other, actor, user_id=first_id, role=Role.ADMIN)
                other.commit()
                outcome.append("changed")
            except LastOwner:
                outcome.append("last owner")

    with Session(get_engine("core")) as session:
        actor = workspaces.get_access(session, workspace_id=workspace_id, user_id=first_id)
        members.change_role(session, actor, user_id=second_id, role=Role.ADMIN)
        waiting = threading.Thread(target=demote_first)
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive()
        with Session(get_engine("core")) as observer:
            # FOR UPDATE takes RowShareLock on the table it reads: none yet on the members.
            locks = (
                observer.connection()
                .execute(
                    text(
                        "SELECT c.relname, l.mode, l.granted FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                        " JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.application_name = 'second owner'"
                    )
                )
                .all()
            )
        session.commit()
    waiting.join(timeout=10)

    assert ("workspace_members", "RowShareLock", True) not in locks
    assert ("workspaces", "RowShareLock", True) in locks
    assert outcome == ["last owner"]
