"""/workspaces/{workspace_id}/members: listing, adding, changing roles, removing and leaving."""

import uuid
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text
from sqlmodel import Session

from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role
from tests.api.conftest import AddMember, MakeUser, MakeWorkspace, auth
from tests.factories import roles_in


@dataclass
class Team:
    """A workspace with an owner, a plain member and a user who belongs to nothing yet."""

    workspace: Workspace
    owner: User
    member: User
    outsider: User

    @property
    def members_url(self) -> str:
        return f"/api/v1/workspaces/{self.workspace.id}/members"


@pytest.fixture
def team(make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember) -> Team:
    # Admins of the service, who alone add members directly; outsider is not.
    owner, member, outsider = make_user(admin=True), make_user(admin=True), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, member, Role.MEMBER)
    return Team(workspace=workspace, owner=owner, member=member, outsider=outsider)


# The role matrix: what each role may do to a workspace it belongs to (None: not a member).
# Every row runs in a workspace with a separate owner and a plain member besides the actor.
ACTIONS = {
    "read workspace": ("GET", "", None),
    "rename workspace": ("PATCH", "", {"name": "Renamed"}),
    "delete workspace": ("DELETE", "", None),
    "list members": ("GET", "/members", None),
    "add a member": ("POST", "/members", {"user_id": "{outsider}", "role": "member"}),
    "add an admin": ("POST", "/members", {"user_id": "{outsider}", "role": "admin"}),
    "add an owner": ("POST", "/members", {"user_id": "{outsider}", "role": "owner"}),
    "make a member admin": ("PATCH", "/members/{member}", {"role": "admin"}),
    "make a member owner": ("PATCH", "/members/{member}", {"role": "owner"}),
    "demote an owner": ("PATCH", "/members/{owner}", {"role": "member"}),
    "remove a member": ("DELETE", "/members/{member}", None),
    "remove an owner": ("DELETE", "/members/{owner}", None),
    "leave": ("DELETE", "/members/{actor}", None),
    "read audit events": ("GET", "/audit-events", None),
    "read activity": ("GET", "/activity", None),
}
EXPECTED = {
    #                      owner admin member None
    "read workspace": (200, 200, 200, 404),
    "rename workspace": (200, 200, 403, 404),
    "delete workspace": (204, 403, 403, 404),
    "list members": (200, 200, 200, 404),
    "add a member": (201, 201, 403, 404),
    "add an admin": (201, 201, 403, 404),
    "add an owner": (201, 403, 403, 404),
    "make a member admin": (200, 200, 403, 404),
    "make a member owner": (200, 403, 403, 404),
    "demote an owner": (200, 403, 403, 404),
    "remove a member": (204, 204, 403, 404),
    "remove an owner": (204, 403, 403, 404),
    "leave": (204, 204, 204, 404),
    "read audit events": (200, 200, 403, 404),
    "read activity": (200, 200, 403, 404),
}
ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER, None)


def fill(template: str, people: dict[str, User]) -> str:
    return template.format(**{name: user.id for name, user in people.items()})


