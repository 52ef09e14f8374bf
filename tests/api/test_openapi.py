"""Property-based run of the OpenAPI schema: no input makes the API fail or break its own schema.

Schemathesis generates requests for every /api/v1 operation, valid and not,
sends them as a signed-in owner of a workspace that has one other member, and
checks that no response is a 5xx and every response matches the status codes,
content types and bodies the schema documents.

``make test`` runs a few fixed examples per operation; ``make fuzz`` sets
FUZZ_EXAMPLES for a longer run with new random inputs each time, after the
coverage phase. The edge inputs a fuzzer rarely finds (a NUL in any text, a name
that normalisation lengthens) are listed in tests/api/test_errors.py.
"""

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Connection

from src.api.v1.models.workspace_member import Role
from tests.api.conftest import AddMember, MakeUser, MakeWorkspace, auth, create_test_app, join_test_transactions

FUZZ_EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


app = create_test_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="^/api/v1/")
# make fuzz adds the coverage phase: each parameter's boundaries and each kind of value it must refuse.
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"] if FUZZ_EXAMPLES else ["examples", "fuzzing"])


@pytest.fixture(autouse=True)
def requests_join_the_test_transaction(connections: dict[str, Connection]) -> None:
    join_test_transactions(app, connections)


@schema.parametrize()
@settings(
    max_examples=int(FUZZ_EXAMPLES or 8),
    deadline=None,
    derandomize=not FUZZ_EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_input_breaks_the_api(
    case: schemathesis.Case[Any], make_user: MakeUser, make_workspace: MakeWorkspace, add_member: AddMember
) -> None:
    owner, member = make_user(), make_user()
    workspace = make_workspace(owner)
    add_member(workspace, member, Role.MEMBER)
    # Point path parameters at real rows, so that requests reach the rules and not only the 404s.
    if case.path_parameters:
        case.path_parameters |= {"workspace_id": str(workspace.id), "user_id": str(member.id)}

    # Generated Authorization headers would only ever meet a 401; sign every request in as the owner.
    case.headers.update(auth(owner))

    case.call_and_validate(checks=CHECKS)
