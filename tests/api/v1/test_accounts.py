"""Password recovery, email confirmation and change, account deletion, the export and deactivation, through the
API on both dialects; the links are read from the mail queued in the outbox (tests/services/test_mail_outbox.py
sends it through a real SMTP server)."""

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, update
from sqlmodel import Session, col, select

from src.api.v1.models.account_link import AccountLink
from src.api.v1.models.audit_event import AuditEvent
from src.api.v1.models.idempotency_key import IdempotencyKey
from src.api.v1.models.login_failure import LoginFailure
from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.outbox_mail import OutboxMail
from src.api.v1.models.user import User
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.api.v1.schemas.users import AccountExport
from src.core.config import get_settings
from src.core.timestamps import utcnow
from src.services import login_throttle
from src.services.accounts import make_admin
from tests.api.conftest import PASSWORD, AddMember, MakeUser, MakeWorkspace, auth, joined_session, logged_in
from tests.factories import CONFIRM, RESET, mailed_token

NEW_PASSWORD = "a brand new password"


def mail_to(session: Session, recipient: str) -> list[str]:
    return list(session.exec(select(OutboxMail.subject).where(OutboxMail.recipient == recipient)))


def actions(session: Session) -> list[str]:
    return list(session.exec(select(OutboxEvent.action).order_by(col(OutboxEvent.occurred_at))))


def forgot(client: TestClient, email: str) -> int:
    return int(client.post("/api/v1/auth/forgot-password", json={"email": email}).status_code)


def reset(client: TestClient, token: str, password: str = NEW_PASSWORD) -> int:
    answer = client.post("/api/v1/auth/reset-password", json={"token": token, "new_password": password})
    return int(answer.status_code)


