"""make migrate-lint: revision files read as syntax trees, one rule at a time."""

import re
import textwrap
from pathlib import Path

import pytest

from src.core.config import PROJECT_ROOT
from src.core.databases import DATABASES, UnknownDatabaseError
from src.migrate import lint
from src.migrate.__main__ import main
from src.migrate.failures import MigrateError
from src.migrate.lint import Finding, lint_file, lint_revisions, revision_files
from tests.conftest import UNKNOWN_DATABASE

HEADER = '''"""A revision written by a test."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0123456789ab"
down_revision = None
'''


def write_revision(
    directory: Path, core: str = "pass", *, audit: str = "pass", downgrade_core: str = "pass", name: str = "rev.py"
) -> Path:
    """A revision file whose upgrade_core, downgrade_core and upgrade_audit bodies are the given statements."""

    def function(name: str, body: str) -> str:
        return f"\n\ndef {name}() -> None:\n{textwrap.indent(textwrap.dedent(body).strip(), '    ')}\n"

    path = directory / name
    path.write_text(
        HEADER
        + function("upgrade_core", core)
        + function("downgrade_core", downgrade_core)
        + function("upgrade_audit", audit)
        + function("downgrade_audit", "pass")
    )
    return path


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def found(path: Path, db: str | None = None) -> list[tuple[str, int, str]]:
    return [(finding.rule, finding.line, finding.database) for finding in lint_file(path, db)]


@pytest.mark.parametrize(
    ("rule", "body", "operation"),
    [
        ("drop-column", 'op.drop_column("users", "nickname")', "drop_column"),
        (
            "drop-column",
            'with op.batch_alter_table("users") as batch_op:\n    batch_op.drop_column("nickname")',
            "drop_column",
        ),
        ("drop-table", 'op.drop_table("users")', "drop_table"),
        ("rename-column", 'op.alter_column("users", "name", new_column_name="full_name")', "alter_column"),
        ("rename-table", 'op.rename_table("users", "accounts")', "rename_table"),
        (
            "not-null-without-default",
            'op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))',
            "add_column",
        ),
        (
            "set-not-null",
            'with op.batch_alter_table("users") as batch_op:\n    batch_op.alter_column("age", nullable=False)',
            "alter_column",
        ),
        ("change-column-type", 'op.alter_column("users", "age", type_=sa.BigInteger())', "alter_column"),
        ("create-index-blocking", 'op.create_index("ix_users_age", "users", ["age"])', "create_index"),
        (
            "create-index-blocking",
            'with op.batch_alter_table("users") as batch_op:\n    batch_op.create_index("ix_users_age", ["age"])',
            "create_index",
        ),
        ("create-index-blocking", 'op.create_unique_constraint("uq_age", "users", ["age"])', "create_unique"),
        (
            "concurrent-index-in-transaction",
            'op.create_index("ix_users_age", "users", ["age"], postgresql_concurrently=True)',
            "create_index",
        ),
        (
            "concurrent-index-in-transaction",
            'op.drop_index("ix_users_age", table_name="users", postgresql_concurrently=True)',
            "drop_index",
        ),
        (
            "constraint-validates",
            'op.create_foreign_key("fk_members_user", "members", "users", ["user_id"], ["id"])',
            "create_foreign_key",
        ),
        (
            "constraint-validates",
            'with op.batch_alter_table("users") as batch_op:\n    batch_op.create_check_constraint("age", "age > 0")',
            "create_check",
        ),
        (
            "concurrent-index-if-not-exists",
            "with op.get_context().autocommit_block():\n"
            '    op.create_index("ix_age", "users", ["age"], postgresql_concurrently=True, if_not_exists=True)',
            "create_index",
        ),
        ("raw-sql", 'op.execute("UPDATE users SET age = 0")', "execute"),
        ("raw-sql", 'op.get_bind().execute(sa.text("UPDATE users SET age = 0"))', "execute"),
        ("raw-sql", 'bind = op.get_bind()\nbind.execute(sa.text("UPDATE users SET age = 0"))', "execute"),
        ("raw-sql", 'op.get_context().connection.execute(sa.text("UPDATE users SET age = 0"))', "execute"),
        ("raw-sql", 'conn = op.get_context().connection\nconn.exec_driver_sql("UPDATE users SET age = 0")', "exec_"),
        (
            "volatile-default",
            'op.add_column("users", sa.Column("token", sa.Uuid(), server_default=sa.text("gen_random_uuid()")))',
            "add_column",
        ),
        (
            "volatile-default",
            'op.add_column("users", sa.Column("seen", sa.DateTime(), server_default=sa.func.clock_timestamp()))',
            "add_column",
        ),
        ("add-generated-column", 'op.add_column("users", sa.Column("n", sa.Integer(), sa.Identity()))', "add_column"),
        (
            "add-generated-column",
            'op.add_column("users", sa.Column("n", sa.Integer(), sa.Computed("age * 2", persisted=True)))',
            "add_column",
        ),
        ("add-generated-column", 'op.add_column("users", sa.Column("n", postgresql.BIGSERIAL()))', "add_column"),
        ("create-primary-key", 'op.create_primary_key("pk_users", "users", ["id"])', "create_primary_key"),
        ("drop-index-blocking", 'op.drop_index("ix_users_age", table_name="users")', "drop_index"),
        (
            "drop-index-blocking",
            'with op.batch_alter_table("users") as batch_op:\n    batch_op.drop_index("ix_users_age")',
            "drop_index",
        ),
        ("add-column-unique", 'op.add_column("users", sa.Column("code", sa.String(8), unique=True))', "add_column"),
        (
            "add-column-foreign-key",
            'op.add_column("users", sa.Column("team_id", sa.Uuid(), sa.ForeignKey("teams.id")))',
            "add_column",
        ),
        ("create-index-blocking", 'op.add_column("users", sa.Column("code", sa.String(8), index=True))', "add_column"),
        ("drop-constraint", 'op.drop_constraint("uq_users_email", "users")', "drop_constraint"),
        (
            "exclusion-constraint",
            'op.create_exclude_constraint("ex_users_span", "users", ("span", "&&"))',
            "create_exclude_constraint",
        ),
        ("prefer-jsonb", 'op.add_column("users", sa.Column("settings", sa.JSON()))', "add_column"),
        (
            "batch-recreate",
            'with op.batch_alter_table("users", recreate="always") as batch_op:\n    pass',
            "batch_alter_table",
        ),
    ],
)
def test_each_rule_reports_the_operation_line_and_database(tmp_path: Path, rule: str, body: str, operation: str):
    path = write_revision(tmp_path, audit=body)

    assert found(path) == [(rule, line_of(path, operation), "audit")]


