"""Two branches made from one head, merged, upgraded and rolled back, in a temporary copy of migrations/."""

import io
from pathlib import Path

import pytest
from alembic import command
from alembic.config import CommandLine, Config
from sqlalchemy import create_engine, inspect, text

from src.core import schema_versions
from src.core.config import get_settings
from src.core.databases import DATABASES
from src.core.schema_versions import alembic_config, script_directory
from src.migrate.__main__ import main
from src.migrate.revisions import UNKNOWN_REVISION_ADVICE
from tests.conftest import Versions, recorded_revisions

REVISIONS = [script.revision for script in reversed(list(script_directory().walk_revisions()))]
HEAD = REVISIONS[-1]
BRANCH_A = "a1a1a1a1a1a1"
BRANCH_B = "b2b2b2b2b2b2"


@pytest.fixture
def branched(versions: Versions, migrated_databases: dict[str, str]) -> Versions:
    """Every database at the project's head, then two developers' revisions, each made from that head."""
    versions.write(
        "2030_01_01_100000-a1a1a1a1a1a1_add_users_nickname.py",
        message="Add users.nickname",
        revision=BRANCH_A,
        down=HEAD,
        body="""

        def upgrade_core() -> None:
            with op.batch_alter_table("users") as batch_op:
                batch_op.add_column(sa.Column("nickname", sa.String(32), nullable=True))


        def downgrade_core() -> None:
            with op.batch_alter_table("users") as batch_op:
                batch_op.drop_column("nickname")
        """,
    )
    versions.write(
        "2030_01_01_110000-b2b2b2b2b2b2_add_audit_notes.py",
        message="Add audit notes",
        revision=BRANCH_B,
        down=HEAD,
        body="""

        def upgrade_audit() -> None:
            op.create_table("audit_notes", sa.Column("id", sa.Integer(), primary_key=True))


        def downgrade_audit() -> None:
            op.drop_table("audit_notes")
        """,
    )
    return versions


