"""Property-based run of the OpenAPI document: schemathesis, with all its checks, finds no request the server
answers otherwise than the document says.

Schemathesis generates requests for every /api/v1 operation, valid and not, sends them as a signed-in owner of a
workspace that has one other member, and runs every check it has: no 5xx; statuses, content types, headers and
bodies as documented; valid requests accepted and invalid ones refused; 405s with Allow; created resources found
and deleted ones gone; no operation served without credentials. The stateful test chains calls by the document's
links. ``make test`` runs a few fixed examples per operation; ``make fuzz`` sets FUZZ_EXAMPLES for a longer run with
new random inputs each time, after the coverage phase. The edge inputs a fuzzer rarely finds (a NUL in any text, a
name that normalisation lengthens) are listed in tests/api/test_errors.py.
"""

import os
import uuid
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from requests.structures import CaseInsensitiveDict
from sqlalchemy import Connection, NestedTransaction

from src.api.v1.models.user import User
from src.api.v1.models.workspace_member import Role
from tests.api.conftest import AddMember, MakeUser, MakeWorkspace, auth, create_test_app, join_test_transactions

FUZZ_EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "")

app = create_test_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="^/api/v1/")
# make fuzz adds the coverage phase: each parameter's boundaries and each kind of value it must refuse.
schema.config.phases.update(
    phases=["examples", "coverage", "fuzzing", "stateful"] if FUZZ_EXAMPLES else ["examples", "fuzzing", "stateful"]
)
# Sequences follow the document's links only: links schemathesis infers would also have the owner leave a workspace
# (DELETE of the first member a list shows), after which its check takes the 404 every non-member gets for a lost
# resource.
schema.config.phases.stateful.inference.algorithms = []
# Requests reach real databases: no deadline, and make test runs the same inputs each time.
RUN = settings(deadline=None, database=None, derandomize=not FUZZ_EXAMPLES, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def requests_join_the_test_transaction(connections: dict[str, Connection]) -> None:
    join_test_transactions(app, connections)


def is_negative(case: schemathesis.Case[Any], location: str) -> bool:
    """Whether schemathesis made this part of the request (path, header, query, body) invalid on purpose."""
    components = case.meta.components if case.meta else {}
    return any(where.value == location and info.mode.is_negative for where, info in components.items())


def make_real(case: schemathesis.Case[Any], credentials: dict[str, str], newcomer: dict[str, str]) -> None:
    """Send the case with a user's ``credentials`` (generated Authorization headers would only ever meet a 401), and
    make what is valid in it real, so that it reaches the rules and not only the 404s and 412s: a new member named
    as ``newcomer`` is, a new Idempotency-Key (one made again would replay another request's
    answer), an If-Match naming the version a GET of the same path answers now (each operation taking one has one)."""
    case.headers = CaseInsensitiveDict(case.headers or {})
    case.headers.update(credentials)
    if (
        case.operation.label == "POST /api/v1/workspaces/{workspace_id}/members"
        and isinstance(case.body, dict)
        and not is_negative(case, "body")
    ):
        case.body = {name: newcomer.get(name, value) for name, value in case.body.items()}
    if is_negative(case, "header"):
        return
    if "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    if "If-Match" in case.headers:
        path = case.path.format(**case.path_parameters) if case.path_parameters else case.path
        case.headers["If-Match"] = TestClient(app).get(path, headers=credentials).headers.get("ETag", '"gone"')


def reference(user: User) -> dict[str, str]:
    """How a request names ``user``: by email or by id."""
    return {"email": user.email, "user_id": str(user.id)}


@schema.parametrize()
@settings(RUN, max_examples=int(FUZZ_EXAMPLES or 8))
def test_no_input_breaks_the_api(
    case: schemathesis.Case[Any], make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, member, newcomer = make_user(admin=True), make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, member, Role.MEMBER)
    # Valid path parameters name real rows, so that requests reach the rules and not only the 404s.
    if case.path_parameters and not is_negative(case, "path"):
        rows = {"workspace_id": str(workspace.id), "user_id": str(member.id)}
        # A new dict: schemathesis may hand the one it made to a later case too.
        case.path_parameters = {name: rows.get(name, value) for name, value in case.path_parameters.items()}
    make_real(case, auth(owner), reference(newcomer))

    case.call_and_validate()


def test_sequences_of_calls_follow_the_links(make_user: MakeUser, connections: dict[str, Connection]) -> None:
    """The stateful phase: calls chained by the document's links (create a workspace, then read, rename, delete it,
    add a member and change or remove them), each checked as above; each sequence starts from the same rows."""
    # Made once: reading a user inside a sequence would begin a savepoint of the tests' session there.
    credentials, newcomer = auth(make_user(admin=True)), reference(make_user())
    workflow = schema.as_state_machine()
    savepoints: list[NestedTransaction] = []

    def begin(_: object) -> None:
        savepoints.extend(connection.begin_nested() for connection in connections.values())

    def roll_back(_: object) -> None:
        while savepoints:
            savepoints.pop().rollback()

    # Set on the class, not a subclass: schemathesis keeps the rules it made on this one.
    workflow.setup = begin  # type: ignore[method-assign, assignment]
    workflow.teardown = roll_back  # type: ignore[method-assign, assignment]
    workflow.before_call = lambda _, case: make_real(case, credentials, newcomer)  # type: ignore[method-assign, assignment]

    workflow.run(settings=settings(RUN, max_examples=int(FUZZ_EXAMPLES or 10), stateful_step_count=10))
