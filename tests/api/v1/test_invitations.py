"""Invitations with consent: sent to an email whether or not it has an account, accepted only by that email's
confirmed account, single-use, expiring, revocable; and direct adds kept for admins of the service. Both dialects."""

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select

from src.api.v1.models.invitation import Invitation
from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role
from src.core.timestamps import utcnow
from tests.api.conftest import AddMember, MakeUser, MakeWorkspace, auth, bearer
from tests.factories import INVITED, mailed_token, roles_in


def invitations_url(workspace: Workspace) -> str:
    return f"/api/v1/workspaces/{workspace.id}/invitations"


def invite(client: TestClient, workspace: Workspace, headers: dict[str, str], email: str, role: str = "member") -> Any:
    return client.post(invitations_url(workspace), json={"email": email, "role": role}, headers=headers)


def invited_token(session: Session, workspace: Workspace, email: str) -> str:
    return mailed_token(session, email, INVITED)


def confirmed(session: Session, user: User) -> User:
    session.exec(update(User).where(col(User.id) == user.id).values(email_verified_at=utcnow()))
    session.commit()
    return user


def answer(client: TestClient, verb: str, token: str, headers: dict[str, str]) -> tuple[int, str]:
    reply = client.post(f"/api/v1/invitations/{verb}", json={"token": token}, headers=headers)
    return reply.status_code, reply.json().get("error", "") if reply.content else ""


