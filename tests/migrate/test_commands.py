"""The migrate commands in process, against real databases on both dialects."""

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Column, Integer, Table

from src.core.config import PROJECT_ROOT
from src.core.databases import DATABASES, AuditModel
from src.core.schema_versions import alembic_config, script_directory
from src.migrate import commands
from src.migrate.__main__ import main
from src.migrate.failures import MigrateError
from tests.conftest import UNKNOWN_DATABASE, Versions, recorded_revisions, url_variables
from tests.core.test_config import SPECIAL_PASSWORDS

REVISIONS = [script.revision for script in reversed(list(script_directory().walk_revisions()))]
HEAD = REVISIONS[-1]


def current(name: str) -> str | None:
    """The one revision a database records, or None at base."""
    revisions = recorded_revisions(name)
    assert len(revisions) <= 1, revisions
    return revisions[0] if revisions else None


@pytest.fixture
def audit_drift() -> Iterator[Table]:
    """A table the audit models have and no migration creates."""
    table = Table("audit_notes", AuditModel.metadata, Column("id", Integer, primary_key=True))
    yield table
    AuditModel.metadata.remove(table)


def test_upgrade_brings_every_database_to_head(configured_databases, capsys) -> None:
    commands.upgrade(None)

    assert capsys.readouterr().out.splitlines() == [f"{name}: upgraded base -> {HEAD}" for name in DATABASES]
    assert [current(name) for name in DATABASES] == [HEAD] * len(DATABASES)


def test_upgrade_with_db_leaves_the_other_databases_alone(configured_databases) -> None:
    commands.upgrade("audit")

    assert {name: current(name) for name in DATABASES} == dict.fromkeys(DATABASES) | {"audit": HEAD}


def test_check_names_only_the_database_whose_models_drifted(configured_databases, audit_drift, capsys) -> None:
    commands.upgrade(None)

    with pytest.raises(MigrateError, match=r"^audit: models differ from migrations: add_table audit_notes$"):
        commands.check(None)
    assert "core: models match migrations" in capsys.readouterr().out


def test_check_refuses_a_database_behind_head(configured_databases) -> None:
    commands.upgrade("core")

    with pytest.raises(
        MigrateError, match=rf"audit: {len(REVISIONS)} revision\(s\) not applied; run make migrate-upgrade first"
    ):
        commands.check(None)


def test_status_shows_a_row_per_database_with_masked_url(configured_databases, audit_drift, capsys) -> None:
    commands.upgrade("audit")
    capsys.readouterr()

    commands.status(None)

    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["DATABASE", "URL", "CURRENT", "HEAD", "PENDING", "MODELS"]
    assert [row.split()[0] for row in rows] == list(DATABASES)
    expected = {name: ["base", HEAD, str(len(REVISIONS)), "not", "migrated"] for name in DATABASES}
    expected["audit"] = [HEAD, HEAD, "0", "differ:", "add_table", "audit_notes"]
    assert [row.split()[2:] for row in rows] == list(expected.values())


def test_status_masks_the_password_and_reports_an_unreachable_database(
    configured_databases, monkeypatch, capsys
) -> None:
    from src.core.config import get_settings

    monkeypatch.setattr(get_settings(), "core_database_url", "postgresql://app:s3cr%40t@127.0.0.1:1/app")

    with pytest.raises(MigrateError, match=r"^core: cannot use postgresql\+psycopg2://app:\*\*\*@127.0.0.1:1/app: "):
        commands.status(None)
    out = capsys.readouterr().out
    assert "unreachable" in out
    assert "s3cr" not in out


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
@pytest.mark.parametrize("password", SPECIAL_PASSWORDS)
def test_a_password_with_url_characters_is_never_printed(configured_databases, monkeypatch, capsys, password) -> None:
    from src.core.config import get_settings

    monkeypatch.setattr(get_settings(), "core_database_url", f"postgresql://app:{password}@127.0.0.1:1/app")

    for target in ("status", "upgrade", "check"):
        assert main([target]) == 1
        out, err = capsys.readouterr()
        assert "core: cannot use postgresql+psycopg2://app:***@127.0.0.1:1/app: " in err
        assert password not in out + err, target


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
@pytest.mark.parametrize("command", [["upgrade"], ["create", "--message", "x"], ["status"], ["rollback"]])
def test_an_unknown_db_is_one_clear_line(configured_databases, capsys, command: list[str]) -> None:
    assert main([*command, "--db", UNKNOWN_DATABASE]) == 1
    assert capsys.readouterr().err == (
        f"error: unknown database {UNKNOWN_DATABASE!r}; choose one of: {', '.join(DATABASES)}\n"
    )


def test_rollback_steps_every_database_back_when_they_agree(configured_databases) -> None:
    commands.upgrade(None)

    commands.rollback(None)

    assert [current(name) for name in DATABASES] == [REVISIONS[-2]] * len(DATABASES)