@pytest.mark.parametrize(
    ("rule", "body", "reported"),
    [
        (
            "raw-sql",
            'conn: sa.Connection = op.get_bind()\nconn.execute(sa.text("UPDATE users SET x = 1"))',
            "conn.exec",
        ),
        ("drop-column", 'o = op\no.drop_column("users", "last_name")', "o.drop_column"),
        ("raw-sql", 'ctx = op.get_context()\nctx.connection.execute(sa.text("UPDATE users SET x = 1"))', "ctx.conn"),
        ("raw-sql", 'op.impl.execute("UPDATE users SET x = 1")', "op.impl"),
        ("raw-sql", 'with op.get_bind() as c:\n    c.execute(sa.text("UPDATE users SET x = 1"))', "c.execute"),
        ("unchecked-code", 'Session(bind=op.get_bind()).execute(sa.text("UPDATE users SET x = 1"))', "Session("),
        ("unchecked-code", 'sa.Table("users", sa.MetaData()).drop(op.get_bind())', ".drop("),
        ("unchecked-code", 'getattr(op, "drop_column")("users", "x")', "getattr"),
        ("unchecked-code", 'op.invoke(ops.DropColumnOp("users", "x"))', "op.invoke"),
        ("unchecked-code", '__import__("helpers").drop_all(op)', "__import__"),
        (
            "add-column-unique",
            'column = sa.Column("code", sa.String(8), unique=True)\nop.add_column("users", column)',
            "op.add_column",
        ),
        (
            "create-primary-key",
            'op.add_column("users", sa.Column("seq", sa.BigInteger, primary_key=True, nullable=True))',
            "op.add_column",
        ),
        (
            "constraint-validates",
            'op.add_column("users", sa.Column("age", sa.Integer, sa.CheckConstraint("age > 0")))',
            "op.add_column",
        ),
        (
            "volatile-default",
            'op.add_column("users", sa.Column("x", sa.BigInteger(), server_default=sa.text("pg_current_xact_id()")))',
            "op.add_column",
        ),
        (
            "drop-column",
            'op.create_table("users", sa.Column("id", sa.Integer()), if_not_exists=True)\nop.drop_column("users", "x")',
            "op.drop_column",
        ),
    ],
)
def test_operations_written_another_way_are_found(tmp_path: Path, rule: str, body: str, reported: str) -> None:
    path = write_revision(tmp_path, body)
    imports = "from alembic.operations import ops\nfrom sqlmodel import Session\nimport sqlalchemy as sa"
    path.write_text(path.read_text().replace("import sqlalchemy as sa", imports, 1))

    assert (rule, line_of(path, reported), "core") in found(path)


