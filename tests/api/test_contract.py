"""The OpenAPI document as a client generator reads it, and the committed copy of it."""

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import create_engine
from sqlmodel import Session

from src.api.contract import COMMITTED, TAGS, document
from src.api.error_handling import ErrorResponse, ValidationErrorResponse
from src.api.health import Health
from src.api.v1.models.workspace_member import Role
from src.api.v1.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from src.api.v1.schemas.audit import EVENTS, ActivityPublic, OtherEvent
from src.api.v1.schemas.users import (
    AccountDeletion,
    AccountExport,
    EmailAddress,
    EmailChange,
    EmailConfirmation,
    PasswordChange,
    Refresh,
    ResetPassword,
    SessionPublic,
    Token,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from src.api.v1.schemas.workspaces import (
    InvitationCreate,
    InvitationPublic,
    MemberByEmail,
    MemberByUserId,
    MemberPublic,
    MemberUpdate,
    WorkspaceCreate,
    WorkspacePublic,
    WorkspaceUpdate,
)
from src.core.config import get_settings
from src.core.databases import DATABASES
from src.core.sessions import RequestSessions
from src.services.readiness import Readiness
from tests.api.conftest import PASSWORD, AddMember, MakeUser, MakeWorkspace, auth, create_test_app, logged_in


def operations() -> list[dict[str, Any]]:
    paths = create_test_app().openapi()["paths"]
    return [operation for path in paths.values() for operation in path.values()]


def test_the_committed_document_is_the_apps() -> None:
    committed = COMMITTED.read_text() if COMMITTED.exists() else ""

    assert committed == document(create_test_app()), "openapi.json differs from the app's document: run make openapi"


def test_operations_are_named_by_tag_and_function_for_generated_clients() -> None:
    ids = [operation["operationId"] for operation in operations()]

    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+-[a-z_]+", operation_id) for operation_id in ids), ids
    assert "users-sign_up" in ids and "auth-issue_token" in ids
    schemas = create_test_app().openapi()["components"]["schemas"]
    assert not [name for name in schemas if "api_v1" in name.lower() or "ApiV1" in name]


def test_every_tag_is_described() -> None:
    described = {tag["name"] for tag in TAGS if tag["description"]}

    assert {tag for operation in operations() for tag in operation["tags"]} <= described


def test_every_creating_operation_documents_its_location_and_replays_where_it_takes_a_key() -> None:
    created = [operation for operation in operations() if "201" in operation["responses"]]

    assert len(created) == 6
    for operation in created:
        headers = operation["responses"]["201"]["headers"]
        takes_key = "Idempotency-Key" in {parameter["name"] for parameter in operation.get("parameters", [])}
        assert "Location" in headers
        assert ("Idempotent-Replayed" in headers) == takes_key, operation["operationId"]


def test_a_json_body_sent_as_another_type_is_415_on_every_operation_that_takes_json(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, member = make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, member, Role.MEMBER)
    headers = auth(owner) | {"Content-Type": "text/plain"}
    for path, operations in create_test_app().openapi()["paths"].items():
        ids = {"session_id": uuid.uuid4(), "key_id": uuid.uuid4(), "invitation_id": uuid.uuid4()}
        real = path.format(workspace_id=workspace.id, user_id=member.id, **ids)
        for method, operation in operations.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                answer = answered(client.request(method, real, headers=headers, content='{"name": "Acme"}'))
                assert answer == (415, "unsupported_media_type"), f"{method} {path}"


def test_a_new_workspace_is_found_at_its_location(client: TestClient, make_user: MakeUser) -> None:
    user = make_user()

    created = client.post("/api/v1/workspaces", headers=auth(user), json={"name": "Acme"})

    assert created.headers["location"] == f"/api/v1/workspaces/{created.json()['id']}"
    assert client.get(created.headers["location"], headers=auth(user)).json() == created.json()


def test_a_new_member_is_read_and_changed_at_its_location(
    client: TestClient, make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, newcomer = make_user(admin=True), make_user()
    workspace = make_workspace(owner)

    added = client.post(
        f"/api/v1/workspaces/{workspace.id}/members", headers=auth(owner), json={"user_id": str(newcomer.id)}
    )
    read = client.get(added.headers["location"], headers=auth(newcomer))
    changed = client.patch(added.headers["location"], headers=auth(owner), json={"role": Role.ADMIN.value})

    assert added.headers["location"] == f"/api/v1/workspaces/{workspace.id}/members/{newcomer.id}"
    assert read.json() == added.json()
    assert (changed.status_code, changed.json()["role"]) == (200, "admin")


def test_a_new_account_is_read_at_its_location_once_logged_in(client: TestClient) -> None:
    signed_up = client.post(
        "/api/v1/users",
        json={
            "email": "ada@example.com",
            "username": "ada",
            "password": PASSWORD,
            "first_name": "Ada",
            "last_name": "L",
        },
    )

    assert signed_up.status_code == 201, signed_up.text
    read = client.get(signed_up.headers["location"], headers=logged_in(client, "ada"))

    assert (signed_up.status_code, signed_up.headers["location"]) == (201, "/api/v1/users/me")
    assert read.json() == signed_up.json()


def documented() -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of the document: its method, a path to it (each path parameter an id of nothing), itself."""
    found = []
    for path, operations in create_test_app().openapi()["paths"].items():
        concrete = re.sub(r"\{\w+\}", lambda _: str(uuid.uuid4()), path)
        found += [(method.upper(), concrete, operation) for method, operation in operations.items()]
    return found


def listed(operation: dict[str, Any]) -> set[tuple[int, str]]:
    """The statuses the operation lists, each error status with each of its codes."""
    answers: set[tuple[int, str]] = set()
    for status, response in operation["responses"].items():
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        codes = [
            code
            for part in schema.get("allOf", [])
            for code in part.get("properties", {}).get("error", {}).get("enum", [])
        ]
        answers |= {(int(status), code) for code in codes} if int(status) >= 400 else {(int(status), "")}
    return answers


def answered(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"] if response.status_code >= 400 else ""


def test_every_error_status_lists_its_codes() -> None:
    for operation in operations():
        responses = operation["responses"]
        errors = {
            int(status) for status in responses if int(status) >= 400 and "Readiness" not in str(responses[status])
        }
        assert {status for status, _ in listed(operation) if status >= 400} == errors, operation["operationId"]


def test_every_operation_lists_what_it_answers_to_malformed_requests(client: TestClient, make_user: MakeUser) -> None:
    headers = auth(make_user())
    too_large = get_settings().max_request_body_bytes + 1
    for method, path, operation in documented():
        answers = {}
        if operation.get("security"):
            answers["no credentials"] = answered(client.request(method, path))
        if "requestBody" in operation:
            answers |= {
                "text body": answered(client.request(method, path, headers=headers, content="x")),
                "broken JSON": answered(
                    client.request(method, path, headers=headers | {"Content-Type": "application/json"}, content="{")
                ),
                "body too large": answered(client.request(method, path, headers=headers, content=b"x" * too_large)),
                "JSON as text": answered(
                    client.request(method, path, headers=headers | {"Content-Type": "text/plain"}, content="{}")
                ),
            }
        if path.startswith("/api/"):
            answers["invalid parameters"] = answered(
                client.request(
                    method, re.sub(r"[0-9a-f-]{36}", "not-an-id", path), headers=headers, params={"limit": "many"}
                )
            )
        unlisted = {case: answer for case, answer in answers.items() if answer not in listed(operation)}
        assert not unlisted, f"{method} {path} answers {unlisted}, not in its responses {sorted(listed(operation))}"


def test_every_api_operation_lists_its_answer_when_the_databases_are_down(
    app: FastAPI, client: TestClient, make_user: MakeUser, dialect: str, tmp_path: Path
) -> None:
    headers = auth(make_user())
    down = (
        "sqlite:///" + str(tmp_path / "gone" / "x.db")
        if dialect == "sqlite"
        else "postgresql+psycopg2://postgres@127.0.0.1:9/x"
    )
    engine = create_engine(down)
    app.state.sessions = {
        name: RequestSessions(lambda _reads_only: Session(engine), capacity=None, database=name) for name in DATABASES
    }
    try:
        for method, path, operation in documented():
            if path.startswith("/api/v1/") and method in ("GET", "DELETE"):
                answer = answered(client.request(method, path, headers=headers, json=example_body(operation)))
                assert answer == (503, "database_unavailable"), f"{method} {path}"
                assert answer in listed(operation), f"{method} {path}"
    finally:
        engine.dispose()


def example_body(operation: dict[str, Any]) -> Any:
    """The first example of the operation's JSON body; None when it takes none."""
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    return create_test_app().openapi()["components"]["schemas"][schema["$ref"].rpartition("/")[2]]["examples"][0]


EXAMPLED: list[type[BaseModel]] = [
    UserCreate,
    UserUpdate,
    PasswordChange,
    UserPublic,
    Token,
    EmailAddress,
    ResetPassword,
    Refresh,
    SessionPublic,
    ApiKeyCreate,
    ApiKeyPublic,
    ApiKeyCreated,
    InvitationCreate,
    InvitationPublic,
    EmailConfirmation,
    EmailChange,
    AccountDeletion,
    AccountExport,
    WorkspaceCreate,
    WorkspaceUpdate,
    WorkspacePublic,
    MemberByEmail,
    MemberByUserId,
    MemberUpdate,
    MemberPublic,
    *EVENTS,
    OtherEvent,
    ActivityPublic,
    ErrorResponse,
    ValidationErrorResponse,
    Health,
    Readiness,
]


def references(schema: Any) -> set[str]:
    """The names of the component schemas ``schema`` refers to, however deep."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rpartition("/")[2]} if "$ref" in schema else set()
        return found.union(*(references(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(references(value) for value in schema))
    return set()


def test_every_json_body_an_operation_takes_or_answers_one_resource_with_has_examples() -> None:
    schemas = create_test_app().openapi()["components"]["schemas"]
    referenced = set()
    for operation in operations():
        for body in [operation.get("requestBody", {}), *operation["responses"].values()]:
            referenced |= references(body.get("content", {}).get("application/json", {}).get("schema", {}))

    pages = {name for name in referenced if name.startswith("Page_") or name.endswith("Page")}
    referenced |= references([schemas[page] for page in pages])
    assert referenced - pages - {"FieldError"} == {model.__name__ for model in EXAMPLED}
    assert all(schemas[name]["examples"] for name in {model.__name__ for model in EXAMPLED} | pages)


@pytest.mark.parametrize("model", EXAMPLED, ids=lambda model: model.__name__)
def test_each_example_is_one_its_model_accepts(model: type[BaseModel]) -> None:
    for example in model.model_json_schema()["examples"]:
        model.model_validate(example)


def test_a_query_parameter_the_operation_does_not_take_is_422(client: TestClient, make_user: MakeUser) -> None:
    headers = auth(make_user())

    misspelt = client.get("/api/v1/users/me/audit-events", headers=headers, params={"action_prefx": "user."})
    listed = client.get("/api/v1/users/me/audit-events", headers=headers, params={"action_prefix": "user.", "limit": 5})
    probe = client.get("/health", params={"_": "1700000000"})

    assert misspelt.status_code == 422
    assert misspelt.json()["fields"] == [
        {
            "loc": ["query", "action_prefx"],
            "message": "this operation takes no such query parameter (the OpenAPI document lists those it takes)",
            "type": "unknown_query_parameter",
        }
    ]
    assert listed.status_code == 200
    assert probe.status_code == 200  # probes outside the API may add what they like