def test_the_answer_to_an_invitation_tells_nothing_of_who_has_an_account(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner = make_user()
    make_user(email="known@example.com")
    workspace = make_workspace(owner, "Engines")

    known = invite(client, workspace, auth(owner), "known@example.com")
    unknown = invite(client, workspace, auth(owner), "nobody@example.com")

    assert known.status_code == unknown.status_code == 201
    assert set(known.json()) == set(unknown.json()) == {"id", "email", "role", "invited_by", "created_at", "expires_at"}
    assert known.headers["Location"] == unknown.headers["Location"] == invitations_url(workspace)
    for email in ("known@example.com", "nobody@example.com"):
        assert invited_token(session, workspace, email)
    listed = client.get(invitations_url(workspace), headers=auth(owner)).json()
    assert sorted(item["email"] for item in listed) == ["known@example.com", "nobody@example.com"]
    stored = session.exec(select(Invitation.digest)).all()
    assert invited_token(session, workspace, "known@example.com") not in stored  # only digests


def test_only_the_invited_confirmed_account_joins_and_the_link_works_once(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner, invitee, stranger = make_user(), make_user(email="cy@example.com"), make_user()
    workspace = make_workspace(owner, "Engines")
    assert invite(client, workspace, auth(owner), "CY@example.com", "admin").status_code == 201
    token = invited_token(session, workspace, "cy@example.com")

    assert answer(client, "accept", token, auth(stranger)) == (403, "invitation_for_another_email")
    assert answer(client, "accept", token, auth(invitee)) == (403, "email_not_confirmed")
    confirmed(session, invitee)
    joined = client.post("/api/v1/invitations/accept", json={"token": token}, headers=auth(invitee))

    assert joined.status_code == 201
    assert (joined.json()["user_id"], joined.json()["role"]) == (str(invitee.id), "admin")
    assert joined.headers["Location"] == f"/api/v1/workspaces/{workspace.id}/members/{invitee.id}"
    assert roles_in(session, workspace.id)[invitee.id] == "admin"
    assert answer(client, "accept", token, auth(invitee)) == (404, "invalid_link")
    assert client.get(invitations_url(workspace), headers=auth(owner)).json() == []
    recorded = session.exec(
        select(OutboxEvent.action, OutboxEvent.workspace_id).where(OutboxEvent.actor_id == invitee.id)
    )
    assert ("workspace.invitation_accepted", workspace.id) in recorded.all()
    own = session.exec(select(OutboxEvent).where(OutboxEvent.action == "user.invitation_accepted")).one()
    assert (own.workspace_id, own.target_id, own.details["workspace_id"]) == (None, invitee.id, str(workspace.id))


def test_a_declined_revoked_or_expired_invitation_adds_no_one(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner, invitee = make_user(), make_user(email="cy@example.com")
    confirmed(session, invitee)
    workspaces = [make_workspace(owner, name) for name in ("Declined", "Revoked", "Expired")]
    tokens = []
    for workspace in workspaces:
        assert invite(client, workspace, auth(owner), "cy@example.com").status_code == 201
        tokens.append(invited_token(session, workspace, "cy@example.com"))
    [revoked] = client.get(invitations_url(workspaces[1]), headers=auth(owner)).json()
    assert client.delete(f"{invitations_url(workspaces[1])}/{revoked['id']}", headers=auth(owner)).status_code == 204
    gone = client.delete(f"{invitations_url(workspaces[1])}/{revoked['id']}", headers=auth(owner))
    assert (gone.status_code, gone.json()["error"]) == (404, "invitation_not_found")
    ended = utcnow() - timedelta(seconds=1)
    session.exec(update(Invitation).where(col(Invitation.workspace_id) == workspaces[2].id).values(expires_at=ended))
    session.commit()

    assert answer(client, "decline", tokens[0], auth(invitee)) == (204, "")
    assert [answer(client, "accept", token, auth(invitee)) for token in tokens] == [(404, "invalid_link")] * 3
    assert all(invitee.id not in roles_in(session, workspace.id) for workspace in workspaces)
    assert session.exec(select(OutboxEvent).where(OutboxEvent.action == "user.invitation_declined")).one()


def test_who_may_invite_and_as_what(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, admin, member = make_user(), make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, admin, Role.ADMIN)
    add_member(workspace, member, Role.MEMBER)
    key = client.post(
        f"/api/v1/workspaces/{workspace.id}/api-keys", json={"name": "CI", "role": "admin"}, headers=auth(owner)
    )

    def refused(headers: dict[str, str], role: str) -> tuple[int, str]:
        reply = invite(client, workspace, headers, "new@example.com", role)
        return reply.status_code, reply.json()["error"]

    assert refused(auth(admin), "owner") == (403, "insufficient_role")
    assert refused(auth(member), "member") == (403, "insufficient_role")
    assert refused(bearer(key.json()["secret"]), "member") == (403, "api_key_not_allowed")
    assert invite(client, workspace, auth(admin), "new@example.com", "admin").status_code == 201
    assert invite(client, workspace, auth(owner), "new@example.com", "owner").status_code == 201  # replaces it
    assert len(client.get(invitations_url(workspace), headers=auth(owner)).json()) == 1
    already = invite(client, workspace, auth(owner), member.email)
    assert (already.status_code, already.json()["error"]) == (409, "already_member")


def test_a_direct_add_is_for_admins_of_the_service(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner, newcomer = make_user(), make_user()
    workspace = make_workspace(owner)

    direct = client.post(
        f"/api/v1/workspaces/{workspace.id}/members", json={"user_id": str(newcomer.id)}, headers=auth(owner)
    )

    assert (direct.status_code, direct.json()["error"]) == (403, "admin_only")


def test_an_invitation_dies_with_its_sender_s_power_to_grant_it(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, admin, invitee = make_user(), make_user(), make_user(email="cy@example.com")
    confirmed(session, invitee)
    workspace = make_workspace(owner)
    add_member(workspace, admin, Role.ADMIN)
    assert invite(client, workspace, auth(admin), "cy@example.com", "admin").status_code == 201
    token = invited_token(session, workspace, "cy@example.com")
    members = f"/api/v1/workspaces/{workspace.id}/members"
    assert client.patch(f"{members}/{admin.id}", json={"role": "member"}, headers=auth(owner)).status_code == 200

    assert answer(client, "accept", token, auth(invitee)) == (404, "invalid_link")
    assert invitee.id not in roles_in(session, workspace.id)


def test_invitations_to_one_email_are_throttled(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner = make_user()
    workspace = make_workspace(owner)

    statuses = [invite(client, workspace, auth(owner), "target@example.com").status_code for _ in range(4)]

    assert statuses == [201, 201, 201, 429]
