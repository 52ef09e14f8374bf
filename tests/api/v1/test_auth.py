"""POST /auth/token and what a bearer token must be to be accepted."""

import base64
import json
import uuid
from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from src.api.v1.models.user import User
from src.core.config import get_settings
from src.core.security import create_access_token, password_stamp
from src.core.timestamps import utcnow
from src.main import create_app
from tests.api.conftest import PASSWORD, MakeUser, bearer


def valid_claims(user: User) -> dict[str, object]:
    now = utcnow()
    return {
        "sub": str(user.id),
        "iss": get_settings().jwt_issuer,
        "aud": get_settings().jwt_audience,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "pwd": password_stamp(user.hashed_password),
    }


@pytest.mark.parametrize("login", ["ada", "ada@example.com", "ADA@Example.COM"])
def test_token_for_the_username_or_the_email(client: TestClient, make_user: MakeUser, login: str) -> None:
    user = make_user(username="ada", email="ada@example.com")

    response = client.post("/api/v1/auth/token", data={"username": login, "password": PASSWORD})

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == get_settings().access_token_expire_minutes * 60
    me = client.get("/api/v1/users/me", headers=bearer(body["access_token"]))
    assert me.json()["id"] == str(user.id)


def test_token_is_an_hs256_jwt_with_issuer_audience_and_expiry(client: TestClient, make_user: MakeUser) -> None:
    user = make_user(username="ada")

    token = client.post("/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}).json()["access_token"]

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["iss"], claims["aud"]) == (
        str(user.id),
        get_settings().jwt_issuer,
        get_settings().jwt_audience,
    )
    assert claims["exp"] - claims["iat"] == get_settings().access_token_expire_minutes * 60


def test_token_with_a_wrong_password_is_401(client: TestClient, make_user: MakeUser) -> None:
    make_user(username="ada")

    response = client.post("/api/v1/auth/token", data={"username": "ada", "password": "wrong password"})

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_credentials", "detail": "incorrect username, email or password"}


@pytest.mark.parametrize("login", ["nobody", "nobody@example.com"])
def test_token_for_an_unknown_login_is_401_like_a_wrong_password(client: TestClient, login: str) -> None:
    response = client.post("/api/v1/auth/token", data={"username": login, "password": PASSWORD})

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_credentials"


def test_token_for_an_inactive_user_is_401(client: TestClient, session: Session, make_user: MakeUser) -> None:
    user = make_user(username="ada")
    user.is_active = False
    session.commit()

    response = client.post("/api/v1/auth/token", data={"username": "ada", "password": PASSWORD})

    assert response.status_code == 401


def test_token_without_a_password_is_422(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", data={"username": "ada"})

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["fields"]] == [["body", "password"]]


def tampered(user: User) -> str:
    header, payload, signature = create_access_token(user.id, password_hash=user.hashed_password).token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = str(uuid.uuid4())
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


REJECTED_TOKENS: dict[str, Callable[[User], str]] = {
    "tampered": tampered,
    "expired": lambda user: (
        create_access_token(user.id, password_hash=user.hashed_password, now=utcnow() - timedelta(days=1)).token
    ),
    "alg none": lambda user: jwt.encode(valid_claims(user), None, algorithm="none"),
    "other key": lambda user: jwt.encode(valid_claims(user), "another-secret-key-of-enough-length", algorithm="HS256"),
    "other audience": lambda user: jwt.encode(
        valid_claims(user) | {"aud": "someone-else"}, get_settings().secret_key, algorithm="HS256"
    ),
    "other issuer": lambda user: jwt.encode(
        valid_claims(user) | {"iss": "someone-else"}, get_settings().secret_key, algorithm="HS256"
    ),
    "no expiry": lambda user: jwt.encode(
        {k: v for k, v in valid_claims(user).items() if k != "exp"}, get_settings().secret_key, algorithm="HS256"
    ),
    "subject not a uuid": lambda user: jwt.encode(
        valid_claims(user) | {"sub": "ada"}, get_settings().secret_key, algorithm="HS256"
    ),
    "no password stamp": lambda user: jwt.encode(
        {key: value for key, value in valid_claims(user).items() if key != "pwd"},
        get_settings().secret_key,
        algorithm="HS256",
    ),
    "unknown user": lambda user: create_access_token(uuid.uuid4(), password_hash=user.hashed_password).token,
    "not a jwt": lambda user: "not-a-jwt",
}


