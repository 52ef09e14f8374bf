"""Rolling deploys: the previous code against a newer schema says what went wrong, and the app keeps serving a
populated table while an expand revision and its backfill run."""

import threading
import time
import uuid

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, insert, text

from src.core.config import get_settings
from src.main import create_app
from src.migrate.__main__ import main
from tests.api.conftest import PASSWORD, logged_in
from tests.conftest import ADD_USERS_NICKNAME, HEAD, DatabaseUrls, Versions, server_in_thread
from tests.factories import USERS, user_row

UNKNOWN = "0badc0ffee00"


def sign_up_body(username: str) -> dict[str, str]:
    return {
        "email": f"{username}@example.com",
        "username": username,
        "password": PASSWORD,
        "first_name": "Ada",
        "last_name": "Lovelace",
    }


def sign_up(client: TestClient | httpx.Client, username: str) -> httpx.Response:
    return client.post("/api/v1/users", json=sign_up_body(username))


@pytest.mark.postgres  # SQLite cannot add a NOT NULL column without a default
@pytest.mark.parametrize("migrated_engines", ["postgresql"], indirect=True)
def test_a_column_the_previous_code_does_not_set_is_named_not_taken_for_a_taken_email(
    client: TestClient, connection: Connection
) -> None:
    # A newer revision added a NOT NULL column without a default (make migrate-lint reports it; it was accepted).
    connection.execute(text("ALTER TABLE users ADD COLUMN nickname VARCHAR(32) NOT NULL"))

    response = sign_up(client, "ada")

    assert response.status_code == 409
    assert response.json() == {
        "error": "constraint_violation",
        "detail": "the database refused the change: it violates the not-null constraint on users.nickname",
    }


@pytest.mark.parametrize(("ahead", "error"), [("core", "schema_ahead"), ("audit", "schema_behind")])
def test_a_schema_newer_than_the_code_is_told_apart_from_an_older_one(
    migrated_databases: DatabaseUrls, ahead: str, error: str
) -> None:
    # A users column is missing; only the database that holds users tells whether it is newer or older.
    core = create_engine(migrated_databases["core"])
    with core.begin() as connection:
        connection.execute(text("ALTER TABLE users RENAME COLUMN full_name TO display_name"))
    core.dispose()
    newer = create_engine(migrated_databases[ahead])
    with newer.begin() as connection:
        connection.execute(text(f"UPDATE alembic_version SET version_num = '{UNKNOWN}'"))
    newer.dispose()

    with TestClient(create_app()) as client:
        response = sign_up(client, "ada")

    assert response.status_code == 503
    assert response.json()["error"] == error
    if error == "schema_ahead":
        assert response.json()["detail"] == (
            "the database schema is newer than this version of the service; try again: a deploy is replacing it"
        )


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_the_app_serves_a_populated_table_without_an_error_while_a_column_is_added_and_backfilled(
    versions: Versions, migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The recipe for a new column (docs/migrations.md), expand and backfill, on 20,000 users."""
    # Every sign-up below comes from one address, three clients at once: its limits would refuse some.
    monkeypatch.setattr(get_settings(), "sign_ups_per_address", 10_000)
    monkeypatch.setattr(get_settings(), "password_checks_per_client", 10)
    versions.write(
        "2030_01_01_100000-a9a9a9a9a9a9_add_users_nickname.py",
        message="Add users.nickname",
        revision="a9a9a9a9a9a9",
        down=HEAD,
        body=ADD_USERS_NICKNAME,
    )
    versions.write(
        "2030_01_01_110000-b9b9b9b9b9b9_fill_users_nickname.py",
        message="Fill users.nickname",
        revision="b9b9b9b9b9b9",
        down="a9a9a9a9a9a9",
        body="""

        def upgrade_core() -> None:
            op.backfill("users", "nickname = username", where="nickname IS NULL")
        """,
    )
    engine = create_engine(migrated_databases["core"])
    with engine.begin() as connection:
        connection.execute(insert(USERS), [user_row(f"user{number}") for number in range(20_000)])
    engine.dispose()
    monkeypatch.setattr(get_settings(), "migration_backfill_batch_size", 500)
    monkeypatch.setattr(get_settings(), "migration_backfill_pause_seconds", 0.02)
    failures: list[str] = []
    slowest = [0.0]
    served = [0]
    migrating = threading.Event()

    def call(client: httpx.Client, method: str, path: str, **options: object) -> None:
        started = time.monotonic()
        try:
            response = client.request(method, path, **options)  # type: ignore[arg-type]
            if response.status_code >= 400:
                failures.append(f"{method} {path} {response.status_code} {response.text}")
        except httpx.HTTPError as error:
            failures.append(f"{method} {path} {error!r}")
        slowest[0] = max(slowest[0], time.monotonic() - started)
        served[0] += 1

    def traffic(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            username = f"live{uuid.uuid4().hex[:8]}"
            assert sign_up(client, username).status_code == 201
            headers = logged_in(client, username)  # type: ignore[arg-type]
            number = 0
            while migrating.is_set():
                number += 1
                call(client, "GET", "/api/v1/users/me", headers=headers)
                call(client, "PATCH", "/api/v1/users/me", headers=headers, json={"first_name": f"Ada {number}"})
                call(client, "POST", "/api/v1/users", json=sign_up_body(f"{username}n{number}"))

    with server_in_thread(uvicorn.Config(create_app(), log_level="warning")) as (host, port):
        migrating.set()
        clients = [threading.Thread(target=traffic, args=(f"http://{host}:{port}",)) for _ in range(3)]
        for thread in clients:
            thread.start()
        time.sleep(0.3)
        code = main(["upgrade", "--db", "core"])
        time.sleep(0.3)
        migrating.clear()
        for thread in clients:
            thread.join(timeout=30)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "core: backfill users: " in out
    assert failures == []
    assert served[0] > 100
    print(f"served {served[0]} requests during the upgrade, the slowest in {slowest[0] * 1000:.0f} ms")
