"""Liveness and readiness, against real databases."""

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from src.core import schema_versions
from src.core.config import PROJECT_ROOT, get_settings
from src.core.databases import DATABASES
from src.core.schema_versions import alembic_config, script_directory
from src.main import create_app
from src.services import readiness
from tests.conftest import UNREACHABLE_URL, DatabaseUrls
from tests.factories import record

REVISIONS = [script.revision for script in reversed(list(script_directory().walk_revisions()))]
HEAD, PREVIOUS = REVISIONS[-1], REVISIONS[-2]
UNKNOWN = "0badc0ffee00"
BRANCH = "b5a1c2d3e4f5"


def get(path: str) -> tuple[int, dict[str, Any]]:
    with TestClient(create_app()) as client:
        response = client.get(path)
    return response.status_code, response.json()


def execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def upgrade_all_but(name: str) -> None:
    """Bring every database but ``name`` to head: the test sets that one's state itself."""
    for other in DATABASES:
        if other != name:
            command.upgrade(alembic_config(db=other), "head")


def statuses_but(name: str, body: dict[str, Any]) -> dict[str, str]:
    """The status /ready reports for every database but ``name``."""
    return {other: database["status"] for other, database in body["databases"].items() if other != name}


def test_health_answers_without_touching_the_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "core_database_url", UNREACHABLE_URL)

    assert get("/health") == (200, {"status": "ok"})


def test_ready_when_every_database_is_at_head(migrated_databases: DatabaseUrls) -> None:
    status, body = get("/ready")

    assert status == 200
    assert body == {
        "status": "ready",
        "databases": {
            name: {"status": "ok", "revisions": [HEAD], "heads": [HEAD], "detail": None} for name in DATABASES
        },
        "audit_backlog": 0,
    }


@pytest.mark.parametrize(
    ("core_at", "reported", "revisions"),
    [
        pytest.param(None, "not_migrated", [], id="unmigrated"),
        pytest.param(PREVIOUS, "behind", [PREVIOUS], id="behind"),
    ],
)
def test_not_ready_while_the_core_database_is_not_at_head(
    configured_databases: DatabaseUrls, core_at: str | None, reported: str, revisions: list[str]
) -> None:
    if core_at:
        command.upgrade(alembic_config(db="core"), core_at)
    upgrade_all_but("core")

    status, body = get("/ready")

    assert status == 503
    assert body["status"] == "not_ready"
    assert body["databases"]["core"] == {"status": reported, "revisions": revisions, "heads": [HEAD], "detail": None}
    assert statuses_but("core", body) == {name: "ok" for name in DATABASES if name != "core"}
    assert body["audit_backlog"] is None


@pytest.mark.parametrize("audit_at", [None, PREVIOUS], ids=["unmigrated", "behind"])
def test_degraded_while_the_optional_audit_database_is_not_at_head(
    configured_databases: DatabaseUrls, audit_at: str | None
) -> None:
    # A new instance whose audit migrations have not run yet serves what needs core alone, as with audit unreachable.
    upgrade_all_but("audit")
    if audit_at:
        command.upgrade(alembic_config(db="audit"), audit_at)

    status, body = get("/ready")

    assert status == 200
    assert body["status"] == "degraded"
    assert statuses_but("audit", body) == {name: "ok" for name in DATABASES if name != "audit"}
    assert body["databases"]["audit"]["status"] == ("behind" if audit_at else "not_migrated")
    assert body["audit_backlog"] == 0


def test_still_ready_when_a_database_is_ahead_of_this_code_and_says_so(migrated_databases: DatabaseUrls) -> None:
    # A rolling deploy: the new code's revisions are applied while this (older) instance still serves.
    execute(migrated_databases["core"], f"UPDATE alembic_version SET version_num = '{UNKNOWN}'")

    status, body = get("/ready")

    assert status == 200
    assert body["status"] == "ready"
    assert body["audit_backlog"] == 0
    assert body["databases"]["core"] == {
        "status": "unknown_revision",
        "revisions": [UNKNOWN],
        "heads": [HEAD],
        "detail": f"revision {UNKNOWN} is not in this code's migrations: the database was migrated by newer code,"
        " or a revision file is missing",
    }
    assert body["databases"]["audit"]["status"] == "ok"


def test_a_database_with_two_recorded_revisions_is_reported_with_both(migrated_databases: DatabaseUrls) -> None:
    # As `alembic upgrade heads` leaves it, run from a checkout whose second branch this code lacks.
    execute(migrated_databases["audit"], f"INSERT INTO alembic_version (version_num) VALUES ('{UNKNOWN}')")

    status, body = get("/ready")

    assert status == 200
    audit = body["databases"]["audit"]
    assert audit["status"] == "unknown_revision"
    assert audit["revisions"] == sorted([HEAD, UNKNOWN])
    assert audit["detail"].startswith(f"revision {UNKNOWN} is not in this code's migrations")
    assert body["databases"]["core"]["status"] == "ok"