def run(capture: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capture.readouterr()
    return code, out, err


def has_nickname() -> bool:
    engine = create_engine(get_settings().database_url("core"))
    try:
        return "nickname" in {column["name"] for column in inspect(engine).get_columns("users")}
    finally:
        engine.dispose()


def has_audit_notes() -> bool:
    engine = create_engine(get_settings().database_url("audit"))
    try:
        return "audit_notes" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def merge(capture: pytest.CaptureFixture[str]) -> str:
    code, _, err = run(capture, "merge", "--message", "Merge nickname and audit notes")
    assert code == 0, err
    return script_directory().get_current_head() or ""


@pytest.mark.parametrize("command_name", ["upgrade", "status", "check", "create", "sql"])
def test_several_heads_stop_every_command_with_the_merge_to_run(
    branched: Versions, capsys: pytest.CaptureFixture[str], command_name: str
) -> None:
    code, out, err = run(capsys, command_name, *(["--message", "Add something"] if command_name == "create" else []))

    assert code == 2
    if command_name == "status":  # the table first, whatever state the databases are in
        assert [row.split()[2:6] for row in out.splitlines()[1:]] == [
            [HEAD, f"{BRANCH_A}+{BRANCH_B}", "2", "not"],
        ] * len(DATABASES)
    else:
        assert out == ""
    assert err == (
        f"error: the migrations have 2 heads: {BRANCH_A} (Add users.nickname), {BRANCH_B} (Add audit notes);"
        ' two branches each added a revision. Join them with: make migrate-merge MSG="Merge ...", then make'
        " migrate-upgrade\n"
    )
    assert [recorded_revisions(name) for name in DATABASES] == [(HEAD,)] * len(DATABASES)


def test_rollback_steps_back_from_a_branch_before_the_merge(branched: Versions, capsys) -> None:
    # A developer steps back from their own revision, to make it again on top of the other branch.
    command.upgrade(alembic_config(db="core"), BRANCH_A)

    assert run(capsys, "rollback", "--db", "core") == (0, f"core: rolled back {BRANCH_A} -> {HEAD}\n", "")
    assert recorded_revisions("core") == (HEAD,) and not has_nickname()


def test_merge_writes_one_revision_that_joins_the_heads(branched: Versions, capsys) -> None:
    code, out, _ = run(capsys, "merge", "--message", "Merge nickname and audit notes")

    merged = script_directory().get_current_head()
    assert code == 0
    path = next(branched.folder.glob(f"*-{merged}_merge_nickname_and_audit_notes.py"))
    assert out == f"created {path} (merges {BRANCH_A}, {BRANCH_B})\n"
    assert f"down_revision: str | Sequence[str] | None = ({BRANCH_A!r}, {BRANCH_B!r})".replace("'", '"') in (
        path.read_text()
    )
    assert run(capsys, "merge")[2] == f"error: nothing to merge: the migrations have one head ({merged})\n"


def test_after_a_merge_upgrade_applies_both_branches_and_status_counts_them(branched: Versions, capsys) -> None:
    merged = merge(capsys)

    code, out, _ = run(capsys, "status")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [row[2:5] for row in rows] == [[HEAD, merged, "3"]] * len(DATABASES)

    code, out, _ = run(capsys, "upgrade")
    assert code == 0
    assert out == "".join(f"{name}: upgraded {HEAD} -> {merged}\n" for name in DATABASES)
    assert has_nickname() and has_audit_notes()
    status = run(capsys, "status")[1].splitlines()[1:]
    assert [line.split()[2:5] for line in status] == [[merged, merged, "0"]] * len(DATABASES)


def test_rollback_steps_back_one_revision_at_a_time_through_the_merge(branched: Versions, capsys) -> None:
    merged = merge(capsys)
    run(capsys, "upgrade")
    previous = REVISIONS[-2]
    steps = []

    for _ in range(4):
        code, out, err = run(capsys, "rollback", "--db", "core")
        assert code == 0, err
        steps.append((out, recorded_revisions("core"), has_nickname()))

    assert steps == [
        (f"core: rolled back {merged} -> {BRANCH_A}+{BRANCH_B}\n", (BRANCH_A, BRANCH_B), True),
        # The newer branch (by file name) steps back first.
        (f"core: rolled back {BRANCH_A}+{BRANCH_B} -> {BRANCH_A}\n", (BRANCH_A,), True),
        (f"core: rolled back {BRANCH_A} -> {HEAD}\n", (HEAD,), False),
        (f"core: rolled back {HEAD} -> {previous}\n", (previous,), False),
    ]
    assert recorded_revisions("audit") == (merged,) and has_audit_notes()


def test_branches_applied_without_a_merge_are_reported_then_joined_by_upgrade(branched: Versions, capsys) -> None:
    # What Alembic's own message suggests: both heads applied, two rows in alembic_version.
    command.upgrade(alembic_config(), "heads")
    merged = merge(capsys)

    code, out, _ = run(capsys, "status")
    assert code == 0
    core = out.splitlines()[1]
    assert core.split()[2:5] == [f"{BRANCH_A}+{BRANCH_B}", merged, "1"]
    assert core.endswith("branches applied without their merge revision; make migrate-upgrade joins them")

    assert run(capsys, "upgrade")[1].splitlines()[0] == f"core: upgraded {BRANCH_A}+{BRANCH_B} -> {merged}"
    assert [recorded_revisions(name) for name in DATABASES] == [(merged,)] * len(DATABASES)


def raw_alembic(*argv: str) -> str:
    """Run the alembic command line in process; what it prints."""
    cli = CommandLine()
    options = cli.parser.parse_args(["-c", str(schema_versions.ALEMBIC_INI), *argv])
    out = io.StringIO()
    cli.run_cmd(Config(schema_versions.ALEMBIC_INI, cmd_opts=options, stdout=out), options)
    return out.getvalue()


def test_raw_alembic_current_labels_every_database(branched: Versions, capsys) -> None:
    merged = merge(capsys)
    command.upgrade(alembic_config(db="core"), "head")

    labels = {name: f"{HEAD} (branchpoint)" for name in DATABASES} | {"core": f"{merged} (head) (mergepoint)"}
    assert raw_alembic("current") == "".join(f"{name}: {label}\n" for name, label in labels.items())


def test_raw_alembic_downgrade_refuses_databases_at_different_revisions(branched: Versions, capsys) -> None:
    merged = merge(capsys)
    command.upgrade(alembic_config(db="core"), "head")

    with pytest.raises(SystemExit):
        raw_alembic("downgrade", "-1")

    at = {name: HEAD for name in DATABASES} | {"core": merged}
    where = ", ".join(f"{name} at {revision}" for name, revision in at.items())
    choices = " or ".join(f"-x db={name}" for name in DATABASES)
    assert f"databases are at different revisions ({where}); roll back one with {choices}\n" in capsys.readouterr().err
    assert recorded_revisions("core") == (merged,)


def test_a_failing_revision_is_one_line_naming_database_revision_and_line(
    versions: Versions, migrated_databases, capsys
) -> None:
    path = versions.write(
        "2030_01_01_100000-c3c3c3c3c3c3_fill_nicknames.py",
        message="Fill nicknames",
        revision="c3c3c3c3c3c3",
        down=HEAD,
        body="""

        def upgrade_core() -> None:
            op.execute("UPDATE users SET nickname = username")  # migrate-lint: allow raw-sql -- a test table
        """,
    )

    code, out, err = run(capsys, "upgrade")

    assert code == 1
    assert out == ""
    line = next(number for number, text in enumerate(path.read_text().splitlines(), 1) if "op.execute" in text)
    assert err.startswith(
        f"error: core: revision c3c3c3c3c3c3 ({path}:{line}) failed and its transaction was rolled back: "
    )
    assert err.endswith(" (VERBOSE=1 prints the traceback)\n")
    assert "nickname" in err and err.count("\n") == 1
    assert recorded_revisions("core") == (HEAD,)

    code, _, err = run(capsys, "upgrade", "--verbose")
    assert code == 1 and "Traceback (most recent call last)" in err
    assert not err.endswith(" (VERBOSE=1 prints the traceback)\n")


def test_a_failing_revision_outside_its_transaction_says_what_may_remain(
    versions: Versions, migrated_databases, capsys
) -> None:
    versions.write(
        "2030_01_01_100000-d4d4d4d4d4d4_index_last_names.py",
        message="Index last names",
        revision="d4d4d4d4d4d4",
        down=HEAD,
        body="""

        def upgrade_audit() -> None:
            with op.get_context().autocommit_block():
                op.create_index("ix_users_last_name", "users", ["last_name"], postgresql_concurrently=True)
        """,
    )

    code, _, err = run(capsys, "upgrade")

    assert code == 1
    assert err.startswith("error: audit: revision d4d4d4d4d4d4 (")
    assert ") failed: " in err and "users" in err
    assert "what it committed before that stays (a backfill continues after its last batch when run again):" in err
    assert "retrying is safe" not in err
    assert "(core already upgraded; check with make migrate-status)" in err


def test_a_revision_file_that_cannot_be_read_is_one_line(versions: Versions, capsys) -> None:
    path = versions.write(
        "2030_01_01_100000-e5e5e5e5e5e5_broken.py", message="Broken", revision="e5e5e5e5e5e5", down=HEAD, body=""
    )
    path.write_text(path.read_text() + "\ndef broken(:\n")
    line = path.read_text().count("\n")

    for command_name in ("status", "upgrade", "history", "rollback"):
        assert run(capsys, command_name) == (1, "", f"error: {path}:{line}: cannot read the revision: invalid syntax\n")


def test_raw_alembic_revision_keeps_the_imports_it_needs(versions: Versions, migrated_databases) -> None:
    script = command.revision(alembic_config(), message="Hand written")
    assert script and not isinstance(script, list)
    source = Path(script.path).read_text()

    assert "import sqlalchemy as sa\nfrom alembic import op\n" in source
    assert Path(script.path).name.split("-")[0].count("_") == 3  # 2030_01_01_100000: stamped to the second
    assert len(Path(script.path).name.split("-")[0].split("_")[-1]) == 6


def test_unknown_revision_is_reported_by_status_and_refused_by_the_others(migrated_databases, capsys) -> None:
    engine = create_engine(get_settings().database_url("audit"))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'feedfacecafe'"))
    engine.dispose()
    reason = f"audit: at revision feedfacecafe, which is not in migrations/versions: {UNKNOWN_REVISION_ADVICE}\n"

    code, out, err = run(capsys, "status")
    assert code == 1
    rows = out.splitlines()[1:]
    expected = {name: [name, get_settings().database_url(name), HEAD, HEAD, "0"] for name in DATABASES}
    expected["audit"] = ["audit", get_settings().database_url("audit"), "feedfacecafe", HEAD, "?"]
    assert [row.split()[:5] for row in rows] == list(expected.values())
    audit = rows[list(DATABASES).index("audit")]
    assert audit.endswith("unknown revision: migrated by newer code, or a revision file is missing")
    assert err == f"error: audit at feedfacecafe: not in migrations/versions: {UNKNOWN_REVISION_ADVICE}\n"
    for refused in (["upgrade"], ["rollback"], ["create", "--message", "Add x"], ["check"]):
        assert run(capsys, *refused) == (1, "", f"error: {reason}")
    assert {name: recorded_revisions(name) for name in DATABASES if name != "audit"} == {
        name: (HEAD,) for name in DATABASES if name != "audit"
    }


def test_a_deleted_merge_revision_is_reported_as_unknown_not_as_heads_to_merge(branched: Versions, capsys) -> None:
    merged = merge(capsys)
    run(capsys, "upgrade")
    next(branched.folder.glob(f"*-{merged}_*.py")).unlink()

    code, _, err = run(capsys, "upgrade")

    assert code == 1
    assert err.startswith(f"error: core: at revision {merged}, which is not in migrations/versions: ")


def test_sql_from_an_unknown_revision_says_so(capsys) -> None:
    assert run(capsys, "sql", "--from", "0123abcd") == (
        1,
        "",
        "error: FROM=0123abcd is not a revision in migrations/versions; pass one full id from make"
        " migrate-history, or base\n",
    )