def test_a_helper_is_followed_with_the_names_its_call_gives_op_and_the_batch(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        with op.batch_alter_table("users") as batch_op:
            drop_nickname(op, batch_op)
        """,
    )
    helper = '\n\ndef drop_nickname(o, b) -> None:\n    o.drop_table("notes")\n    b.drop_column("nickname")\n'
    path.write_text(path.read_text() + helper)

    assert found(path) == [
        ("drop-table", line_of(path, "o.drop_table"), "core"),
        ("drop-column", line_of(path, "b.drop_column"), "core"),
    ]


def test_the_dispatcher_and_a_function_given_the_upgrade_name_are_linted(tmp_path: Path) -> None:
    path = write_revision(tmp_path)
    source = path.read_text().replace("def upgrade_core() -> None:\n    pass\n", "")
    path.write_text(
        source
        + '\n\ndef upgrade(engine_name: str) -> None:\n    op.drop_table("notes")\n'
        + '\n\ndef _drop_email() -> None:\n    op.drop_column("users", "email")\n\n\nupgrade_core = _drop_email\n'
    )

    assert found(path, "core") == [
        ("drop-table", line_of(path, 'op.drop_table("notes")'), "core"),
        ("drop-column", line_of(path, 'op.drop_column("users", "email")'), "core"),
    ]


def test_names_imported_from_sqlalchemy_under_another_name_are_read_as_their_own(tmp_path: Path) -> None:
    path = write_revision(tmp_path, 'op.add_column("users", C("code", sa.String(8), unique=True))')
    path.write_text(
        path.read_text().replace(
            "import sqlalchemy as sa", "import sqlalchemy as sa\nfrom sqlalchemy import Column as C"
        )
    )

    assert found(path) == [("add-column-unique", line_of(path, "op.add_column"), "core")]


def test_a_call_into_a_dotted_import_is_reported_unchecked(tmp_path: Path) -> None:
    path = write_revision(tmp_path, "src.migrate.helpers.drop_everything()")
    path.write_text(
        path.read_text().replace("import sqlalchemy as sa", "import src.migrate.helpers\nimport sqlalchemy as sa")
    )

    assert found(path) == [("unchecked-code", line_of(path, "drop_everything()"), "core")]


@pytest.mark.parametrize(
    "body",
    [
        'op.add_column("users", sa.Column("mood", sa.String(), server_default=sa.text("\'random()\'")))',
        'op.alter_column("users", "price", type_=sa.Numeric(12, 2), existing_type=sa.Numeric(10, 2))',
        'op.add_column("users", sa.Column("flags", sa.Integer()))\nop.bulk_insert(sa.table("notes"), [])',
        'if sa.inspect(op.get_bind()).has_table("notes"):\n    op.add_column("notes", sa.Column("n", sa.Integer()))',
    ],
    ids=["quoted-literal", "more-digits", "no-commit", "inspect"],
)
def test_safe_forms_that_look_risky_are_not_reported(tmp_path: Path, body: str) -> None:
    path = write_revision(tmp_path, body)

    assert found(path) == []


def test_an_operation_before_a_backfill_counts_whatever_it_is(tmp_path: Path) -> None:
    path = write_revision(tmp_path, 'op.bulk_insert(sa.table("notes"), [])\nop.backfill("users", "age = 0")')

    assert found(path) == [("operations-before-autocommit", line_of(path, "op.backfill"), "core")]


def test_a_json_column_with_a_jsonb_variant_is_not_reported(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        'op.add_column("users", sa.Column("settings", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")))',
    )

    assert found(path) == []


@pytest.mark.parametrize(
    ("new", "existing"),
    [
        ("sa.Text()", "sa.String(length=200)"),
        ("sa.String()", "sa.String(200)"),
        ("sa.String(length=300)", "sa.VARCHAR(length=200)"),
        ("sa.UnicodeText()", "sa.Text()"),
    ],
)
def test_widening_a_varchar_is_no_type_change(tmp_path: Path, new: str, existing: str) -> None:
    path = write_revision(tmp_path, f'op.alter_column("users", "bio", type_={new}, existing_type={existing})')

    assert found(path) == []


@pytest.mark.parametrize(
    ("new", "existing"),
    [
        ("sa.String(length=100)", "sa.String(length=200)"),
        ("sa.String(length=100)", "sa.Text()"),
        ("sa.Integer()", "sa.String(length=200)"),
        ("sa.Text()", None),
    ],
)
def test_narrowing_or_other_type_changes_are_reported(tmp_path: Path, new: str, existing: str | None) -> None:
    existing_type = f", existing_type={existing}" if existing else ""
    path = write_revision(tmp_path, f'op.alter_column("users", "bio", type_={new}{existing_type})')

    assert [rule for rule, _, _ in found(path)] == ["change-column-type"]


def test_operations_in_a_function_of_the_file_are_followed(tmp_path: Path) -> None:
    path = write_revision(tmp_path, "drop_nickname()")
    path.write_text(path.read_text() + '\n\ndef drop_nickname() -> None:\n    op.drop_column("users", "nickname")\n')

    assert found(path) == [("drop-column", line_of(path, "op.drop_column"), "core")]


def test_a_function_from_elsewhere_is_reported_unchecked(tmp_path: Path) -> None:
    path = write_revision(tmp_path, "add_columns(op)\nshared.fill(op)")
    path.write_text(
        path.read_text().replace("import sqlalchemy", "from src.x import add_columns, shared\nimport sqlalchemy")
    )

    assert found(path) == [
        ("unchecked-code", line_of(path, "add_columns(op)"), "core"),
        ("unchecked-code", line_of(path, "shared.fill(op)"), "core"),
    ]
    assert "calls add_columns() from src.x" in lint_file(path)[0].message


def test_validating_in_the_transaction_that_added_the_constraint_is_reported(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        with op.batch_alter_table("users") as batch_op:
            batch_op.create_check_constraint("age_set", "age IS NOT NULL", postgresql_not_valid=True)
        op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_users_age_set")  # migrate-lint: allow raw-sql -- test
        """,
    )

    assert found(path) == [("validate-in-same-transaction", line_of(path, "VALIDATE"), "core")]