@pytest.mark.parametrize("role", ROLES, ids=lambda role: str(role))
@pytest.mark.parametrize("action", EXPECTED)
def test_role_matrix(
    client: TestClient, team: Team, make_user: MakeUser, add_member: AddMember, action: str, role: Role | None
) -> None:
    actor = make_user(admin=True)
    if role is not None:
        add_member(team.workspace, actor, role)
    method, path, body = ACTIONS[action]
    people = {"owner": team.owner, "member": team.member, "outsider": team.outsider, "actor": actor}
    json = {key: fill(value, people) for key, value in body.items()} if body else None

    response = client.request(
        method, f"/api/v1/workspaces/{team.workspace.id}{fill(path, people)}", headers=auth(actor), json=json
    )

    assert response.status_code == EXPECTED[action][ROLES.index(role)], response.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"name": "Renamed"}),
        ("DELETE", "", None),
        ("GET", "/members", None),
        ("POST", "/members", {"email": "someone@example.com"}),
        ("PATCH", "/members/{member}", {"role": "admin"}),
        ("PATCH", "/members/{nobody}", {"role": "admin"}),
        ("DELETE", "/members/{member}", None),
        ("DELETE", "/members/{outsider}", None),
        ("GET", "/audit-events", None),
        ("GET", "/activity", None),
    ],
)
def test_a_non_member_sees_the_same_404_as_for_a_missing_workspace(
    client: TestClient, team: Team, method: str, path: str, body: dict[str, str] | None
) -> None:
    people = {"member": team.member, "outsider": team.outsider, "nobody": team.outsider}
    path = path.replace("{nobody}", str(uuid.uuid4()))
    missing = uuid.uuid4()

    hidden = client.request(
        method, f"/api/v1/workspaces/{team.workspace.id}{fill(path, people)}", headers=auth(team.outsider), json=body
    )
    absent = client.request(
        method, f"/api/v1/workspaces/{missing}{fill(path, people)}", headers=auth(team.outsider), json=body
    )

    assert hidden.status_code == absent.status_code == 404
    assert hidden.json() == {"error": "workspace_not_found", "detail": f"workspace {team.workspace.id} not found"}
    assert absent.json() == {"error": "workspace_not_found", "detail": f"workspace {missing} not found"}