def branch_the_migrations(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the app at a copy of the migrations with a second branch off the revision before head."""
    shutil.copy(PROJECT_ROOT / "alembic.ini", folder / "alembic.ini")
    shutil.copytree(PROJECT_ROOT / "migrations", folder / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "migrations" / "versions" / f"2026_11_27_000000-{BRANCH}_a_second_branch.py").write_text(
        f'revision = "{BRANCH}"\n'
        f'down_revision = "{PREVIOUS}"\n'
        "branch_labels = None\n"
        "depends_on = None\n"
        "\n\n"
        "def upgrade(engine_name: str) -> None:\n"
        "    pass\n"
        "\n\n"
        "def downgrade(engine_name: str) -> None:\n"
        "    pass\n"
    )
    monkeypatch.setattr(schema_versions, "ALEMBIC_INI", folder / "alembic.ini")


@pytest.mark.parametrize("recorded", [[HEAD], [BRANCH, HEAD]], ids=["one-branch-applied", "both-applied"])
def test_the_app_starts_but_is_not_ready_while_the_migrations_have_several_heads(
    migrated_databases: DatabaseUrls,
    recorded: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for url in migrated_databases.values():
        execute(url, "DELETE FROM alembic_version", *(f"INSERT INTO alembic_version VALUES ('{r}')" for r in recorded))
    branch_the_migrations(tmp_path, monkeypatch)

    status, body = get("/ready")

    assert status == 503
    assert body["status"] == "not_ready"
    heads = sorted([HEAD, BRANCH])
    detail = (
        f"the migrations have several heads ({', '.join(heads)}):"
        " merge them with make migrate-merge, then make migrate-upgrade"
    )
    assert body["databases"] == {
        name: {"status": "unmerged_heads", "revisions": sorted(recorded), "heads": heads, "detail": detail}
        for name in DATABASES
    }


def test_not_ready_when_core_is_unreachable_without_saying_where_it_is(
    migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(get_settings(), "core_database_url", UNREACHABLE_URL)

    status, body = get("/ready")

    assert status == 503
    assert body["status"] == "not_ready"
    core = body["databases"]["core"]
    assert core == {"status": "unreachable", "revisions": None, "heads": [HEAD], "detail": "does not answer"}
    assert body["audit_backlog"] is None
    assert "127.0.0.1" not in str(body) and "port 1" not in str(body)
    assert "readiness: core does not answer: " in caplog.text  # the driver's reason, for the operator


def test_degraded_with_backlog_while_audit_is_unreachable(
    migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(3)
    monkeypatch.setattr(get_settings(), "audit_database_url", UNREACHABLE_URL)

    status, body = get("/ready")

    assert status == 200
    assert body["status"] == "degraded"
    assert body["audit_backlog"] == 3
    audit = body["databases"]["audit"]
    assert audit["status"] == "unreachable"
    assert audit["detail"] == "does not answer"


def test_head_answers_on_the_probes(migrated_databases) -> None:
    with TestClient(create_app()) as client:
        responses = [client.head(path) for path in ("/health", "/ready")]

    assert [(response.status_code, response.content) for response in responses] == [(200, b""), (200, b"")]


def test_a_flood_of_probes_checks_each_database_once_per_interval(
    migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "readiness_cache_seconds", 60)
    checked: list[str] = []
    check_database = readiness.check_database

    def counted(name: str, scripts: ScriptDirectory) -> readiness.DatabaseReadiness:
        checked.append(name)
        return check_database(name, scripts)

    monkeypatch.setattr(readiness, "check_database", counted)

    with TestClient(create_app()) as client:
        statuses = [client.get(path).status_code for path in ["/ready", "/metrics"] * 50]

    assert statuses == [200] * 100
    assert checked == list(DATABASES)


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_while_a_database_is_slow_to_answer_probes_get_the_last_answer_at_once(
    migrated_databases: DatabaseUrls,
) -> None:
    recent = readiness.RecentReadiness(script_directory(), max_age=0)
    assert recent.get().status == "ready"
    locker = create_engine(migrated_databases["core"])
    with locker.connect() as connection:
        connection.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))  # the next check waits
        slow = threading.Thread(target=recent.get)
        slow.start()
        time.sleep(0.3)
        answers: list[str] = []
        probe = threading.Thread(target=lambda: answers.append(recent.get().status))
        probe.start()
        probe.join(timeout=1)
        answered_at_once, still_checking = not probe.is_alive(), slow.is_alive()
        connection.rollback()
    slow.join(timeout=10)
    probe.join(timeout=10)
    locker.dispose()

    assert answered_at_once and still_checking
    assert answers == ["ready"]