def test_validating_after_an_autocommit_block_is_another_transaction(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        op.create_check_constraint("age_set", "users", "age IS NOT NULL", postgresql_not_valid=True)
        with op.get_context().autocommit_block():
            op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_users_age_set")  # migrate-lint: allow raw-sql -- t
        """,
    )

    assert [rule for rule, _, _ in found(path)] == ["operations-before-autocommit"]


@pytest.mark.parametrize(
    "commit",
    ['op.backfill("users", "age = 0")', "with op.get_context().autocommit_block():\n    pass"],
    ids=["backfill", "autocommit_block"],
)
def test_operations_before_a_commit_inside_the_revision_are_reported(tmp_path: Path, commit: str) -> None:
    path = write_revision(
        tmp_path,
        f'op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))\n{commit}',
    )
    reported = line_of(path, commit.splitlines()[0])

    assert found(path) == [("operations-before-autocommit", reported, "core")]
    assert f"commits the operations on line(s) {line_of(path, 'add_column')}" in lint_file(path)[0].message


def test_operations_after_a_backfill_are_not_reported(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        op.backfill("users", "age = 0", where="age IS NULL")
        op.create_check_constraint("age_set", "users", "age IS NOT NULL", postgresql_not_valid=True)
        """,
    )

    assert found(path) == []


