"""Audit events end to end: recorded with each change in core, relayed to audit, read back per workspace.

These run the real app on fresh databases (no rolled-back transaction), since
delivery crosses two databases and several commits.
"""

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from src.api.v1.models.audit_event import AuditEvent
from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.user import User
from src.api.v1.schemas.audit import AUDIT_EVENT, METADATA, OtherEvent, public_event
from src.audit_jobs import __main__ as audit_jobs
from src.core.config import get_settings
from src.core.engines import get_engine
from src.main import create_app
from src.services.accounts import make_admin
from src.services.audit_chain import verify
from src.services.audit_log import about_user
from src.services.audit_relay import relay_pending
from tests.api.conftest import PASSWORD, logged_in
from tests.conftest import UNREACHABLE_URL, DatabaseUrls
from tests.factories import INVITED, RESET, mailed_token


@pytest.fixture
def served_client(migrated_databases: DatabaseUrls) -> Iterator[TestClient]:
    """The app as it runs, with its lifespan and engines: events cross from the core outbox to audit for real."""
    with TestClient(create_app(), headers={"User-Agent": "audit-test/1.0"}) as client:
        yield client


def sign_up(client: TestClient, name: str) -> str:
    body = {
        "email": f"{name}@example.com",
        "username": name,
        "password": PASSWORD,
        "first_name": name.title(),
        "last_name": "Test",
    }
    response = client.post("/api/v1/users", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def outbox() -> list[OutboxEvent]:
    with Session(get_engine("core")) as session:
        return list(session.exec(select(OutboxEvent).order_by(col(OutboxEvent.occurred_at), col(OutboxEvent.id))))


def audit_events() -> list[AuditEvent]:
    with Session(get_engine("audit")) as session:
        return list(session.exec(select(AuditEvent).order_by(col(AuditEvent.occurred_at), col(AuditEvent.id))))


def make_service_admin(username: str) -> None:
    """As make create-admin does, without its audit event: the admins of the service add members directly."""
    with Session(get_engine("core")) as session:
        session.exec(update(User).where(col(User.username) == username).values(is_admin=True))
        session.commit()


def walkthrough(client: TestClient) -> tuple[str, dict[str, str]]:
    """Two sign-ups, a wrong password, a workspace, a member added and removed; the workspace and the owner's auth."""
    sign_up(client, "ada")
    bob = sign_up(client, "bob")
    make_service_admin("ada")
    assert client.post("/api/v1/auth/token", data={"username": "ada", "password": "wrong"}).status_code == 401
    ada = logged_in(client, "ada")
    workspace = client.post("/api/v1/workspaces", json={"name": "Engines"}, headers=ada).json()["id"]
    assert (
        client.post(
            f"/api/v1/workspaces/{workspace}/members", json={"user_id": bob, "role": "admin"}, headers=ada
        ).status_code
        == 201
    )
    assert client.delete(f"/api/v1/workspaces/{workspace}/members/{bob}", headers=ada).status_code == 204
    return workspace, ada


def test_walkthrough_shows_its_events_after_the_relay(served_client: TestClient) -> None:
    workspace, ada = walkthrough(served_client)

    relay_pending(batch_size=100)
    page = served_client.get(f"/api/v1/workspaces/{workspace}/audit-events", headers=ada).json()

    assert [item["action"] for item in page["items"]] == [
        "workspace.member_removed",
        "workspace.member_added",
        "workspace.created",
    ]
    removed, added, created = page["items"]
    assert added["metadata"] == {"role": "admin"}
    assert removed["metadata"] == {"role": "admin", "left": False}
    assert created["actor"]["id"] == removed["actor"]["id"]
    assert added["context"]["user_agent"] == "audit-test/1.0"
    assert [event.action for event in audit_events()] == [
        "user.signed_up",
        "user.signed_up",
        "user.login_failed",
        "user.logged_in",
        "workspace.created",
        "workspace.member_added",
        "workspace.member_removed",
    ]
    # Reading the trail is itself an event, on its way to the audit database.
    [read] = outbox()
    assert (read.action, read.details) == ("audit.read", {"asked": f"/api/v1/workspaces/{workspace}/audit-events"})


def test_failed_login_is_recorded_although_the_request_fails(served_client: TestClient) -> None:
    ada = sign_up(served_client, "ada")

    response = served_client.post(
        "/api/v1/auth/token", data={"username": "ada", "password": "wrong"}, headers={"X-Request-ID": "req-42"}
    )

    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "req-42"
    failed = outbox()[-1]
    assert (failed.action, failed.outcome, failed.actor_type, failed.actor_id) == (
        "user.login_failed",
        "failure",
        "anonymous",
        None,
    )
    assert failed.target_id == uuid.UUID(ada)
    assert failed.details == {"login": "ada"}
    assert failed.context == {"request_id": "req-42", "ip": "testclient", "user_agent": "audit-test/1.0"}


def workspace_with_bob(client: TestClient) -> tuple[str, str, dict[str, str]]:
    """Ada's workspace with Bob added as a member: the workspace's id, Bob's id and Ada's auth."""
    sign_up(client, "ada")
    bob = sign_up(client, "bob")
    make_service_admin("ada")
    ada = logged_in(client, "ada")
    workspace = client.post("/api/v1/workspaces", json={"name": "Engines"}, headers=ada).json()["id"]
    assert client.post(f"/api/v1/workspaces/{workspace}/members", json={"user_id": bob}, headers=ada).status_code == 201
    return workspace, bob, ada


def test_a_change_that_fails_leaves_no_event(served_client: TestClient) -> None:
    workspace, bob, ada = workspace_with_bob(served_client)

    again = served_client.post(f"/api/v1/workspaces/{workspace}/members", json={"user_id": bob}, headers=ada)

    assert again.status_code == 409
    assert [event.action for event in outbox()].count("workspace.member_added") == 1


def test_password_change_and_role_change_record_before_and_after(served_client: TestClient) -> None:
    workspace, bob, ada = workspace_with_bob(served_client)

    served_client.patch(f"/api/v1/workspaces/{workspace}/members/{bob}", json={"role": "admin"}, headers=ada)
    served_client.put(
        "/api/v1/users/me/password",
        json={"new_password": "a new password 1", "current_password": PASSWORD},
        headers=ada,
    )

    role_change, password_change = outbox()[-2:]
    assert role_change.action == "workspace.member_role_changed"
    assert role_change.details == {"before": {"role": "member"}, "after": {"role": "admin"}}
    assert role_change.workspace_id == uuid.UUID(workspace)
    assert password_change.action == "user.password_changed"
    assert password_change.details == {}  # nothing about the password itself


def test_the_app_relays_in_the_background(migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "audit_relay_enabled", True)
    monkeypatch.setattr(get_settings(), "audit_relay_interval_seconds", 0.05)

    with TestClient(create_app()) as client:
        sign_up(client, "ada")
        deadline = time.monotonic() + 10
        while not audit_events() and time.monotonic() < deadline:
            time.sleep(0.05)

    assert [event.action for event in audit_events()] == ["user.signed_up"]
    assert outbox() == []


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_outage_drill_audit_down_then_restored(
    migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "audit_database_url", UNREACHABLE_URL)

    with TestClient(create_app()) as client:
        workspace, ada = walkthrough(client)
        client.patch(f"/api/v1/workspaces/{workspace}", json={"name": "Analytical Engines"}, headers=ada)
        ready = client.get("/ready")
        reading = client.get(f"/api/v1/workspaces/{workspace}/audit-events", headers=ada)
    pending = outbox()

    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["databases"]["audit"]["status"] == "unreachable"
    assert ready.json()["databases"]["core"]["status"] == "ok"
    # The read was allowed, and is recorded, before the audit database failed it.
    assert ready.json()["audit_backlog"] == len(pending) - 1 == 8
    assert pending[-1].action == "audit.read"
    assert reading.status_code == 503
    assert reading.json() == {"error": "database_unavailable", "detail": "a database is unavailable; try again"}

    monkeypatch.setattr(get_settings(), "audit_database_url", migrated_databases["audit"])
    assert relay_pending(batch_size=3) == 9
    assert relay_pending(batch_size=3) == 0

    delivered = audit_events()
    assert [event.id for event in delivered] == [event.id for event in pending]  # each once, in occurred_at order
    assert outbox() == []


def invitations_walkthrough(client: TestClient, admin: dict[str, str], email: str, invitee: dict[str, str]) -> None:
    """Two workspaces of the admin invite the invitee: one invitation is revoked and sent again, then declined; the
    other is accepted."""
    for name, answer in (("Guild", "decline"), ("Club", "accept")):
        workspace = client.post("/api/v1/workspaces", json={"name": name}, headers=admin).json()["id"]
        invitations = f"/api/v1/workspaces/{workspace}/invitations"
        sent = client.post(invitations, json={"email": email}, headers=admin).json()
        if answer == "decline":  # revoked, and sent again
            assert client.delete(f"{invitations}/{sent['id']}", headers=admin).status_code == 204
            assert client.post(invitations, json={"email": email}, headers=admin).status_code == 201
        with Session(get_engine("core")) as session:
            token = mailed_token(session, email, INVITED)
        reply = client.post(f"/api/v1/invitations/{answer}", json={"token": token}, headers=invitee)
        assert reply.status_code < 300, reply.text


def sessions_walkthrough(client: TestClient, login: str, password: str) -> dict[str, str]:
    """A refresh token used twice (its session ends), a session ended from another, a log-out; a new session's
    headers."""
    form = {"username": login, "password": password}
    first = client.post("/api/v1/auth/token", data=form).json()
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 200
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    other, current = logged_in(client, login, password), logged_in(client, login, password)
    [ended] = [item["id"] for item in client.get("/api/v1/users/me/sessions", headers=other).json() if item["current"]]
    assert client.delete(f"/api/v1/users/me/sessions/{ended}", headers=current).status_code == 204
    assert client.post("/api/v1/auth/logout", headers=current).status_code == 204
    return logged_in(client, login, password)


def accounts_walkthrough(client: TestClient, admin: dict[str, str]) -> uuid.UUID:
    """Every account action on a new user, Carol: the admin flag, deactivation and back, a password
    reset (for an unknown email too), confirmations of an address (Ada's) and of a change of address, the deletion of
    Carol's account. Carol's id."""
    carol = sign_up(client, "carol")
    with Session(get_engine("core")) as session:
        make_admin(session, "bob@example.com")  # Ada is one already
        session.commit()
    assert client.post(f"/api/v1/users/{carol}/deactivate", headers=admin).status_code == 200
    assert client.post(f"/api/v1/users/{carol}/reactivate", headers=admin).status_code == 200
    for email in ("carol@example.com", "nobody@example.com"):
        assert client.post("/api/v1/auth/forgot-password", json={"email": email}).status_code == 202
        assert client.post("/api/v1/auth/request-verify-token", json={"email": email}).status_code == 202
    with Session(get_engine("core")) as session:
        reset = {"token": mailed_token(session, "carol@example.com", RESET), "new_password": "a new password 2"}
        confirmation = {"token": mailed_token(session, "ada@example.com")}
    assert client.post("/api/v1/auth/reset-password", json=reset).status_code == 204
    assert client.post("/api/v1/auth/verify", json=confirmation).status_code == 204
    carol_token = logged_in(client, "carol", "a new password 2")
    change = {"email": "carol.new@example.com", "current_password": "a new password 2"}
    assert client.put("/api/v1/users/me/email", json=change, headers=carol_token).status_code == 202
    with Session(get_engine("core")) as session:
        confirmation = {"token": mailed_token(session, "carol.new@example.com")}
    assert client.post("/api/v1/auth/verify", json=confirmation).status_code == 204
    carol_token = sessions_walkthrough(client, "carol", "a new password 2")
    invitations_walkthrough(client, admin, "carol.new@example.com", carol_token)
    deletion = {"current_password": "a new password 2"}
    assert client.request("DELETE", "/api/v1/users/me", json=deletion, headers=carol_token).status_code == 204
    return uuid.UUID(carol)


def test_every_action_the_service_records_is_shown_with_its_typed_metadata(
    served_client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "account_mail_per_email", 10)  # Carol's new address gets five messages
    workspace, bob, ada = workspace_with_bob(served_client)
    change = {"new_password": "a new password 1", "current_password": "a guess"}
    for _ in range(get_settings().login_failures_per_account + 1):  # failed checks, then the lockout
        served_client.put("/api/v1/users/me/password", json=change, headers=ada)
    served_client.patch("/api/v1/users/me", json={"last_name": "King"}, headers=ada)
    served_client.patch(f"/api/v1/workspaces/{workspace}", json={"name": "Difference"}, headers=ada)
    served_client.patch(f"/api/v1/workspaces/{workspace}/members/{bob}", json={"role": "admin"}, headers=ada)
    served_client.delete(f"/api/v1/workspaces/{workspace}/members/{bob}", headers=ada)
    served_client.get(f"/api/v1/workspaces/{workspace}/audit-events", headers=ada)
    key = served_client.post(f"/api/v1/workspaces/{workspace}/api-keys", json={"name": "CI"}, headers=ada).json()
    assert served_client.delete(f"/api/v1/workspaces/{workspace}/api-keys/{key['id']}", headers=ada).status_code == 204
    relay_pending(batch_size=100)
    served_client.delete(f"/api/v1/workspaces/{workspace}", headers=ada)
    served_client.post("/api/v1/auth/token", data={"username": "bob", "password": "wrong"})
    bob_token = logged_in(served_client, "bob")
    served_client.put(
        "/api/v1/users/me/password",
        json={"new_password": "a new password 1", "current_password": PASSWORD},
        headers=bob_token,
    )
    carol = accounts_walkthrough(served_client, ada)
    relay_pending(batch_size=100)

    shown = [
        AUDIT_EVENT.validate_python(item)
        for path, headers in [
            (f"/api/v1/workspaces/{workspace}/audit-events", ada),  # gone: 404, read before
            ("/api/v1/users/me/audit-events", ada),
            ("/api/v1/users/me/audit-events", logged_in(served_client, "bob", "a new password 1")),
        ]
        for item in served_client.get(path, params={"limit": 100}, headers=headers).json().get("items", [])
    ]
    with Session(get_engine("audit")) as session:
        workspace_events = session.exec(select(AuditEvent).where(col(AuditEvent.workspace_id).is_not(None)))
        shown += [public_event(event, {}) for event in workspace_events]
        # Carol's account is deleted: its events are read from the database.
        shown += [public_event(event, {}) for event in session.exec(select(AuditEvent).where(about_user(carol)))]

    assert {event.action for event in shown} == set(METADATA) - {"audit.pruned"}  # a prune's: tests/services
    assert not [event for event in shown if isinstance(event, OtherEvent)]
    assert "shown untyped" not in caplog.text


def test_deleting_an_account_erases_the_person_from_the_audit_trail_and_it_still_verifies(
    migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(), headers={"User-Agent": "audit-test/1.0"}) as client:
        workspace, owner = walkthrough(client)
        client.post(f"/api/v1/workspaces/{workspace}/members", json={"email": "bob@example.com"}, headers=owner)
        bob = logged_in(client, "bob")
        client.patch("/api/v1/users/me", json={"first_name": "Robert", "last_name": "Babbage"}, headers=bob)
        client.post("/api/v1/auth/token", data={"username": "bob", "password": "wrong"})
        relay_pending(batch_size=3)
        client.patch("/api/v1/users/me", json={"last_name": "Byron"}, headers=bob)  # still in the outbox
        bob_id = client.get("/api/v1/users/me", headers=bob).json()["id"]
        delivered_before = len(audit_events())
        waiting_before = len(outbox())
        deletion = {"current_password": PASSWORD}
        assert client.request("DELETE", "/api/v1/users/me", json=deletion, headers=bob).status_code == 204
    # The deletion reaches audit through an outage, like any other event.
    monkeypatch.setattr(get_settings(), "audit_database_url", UNREACHABLE_URL)
    with pytest.raises(DBAPIError):
        relay_pending(batch_size=100)
    monkeypatch.setattr(get_settings(), "audit_database_url", migrated_databases["audit"])
    relay_pending(batch_size=100)

    events = audit_events()
    assert len(events) == delivered_before + waiting_before + 2  # its membership's end, and the deletion
    assert [event.action for event in events][-2:] == ["workspace.member_removed", "user.deleted"]
    personal = ("bob@example.com", "bob", "Bob", "Robert", "Babbage", "Byron")
    rows = [json.dumps([event.context, event.details]) for event in events]
    assert not [row for row in rows if any(f'"{word}' in row for word in personal)]
    about_bob = [event for event in events if uuid.UUID(bob_id) in (event.actor_id, event.target_id)]
    assert len(about_bob) >= 6 and all(event.personal_salt is None for event in about_bob)
    with get_engine("audit").connect() as audit:
        verification = verify(audit, key=get_settings().audit_signing_key)
    assert verification.ok and sum(walk.erased for walk in verification.chains) == len(about_bob)
    assert audit_jobs.main(["verify"]) == 0  # make audit-verify