def test_rollback_refuses_databases_at_different_revisions_and_changes_nothing(configured_databases) -> None:
    commands.upgrade(None)
    commands.rollback("audit")

    choices = " or ".join(f"DB={name}" for name in DATABASES)
    with pytest.raises(MigrateError, match=rf"different revisions .*; roll back one with {choices}$"):
        commands.rollback(None)
    assert {name: current(name) for name in DATABASES} == dict.fromkeys(DATABASES, HEAD) | {"audit": REVISIONS[-2]}


def test_rollback_at_base_says_there_is_nothing_to_do(configured_databases) -> None:
    with pytest.raises(MigrateError, match="nothing to roll back"):
        commands.rollback(None)


def test_history_with_db_lists_only_revisions_touching_that_database(capsys: pytest.CaptureFixture[str]) -> None:
    commands.history("audit")
    audit_lines = capsys.readouterr().out.splitlines()
    commands.history(None)
    all_lines = capsys.readouterr().out.splitlines()

    assert len(all_lines) == len(REVISIONS)
    assert all_lines[0].startswith(f"{REVISIONS[-2]} -> {HEAD} (head)")
    assert any("Add users.full_name" in line and line.endswith("[core]") for line in all_lines)
    assert 0 < len(audit_lines) < len(all_lines)
    assert all(line.endswith(("[audit]", "[core, audit]")) for line in audit_lines)


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_concurrent_upgrades_apply_each_revision_once(configured_databases) -> None:
    env = os.environ | url_variables(configured_databases)
    upgrade = [sys.executable, "-m", "src.migrate", "upgrade"]

    runs = [
        subprocess.Popen(upgrade, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [(*run.communicate(timeout=60), run.returncode) for run in runs]

    assert [code for _, _, code in results] == [0, 0, 0], results
    outputs = sorted(out for out, _, _ in results)
    applied = "".join(f"{name}: upgraded base -> {HEAD}\n" for name in DATABASES)
    assert outputs.count(applied) == 1, outputs
    assert [current(name) for name in DATABASES] == [HEAD] * len(DATABASES)


def test_offline_sql_is_written_per_database_and_announced(configured_databases, tmp_path, capsys) -> None:
    commands.sql("audit", str(tmp_path), None)

    assert capsys.readouterr().out == f"audit: wrote {tmp_path / 'audit.sql'}\n"
    assert "CREATE TABLE audit_events" in (tmp_path / "audit.sql").read_text()
    assert not (tmp_path / "core.sql").exists()


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_status_reads_an_sqlite_database_while_another_process_writes(configured_databases, capsys) -> None:
    commands.upgrade(None)
    capsys.readouterr()
    writer = sqlite3.connect(configured_databases["core"].removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        commands.status(None)
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert [row.split()[2] for row in capsys.readouterr().out.splitlines()[1:]] == [HEAD] * len(DATABASES)


def test_upgrade_refuses_a_revision_with_unaccepted_findings_before_migrating_any_database(
    versions: Versions, migrated_databases, dialect, capsys
) -> None:
    path = versions.write(
        "2030_01_01_100000-f1f1f1f1f1f1_drop_users_nickname.py",
        message="Drop users.full_name",
        revision="f1f1f1f1f1f1",
        down=HEAD,
        body="""

        def upgrade_audit() -> None:
            op.create_table("audit_notes", sa.Column("id", sa.Integer(), primary_key=True))


        def upgrade_core() -> None:
            op.drop_column("users", "full_name")
        """,
    )
    line = next(number for number, text in enumerate(path.read_text().splitlines(), 1) if "drop_column" in text)

    code = main(["upgrade"])

    out, err = capsys.readouterr()
    finding, *rest = err.splitlines()
    assert finding.startswith(f"{path}:{line}: core: drop-column: drops column users.full_name; ")
    if dialect == "postgresql":
        assert code == 1
        assert rest == [
            "error: core: risky operations in revisions not applied yet (listed above); nothing was migrated: make"
            " each safe as its line says, or accept it with # migrate-lint: allow RULE-ID -- reason on its line"
        ]
        assert out == ""
        assert [current(name) for name in DATABASES] == [HEAD] * len(DATABASES)
    else:  # a laptop's files: applied after a warning
        assert code == 0
        assert rest == [
            "warning: core: applying revisions with risky operations (listed above) to SQLite; on PostgreSQL make"
            " migrate-upgrade refuses them until each is made safe or accepted"
        ]
        assert [current(name) for name in DATABASES] == ["f1f1f1f1f1f1"] * len(DATABASES)


def test_findings_of_revisions_already_applied_do_not_stop_an_upgrade(
    versions: Versions, migrated_databases, capsys
) -> None:
    versions.write(
        "2030_01_01_100000-f2f2f2f2f2f2_drop_users_nickname.py",
        message="Drop users.full_name",
        revision="f2f2f2f2f2f2",
        down=HEAD,
        body="""

        def upgrade_core() -> None:
            op.drop_column("users", "full_name")
        """,
    )
    command.stamp(alembic_config(), "f2f2f2f2f2f2")  # applied before the lint knew the rule

    assert main(["upgrade"]) == 0
    assert capsys.readouterr().err == ""