def test_a_post_deploy_revision_may_drop_what_the_previous_code_used(tmp_path: Path) -> None:
    body = """
    op.drop_column("users", "nickname")
    op.drop_table("notes")
    op.drop_constraint("uq_users_email", "users")
    op.create_index("ix_users_age", "users", ["age"])
    """
    path = write_revision(tmp_path, body)
    path.write_text(path.read_text().replace("down_revision = None", "down_revision = None\npost_deploy = True"))

    assert found(path) == [("create-index-blocking", line_of(path, "create_index"), "core")]


def test_a_finding_says_what_why_and_the_safe_recipe_on_one_line(tmp_path: Path) -> None:
    path = write_revision(tmp_path, 'op.create_index("ix_users_age", "users", ["age"])')

    [finding] = lint_file(path)

    assert "creates index ix_users_age on users without postgresql_concurrently=True" in finding.message
    assert "blocks writes" in finding.message
    assert "with op.get_context().autocommit_block():" in finding.message
    assert "\n" not in str(finding)
    assert str(finding).startswith(f"{path}:{finding.line}: core: create-index-blocking: creates index")


def test_a_finding_path_is_shown_relative_to_the_project() -> None:
    finding = Finding("drop-table", PROJECT_ROOT / "migrations" / "versions" / "x.py", 12, "core", "drops table users")

    assert str(finding) == "migrations/versions/x.py:12: core: drop-table: drops table users"


def test_dropping_and_adding_columns_of_one_table_is_a_probable_rename(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        with op.batch_alter_table("users") as batch_op:
            batch_op.add_column(sa.Column("full_name", sa.String(), nullable=True))
            batch_op.drop_column("name")
        """,
    )
    drop = line_of(path, "drop_column")

    assert found(path) == [("drop-column", drop, "core"), ("probable-rename", drop, "core")]
    assert "alter_column(..., new_column_name=...)" in lint_file(path)[1].message


def test_dropping_and_adding_columns_of_different_tables_is_no_rename(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        op.add_column("workspaces", sa.Column("slug", sa.String(), nullable=True))
        op.drop_column("users", "name")
        """,
    )

    assert [rule for rule, _, _ in found(path)] == ["drop-column"]


def test_a_column_changed_in_several_ways_gets_a_finding_for_each(tmp_path: Path) -> None:
    path = write_revision(tmp_path, 'op.alter_column("users", "age", nullable=False, type_=sa.BigInteger())')

    assert [rule for rule, _, _ in found(path)] == ["change-column-type", "set-not-null"]


def test_operations_on_a_table_created_in_the_same_function_are_not_reported(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        op.create_table("notes", sa.Column("id", sa.Integer(), primary_key=True))
        op.add_column("notes", sa.Column("body", sa.Text(), nullable=False))
        op.alter_column("notes", "body", nullable=False, type_=sa.String())
        op.create_foreign_key("fk_notes_user", "notes", "users", ["user_id"], ["id"])
        op.create_unique_constraint("uq_notes_body", "notes", ["body"])
        with op.batch_alter_table("notes") as batch_op:
            batch_op.create_index("ix_notes_body", ["body"])
            batch_op.drop_column("body")
        op.drop_table("notes")
        """,
    )

    assert found(path) == []


def test_a_table_created_for_another_database_is_an_existing_table_here(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        'op.create_index("ix_notes_body", "notes", ["body"])',
        audit='op.create_table("notes", sa.Column("id", sa.Integer(), primary_key=True))',
    )

    assert found(path) == [("create-index-blocking", line_of(path, "create_index"), "core")]


def test_a_concurrent_index_inside_autocommit_block_is_safe(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        with op.get_context().autocommit_block():
            op.create_index("ix_users_age", "users", ["age"], postgresql_concurrently=True)
            op.drop_index("ix_users_name", table_name="users", postgresql_concurrently=True)
        """,
    )

    assert found(path) == []


def test_a_concurrent_index_after_the_autocommit_block_is_in_a_transaction_again(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        with op.get_context().autocommit_block():
            pass
        op.create_index("ix_users_age", "users", ["age"], postgresql_concurrently=True)
        """,
    )

    assert found(path) == [("concurrent-index-in-transaction", line_of(path, "create_index"), "core")]


def test_the_safe_forms_are_not_reported(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=False, server_default="0"))
        op.add_column("users", sa.Column("nickname", sa.String(), nullable=True))
        op.create_check_constraint("age_set", "users", "age IS NOT NULL", postgresql_not_valid=True)
        with op.batch_alter_table("users") as batch_op:
            batch_op.create_foreign_key("fk_users_team", "teams", ["team_id"], ["id"], postgresql_not_valid=True)
            batch_op.alter_column("nickname", server_default="none")
        """,
    )

    assert found(path) == []


