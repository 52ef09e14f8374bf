"""Post-deploy revisions: make migrate-upgrade stops before them and says so, status and /ready show them as their
own state, and make migrate-post-deploy applies them."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from src.core.config import get_settings
from src.core.databases import DATABASES
from src.main import create_app
from src.migrate.__main__ import main
from tests.conftest import ADD_USERS_NICKNAME, HEAD, Versions, recorded_revisions

EXPAND, CONTRACT, LATER = "e1e1e1e1e1e1", "e2e2e2e2e2e2", "e3e3e3e3e3e3"


@pytest.fixture
def expand_and_contract(versions: Versions, migrated_databases: dict[str, str]) -> Versions:
    """Every database at the project's head; then a revision adding users.nickname, a post-deploy one dropping
    users.full_name, and an ordinary one after it."""
    versions.write(
        "2030_01_01_100000-e1e1e1e1e1e1_add_users_nickname.py",
        message="Add users.nickname",
        revision=EXPAND,
        down=HEAD,
        body=ADD_USERS_NICKNAME,
    )
    versions.write(
        "2030_01_01_110000-e2e2e2e2e2e2_drop_users_full_name.py",
        message="Drop users.full_name",
        revision=CONTRACT,
        down=EXPAND,
        post_deploy=True,
        body="""

        def upgrade_core() -> None:
            with op.batch_alter_table("users") as batch_op:
                batch_op.drop_column("full_name")
        """,
    )
    versions.write(
        "2030_01_01_120000-e3e3e3e3e3e3_add_audit_notes.py",
        message="Add audit notes",
        revision=LATER,
        down=CONTRACT,
        body="""

        def upgrade_audit() -> None:
            op.create_table("audit_notes", sa.Column("id", sa.Integer(), primary_key=True))
        """,
    )
    return versions


def users_columns() -> set[str]:
    engine = create_engine(get_settings().database_url("core"))
    try:
        return {column["name"] for column in inspect(engine).get_columns("users")}
    finally:
        engine.dispose()


WAITS = (
    f"post-deploy revision {CONTRACT} (Drop users.full_name) and 1 after it waits: run make migrate-post-deploy"
    " once the new code serves everywhere"
)


def test_upgrade_stops_before_the_first_post_deploy_revision_and_says_what_waits(expand_and_contract, capsys) -> None:
    assert main(["upgrade"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        f"{name}: upgraded {HEAD} -> {EXPAND}; {WAITS}" for name in DATABASES
    ]
    assert [recorded_revisions(name) for name in DATABASES] == [(EXPAND,)] * len(DATABASES)
    assert {"nickname", "full_name"} <= users_columns()

    assert main(["upgrade"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"core: at {EXPAND}; {WAITS}"


def test_status_shows_the_post_deploy_revisions_as_their_own_state(expand_and_contract, capsys) -> None:
    main(["upgrade"])
    capsys.readouterr()

    assert main(["status"]) == 0

    rows = [row.split(maxsplit=5) for row in capsys.readouterr().out.splitlines()[1:]]
    assert [(row[0], row[2], row[4:]) for row in rows] == [
        (
            name,
            EXPAND,
            ["2", "(2 post-deploy)  post-deploy pending: make migrate-post-deploy once the new code serves everywhere"],
        )
        for name in DATABASES
    ]


def test_the_new_code_is_ready_while_post_deploy_revisions_wait(expand_and_contract) -> None:
    main(["upgrade"])

    with TestClient(create_app()) as client:
        body = client.get("/ready").json()

    assert body["status"] == "ready"
    assert {name: database["status"] for name, database in body["databases"].items()} == {
        name: "post_deploy_pending" for name in DATABASES
    }


def test_post_deploy_applies_the_rest(expand_and_contract, capsys) -> None:
    main(["upgrade"])
    capsys.readouterr()

    assert main(["post-deploy"]) == 0

    assert capsys.readouterr().out.splitlines() == [f"{name}: upgraded {EXPAND} -> {LATER}" for name in DATABASES]
    assert "full_name" not in users_columns()


def test_post_deploy_from_behind_applies_everything(expand_and_contract, capsys) -> None:
    assert main(["post-deploy", "--db", "audit"]) == 0

    assert capsys.readouterr().out == f"audit: upgraded {HEAD} -> {LATER}\n"
    assert recorded_revisions("core") == (HEAD,)


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_offline_sql_stops_before_the_post_deploy_revisions_unless_asked(expand_and_contract, capsys) -> None:
    assert main(["sql", "--db", "core", "--from", HEAD]) == 0

    before_deploy = capsys.readouterr().out
    assert f"-- Running upgrade {HEAD} -> {EXPAND}" in before_deploy
    assert CONTRACT not in before_deploy.split("\n-- core: ")[0]
    assert before_deploy.endswith(
        f"-- core: post-deploy revision {CONTRACT} (Drop users.full_name) and 1 after it not written: they are"
        " applied once the new code serves everywhere; make migrate-sql POST_DEPLOY=1 writes them\n"
    )

    assert main(["sql", "--db", "core", "--from", EXPAND, "--post-deploy"]) == 0

    after_deploy = capsys.readouterr().out
    assert f"-- Running upgrade {EXPAND} -> {CONTRACT}" in after_deploy
    assert f"-- Running upgrade {CONTRACT} -> {LATER}" in after_deploy
    assert "ALTER TABLE users DROP COLUMN full_name;" in after_deploy
