"""POST /users, GET and PATCH /users/me."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.user import User
from src.core.config import get_settings
from src.core.security import verify_password
from tests.api.conftest import PASSWORD, MakeUser, auth, create_test_app

SIGN_UP = {
    "email": "Ada.Lovelace@Example.com",
    "username": "ada",
    "password": "analytical engine",
    "first_name": "Ada",
    "last_name": "Lovelace",
}


def stored_user(session: Session, username: str) -> User | None:
    session.expire_all()
    return session.exec(select(User).where(User.username == username)).first()


def test_sign_up_answers_the_public_view(client: TestClient) -> None:
    response = client.post("/api/v1/users", json=SIGN_UP)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "email",
        "username",
        "first_name",
        "last_name",
        "full_name",
        "is_active",
        "is_admin",
        "email_verified_at",
        "created_at",
        "updated_at",
    }
    assert body["email"] == "ada.lovelace@example.com"
    assert body["full_name"] == "Ada Lovelace"
    assert body["is_active"] is True


def test_sign_up_stores_a_lowercased_email_and_an_argon2_hash(client: TestClient, session: Session) -> None:
    client.post("/api/v1/users", json=SIGN_UP)

    user = stored_user(session, "ada")
    assert user is not None
    assert (user.email, user.full_name) == ("ada.lovelace@example.com", "Ada Lovelace")
    assert user.hashed_password.startswith("$argon2id$")
    assert verify_password("analytical engine", user.hashed_password)


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"email": "USER1@example.com"}, "email_taken", "email"),
        ({"username": "user1"}, "username_taken", "username"),
    ],
)
def test_sign_up_with_a_taken_field_is_409_naming_it(
    client: TestClient, session: Session, make_user: MakeUser, change: dict[str, str], error: str, field: str
) -> None:
    make_user()

    response = client.post("/api/v1/users", json=SIGN_UP | change)

    assert response.status_code == 409
    assert response.json()["error"] == error
    assert field in response.json()["detail"]
    assert stored_user(session, "ada") is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"username": "ab"}, "username"),
        ({"username": "ada!"}, "username"),
        ({"username": "a" * 33}, "username"),
        ({"username": "ada lovelace"}, "username"),
        ({"password": "short"}, "password"),
        ({"first_name": ""}, "first_name"),
        ({"first_name": "   "}, "first_name"),
        ({"last_name": "x" * 101}, "last_name"),
        ({"last_name": "Love\x00lace"}, "last_name"),
        ({"is_active": False}, "is_active"),
    ],
)
def test_sign_up_with_an_invalid_field_is_422_naming_it(
    client: TestClient, session: Session, change: dict[str, object], field: str
) -> None:
    response = client.post("/api/v1/users", json=SIGN_UP | change)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert [error["loc"] for error in body["fields"]] == [["body", field]]
    assert stored_user(session, SIGN_UP["username"]) is None


def test_sign_up_with_an_unknown_field_is_422(client: TestClient) -> None:
    response = client.post("/api/v1/users", json=SIGN_UP | {"is_active": False})

    assert response.status_code == 422
    assert response.json()["fields"][0]["type"] == "extra_forbidden"


def test_validation_errors_never_echo_the_password(client: TestClient) -> None:
    response = client.post("/api/v1/users", json=SIGN_UP | {"password": "sh0rt!", "email": "nope"})

    assert response.status_code == 422
    assert "sh0rt!" not in response.text


def test_read_me_answers_the_caller(client: TestClient, make_user: MakeUser) -> None:
    user = make_user()

    response = client.get("/api/v1/users/me", headers=auth(user))

    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)
    assert "hashed_password" not in response.json()


@pytest.mark.parametrize(
    ("method", "body"),
    [pytest.param("GET", None, id="read"), pytest.param("PATCH", {"first_name": "Augusta"}, id="update")],
)
def test_me_without_a_token_is_401(client: TestClient, method: str, body: dict[str, str] | None) -> None:
    response = client.request(method, "/api/v1/users/me", json=body)

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_update_me_changes_the_names_and_full_name(client: TestClient, session: Session, make_user: MakeUser) -> None:
    user = make_user(username="ada")

    response = client.patch("/api/v1/users/me", headers=auth(user), json={"first_name": "Augusta", "last_name": "King"})

    assert response.status_code == 200
    assert response.json()["full_name"] == "Augusta King"
    stored = stored_user(session, "ada")
    assert stored is not None
    assert (stored.first_name, stored.last_name, stored.full_name) == ("Augusta", "King", "Augusta King")


@pytest.mark.parametrize(
    ("current_password", "status", "error", "password_after"),
    [
        pytest.param(PASSWORD, 204, None, "difference engine", id="right-current-password-changes-it"),
        pytest.param("guess", 403, "wrong_password", PASSWORD, id="wrong-current-password-keeps-it"),
    ],
)
def test_the_password_changes_only_given_the_current_one(
    client: TestClient,
    session: Session,
    make_user: MakeUser,
    current_password: str,
    status: int,
    error: str | None,
    password_after: str,
) -> None:
    user = make_user(username="ada")

    response = client.put(
        "/api/v1/users/me/password",
        headers=auth(user),
        json={"new_password": "difference engine", "current_password": current_password},
    )

    assert response.status_code == status
    assert (response.json() if response.content else {}).get("error") == error
    stored = stored_user(session, "ada")
    assert stored is not None
    assert verify_password(password_after, stored.hashed_password)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/me/password", {"new_password": "difference engine"}, id="new-password-without-current-one"),
        pytest.param("/me", {"password": "difference engine", "current_password": PASSWORD}, id="password-in-profile"),
    ],
)
def test_a_password_is_changed_only_with_the_current_one_at_its_own_path(
    client: TestClient, make_user: MakeUser, path: str, body: dict[str, str]
) -> None:
    user = make_user()

    response = client.request(
        "PUT" if path.endswith("password") else "PATCH", "/api/v1/users" + path, headers=auth(user), json=body
    )

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


def test_update_me_cannot_change_the_email(client: TestClient, make_user: MakeUser) -> None:
    user = make_user()

    response = client.patch("/api/v1/users/me", headers=auth(user), json={"email": "other@example.com"})

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["fields"]] == [["body", "email"]]


def test_an_email_typed_decomposed_is_one_address_for_sign_up_and_log_in(client: TestClient) -> None:
    composed, decomposed = "jos\u00e9@example.com", "jose\u0301@example.com"

    signed_up = client.post("/api/v1/users", json=SIGN_UP | {"email": decomposed, "username": "jose"})
    taken = client.post("/api/v1/users", json=SIGN_UP | {"email": composed.upper(), "username": "jose2"})
    logins = [
        client.post("/api/v1/auth/token", data={"username": login, "password": SIGN_UP["password"]}).status_code
        for login in (composed, decomposed, "JOSE\u0301@EXAMPLE.COM")
    ]

    assert signed_up.status_code == 201 and signed_up.json()["email"] == composed
    assert taken.status_code == 409 and taken.json()["error"] == "email_taken"
    assert logins == [200, 200, 200]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("\u200b", "must contain a visible character"),
        ("\u200b\u200d ", "must contain a visible character"),
        ("Ada\u202eecalevoL", "must not contain bidirectional override or isolate characters"),
        ("Ada\u2066x\u2069", "must not contain bidirectional override or isolate characters"),
        ("Ada\x07", "must not contain control characters"),
    ],
)
def test_a_name_that_cannot_be_shown_as_typed_is_422_saying_why(client: TestClient, name: str, reason: str) -> None:
    response = client.post("/api/v1/users", json=SIGN_UP | {"first_name": name})

    assert response.status_code == 422
    assert response.json()["fields"][0]["loc"] == ["body", "first_name"]
    assert reason in response.json()["detail"]


def test_a_username_is_stored_lowercased(client: TestClient) -> None:
    response = client.post("/api/v1/users", json=SIGN_UP | {"username": "Ada"})

    assert response.status_code == 201 and response.json()["username"] == "ada"


@pytest.mark.parametrize("username", ["straße", "\u212aelvin", "ada lovelace", "_ada", "ab"])
def test_a_username_outside_the_published_pattern_is_422(client: TestClient, username: str) -> None:
    published = re.compile(
        create_test_app().openapi()["components"]["schemas"]["UserCreate"]["properties"]["username"]["pattern"]
    )

    response = client.post("/api/v1/users", json=SIGN_UP | {"username": username})

    assert response.status_code == 422
    assert response.json()["fields"][0]["loc"] == ["body", "username"]
    assert not published.fullmatch(username) or len(username) < 3


def test_wrong_current_passwords_are_recorded_and_throttled_like_log_ins(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    user = make_user(username="ada")
    limit = get_settings().login_failures_per_account
    change = {"new_password": "difference engine", "current_password": "a guess"}

    statuses = [
        client.put("/api/v1/users/me/password", headers=auth(user), json=change).status_code for _ in range(limit + 1)
    ]
    right = client.put("/api/v1/users/me/password", headers=auth(user), json=change | {"current_password": PASSWORD})

    assert statuses == [403] * limit + [429]
    assert (right.status_code, right.json()["error"]) == (429, "too_many_attempts")
    actions = [event.action for event in session.exec(select(OutboxEvent).where(OutboxEvent.target_id == user.id))]
    assert actions.count("user.password_check_failed") == limit
    assert actions.count("user.login_throttled") == 1
    stored = stored_user(session, "ada")
    assert stored is not None and verify_password(PASSWORD, stored.hashed_password)


def test_sign_ups_from_one_address_are_limited(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "sign_ups_per_address", 3)

    responses = [
        client.post("/api/v1/users", json=SIGN_UP | {"email": f"ada{number}@example.com", "username": f"ada{number}"})
        for number in range(4)
    ]

    assert [response.status_code for response in responses] == [201, 201, 201, 429]
    assert int(responses[-1].headers["retry-after"]) > 0


def test_a_profile_change_under_the_current_etag_goes_through_and_gives_a_new_one(
    client: TestClient, make_user: MakeUser
) -> None:
    user = make_user()
    read = client.get("/api/v1/users/me", headers=auth(user))

    changed = client.patch(
        "/api/v1/users/me", headers=auth(user) | {"If-Match": read.headers["etag"]}, json={"first_name": "Augusta"}
    )

    assert changed.status_code == 200
    assert changed.headers["etag"] not in (read.headers["etag"], None)
    assert changed.headers["etag"] == client.get("/api/v1/users/me", headers=auth(user)).headers["etag"]
    assert read.json()["updated_at"] == read.json()["created_at"] < changed.json()["updated_at"]


def test_a_change_under_a_stale_etag_is_412_and_changes_nothing(
    client: TestClient, session: Session, make_user: MakeUser
) -> None:
    user = make_user()
    stale = client.get("/api/v1/users/me", headers=auth(user)).headers["etag"]
    client.patch("/api/v1/users/me", headers=auth(user), json={"last_name": "King"})
    events_before = len(session.exec(select(OutboxEvent)).all())

    response = client.patch(
        "/api/v1/users/me", headers=auth(user) | {"If-Match": stale}, json={"first_name": "Augusta"}
    )

    assert (response.status_code, response.json()["error"]) == (412, "precondition_failed")
    session.expire_all()
    stored = session.get(User, user.id)
    assert stored is not None
    assert (stored.first_name, stored.last_name) == (user.first_name, "King")
    assert verify_password(PASSWORD, stored.hashed_password)
    assert len(session.exec(select(OutboxEvent)).all()) == events_before