def test_downgrades_are_not_linted(tmp_path: Path) -> None:
    path = write_revision(tmp_path, downgrade_core='op.drop_table("users")')

    assert found(path) == []


def test_an_allow_comment_with_a_reason_accepts_the_finding(tmp_path: Path) -> None:
    path = write_revision(tmp_path, 'op.drop_table("users")  # migrate-lint: allow drop-table -- unused since v2')

    assert found(path) == []


def test_an_allow_comment_on_any_line_of_the_call_accepts_several_rules(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        """
        op.alter_column(
            "users",
            "age",
            nullable=False,
            type_=sa.BigInteger(),
        )  # migrate-lint: allow set-not-null, change-column-type -- users holds ten rows
        """,
    )

    assert found(path) == []


def test_an_allow_comment_accepts_only_the_rules_it_names(tmp_path: Path) -> None:
    path = write_revision(
        tmp_path,
        'op.alter_column("users", "age", nullable=False, type_=sa.Text())  # migrate-lint: allow set-not-null -- tiny',
    )

    assert found(path) == [("change-column-type", line_of(path, "alter_column"), "core")]


def test_an_allow_comment_without_a_reason_is_a_finding_and_accepts_nothing(tmp_path: Path) -> None:
    path = write_revision(tmp_path, 'op.drop_table("users")  # migrate-lint: allow drop-table')
    line = line_of(path, "drop_table")

    assert found(path) == [("allow-without-reason", line, "core"), ("drop-table", line, "core")]


def test_an_allow_comment_naming_an_unknown_rule_is_a_finding(tmp_path: Path) -> None:
    path = write_revision(tmp_path, 'op.drop_table("users")  # migrate-lint: allow drop-tables -- gone since v2')
    line = line_of(path, "drop_table")

    assert found(path) == [("allow-unknown-rule", line, "core"), ("drop-table", line, "core")]
    assert "'drop-tables'" in lint_file(path)[0].message


def test_db_restricts_the_findings_to_one_database(tmp_path: Path) -> None:
    path = write_revision(tmp_path, 'op.drop_table("users")', audit='op.drop_table("audit_events")')

    assert found(path, "audit") == [("drop-table", line_of(path, '"audit_events"'), "audit")]
    assert [database for _, _, database in found(path)] == ["core", "audit"]


def test_an_unknown_db_is_refused_by_name(tmp_path: Path) -> None:
    message = f"unknown database {UNKNOWN_DATABASE!r}; choose one of: {', '.join(DATABASES)}"
    with pytest.raises(UnknownDatabaseError, match=f"^{re.escape(message)}$"):
        lint_file(write_revision(tmp_path), UNKNOWN_DATABASE)


def test_a_file_that_is_not_python_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def upgrade_core(:\n")

    with pytest.raises(MigrateError, match=r"broken\.py:1: cannot read the revision"):
        lint_file(path)


def test_the_committed_revisions_have_no_unaccepted_findings() -> None:
    assert lint_revisions(dict.fromkeys(revision_files(), DATABASES)) == []


def test_the_lint_command_fails_on_an_unaccepted_finding(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(lint, "VERSIONS", tmp_path)
    path = write_revision(tmp_path, 'op.drop_column("users", "nickname")')
    write_revision(tmp_path, name="other.py")

    assert main(["lint"]) != 0

    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith(f"{path}:{line_of(path, 'drop_column')}: core: drop-column: ")
    assert out.splitlines()[-1] == "1 finding(s) in 1 revision(s)"
    assert err.startswith("error: risky operations not accepted")


def test_the_lint_command_passes_when_every_finding_is_accepted(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(lint, "VERSIONS", tmp_path)
    write_revision(
        tmp_path, 'op.drop_column("users", "nickname")  # migrate-lint: allow drop-column -- unread since v3'
    )

    assert main(["lint", "--db", "core"]) == 0
    assert capsys.readouterr().out == "no risky operations in 1 revision(s)\n"