@pytest.mark.parametrize("kind", REJECTED_TOKENS)
def test_a_bad_token_is_401_invalid_token(client: TestClient, make_user: MakeUser, kind: str) -> None:
    token = REJECTED_TOKENS[kind](make_user())

    response = client.get("/api/v1/users/me", headers=bearer(token))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_token_of_a_deactivated_user_is_401(client: TestClient, session: Session, make_user: MakeUser) -> None:
    user = make_user()
    headers = bearer(create_access_token(user.id, password_hash=user.hashed_password).token)
    user.is_active = False
    session.commit()

    response = client.get("/api/v1/users/me", headers=headers)

    assert response.status_code == 401


PUBLIC_OPERATIONS = {("POST", "/api/v1/users")} | {
    ("POST", f"/api/v1/auth/{name}")
    for name in ("token", "refresh", "forgot-password", "reset-password", "request-verify-token", "verify")
}


def api_operations() -> list[tuple[str, str]]:
    """Every (method, path) under /api/v1, read from the OpenAPI schema so that a new endpoint is covered too."""
    paths = create_app().openapi()["paths"]
    return sorted(
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/v1/")
        for method in operations
    )


@pytest.mark.parametrize(("method", "path"), sorted(set(api_operations()) - PUBLIC_OPERATIONS))
@pytest.mark.parametrize("token", [None, "not-a-jwt"])
def test_every_other_endpoint_needs_a_valid_token(
    client: TestClient, method: str, path: str, token: str | None
) -> None:
    ids = {"session_id": uuid.uuid4(), "key_id": uuid.uuid4(), "invitation_id": uuid.uuid4()}
    url = path.format(workspace_id=uuid.uuid4(), user_id=uuid.uuid4(), **ids)

    response = client.request(method, url, headers=bearer(token) if token else {}, json={"name": "Acme"})

    assert response.status_code == 401
    assert response.json()["error"] == ("invalid_token" if token else "not_authenticated")


def test_a_password_change_revokes_earlier_tokens(client: TestClient, make_user: MakeUser) -> None:
    user = make_user(username="ada", email="ada@example.com")
    old = bearer(
        client.post("/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}).json()["access_token"]
    )
    changed = client.put(
        "/api/v1/users/me/password", headers=old, json={"new_password": "a new password", "current_password": PASSWORD}
    )

    stale = client.get("/api/v1/users/me", headers=old)
    new = client.post("/api/v1/auth/token", data={"username": "ada", "password": "a new password"}).json()[
        "access_token"
    ]

    assert changed.status_code == 204
    assert stale.status_code == 401
    assert stale.json() == {
        "error": "invalid_token",
        "detail": (
            "the password was changed, or the account's tokens revoked, after this token was issued; log in again"
        ),
    }
    assert client.get("/api/v1/users/me", headers=bearer(new)).json()["id"] == str(user.id)


def test_a_token_response_is_never_cached(client: TestClient, make_user: MakeUser) -> None:
    make_user(username="ada")

    response = client.post("/api/v1/auth/token", data={"username": "ada", "password": PASSWORD})

    assert response.status_code == 200
    assert (response.headers["cache-control"], response.headers["pragma"]) == ("no-store", "no-cache")


def test_a_login_with_a_nul_is_422(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", data={"username": "ada\x00", "password": PASSWORD})

    assert response.status_code == 422
    assert response.json()["fields"][0]["loc"] == ["body", "username"]