def test_a_forgotten_password_is_reset_by_the_mailed_link(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada = make_user(email="ada@example.com", username="ada")
    before = auth(ada)

    emails = ("ADA@example.com", "nobody@example.com")
    answers = [client.post("/api/v1/auth/forgot-password", json={"email": email}) for email in emails]

    assert [(answer.status_code, answer.content) for answer in answers] == [(202, b""), (202, b"")]
    assert mail_to(session, "nobody@example.com") == []
    token = mailed_token(session, "ada@example.com", RESET)
    [link] = session.exec(select(AccountLink).where(AccountLink.purpose == "password_reset")).all()
    assert link.digest != token and token not in link.digest  # only its digest is kept
    assert reset(client, token) == 204
    assert client.get("/api/v1/users/me", headers=before).status_code == 401  # earlier tokens are revoked
    assert client.get("/api/v1/users/me", headers=logged_in(client, "ada", NEW_PASSWORD)).json()["email_verified_at"]
    assert reset(client, token, "another new password") == 404  # single use
    assert actions(session)[-3:] == ["user.password_reset_requested", "user.password_reset", "user.logged_in"]


def test_a_reset_link_dies_when_it_expires_or_the_password_changes(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada = make_user(email="ada@example.com", username="ada")
    assert forgot(client, "ada@example.com") == 202
    expired = mailed_token(session, "ada@example.com", RESET)
    session.exec(update(AccountLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert forgot(client, "ada@example.com") == 202
    outdated = mailed_token(session, "ada@example.com", RESET)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.put("/api/v1/users/me/password", json=change, headers=auth(ada)).status_code == 204

    tokens = (expired, outdated, "not-a-token")
    answers = [client.post("/api/v1/auth/reset-password", json={"token": t, "new_password": "x" * 12}) for t in tokens]

    assert [(answer.status_code, answer.json()["error"]) for answer in answers] == [(404, "invalid_link")] * 3
    logged_in(client, "ada", NEW_PASSWORD)


def test_reset_requests_are_throttled_per_email_whether_or_not_it_has_an_account(
    client: TestClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user(email="ada@example.com")
    limit = get_settings().account_mail_per_email

    known = [forgot(client, "ada@example.com") for _ in range(limit + 1)]
    unknown = [forgot(client, "nobody@example.com") for _ in range(limit + 1)]
    monkeypatch.setattr(get_settings(), "account_mail_per_address", 2 * limit)  # counted so far
    throttled = client.post("/api/v1/auth/forgot-password", json={"email": "carol@example.com"})

    at_home = TestClient(client.app, client=("198.51.100.1", 50000))
    owner = at_home.post("/api/v1/auth/forgot-password", json={"email": "ada@example.com"})

    assert known == unknown == [202] * limit + [429]
    assert throttled.status_code == 429 and throttled.json()["error"] == "too_many_attempts"
    assert int(throttled.headers["Retry-After"]) > 0
    assert owner.status_code == 202  # a stranger's requests do not keep the owner from a reset


def test_a_new_email_is_confirmed_by_the_link_mailed_at_sign_up(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"email": "ada@example.com", "username": "ada", "password": PASSWORD, "first_name": "A", "last_name": "L"}
    assert client.post("/api/v1/users", json=body).json()["email_verified_at"] is None
    monkeypatch.setattr(get_settings(), "login_requires_verified_email", True)
    refused = client.post("/api/v1/auth/token", data={"username": "ada", "password": PASSWORD})
    assert client.post("/api/v1/auth/request-verify-token", json={"email": "ada@example.com"}).status_code == 202
    assert mail_to(session, "ada@example.com") == [CONFIRM, CONFIRM]

    assert (
        client.post("/api/v1/auth/verify", json={"token": mailed_token(session, "ada@example.com")}).status_code == 204
    )

    assert (refused.status_code, refused.json()["error"]) == (403, "email_not_confirmed")
    assert client.get("/api/v1/users/me", headers=logged_in(client, "ada")).json()["email_verified_at"]
    assert "user.email_confirmed" in actions(session)


def test_an_email_changes_only_once_the_new_address_confirms_it(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada = make_user(email="ada@example.com", username="ada")
    change = {"email": "Ada.King@example.com", "current_password": PASSWORD}

    assert client.put("/api/v1/users/me/email", json=change, headers=auth(ada)).status_code == 202
    assert client.get("/api/v1/users/me", headers=auth(ada)).json()["email"] == "ada@example.com"
    assert mail_to(session, "ada@example.com")[-1] == "A change of your email address was requested"
    token = mailed_token(session, "ada.king@example.com")
    assert client.post("/api/v1/auth/verify", json={"token": token}).status_code == 204

    me = client.get("/api/v1/users/me", headers=logged_in(client, "ada.king@example.com")).json()
    assert (me["email"], bool(me["email_verified_at"])) == ("ada.king@example.com", True)
    assert actions(session)[-2:] == ["user.email_changed", "user.logged_in"]


def test_an_email_change_is_refused_when_wrong_or_taken(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada, bob = make_user(email="ada@example.com"), make_user(email="bob@example.com")
    headers = auth(ada)

    def change(email: str, password: str = PASSWORD) -> tuple[int, str]:
        body = {"email": email, "current_password": password}
        answer = client.put("/api/v1/users/me/email", json=body, headers=headers)
        return answer.status_code, answer.json()["error"] if answer.content else ""

    # Whether an account has the address is not told: it is told so, by mail.
    assert change("bob@example.com") == (202, "")
    assert mail_to(session, "bob@example.com")[-1] == "Your email address was offered for another account"
    links = session.exec(select(AccountLink.email).where(AccountLink.user_id == ada.id)).all()
    assert links == ["ada@example.com"]  # the sign-up's: none for bob's address
    assert change("ada@example.com") == (409, "same_email")
    assert change("new@example.com", "wrong password") == (403, "wrong_password")
    assert change("ada2@example.com") == (202, "")
    token = mailed_token(session, "ada2@example.com")
    session.exec(update(User).where(col(User.id) == bob.id).values(email="ada2@example.com"))
    session.commit()

    taken = client.post("/api/v1/auth/verify", json={"token": token})

    assert (taken.status_code, taken.json()["error"]) == (409, "email_taken")
    assert session.get(User, ada.id).email == "ada@example.com"  # type: ignore[union-attr]


def delete_me(client: TestClient, headers: dict[str, str], password: str = PASSWORD) -> tuple[int, object]:
    answer = client.request("DELETE", "/api/v1/users/me", json={"current_password": password}, headers=headers)
    return answer.status_code, answer.json() if answer.content else None


def test_the_last_owner_of_a_workspace_cannot_delete_the_account(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    ada, bob = make_user(), make_user()
    alone, shared = make_workspace(ada, "Alone"), make_workspace(ada, "Shared")
    add_member(shared, bob, Role.OWNER)

    status, error = delete_me(client, auth(ada))

    assert status == 409
    assert error["error"] == "last_owner"  # type: ignore[index]
    assert str(alone.id) in error["detail"] and str(shared.id) not in error["detail"]  # type: ignore[index]
    assert delete_me(client, auth(ada), "wrong password")[0] == 403
    assert session.exec(select(User).where(User.id == ada.id)).first() is not None


def test_deleting_the_account_removes_the_person_from_core(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    ada, bob = make_user(email="ada@example.com"), make_user()
    workspace = make_workspace(bob)
    add_member(workspace, ada, Role.ADMIN)
    headers = logged_in(client, ada.username)
    created = client.post("/api/v1/workspaces", json={"name": "Gone"}, headers=headers | {"Idempotency-Key": "k1"})
    assert client.delete(f"/api/v1/workspaces/{created.json()['id']}", headers=headers).status_code == 204
    client.post("/api/v1/auth/token", data={"username": ada.username, "password": "wrong"})  # a failure counted
    assert forgot(client, "ada@example.com") == 202

    assert delete_me(client, headers) == (204, None)

    assert session.exec(select(User).where(User.id == ada.id)).first() is None
    for column in (WorkspaceMember.user_id, AccountLink.user_id, IdempotencyKey.owner_id):
        assert session.exec(select(column).where(col(column) == ada.id)).all() == [], column
    assert session.exec(select(LoginFailure).where(col(LoginFailure.key).contains(str(ada.id)))).all() == []
    assert mail_to(session, "ada@example.com") == []
    about_ada = select(OutboxEvent).where((OutboxEvent.actor_id == ada.id) | (OutboxEvent.target_id == ada.id))
    events = session.exec(about_ada.order_by(col(OutboxEvent.occurred_at))).all()
    assert [event.action for event in events][-2:] == ["workspace.member_removed", "user.deleted"]
    assert all(event.context == {} for event in events[:-2])  # erased at once, still waiting in the outbox
    assert client.get("/api/v1/users/me", headers=headers).status_code == 401
    assert client.post("/api/v1/auth/token", data={"username": ada.username, "password": PASSWORD}).status_code == 401


def test_the_export_holds_the_account_its_memberships_and_its_events(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace
) -> None:
    ada = make_user()
    workspace = make_workspace(ada, "Engines")

    answer = client.get("/api/v1/users/me/export", headers=auth(ada))

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    export = AccountExport.model_validate_json(answer.content)
    assert export.account.id == ada.id
    assert [(m.workspace_id, m.workspace_name, m.role) for m in export.memberships] == [
        (workspace.id, "Engines", Role.OWNER)
    ]


def test_an_admin_deactivates_and_reactivates_accounts(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    admin, ada = make_user(email="admin@example.com"), make_user()
    make_admin(session, "admin@example.com")
    session.commit()
    before = logged_in(client, ada.username)

    assert client.post(f"/api/v1/users/{ada.id}/deactivate", headers=before).json()["error"] == "admin_only"
    off = client.post(f"/api/v1/users/{ada.id}/deactivate", headers=auth(admin))
    assert (off.status_code, off.json()["is_active"]) == (200, False)
    assert client.get("/api/v1/users/me", headers=before).status_code == 401
    assert client.post("/api/v1/auth/token", data={"username": ada.username, "password": PASSWORD}).status_code == 401
    on = client.post(f"/api/v1/users/{ada.id}/reactivate", headers=auth(admin))

    assert (on.status_code, on.json()["is_active"]) == (200, True)
    assert client.get("/api/v1/users/me", headers=before).status_code == 401  # revoked for good
    assert client.get("/api/v1/users/me", headers=logged_in(client, ada.username)).status_code == 200
    assert client.post(f"/api/v1/users/{admin.id}/deactivate", headers=auth(admin)).json()["error"] == "own_account"
    unknown = client.post(f"/api/v1/users/{uuid.uuid4()}/deactivate", headers=auth(admin))
    assert (unknown.status_code, unknown.json()["error"]) == (404, "user_not_found")
    assert [action for action in actions(session) if action.endswith("activated")] == [
        "user.deactivated",
        "user.reactivated",
    ]


def test_a_reset_link_sent_to_a_former_address_opens_nothing(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada = make_user(email="ada@example.com", username="ada")
    assert forgot(client, "ada@example.com") == 202
    old_mailbox = mailed_token(session, "ada@example.com", RESET)
    change = {"email": "ada.king@example.com", "current_password": PASSWORD}
    assert client.put("/api/v1/users/me/email", json=change, headers=auth(ada)).status_code == 202
    confirmation = {"token": mailed_token(session, "ada.king@example.com")}
    assert client.post("/api/v1/auth/verify", json=confirmation).status_code == 204

    assert reset(client, old_mailbox) == 404
    logged_in(client, "ada")


def test_the_person_s_own_trail_shows_no_one_else_s_address(
    client: TestClient, audit_connection: Connection, make_user: MakeUser
) -> None:
    admin, ada = make_user(), make_user()
    office = {"request_id": "r1", "ip": "203.0.113.50", "user_agent": "Office/1.0"}
    with joined_session(audit_connection) as audit:
        for action, actor_id in (
            ("user.deactivated", admin.id),
            ("user.reactivated", admin.id),
            ("user.logged_in", ada.id),
        ):
            audit.add(
                AuditEvent(
                    action=action, outcome="success", actor_type="user", actor_id=actor_id,
                    target_type="user", target_id=ada.id, context=office,
                )
            )  # fmt: skip
        audit.commit()

    own = client.get("/api/v1/users/me/audit-events", headers=auth(ada)).json()["items"]
    export = AccountExport.model_validate_json(client.get("/api/v1/users/me/export", headers=auth(ada)).content)
    admins = AccountExport.model_validate_json(client.get("/api/v1/users/me/export", headers=auth(admin)).content)

    shown = {event["action"]: event["context"] for event in own}
    assert shown == {"user.deactivated": {}, "user.reactivated": {}, "user.logged_in": office}
    assert {event.action: event.context.model_dump() for event in export.audit_events} == shown
    assert {event.context.model_dump()["ip"] for event in admins.audit_events} == {"203.0.113.50"}  # the admin's own


def test_deletion_drops_the_mail_not_sent_yet_whatever_its_address(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada = make_user(email="ada@example.com")
    change = {"email": "ada.new@example.com", "current_password": PASSWORD}
    assert client.put("/api/v1/users/me/email", json=change, headers=auth(ada)).status_code == 202
    assert assert_request_recorded_about(session, ada.id, "user.email_change_requested")

    assert delete_me(client, auth(ada)) == (204, None)

    assert session.exec(select(OutboxMail)).all() == []


def assert_request_recorded_about(session: Session, user_id: uuid.UUID, action: str) -> bool:
    return (
        session.exec(select(OutboxEvent).where(OutboxEvent.action == action, OutboxEvent.target_id == user_id)).first()
        is not None
    )


def test_requests_for_a_confirmed_account_are_recorded_about_it(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    ada = make_user(email="ada@example.com")
    session.exec(update(User).where(col(User.id) == ada.id).values(email_verified_at=utcnow()))
    session.commit()

    assert client.post("/api/v1/auth/request-verify-token", json={"email": "ada@example.com"}).status_code == 202
    assert client.post("/api/v1/auth/request-verify-token", json={"email": "bob@example.com"}).status_code == 202

    assert mail_to(session, "ada@example.com") == [CONFIRM]  # the sign-up's only: it is confirmed
    assert assert_request_recorded_about(session, ada.id, "user.email_confirmation_requested")
    requested = select(OutboxEvent).where(OutboxEvent.action == "user.email_confirmation_requested")
    [unknown] = [event for event in session.exec(requested) if event.target_id is None]
    assert unknown.details == {"login_digest": login_throttle.login_digest("bob@example.com")}
