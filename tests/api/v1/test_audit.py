"""/workspaces/{workspace_id}/audit-events and /activity: filters, pages and counts on known data."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection
from sqlmodel import Session, select

from src.api.v1.models.audit_event import AuditEvent
from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.schemas.audit import public_event
from src.core.timestamps import utcnow
from tests.api.conftest import MakeUser, MakeWorkspace, auth, joined_session


@pytest.fixture
def today() -> datetime:
    """Noon UTC today, read when the test starts."""
    return utcnow().replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def audit_session(audit_connection: Connection) -> Session:
    return joined_session(audit_connection)


@pytest.fixture
def owner(make_user: MakeUser) -> User:
    return make_user()


@pytest.fixture
def workspace(make_workspace: MakeWorkspace, owner: User) -> Workspace:
    return make_workspace(owner)


def add_events(session: Session, workspace_id: uuid.UUID, *events: tuple[datetime, str, uuid.UUID]) -> list[AuditEvent]:
    rows = [
        AuditEvent(
            occurred_at=occurred_at,
            action=action,
            outcome="success",
            actor_type="user",
            actor_id=actor_id,
            workspace_id=workspace_id,
            details={"n": index},
        )
        for index, (occurred_at, action, actor_id) in enumerate(events)
    ]
    session.add_all(rows)
    session.commit()
    return rows


def events_url(workspace: Workspace) -> str:
    return f"/api/v1/workspaces/{workspace.id}/audit-events"


def test_events_come_newest_first_across_pages(
    today: datetime, client: TestClient, audit_session: Session, owner: User, workspace: Workspace
) -> None:
    actor = uuid.uuid4()
    # Two events at the same instant: the id breaks the tie, so no page repeats or skips one.
    rows = add_events(
        audit_session,
        workspace.id,
        (today - timedelta(hours=3), "workspace.updated", actor),
        (today - timedelta(hours=2), "workspace.member_added", actor),
        (today - timedelta(hours=2), "workspace.member_added", actor),
        (today - timedelta(hours=1), "workspace.member_removed", actor),
    )
    expected = [str(row.id) for row in sorted(rows, key=lambda row: (row.occurred_at, row.id), reverse=True)]

    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get(events_url(workspace), params=params, headers=auth(owner)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == expected


def test_event_shows_actor_target_context_and_metadata(
    today: datetime, client: TestClient, audit_session: Session, owner: User, workspace: Workspace
) -> None:
    target = uuid.uuid4()
    audit_session.add(
        AuditEvent(
            occurred_at=today,
            action="workspace.member_role_changed",
            outcome="success",
            actor_type="user",
            actor_id=owner.id,
            workspace_id=workspace.id,
            target_type="user",
            target_id=target,
            context={"ip": "10.0.0.1", "user_agent": "curl/8", "request_id": "abc"},
            details={"before": {"role": "member"}, "after": {"role": "admin"}},
        )
    )
    audit_session.commit()

    [item] = client.get(events_url(workspace), headers=auth(owner)).json()["items"]

    assert item["actor"] == {"type": "user", "id": str(owner.id), "username": owner.username}
    assert item["target"] == {"type": "user", "id": str(target)}
    assert item["context"] == {"ip": "10.0.0.1", "user_agent": "curl/8", "request_id": "abc"}
    assert item["metadata"] == {"before": {"role": "member"}, "after": {"role": "admin"}}
    assert item["occurred_at"].endswith(("Z", "+00:00"))


@pytest.mark.parametrize(
    ("action", "details", "model"),
    [
        pytest.param("workspace.member_added", {"role": "admin"}, "WorkspaceMemberAddedEvent", id="typed"),
        pytest.param("workspace.member_added", {}, "WorkspaceMemberAddedEvent", id="erased"),
        pytest.param("workspace.member_added", {"role": "admin", "by": "x"}, "WorkspaceMemberAddedEvent", id="newer"),
        pytest.param("workspace.archived", {"reason": "done"}, "OtherEvent", id="action-of-a-newer-version"),
        pytest.param("workspace.member_added", {"rank": 3}, "OtherEvent", id="metadata-not-of-its-action"),
    ],
)
def test_an_event_is_shown_typed_by_its_action_and_never_refused(
    today: datetime,
    client: TestClient,
    audit_session: Session,
    owner: User,
    action: str,
    details: dict[str, object],
    model: str,
) -> None:
    recorded = AuditEvent(
        occurred_at=today,
        action=action,
        outcome="success",
        actor_type="user",
        actor_id=owner.id,
        target_type="user",
        target_id=owner.id,
        details=details,
    )
    audit_session.add(recorded)
    audit_session.commit()

    [item] = client.get("/api/v1/users/me/audit-events", headers=auth(owner)).json()["items"]

    assert (item["action"], item["metadata"]) == (action, details)
    assert type(public_event(recorded, {})).__name__ == model


def test_an_actor_whose_account_is_gone_has_no_username(
    today: datetime, client: TestClient, audit_session: Session, owner: User, workspace: Workspace
) -> None:
    gone = uuid.uuid4()
    add_events(audit_session, workspace.id, (today, "workspace.renamed", gone))

    [item] = client.get(events_url(workspace), headers=auth(owner)).json()["items"]

    assert item["actor"] == {"type": "user", "id": str(gone), "username": None}


def test_filters_by_action_actor_and_time(
    today: datetime,
    client: TestClient,
    audit_session: Session,
    owner: User,
    workspace: Workspace,
    make_workspace: MakeWorkspace,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    add_events(
        audit_session,
        workspace.id,
        (today - timedelta(days=2), "workspace.member_added", alice),
        (today - timedelta(days=1), "workspace.member_added", bob),
        (today - timedelta(hours=1), "workspace.updated", alice),
    )
    other = make_workspace(owner, name="Other")
    add_events(audit_session, other.id, (today, "workspace.member_added", alice))

    def details(**params: str) -> list[int]:
        response = client.get(events_url(workspace), params=params, headers=auth(owner))
        assert response.status_code == 200, response.text
        return [item["metadata"]["n"] for item in response.json()["items"]]

    assert details() == [2, 1, 0]
    assert details(action="workspace.member_added") == [1, 0]
    assert details(actor_id=str(alice)) == [2, 0]
    assert details(since=(today - timedelta(days=1, hours=1)).isoformat()) == [2, 1]
    assert details(until=(today - timedelta(days=1)).isoformat()) == [0]
    # No zone given: taken as UTC.
    assert details(since=(today - timedelta(hours=2)).replace(tzinfo=None).isoformat()) == [2]
    assert details(action="workspace.member_added", actor_id=str(alice)) == [0]
    assert details(action_prefix="workspace.member") == [1, 0]
    assert details(action_prefix="workspace.member_") == [1, 0]  # "_" is itself, not any one character
    assert details(action_prefix="workspace.membe%") == []
    assert details(outcome="success") == [2, 1, 0]
    assert details(outcome="failure") == []


def test_filters_by_target(
    today: datetime, client: TestClient, audit_session: Session, owner: User, workspace: Workspace
) -> None:
    target = AuditEvent(
        occurred_at=today - timedelta(hours=2),
        action="workspace.member_added",
        outcome="success",
        actor_type="user",
        actor_id=owner.id,
        workspace_id=workspace.id,
        target_type="user",
        target_id=uuid.uuid4(),
    )
    audit_session.add(target)
    audit_session.commit()
    add_events(audit_session, workspace.id, (today - timedelta(hours=1), "workspace.member_added", owner.id))
    rows = [target]

    response = client.get(events_url(workspace), params={"target_id": str(rows[0].target_id)}, headers=auth(owner))

    assert [item["id"] for item in response.json()["items"]] == [str(rows[0].id)]


@pytest.mark.parametrize(
    ("name", "moment"), [("since", "0001-01-01T00:00:00+14:00"), ("until", "9999-12-31T23:59:59-14:00")]
)
def test_a_time_outside_what_utc_can_hold_is_422(
    client: TestClient, owner: User, workspace: Workspace, name: str, moment: str
) -> None:
    response = client.get(events_url(workspace), params={name: moment}, headers=auth(owner))

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["fields"][0]["loc"] == ["query", name]
    assert "outside the years 1 to 9999" in body["detail"]


def test_activity_counts_per_utc_day_and_action(
    today: datetime, client: TestClient, audit_session: Session, owner: User, workspace: Workspace
) -> None:
    actor = uuid.uuid4()
    midnight = today.replace(hour=0)
    add_events(
        audit_session,
        workspace.id,
        (midnight + timedelta(minutes=1), "workspace.member_added", actor),
        (midnight + timedelta(hours=11), "workspace.member_added", actor),
        (midnight + timedelta(hours=11), "workspace.updated", actor),
        # One second before midnight UTC is still yesterday, whatever the server's own zone.
        (midnight - timedelta(seconds=1), "workspace.member_added", actor),
        (midnight - timedelta(days=2), "workspace.created", actor),
        # Outside a 3-day window.
        (midnight - timedelta(days=3), "workspace.created", actor),
    )

    response = client.get(f"/api/v1/workspaces/{workspace.id}/activity", params={"days": 3}, headers=auth(owner))

    assert response.status_code == 200
    this_day, yesterday, two_days_ago = ((midnight - timedelta(days=days)).date().isoformat() for days in range(3))
    assert response.json() == {
        "since": two_days_ago,
        "days": 3,
        "counts": [
            {"day": two_days_ago, "action": "workspace.created", "count": 1},
            {"day": yesterday, "action": "workspace.member_added", "count": 1},
            {"day": this_day, "action": "workspace.member_added", "count": 2},
            {"day": this_day, "action": "workspace.updated", "count": 1},
        ],
    }


@pytest.mark.parametrize(
    ("path", "params"),
    [
        pytest.param("/audit-events", {"actor_id": "alice"}, id="events-actor-not-a-uuid"),
        pytest.param("/audit-events", {"since": "yesterday"}, id="events-since-not-a-time"),
        pytest.param("/audit-events", {"cursor": "not-a-cursor"}, id="events-malformed-cursor"),
        pytest.param("/audit-events", {"limit": 0}, id="events-limit-zero"),
        pytest.param("/audit-events", {"action": "\x00"}, id="events-action-with-a-nul"),
        pytest.param("/audit-events", {"outcome": "maybe"}, id="events-outcome-not-success-or-failure"),
        pytest.param("/audit-events", {"target_id": "bob"}, id="events-target-not-a-uuid"),
        pytest.param("/activity", {"days": 0}, id="activity-zero-days"),
        pytest.param("/activity", {"days": 36501}, id="activity-over-a-century"),
        pytest.param("/activity", {"days": "week"}, id="activity-days-not-a-number"),
        pytest.param("/audit-events", {"since": "0.5"}, id="events-since-a-number"),
        pytest.param("/audit-events/export", {"format": "xml"}, id="export-format-unknown"),
    ],
)
def test_a_bad_filter_or_window_is_422_and_reads_nothing_to_record(
    client: TestClient, session: Session, owner: User, workspace: Workspace, path: str, params: dict[str, object]
) -> None:
    response = client.get(f"/api/v1/workspaces/{workspace.id}{path}", params=params, headers=auth(owner))

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert not session.exec(select(OutboxEvent).where(OutboxEvent.action == "audit.read")).all()


def test_events_need_a_token(client: TestClient, workspace: Workspace) -> None:
    response = client.get(events_url(workspace))

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_naive_and_aware_filters_agree(
    client: TestClient, audit_session: Session, owner: User, workspace: Workspace
) -> None:
    add_events(audit_session, workspace.id, (datetime(2026, 1, 1, 12, tzinfo=UTC), "workspace.updated", owner.id))

    aware = client.get(events_url(workspace), params={"since": "2026-01-01T11:00:00+00:00"}, headers=auth(owner))
    naive = client.get(events_url(workspace), params={"since": "2026-01-01T11:00:00"}, headers=auth(owner))
    other_zone = client.get(events_url(workspace), params={"since": "2026-01-01T14:30:00+02:00"}, headers=auth(owner))

    assert len(aware.json()["items"]) == len(naive.json()["items"]) == 1
    assert other_zone.json()["items"] == []


def add_user_events(session: Session, user_id: uuid.UUID, *actions: str, workspace_id: uuid.UUID | None = None) -> None:
    session.add_all(
        AuditEvent(
            occurred_at=utcnow() - timedelta(minutes=len(actions) - index),
            action=action,
            outcome="success",
            actor_type="user",
            actor_id=user_id,
            workspace_id=workspace_id,
            target_type="user",
            target_id=user_id,
        )
        for index, action in enumerate(actions)
    )
    session.commit()


def test_a_user_reads_their_own_events_of_no_workspace_and_no_one_elses(
    client: TestClient, session: Session, audit_session: Session, make_user: MakeUser, workspace: Workspace
) -> None:
    ada, bob = make_user(), make_user()
    add_user_events(audit_session, ada.id, "user.signed_up", "user.login_failed", "user.logged_in")
    add_user_events(audit_session, bob.id, "user.signed_up")
    add_user_events(audit_session, ada.id, "workspace.member_added", workspace_id=workspace.id)  # the workspace's

    response = client.get("/api/v1/users/me/audit-events", headers=auth(ada))
    failed = client.get("/api/v1/users/me/audit-events", params={"action": "user.login_failed"}, headers=auth(ada))

    assert response.status_code == 200
    assert [item["action"] for item in response.json()["items"]] == [
        "user.logged_in",
        "user.login_failed",
        "user.signed_up",
    ]
    assert [item["action"] for item in failed.json()["items"]] == ["user.login_failed"]
    # Each read is recorded, as the reader's own event.
    reads = session.exec(select(OutboxEvent).where(OutboxEvent.action == "audit.read")).all()
    assert [(read.actor_id, read.target_id, read.workspace_id) for read in reads] == [(ada.id, ada.id, None)] * 2


def test_a_users_own_events_need_a_token(client: TestClient) -> None:
    response = client.get("/api/v1/users/me/audit-events")

    assert (response.status_code, response.json()["error"]) == (401, "not_authenticated")
