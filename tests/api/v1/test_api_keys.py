"""API keys for programs: made by admins, shown once, acting only inside their workspace with their role, named as
the actor of what they do, and revoked; on both dialects."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select

from src.api.v1.models.api_key import ApiKey
from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role
from src.core.timestamps import utcnow
from tests.api.conftest import AddMember, MakeUser, MakeWorkspace, auth, bearer


def keys_url(workspace: Workspace | uuid.UUID) -> str:
    return f"/api/v1/workspaces/{getattr(workspace, 'id', workspace)}/api-keys"


def make_key(client: TestClient, workspace: Workspace, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = client.post(keys_url(workspace), json={"name": "CI", **body}, headers=headers)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_a_key_is_shown_once_and_kept_as_a_digest(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner = make_user()
    workspace = make_workspace(owner)

    created = make_key(client, workspace, auth(owner), role="admin")
    listed = client.get(keys_url(workspace), headers=auth(owner)).json()

    secret = created["secret"]
    assert secret.startswith("fsk_") and created["prefix"] == secret[:12] and created["role"] == "admin"
    assert [(key["id"], key["prefix"], key["name"]) for key in listed] == [(created["id"], created["prefix"], "CI")]
    assert all("secret" not in key for key in listed)
    stored = session.exec(select(ApiKey)).one()
    assert secret not in (stored.digest, stored.prefix) and stored.digest != secret
    event = session.exec(select(OutboxEvent).where(OutboxEvent.action == "workspace.api_key_created")).one()
    assert event.details == {"name": "CI", "role": "admin", "prefix": created["prefix"]}
    assert secret not in str(event.details)


def test_a_key_acts_only_in_its_workspace_with_its_role_and_is_the_recorded_actor(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner = make_user()
    workspace, other = make_workspace(owner, "Mine"), make_workspace(owner, "Other")
    reader = bearer(make_key(client, workspace, auth(owner), role="member")["secret"])
    writer = make_key(client, workspace, auth(owner), role="admin")
    headers = bearer(writer["secret"])

    assert client.get(f"/api/v1/workspaces/{workspace.id}", headers=reader).json()["name"] == "Mine"
    assert client.patch(f"/api/v1/workspaces/{workspace.id}", json={"name": "No"}, headers=reader).status_code == 403
    renamed = client.patch(f"/api/v1/workspaces/{workspace.id}", json={"name": "Renamed"}, headers=headers)
    assert renamed.status_code == 200
    assert client.get(f"/api/v1/workspaces/{other.id}", headers=headers).json()["error"] == "workspace_not_found"
    for method, path in [("GET", "/api/v1/users/me"), ("GET", "/api/v1/workspaces"), ("POST", "/api/v1/workspaces")]:
        answer = client.request(method, path, headers=headers, json={"name": "X"})
        assert (answer.status_code, answer.json()["error"]) == (403, "api_key_not_allowed"), path
    assert (
        client.post(keys_url(workspace), json={"name": "More"}, headers=headers).json()["error"]
        == "api_key_not_allowed"
    )
    event = session.exec(select(OutboxEvent).where(OutboxEvent.action == "workspace.updated")).one()
    assert (event.actor_type, event.actor_id) == ("api_key", uuid.UUID(writer["id"]))
    audit = client.get(f"/api/v1/workspaces/{workspace.id}/audit-events", headers=headers)
    assert audit.status_code == 200


def test_a_key_s_role_is_at_most_its_maker_s(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, admin, member = make_user(), make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, admin, Role.ADMIN)
    add_member(workspace, member, Role.MEMBER)

    by_member = client.post(keys_url(workspace), json={"name": "X"}, headers=auth(member))

    assert (by_member.status_code, by_member.json()["error"]) == (403, "insufficient_role")
    assert make_key(client, workspace, auth(admin), role="admin")["role"] == "admin"
    # No key is an owner: deleting the workspace and handing out ownership stay with people.
    owner_key = client.post(keys_url(workspace), json={"name": "X", "role": "owner"}, headers=auth(owner))
    assert owner_key.status_code == 422
    for days in (0, 3651):
        answer = client.post(keys_url(workspace), json={"name": "X", "expires_in_days": days}, headers=auth(owner))
        assert answer.status_code == 422
    expiring = make_key(client, workspace, auth(owner), expires_in_days=90)
    assert 89 <= (datetime.fromisoformat(expiring["expires_at"]) - utcnow()).days <= 90


def test_revoked_expired_and_unknown_keys_are_refused(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner = make_user()
    workspace = make_workspace(owner)
    revoked, expiring = make_key(client, workspace, auth(owner)), make_key(client, workspace, auth(owner))
    here = f"/api/v1/workspaces/{workspace.id}"

    assert client.delete(f"{keys_url(workspace)}/{revoked['id']}", headers=auth(owner)).status_code == 204
    assert client.delete(f"{keys_url(workspace)}/{revoked['id']}", headers=auth(owner)).status_code == 404
    session.exec(
        update(ApiKey)
        .where(col(ApiKey.id) == uuid.UUID(expiring["id"]))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()

    for secret in (revoked["secret"], expiring["secret"], "fsk_made-up"):
        answer = client.get(here, headers=bearer(secret))
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_token")
    assert client.get("/api/v1/users/me", headers=bearer("fsk_made-up")).status_code == 401


def test_a_key_s_last_use_is_noted(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner = make_user()
    workspace = make_workspace(owner)
    key = make_key(client, workspace, auth(owner))
    assert key["last_used_at"] is None

    client.get(f"/api/v1/workspaces/{workspace.id}", headers=bearer(key["secret"]))

    [listed] = client.get(keys_url(workspace), headers=auth(owner)).json()
    assert listed["last_used_at"] is not None


def test_a_key_loses_its_power_with_its_maker(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, admin = make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, admin, Role.ADMIN)
    admin_key = bearer(make_key(client, workspace, auth(admin), role="admin")["secret"])
    member_key = bearer(make_key(client, workspace, auth(admin), role="member")["secret"])
    here = f"/api/v1/workspaces/{workspace.id}"
    assert client.get(here, headers=admin_key).status_code == 200

    demoted = client.patch(f"{here}/members/{admin.id}", json={"role": "member"}, headers=auth(owner))
    assert demoted.status_code == 200
    assert client.get(here, headers=admin_key).status_code == 401  # the maker can no longer grant admin
    assert client.get(here, headers=member_key).status_code == 200
    assert client.delete(f"{here}/members/{admin.id}", headers=auth(owner)).status_code == 204
    refused = client.get(here, headers=member_key)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")


def test_a_bearer_shaped_like_a_key_but_not_one_is_refused_unread(client: TestClient) -> None:
    for bearer_value in ("fsk_", "fsk_" + "A" * 100_000, "fsk_" + "A" * 43):
        answer = client.get("/api/v1/workspaces", headers={"Authorization": f"Bearer {bearer_value}"})
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_token")
