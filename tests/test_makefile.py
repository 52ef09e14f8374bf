"""The Makefile's migrate-* targets, run as a user would, in a copy of the project."""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlmodel import Session, select

from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.user import User
from src.core.config import PROJECT_ROOT
from src.core.databases import DATABASES
from src.migrate.commands import COMMANDS
from src.services import users
from tests.conftest import sqlite_urls, url_variables

COPIED = [
    "src",
    "migrations",
    "config",
    "alembic.ini",
    "Makefile",
    "pyproject.toml",
    "requirements.lock",
    "requirements-dev.lock",
]
NEW_USER_COLUMN = "    nickname: str | None = None\n"  # no max_length: SQLModel's AutoString, written as sa.String()
AUDIT_NOTE_MODEL = """import uuid

from sqlmodel import Field

from src.core.databases import AuditModel


class AuditNote(AuditModel, table=True):
    __tablename__ = "audit_notes"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    body: str = Field(max_length=500)
"""
PLAIN_SQLMODEL_TABLE = """from sqlmodel import Field, SQLModel


class Gadget(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
"""

# Targets whose behaviour does not depend on the dialect run on SQLite only, to keep the suite fast.
sqlite_only = pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
# Databases brought to head in process before the test, when its subject is what the next make calls do.
at_head = pytest.mark.usefixtures("migrated_databases")


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def make(self, *args: str) -> subprocess.CompletedProcess[str]:
        venv = Path(sys.prefix)  # the running virtualenv, so the copy installs nothing
        return subprocess.run(
            ["make", "--no-print-directory", f"VENV={venv}", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ok(self, *args: str) -> str:
        result = self.make(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def fails(self, *args: str) -> str:
        """Run a target expected to fail; return its one error line."""
        result = self.make(*args)
        assert result.returncode != 0, result.stdout
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
        assert len(errors) == 1, result.stderr
        return errors[0]

    def versions(self) -> set[str]:
        return {path.name for path in (self.root / "migrations" / "versions").glob("*.py")}

    def add_to_user_model(self, line: str) -> None:
        user = self.root / "src" / "api" / "v1" / "models" / "user.py"
        user.write_text(user.read_text() + line)

    def add_model_file(self, name: str, source: str) -> None:
        (self.root / "src" / "api" / "v1" / "models" / name).write_text(source)


@pytest.fixture
def project(tmp_path: Path, database_urls: dict[str, str]) -> Project:
    root = tmp_path / "project"
    for name in COPIED:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    # As a user's own call, not a sub-make of `make test`.
    env = {name: value for name, value in os.environ.items() if name not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    env["SETTINGS_FILE"] = "config/test.env"
    env.update(url_variables(database_urls))
    return Project(root, env)


def columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_guide_workflow_for_a_new_user_column(project: Project, database_urls: dict[str, str]) -> None:
    project.ok("migrate-upgrade")
    project.add_to_user_model(NEW_USER_COLUMN)

    created = project.ok("migrate-create", "MSG=Add new column to user table")
    assert re.fullmatch(
        r"created migrations/versions/\d{4}_\d\d_\d\d_\d{6}-\w+_add_new_column_to_user_table\.py \(touches: core\)\n",
        created,
    )
    revision = (project.root / created.split()[1]).read_text()
    assert 'sa.Column("nickname", sa.String(), nullable=True)' in revision
    assert "sqlmodel" not in revision

    assert "core: upgraded" in project.ok("migrate-upgrade")
    assert "nickname" in columns(database_urls["core"], "users")
    status = project.ok("migrate-status").splitlines()
    assert [row.split()[0] for row in status] == ["DATABASE", *DATABASES]
    assert all(row.split()[-1] == "match" and row.split()[-2] == "0" for row in status[1:])
    assert "Add new column to user table  [core]" in project.ok("migrate-history").splitlines()[0]

    rolled_back = project.ok("migrate-rollback")
    assert rolled_back.count("rolled back") == len(DATABASES)
    assert "nickname" not in columns(database_urls["core"], "users")

    # Written in batch mode, so a revision made on either database runs on SQLite.
    assert 'with op.batch_alter_table("users", schema=None) as batch_op:' in revision
    on_sqlite = sqlite_urls(project.root)
    project.env.update(url_variables(on_sqlite))
    project.ok("migrate-upgrade")
    assert "nickname" in columns(on_sqlite["core"], "users")


@sqlite_only  # the revisions themselves run on both dialects in tests/migrations
@at_head
def test_new_audit_model_with_db_audit_touches_only_audit(project: Project, database_urls: dict[str, str]) -> None:
    project.add_model_file("audit_note.py", AUDIT_NOTE_MODEL)

    created = project.ok("migrate-create", "MSG=Add audit notes", "DB=audit")
    assert created.endswith("(touches: audit)\n")
    revision = (project.root / created.split()[1]).read_text()
    assert re.search(r"def upgrade_core\(\) -> None:\s+pass\n", revision)
    assert 'op.create_table(\n        "audit_notes"' in revision

    # The recipe of docs/migrations.md: every database records the revision, core's step being empty.
    assert project.ok("migrate-upgrade").splitlines()[1].startswith("audit: upgraded")
    assert "audit_notes" in inspect(create_engine(database_urls["audit"])).get_table_names()
    assert [row.split()[4] for row in project.ok("migrate-status").splitlines()[1:]] == ["0"] * len(DATABASES)
    assert "Add audit notes" in project.ok("migrate-history", "DB=audit")
    assert "Add audit notes" not in project.ok("migrate-history", "DB=core")


@sqlite_only
@at_head
def test_two_branches_are_merged_linted_upgraded_and_rolled_back_as_the_readme_says(
    project: Project, database_urls: dict[str, str]
) -> None:
    base = project.ok("migrate-status").splitlines()[1].split()[2]
    project.add_to_user_model(NEW_USER_COLUMN)
    ours = project.root / project.ok("migrate-create", "MSG=Add nickname").split()[1]
    # A teammate's revision from the same head, arriving with a git merge.
    theirs = project.root / "migrations" / "versions" / "2030_01_01_000000-0badc0ffee00_add_audit_notes.py"
    theirs.write_text(
        ours.read_text()
        .replace(ours.stem.split("-")[1].split("_")[0], "0badc0ffee00")
        .replace("Add nickname", "Add audit notes")
        .split("\n\ndef upgrade_core")[0]
        + "\n"
    )

    result = project.make("migrate-upgrade")
    assert result.returncode == 2
    assert "error: the migrations have 2 heads: " in result.stderr
    assert "make migrate-merge" in result.stderr
    merged = project.ok("migrate-merge", "MSG=Merge nickname and audit notes")
    assert merged.startswith("created migrations/versions/") and "merges " in merged
    revisions = len(list((project.root / "migrations" / "versions").glob("*.py")))
    assert project.ok("migrate-lint").endswith(f"no risky operations in {revisions} revision(s)\n")
    assert project.ok("migrate-upgrade").count("upgraded") == len(DATABASES)
    assert "nickname" in columns(database_urls["core"], "users")

    steps = [project.ok("migrate-rollback").splitlines()[0] for _ in range(3)]

    assert [step.split(" -> ")[1].count("+") for step in steps] == [1, 0, 0]
    assert steps[-1].endswith(f" -> {base}")
    assert "nickname" not in columns(database_urls["core"], "users")


@sqlite_only
@at_head
def test_create_prints_the_lint_findings_of_the_revision_it_wrote(project: Project) -> None:
    project.add_to_user_model('    plan: str = Field(default="free", max_length=20)\n')

    created, finding, advice = project.ok("migrate-create", "MSG=Add users.plan").splitlines()

    assert created.endswith("_add_users_plan.py (touches: core)")
    assert re.fullmatch(
        r"migrations/versions/\S+_add_users_plan\.py:\d+: core: not-null-without-default: adds NOT NULL column"
        r" users\.plan without a server_default; .+",
        finding,
    )
    assert advice.startswith("review the 1 risky operation(s) above before upgrading: ")


@at_head
def test_a_dropped_column_waits_in_a_post_deploy_revision_until_make_migrate_post_deploy(
    project: Project, database_urls: dict[str, str]
) -> None:
    """The recipe for dropping a column (docs/migrations.md): the field leaves the model, the column goes later."""
    user = project.root / "src" / "api" / "v1" / "models" / "user.py"
    user.write_text(user.read_text().replace("    full_name: str = Field(max_length=201)\n", ""))

    created = project.ok("migrate-create", "MSG=Drop users.full_name", "POST_DEPLOY=1").splitlines()

    assert created[0].startswith("created post-deploy revision migrations/versions/")
    assert created[0].endswith("_drop_users_full_name.py (touches: core)")
    assert len(created) == 1  # dropping it after the deploy is the contract step: nothing for the lint to report
    revision_file = project.root / created[0].split()[3]
    assert "\npost_deploy = True\n" in revision_file.read_text()
    revision = revision_file.name.split("-")[1].split("_")[0]
    upgraded = project.ok("migrate-upgrade").splitlines()
    assert all(
        line.endswith(
            f"; post-deploy revision {revision} (Drop users.full_name) waits: run make migrate-post-deploy once the"
            " new code serves everywhere"
        )
        for line in upgraded
    )
    assert "full_name" in columns(database_urls["core"], "users")
    assert all(" (1 post-deploy) " in row for row in project.ok("migrate-status").splitlines()[1:])

    assert project.ok("migrate-post-deploy").count(f"-> {revision}") == len(DATABASES)
    assert "full_name" not in columns(database_urls["core"], "users")
    assert project.ok("migrate-check").splitlines() == [f"{name}: models match migrations" for name in DATABASES]


@sqlite_only
@at_head
def test_create_without_changes_writes_nothing_and_fails(project: Project) -> None:
    before = project.versions()

    assert (
        project.fails("migrate-create", "MSG=Nothing changed")
        == f"error: no changes detected in {', '.join(DATABASES)}; no revision written"
    )
    assert project.versions() == before


@sqlite_only
def test_create_without_msg_says_how_to_call_it(project: Project) -> None:
    assert project.fails("migrate-create").startswith('error: MSG is required: make migrate-create MSG="')


@sqlite_only
@at_head
def test_table_on_plain_sqlmodel_is_refused_by_name(project: Project) -> None:
    project.add_model_file("gadget.py", PLAIN_SQLMODEL_TABLE)

    error = project.fails("migrate-create", "MSG=Add gadgets")
    assert error.startswith("error: table class Gadget is defined on plain SQLModel")
    bases = " or ".join(database.base.__name__ for database in DATABASES.values())
    assert f"subclass {bases} from src.core.databases" in error


@sqlite_only
@at_head
def test_revision_written_before_a_database_existed_still_runs(project: Project) -> None:
    project.add_to_user_model(NEW_USER_COLUMN)
    path = project.root / project.ok("migrate-create", "MSG=Add nickname").split()[1]
    # As if written when only core existed: no audit functions at all.
    path.write_text(path.read_text().split("\n\ndef upgrade_audit")[0] + "\n")
    assert "upgrade_audit" not in path.read_text()

    assert project.ok("migrate-upgrade").count("upgraded") == len(DATABASES)
    assert project.ok("migrate-rollback").count("rolled back") == len(DATABASES)


@sqlite_only
def test_help_is_the_default_and_lists_every_target_and_database(project: Project) -> None:
    *targets, databases = project.ok().splitlines()
    listed = {line.split()[0] for line in targets}
    declared = set(re.findall(r"^([a-z-]+):.*## ", (project.root / "Makefile").read_text(), flags=re.M))
    migrate_targets = {f"migrate-{function.__name__.replace('_', '-')}" for function in COMMANDS}

    expected = {
        "dev-server",
        "test",
        "openapi",
        "lint",
        "mail-worker",
        "create-admin",
        "audit-relay",
        "audit-prune",
        "audit-verify",
        "audit-stream",
        "bench",
        "drill",
        "audit-drill",
        "relay-drill",
    }
    commands = ("create", "merge", "upgrade", "post-deploy", "rollback", "status", "history", "check", "sql", "lint")
    assert migrate_targets == {f"migrate-{name}" for name in commands}
    assert listed == declared | migrate_targets and declared >= expected
    assert "  migrate-create      Autogenerate a revision from the models; none is written when nothing changed" in (
        " ".join(line for line in targets if line.startswith("  migrate-create"))
    )
    assert databases == f"DB= names one of: {', '.join(DATABASES)}"


@sqlite_only
def test_an_unknown_migrate_target_is_one_line(project: Project) -> None:
    assert project.fails("migrate-upgarde").startswith("error: argument COMMAND: invalid choice: 'upgarde'")


@sqlite_only
@at_head
def test_audit_relay_verify_and_prune_targets(project: Project, database_urls: dict[str, str]) -> None:
    engine = create_engine(database_urls["core"])
    with Session(engine) as session:
        session.add(OutboxEvent(action="workspace.created", outcome="success", actor_type="user"))
        session.commit()
    engine.dispose()

    assert project.ok("audit-relay") == "delivered 1 audit event(s)\n"
    assert project.ok("audit-relay") == "delivered 0 audit event(s)\n"
    [line] = project.ok("audit-stream").splitlines()
    assert (json.loads(line)["action"], json.loads(line)["chain_seq"]) == ("workspace.created", 1)
    assert project.ok("audit-stream") == ""  # resumed from var/audit-stream.position
    verified = project.ok("audit-verify")
    assert re.fullmatch(
        r"chain service: 1 event\(s\) verified; ok, head #1 [0-9a-f]{64}\nverified 1 chain\(s\)\n", verified
    )
    assert project.fails("audit-verify", "WORKSPACE=nope") == (
        "error: WORKSPACE must be a workspace id: make audit-verify WORKSPACE=<uuid>"
    )
    assert project.ok("audit-prune", "DAYS=0") == "deleted 1 audit event(s) recorded more than 0 day(s) ago\n"
    assert project.fails("audit-prune") == "error: DAYS must be a whole number of days: make audit-prune DAYS=90"
    assert project.ok("audit-verify").endswith("ok, head #1 " + verified.split()[-4] + "\nverified 1 chain(s)\n")


@sqlite_only
@at_head
def test_create_admin_and_mail_worker_targets(project: Project, database_urls: dict[str, str]) -> None:
    engine = create_engine(database_urls["core"])
    with Session(engine) as session:
        users.register_user(
            session, email="ada@example.com", username="ada", hashed_password="x", first_name="Ada", last_name="L"
        )
        session.commit()

    assert project.ok("create-admin", "EMAIL=ADA@example.com") == "ada@example.com (ada) is an admin\n"
    assert project.fails("create-admin", "EMAIL=bob@example.com") == (
        "error: create-admin: no account has the email 'bob@example.com'; sign up first"
    )
    assert project.fails("create-admin") == (
        "error: EMAIL must be an account's email: make create-admin EMAIL=ada@example.com"
    )
    with Session(engine) as session:
        assert session.exec(select(User.is_admin).where(User.username == "ada")).one() is True
    engine.dispose()
    # The sign-up's confirmation, written under var/mail: no SMTP_HOST here.
    assert project.ok("mail-worker") == "sent 1 message(s), 0 failed (tried again later)\n"
    [written] = (project.root / "var" / "mail").glob("*.eml")
    assert "Subject: Confirm your email address" in written.read_text()
    assert project.ok("mail-worker") == "sent 0 message(s), 0 failed (tried again later)\n"


# The recipe's test adds a database called "scratch": docs/migrations.md's own example, "reports", may already exist.
SCRATCH_BASE = (
    "class ScratchModel(SQLModel, registry=registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))):\n"
    '    """Base of the tables in the scratch database."""\n\n\n'
)
SCRATCH_MODEL = """import uuid

from sqlmodel import Field

from src.core.databases import ScratchModel


class ScratchNote(ScratchModel, table=True):
    __tablename__ = "scratch_notes"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    title: str = Field(max_length=200)
"""
# A route of the user's own on the new database: the session dependency comes with the registry entry.
SCRATCH_ROUTE = """from typing import Annotated

from fastapi import APIRouter
from sqlmodel import Session, select

from src.api.dependencies import database_session
from src.api.v1 import API_PREFIX
from src.api.v1.models.scratch_note import ScratchNote

router = APIRouter(prefix=API_PREFIX)


@router.get("/scratch-notes")
def list_scratch_notes(session: Annotated[Session, database_session("scratch")]) -> list[str]:
    return [note.title for note in session.exec(select(ScratchNote).order_by(ScratchNote.title))]
"""
# The app as a client sees it, lifespan included: it opens a session for every database of the registry.
SERVE_ONE_REQUEST = """
from fastapi.testclient import TestClient
from src.main import app

with TestClient(app) as client:
    notes, ready = client.get("/api/v1/scratch-notes"), client.get("/ready")
print(notes.status_code, notes.json(), ready.json()["databases"]["scratch"]["status"])
"""


def add_database_entry(source: str, entry: str) -> str:
    """databases.py with ``entry`` added as the last entry of DATABASES."""
    head, opening, rest = source.partition("DATABASES: dict[str, Database] = {\n")
    entries, closing, tail = rest.partition("}\n")
    assert opening and closing, "DATABASES is no longer a dict literal: update this test's recipe"
    return head + opening + entries + entry + closing + tail


@pytest.fixture
def scratch_url(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for the recipe's new entry, on the test's dialect."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    admin = request.getfixturevalue("postgres_admin")
    name = f"test_{uuid.uuid4().hex[:12]}_scratch"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_further_database_is_one_base_and_one_entry_and_serves_requests(project: Project, scratch_url: str) -> None:
    """The recipe for a further database (docs/migrations.md), followed literally; then a route reads from it."""
    assert "scratch" not in DATABASES
    databases = project.root / "src" / "core" / "databases.py"
    source = databases.read_text().replace(
        "@dataclass(frozen=True)\nclass Database:", SCRATCH_BASE + "@dataclass(frozen=True)\nclass Database:"
    )
    databases.write_text(add_database_entry(source, '    "scratch": Database("scratch", ScratchModel),\n'))
    project.add_model_file("scratch_note.py", SCRATCH_MODEL)
    project.env["SCRATCH_DATABASE_URL"] = scratch_url

    upgraded = project.ok("migrate-upgrade").splitlines()
    created = project.ok("migrate-create", "MSG=Create scratch schema", "DB=scratch")
    project.ok("migrate-upgrade")

    assert [line.split(":")[0] for line in upgraded] == [*DATABASES, "scratch"]
    assert created.endswith("(touches: scratch)\n")
    assert "scratch_notes" in inspect(create_engine(scratch_url)).get_table_names()
    assert [row.split()[0] for row in project.ok("migrate-status").splitlines()[1:]] == [*DATABASES, "scratch"]
    assert project.ok("migrate-check").splitlines()[-1] == "scratch: models match migrations"

    (project.root / "src" / "api" / "v1" / "routes" / "scratch_notes.py").write_text(SCRATCH_ROUTE)
    router = project.root / "src" / "api" / "v1" / "router.py"
    router.write_text(
        router.read_text()
        .replace("from src.api.v1.routes import ", "from src.api.v1.routes import scratch_notes, ")
        .replace("audit)]", "audit, scratch_notes)]")
    )
    engine = create_engine(scratch_url)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO scratch_notes (id, title) VALUES (:id, 'first note')"), {"id": uuid.uuid4().hex}
        )
    engine.dispose()
    served = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_REQUEST],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.stdout == "200 ['first note'] ok\n", served.stderr
