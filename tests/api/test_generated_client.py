"""A client generated from the committed openapi.json by openapi-python-client, untouched, drives the walkthrough of
docs/api.md: every request it builds is one the server accepts, and every answer parses into the model it names."""

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from src.api.contract import COMMITTED
from tests.factories import INVITED, mailed_token

PACKAGE = "starter_client"


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("generated")
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(COMMITTED), "--meta", "none"]
    tools = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # its ruff formats the code
    subprocess.run([*command, "--output-path", str(root / PACKAGE)], env=os.environ | tools, check=True)
    sys.path.insert(0, str(root))
    try:
        importlib.import_module(f"{PACKAGE}.models")
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))


def use(generated: ModuleType, name: str) -> Any:
    """``api.users.users_sign_up`` or ``models.UserCreate`` of the generated package."""
    return importlib.import_module(f"{PACKAGE}.{name}") if "." in name else getattr(generated.models, name)


def test_the_walkthrough_runs_through_a_generated_client(
    generated: ModuleType, client: TestClient, session: Session
) -> None:
    anonymous = generated.Client(base_url=str(client.base_url), raise_on_unexpected_status=True)
    anonymous.set_httpx_client(client)
    sign_up = use(generated, "api.users.users_sign_up").sync
    UserCreate = use(generated, "UserCreate")

    ada = sign_up(
        client=anonymous,
        body=UserCreate(
            email="ada@example.com", username="ada", password="analytical-engine", first_name="Ada", last_name="L"
        ),
    )
    token = use(generated, "api.auth.auth_issue_token").sync(
        client=anonymous,
        body=use(generated, "BodyAuthIssueToken")(username="ada@example.com", password="analytical-engine"),
    )
    client.headers["Authorization"] = f"Bearer {token.access_token}"
    signed_in = generated.AuthenticatedClient(
        base_url=str(client.base_url), token=token.access_token, raise_on_unexpected_status=True
    )
    signed_in.set_httpx_client(client)

    me = use(generated, "api.users.users_read_me").sync(client=signed_in)
    workspace = use(generated, "api.workspaces.workspaces_create_workspace").sync(
        client=signed_in, body=use(generated, "WorkspaceCreate")(name="Difference Engine")
    )
    charles = sign_up(
        client=anonymous,
        body=UserCreate(
            email="charles@example.com", username="charles", password="difference-engine", first_name="C", last_name="B"
        ),
    )
    invitation = use(generated, "api.invitations.invitations_invite").sync(
        workspace.id,
        client=signed_in,
        body=use(generated, "InvitationCreate")(email="charles@example.com", role=use(generated, "Role").ADMIN),
    )
    link = use(generated, "EmailConfirmation")
    use(generated, "api.auth.auth_verify").sync_detailed(
        client=anonymous, body=link(token=mailed_token(session, "charles@example.com"))
    )
    charles_token = use(generated, "api.auth.auth_issue_token").sync(
        client=anonymous,
        body=use(generated, "BodyAuthIssueToken")(username="charles", password="difference-engine"),
    )
    as_charles = generated.AuthenticatedClient(
        base_url=str(client.base_url), token=charles_token.access_token, raise_on_unexpected_status=True
    )
    as_charles.set_httpx_client(
        TestClient(client.app, headers={"Authorization": f"Bearer {charles_token.access_token}"})
    )
    added = use(generated, "api.invitations.invitations_accept_invitation").sync(
        client=as_charles,
        body=link(token=mailed_token(session, "charles@example.com", INVITED)),
    )
    list_members = use(generated, "api.members.members_list_members").sync
    first = list_members(workspace.id, client=signed_in, limit=1)
    second = list_members(workspace.id, client=signed_in, limit=1, cursor=first.next_cursor)
    refused = use(generated, "api.workspaces.workspaces_rename_workspace").sync(
        workspace.id, client=signed_in, body=use(generated, "WorkspaceUpdate")(name="x" * 101)
    )

    assert (me.id, me.username) == (ada.id, "ada")
    assert (workspace.name, workspace.role.value) == ("Difference Engine", "owner")
    assert (invitation.email, invitation.role.value) == ("charles@example.com", "admin")
    assert (added.user_id, added.role.value) == (charles.id, "admin")
    assert [member.username for member in first.items + second.items] == ["ada", "charles"]
    assert second.next_cursor is None
    assert isinstance(refused, use(generated, "WorkspacesRenameWorkspaceResponse422"))
    assert refused.error == use(generated, "WorkspacesRenameWorkspaceResponse422Error").VALIDATION_ERROR
