"""Idempotency-Key on the creating POSTs: a retry gets the first answer again and creates nothing."""

import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, select

from src.api.v1.models.idempotency_key import IdempotencyKey
from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role
from src.core.timestamps import utcnow
from tests.api.conftest import MakeUser, MakeWorkspace, auth
from tests.factories import roles_in


def workspaces_named(session: Session, name: str) -> int:
    return len(session.exec(select(Workspace).where(Workspace.name == name)).all())


def events(session: Session, action: str) -> int:
    return len(session.exec(select(OutboxEvent).where(OutboxEvent.action == action)).all())


def test_a_retried_creation_answers_the_first_response_and_creates_once(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    headers = auth(make_user()) | {"Idempotency-Key": "create-acme-1"}

    first = client.post("/api/v1/workspaces", headers=headers, json={"name": "Acme"})
    retried = client.post("/api/v1/workspaces", headers=headers, json={"name": "Acme"})

    assert (first.status_code, retried.status_code) == (201, 201)
    assert retried.json() == first.json()
    assert retried.headers["location"] == first.headers["location"]
    assert (first.headers.get("idempotent-replayed"), retried.headers["idempotent-replayed"]) == (None, "true")
    assert workspaces_named(session, "Acme") == 1
    assert events(session, "workspace.created") == 1


def test_the_same_key_with_another_body_is_422_and_creates_nothing(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    headers = auth(make_user()) | {"Idempotency-Key": str(uuid.uuid4())}
    client.post("/api/v1/workspaces", headers=headers, json={"name": "Acme"})

    response = client.post("/api/v1/workspaces", headers=headers, json={"name": "Other"})

    assert (response.status_code, response.json()["error"]) == (422, "idempotency_key_reused")
    assert response.json()["fields"] == []  # every 422 has the same shape
    assert workspaces_named(session, "Other") == 0


def test_keys_are_each_callers_own(client: TestClient, session: Session, make_user: MakeUser) -> None:
    for user in (make_user(), make_user()):
        response = client.post(
            "/api/v1/workspaces", headers=auth(user) | {"Idempotency-Key": "same"}, json={"name": "Acme"}
        )
        assert response.status_code == 201

    assert workspaces_named(session, "Acme") == 2


def test_a_key_past_its_window_creates_again(client: TestClient, session: Session, make_user: MakeUser) -> None:
    headers = auth(make_user()) | {"Idempotency-Key": "nightly"}
    client.post("/api/v1/workspaces", headers=headers, json={"name": "Acme"})
    session.exec(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
    session.commit()

    again = client.post("/api/v1/workspaces", headers=headers, json={"name": "Acme"})

    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, None)
    assert workspaces_named(session, "Acme") == 2
    assert len(session.exec(select(IdempotencyKey)).all()) == 1  # the expired key went


def test_a_retried_member_addition_answers_201_again_not_already_member(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner, newcomer = make_user(admin=True), make_user()
    workspace = make_workspace(owner)
    path, body = f"/api/v1/workspaces/{workspace.id}/members", {"user_id": str(newcomer.id), "role": "admin"}

    first = client.post(path, headers=auth(owner) | {"Idempotency-Key": "add-1"}, json=body)
    retried = client.post(path, headers=auth(owner) | {"Idempotency-Key": "add-1"}, json=body)
    without_key = client.post(path, headers=auth(owner), json=body)

    assert (first.status_code, retried.status_code, retried.json()) == (201, 201, first.json())
    assert without_key.json()["error"] == "already_member"
    assert roles_in(session, workspace.id) == {owner.id: Role.OWNER, newcomer.id: Role.ADMIN}


def test_an_idempotency_key_that_is_not_visible_ascii_is_422(client: TestClient, make_user: MakeUser) -> None:
    response = client.post(
        "/api/v1/workspaces", headers=auth(make_user()) | {"Idempotency-Key": "two words"}, json={"name": "Acme"}
    )

    assert response.status_code == 422


def test_expired_keys_of_every_caller_go_when_a_key_is_taken(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    gone, active = make_user(), make_user()
    client.post("/api/v1/workspaces", headers=auth(gone) | {"Idempotency-Key": "once"}, json={"name": "Acme"})
    session.exec(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
    session.commit()

    client.post("/api/v1/workspaces", headers=auth(active) | {"Idempotency-Key": "later"}, json={"name": "Acme"})

    assert [(key.owner_id, key.key) for key in session.exec(select(IdempotencyKey))] == [(active.id, "later")]


def test_a_retry_by_an_admin_demoted_since_is_403_not_the_stored_answer(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    owner, admin, newcomer = make_user(admin=True), make_user(admin=True), make_user()
    workspace = make_workspace(owner)
    client.post(
        f"/api/v1/workspaces/{workspace.id}/members",
        headers=auth(owner),
        json={"user_id": str(admin.id), "role": "admin"},
    )
    path, body = f"/api/v1/workspaces/{workspace.id}/members", {"user_id": str(newcomer.id)}
    first = client.post(path, headers=auth(admin) | {"Idempotency-Key": "add"}, json=body)
    client.patch(f"{path}/{admin.id}", headers=auth(owner), json={"role": "member"})

    retried = client.post(path, headers=auth(admin) | {"Idempotency-Key": "add"}, json=body)

    assert first.status_code == 201
    assert (retried.status_code, retried.json()["error"]) == (403, "insufficient_role")