def test_list_members_pages_in_joining_order(
    client: TestClient, team: Team, make_user: MakeUser, add_member: AddMember
) -> None:
    later = make_user()
    add_member(team.workspace, later, Role.ADMIN)

    first = client.get(team.members_url, headers=auth(team.member), params={"limit": 2}).json()
    second = client.get(
        team.members_url, headers=auth(team.member), params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()

    assert [(item["username"], item["role"]) for item in first["items"] + second["items"]] == [
        (team.owner.username, "owner"),
        (team.member.username, "member"),
        (later.username, "admin"),
    ]
    assert second["next_cursor"] is None


def test_list_members_without_a_token_is_401(client: TestClient, team: Team) -> None:
    assert client.get(team.members_url).status_code == 401


def test_add_by_email_in_any_case(client: TestClient, session: Session, team: Team) -> None:
    response = client.post(
        team.members_url, headers=auth(team.owner), json={"email": team.outsider.email.upper(), "role": "admin"}
    )

    assert response.status_code == 201
    assert (response.json()["user_id"], response.json()["role"]) == (str(team.outsider.id), "admin")
    assert roles_in(session, team.workspace.id)[team.outsider.id] == "admin"


def test_add_by_user_id_defaults_to_the_member_role(client: TestClient, session: Session, team: Team) -> None:
    response = client.post(team.members_url, headers=auth(team.owner), json={"user_id": str(team.outsider.id)})

    assert response.status_code == 201
    assert response.json()["role"] == "member"
    assert roles_in(session, team.workspace.id)[team.outsider.id] == "member"


def test_add_someone_already_a_member_is_409(client: TestClient, session: Session, team: Team) -> None:
    response = client.post(
        team.members_url, headers=auth(team.owner), json={"user_id": str(team.member.id), "role": "admin"}
    )

    assert response.status_code == 409
    assert response.json()["error"] == "already_member"
    assert roles_in(session, team.workspace.id)[team.member.id] == "member"


@pytest.mark.parametrize("reference", [{"email": "nobody@example.com"}, {"user_id": str(uuid.UUID(int=1))}])
def test_add_an_unknown_user_is_404(client: TestClient, team: Team, reference: dict[str, str]) -> None:
    response = client.post(team.members_url, headers=auth(team.owner), json=reference)

    assert response.status_code == 404
    assert response.json()["error"] == "user_not_found"


@pytest.mark.parametrize(
    "body",
    [{}, {"email": "a@example.com", "user_id": str(uuid.UUID(int=1))}, {"email": "a@example.com", "role": "king"}],
)
def test_add_with_an_invalid_body_is_422(client: TestClient, team: Team, body: dict[str, str]) -> None:
    response = client.post(team.members_url, headers=auth(team.owner), json=body)

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


def test_a_member_cannot_add_members(client: TestClient, session: Session, team: Team) -> None:
    response = client.post(team.members_url, headers=auth(team.member), json={"user_id": str(team.outsider.id)})

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_role"
    assert team.outsider.id not in roles_in(session, team.workspace.id)


def test_an_admin_cannot_grant_owner(
    client: TestClient, session: Session, team: Team, make_user: MakeUser, add_member: AddMember
) -> None:
    admin = make_user()
    add_member(team.workspace, admin, Role.ADMIN)

    response = client.patch(f"{team.members_url}/{team.member.id}", headers=auth(admin), json={"role": "owner"})

    assert response.status_code == 403
    assert roles_in(session, team.workspace.id)[team.member.id] == "member"


def test_change_role(client: TestClient, session: Session, team: Team) -> None:
    response = client.patch(f"{team.members_url}/{team.member.id}", headers=auth(team.owner), json={"role": "admin"})

    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    assert roles_in(session, team.workspace.id)[team.member.id] == "admin"


@pytest.mark.parametrize(
    ("method", "body"),
    [pytest.param("PATCH", {"role": "admin"}, id="demote"), pytest.param("DELETE", None, id="leave")],
)
def test_the_last_owner_cannot_stop_being_an_owner(
    client: TestClient, session: Session, team: Team, method: str, body: dict[str, str] | None
) -> None:
    response = client.request(method, f"{team.members_url}/{team.owner.id}", headers=auth(team.owner), json=body)

    assert response.status_code == 409
    assert response.json()["error"] == "last_owner"
    assert roles_in(session, team.workspace.id)[team.owner.id] == "owner"


def test_an_owner_can_step_down_once_there_is_another_owner(
    client: TestClient, session: Session, team: Team, add_member: AddMember
) -> None:
    client.patch(f"{team.members_url}/{team.member.id}", headers=auth(team.owner), json={"role": "owner"})

    response = client.patch(f"{team.members_url}/{team.owner.id}", headers=auth(team.owner), json={"role": "member"})

    assert response.status_code == 200
    assert roles_in(session, team.workspace.id) == {team.owner.id: "member", team.member.id: "owner"}


@pytest.mark.parametrize(
    ("method", "body"),
    [pytest.param("PATCH", {"role": "admin"}, id="change-role"), pytest.param("DELETE", None, id="remove")],
)
def test_acting_on_someone_not_a_member_is_404(
    client: TestClient, team: Team, method: str, body: dict[str, str] | None
) -> None:
    response = client.request(method, f"{team.members_url}/{team.outsider.id}", headers=auth(team.owner), json=body)

    assert response.status_code == 404
    assert response.json()["error"] == "member_not_found"


def test_change_role_to_an_unknown_role_is_422(client: TestClient, team: Team) -> None:
    response = client.patch(f"{team.members_url}/{team.member.id}", headers=auth(team.owner), json={"role": "king"})

    assert response.status_code == 422
    assert response.json()["fields"][0]["loc"] == ["body", "role"]


def test_remove_a_member(client: TestClient, session: Session, team: Team) -> None:
    response = client.delete(f"{team.members_url}/{team.member.id}", headers=auth(team.owner))

    assert response.status_code == 204
    assert roles_in(session, team.workspace.id) == {team.owner.id: "owner"}


def test_a_member_can_leave(client: TestClient, session: Session, team: Team) -> None:
    response = client.delete(f"{team.members_url}/{team.member.id}", headers=auth(team.member))

    assert response.status_code == 204
    assert team.member.id not in roles_in(session, team.workspace.id)


def test_a_member_cannot_remove_others(client: TestClient, session: Session, team: Team) -> None:
    response = client.delete(f"{team.members_url}/{team.owner.id}", headers=auth(team.member))

    assert response.status_code == 403
    assert roles_in(session, team.workspace.id)[team.owner.id] == "owner"


def test_remove_without_a_token_is_401(client: TestClient, session: Session, team: Team) -> None:
    response = client.delete(f"{team.members_url}/{team.member.id}")

    assert response.status_code == 401
    assert team.member.id in roles_in(session, team.workspace.id)


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_engines", ["postgresql"], indirect=True)
def test_a_member_added_by_a_concurrent_request_is_already_member(
    client: TestClient, connection: Connection, team: Team
) -> None:
    # The concurrent request wins the race: its row goes in between this request's check and its insert.
    connection.execute(
        text(
            "CREATE FUNCTION added_meanwhile() RETURNS trigger AS $$ BEGIN"
            " IF pg_trigger_depth() = 1 THEN INSERT INTO workspace_members VALUES (NEW.*); END IF; RETURN NEW;"
            " END $$ LANGUAGE plpgsql"
        )
    )
    connection.execute(
        text(
            "CREATE TRIGGER added_meanwhile BEFORE INSERT ON workspace_members"
            " FOR EACH ROW EXECUTE FUNCTION added_meanwhile()"
        )
    )

    response = client.post(
        team.members_url, headers=auth(team.owner), json={"user_id": str(team.outsider.id), "role": "member"}
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "already_member",
        "detail": f"{team.outsider.username} is already a member of this workspace",
    }


def test_a_member_reads_another_member_and_an_outsider_finds_nothing(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, member, outsider = make_user(), make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, member, Role.MEMBER)
    path = f"/api/v1/workspaces/{workspace.id}/members/{owner.id}"

    read = client.get(path, headers=auth(member))
    hidden = client.get(path, headers=auth(outsider))
    not_a_member = client.get(f"/api/v1/workspaces/{workspace.id}/members/{outsider.id}", headers=auth(member))

    assert (read.status_code, read.json()["user_id"], read.json()["role"]) == (200, str(owner.id), "owner")
    assert (hidden.status_code, hidden.json()["error"]) == (404, "workspace_not_found")
    assert (not_a_member.status_code, not_a_member.json()["error"]) == (404, "member_not_found")


def test_two_admins_changing_one_role_from_the_same_read_the_second_gets_412(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, admin, member = make_user(), make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, admin, Role.ADMIN)
    add_member(workspace, member, Role.MEMBER)
    path = f"/api/v1/workspaces/{workspace.id}/members/{member.id}"
    etag = client.get(path, headers=auth(admin)).headers["etag"]

    first = client.patch(path, headers=auth(owner) | {"If-Match": etag}, json={"role": "admin"})
    second = client.patch(path, headers=auth(admin) | {"If-Match": etag}, json={"role": "member"})
    stale_removal = client.delete(path, headers=auth(admin) | {"If-Match": etag})

    assert first.status_code == 200
    assert first.headers["etag"] == client.get(path, headers=auth(admin)).headers["etag"] != etag
    assert first.json()["updated_at"] > first.json()["joined_at"]
    assert (second.status_code, second.json()["error"]) == (412, "precondition_failed")
    assert (stale_removal.status_code, stale_removal.json()["error"]) == (412, "precondition_failed")
    assert roles_in(session, workspace.id)[member.id] == Role.ADMIN


def test_a_removal_under_the_current_etag_goes_through(
    client: TestClient, session: Session, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, member = make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, member, Role.MEMBER)
    path = f"/api/v1/workspaces/{workspace.id}/members/{member.id}"

    removed = client.delete(
        path, headers=auth(owner) | {"If-Match": client.get(path, headers=auth(owner)).headers["etag"]}
    )

    assert removed.status_code == 204
    assert member.id not in roles_in(session, workspace.id)
