"""op.backfill: batches by key, each committed with its progress on PostgreSQL, resumed after a failure without
doing a batch twice; no lock on the table while it runs; offline SQL that commits each batch too."""

import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, insert, inspect, text
from sqlalchemy.pool import NullPool

from src.core.config import get_settings
from src.core.schema_versions import BACKFILL_PROGRESS_TABLE, alembic_config
from src.migrate.__main__ import main
from tests.conftest import HEAD, Versions
from tests.factories import USERS, user_row

ADD_COLUMNS, BACKFILL = "d1d1d1d1d1d1", "d2d2d2d2d2d2"
ROWS, BATCH = 35, 10
# Rows in key order: the first user has the smallest id. user25 is in the third batch.
IDS = [uuid.UUID(int=number) for number in range(1, ROWS + 2)]


@pytest.fixture
def users_to_fill(versions: Versions, migrated_databases: dict[str, str], monkeypatch) -> Iterator[Engine]:
    """35 users, plus one whose nickname is already 'taken', and the revisions that add and fill nickname."""
    monkeypatch.setattr(get_settings(), "migration_backfill_batch_size", BATCH)
    monkeypatch.setattr(get_settings(), "migration_backfill_pause_seconds", 0)
    versions.write(
        "2030_01_01_100000-d1d1d1d1d1d1_add_users_nickname.py",
        message="Add users.nickname",
        revision=ADD_COLUMNS,
        down=HEAD,
        body="""

        def upgrade_core() -> None:
            with op.batch_alter_table("users") as batch_op:
                batch_op.add_column(sa.Column("nickname", sa.String(40), nullable=True))
                batch_op.add_column(sa.Column("touches", sa.Integer(), nullable=False, server_default="0"))
                batch_op.create_index(
                    "ix_users_nickname", ["nickname"], unique=True
                )  # migrate-lint: allow create-index-blocking -- a test table
        """,
    )
    versions.write(
        "2030_01_01_110000-d2d2d2d2d2d2_fill_users_nickname.py",
        message="Fill users.nickname",
        revision=BACKFILL,
        down=ADD_COLUMNS,
        body="""

        def upgrade_core() -> None:
            op.backfill(
                "users",
                "nickname = CASE WHEN username = 'user25' THEN 'taken' ELSE username END, touches = touches + 1",
                where="nickname IS NULL",
            )
        """,
    )
    core = create_engine(migrated_databases["core"], poolclass=NullPool)
    with core.begin() as connection:
        connection.execute(insert(USERS), [user_row(f"user{n}", id=user_id) for n, user_id in enumerate(IDS, 1)])
    command.upgrade(alembic_config(db="core"), ADD_COLUMNS)
    with core.begin() as connection:
        connection.execute(
            text("UPDATE users SET nickname = 'taken' WHERE username = :last"), {"last": f"user{ROWS + 1}"}
        )
    yield core
    core.dispose()


def free_the_taken_nickname(core: Engine) -> None:
    """Rename the nickname user25's fill clashes with: the backfill can then finish."""
    with core.begin() as connection:
        connection.execute(text("UPDATE users SET nickname = 'was-taken' WHERE nickname = 'taken'"))


def touches(core: Engine) -> dict[str, int]:
    with core.connect() as connection:
        return {username: count for username, count in connection.execute(text("SELECT username, touches FROM users"))}


def test_a_failed_batch_leaves_the_committed_ones_and_a_rerun_continues_after_them(
    users_to_fill: Engine, dialect: str, capsys
) -> None:
    core = users_to_fill

    assert main(["upgrade", "--db", "core"]) == 1

    assert "UNIQUE" in capsys.readouterr().err.upper()
    committed = 20 if dialect == "postgresql" else 0  # SQLite runs the batches inside the revision's transaction
    assert sorted(touches(core).values()) == [0] * (ROWS + 1 - committed) + [1] * committed
    assert touches(core)["user20"] == (1 if committed else 0) and touches(core)["user21"] == 0

    free_the_taken_nickname(core)
    assert main(["upgrade", "--db", "core"]) == 0

    out = capsys.readouterr().out
    if committed:
        assert f"core: backfill users: resuming after {committed} rows" in out
    assert f"core: backfill users: {ROWS + 1} rows, {ROWS} updated, in " in out
    assert touches(core) == {f"user{number}": 1 for number in range(1, ROWS + 1)} | {f"user{ROWS + 1}": 0}
    assert BACKFILL_PROGRESS_TABLE not in inspect(core).get_table_names()  # gone with the revision's version recorded


def fill_revision(versions: Versions, body: str) -> None:
    versions.write(
        "2030_01_01_120000-d3d3d3d3d3d3_fill_again.py",
        message="Fill again",
        revision="d3d3d3d3d3d3",
        down=BACKFILL,
        body=body,
    )


def test_a_key_with_nulls_is_refused_before_any_batch(users_to_fill: Engine, versions: Versions, capsys) -> None:
    fill_revision(
        versions,
        """

        def upgrade_core() -> None:
            op.backfill("users", "touches = touches + 10", key="nickname")
        """,
    )
    free_the_taken_nickname(users_to_fill)
    command.upgrade(alembic_config(db="core"), BACKFILL)  # every nickname filled
    with users_to_fill.begin() as connection:
        connection.execute(text("UPDATE users SET nickname = NULL WHERE username IN ('user1', 'user2')"))

    assert main(["upgrade", "--db", "core"]) == 1

    assert (
        "ValueError: op.backfill: users.nickname is NULL in 2 row(s), which batches by key cannot reach; pass key= a"
        " column that is never NULL (the primary key)" in capsys.readouterr().err
    )
    assert sorted(set(touches(users_to_fill).values())) == [0, 1]


def test_its_sql_is_taken_as_written_colons_included(users_to_fill: Engine, versions: Versions, capsys) -> None:
    free_the_taken_nickname(users_to_fill)
    fill_revision(
        versions,
        """

        def upgrade_core() -> None:
            op.backfill("users", "last_name = 'a:b' || CAST(touches AS VARCHAR)", where="username <> 'user1'")
        """,
    )

    assert main(["upgrade", "--db", "core"]) == 0

    with users_to_fill.connect() as connection:
        names = set(connection.execute(text("SELECT last_name FROM users")).scalars())
    assert names == {"B", "a:b1", "a:b0"}
    assert f"core: backfill users: {ROWS + 1} rows, {ROWS} updated, in " in capsys.readouterr().out


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_while_it_runs_the_table_is_not_locked_and_the_revision_holds_no_transaction(
    users_to_fill: Engine, monkeypatch, capsys
) -> None:
    core = users_to_fill
    free_the_taken_nickname(core)
    monkeypatch.setattr(get_settings(), "migration_backfill_pause_seconds", 0.3)
    results: list[int] = []
    migration = threading.Thread(target=lambda: results.append(main(["upgrade", "--db", "core"])))
    migration.start()
    try:
        wait_until_half_done(core)
        with core.connect() as writer:
            writer.execute(text("SET lock_timeout = '1s'"))
            writer.execute(text("UPDATE users SET last_name = 'C' WHERE username = :last"), {"last": f"user{ROWS}"})
            writer.commit()
            exclusive = writer.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'users'::regclass"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " AND mode IN ('AccessExclusiveLock', 'ExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock')"
                )
            ).scalar()
            revision_state = writer.execute(
                text(
                    "SELECT state FROM pg_stat_activity"
                    " WHERE application_name = 'migrate core' AND datname = current_database()"
                )
            ).scalar()
    finally:
        migration.join(timeout=30)
    assert results == [0]
    assert exclusive == 0
    assert revision_state == "idle"  # committed what came before, and waits outside any transaction


@pytest.mark.postgres
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_batch_behind_a_row_lock_is_retried_with_the_revision_and_resumes(
    users_to_fill: Engine, monkeypatch, capsys
) -> None:
    core = users_to_fill
    free_the_taken_nickname(core)
    settings = get_settings()
    monkeypatch.setattr(settings, "migration_lock_timeout_seconds", 0.2)
    monkeypatch.setattr(settings, "migration_lock_retry_pause_seconds", 0.3)
    monkeypatch.setattr(settings, "migration_lock_attempts", 10)
    writer = core.connect()
    writer.execute(text("UPDATE users SET last_name = 'C' WHERE username = 'user25'"))  # row locked until it ends
    threading.Timer(1.0, writer.close).start()

    assert main(["upgrade", "--db", "core"]) == 0

    out, err = capsys.readouterr()
    retries = err.splitlines()
    assert retries and all(f"revision {BACKFILL} " in retry for retry in retries)
    assert "waited 0.2s for a lock on table users" in retries[0]
    assert "core: backfill users: resuming after 20 rows" in out
    assert touches(core) == {f"user{number}": 1 for number in range(1, ROWS + 1)} | {f"user{ROWS + 1}": 0}


def wait_until_half_done(core: Engine) -> None:
    deadline = time.monotonic() + 20
    with core.connect() as watcher:
        while time.monotonic() < deadline:
            if inspect(watcher).has_table(BACKFILL_PROGRESS_TABLE):
                done = watcher.execute(text(f"SELECT rows_done FROM {BACKFILL_PROGRESS_TABLE}")).scalar()
                if done and done < ROWS:
                    return
            watcher.rollback()
            time.sleep(0.02)
    pytest.fail("the backfill never got half way")


@pytest.mark.postgres
@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_the_offline_sql_backfills_in_committed_batches_with_the_migration_timeouts(
    users_to_fill: Engine, migrated_databases: dict[str, str], capsys
) -> None:
    core = users_to_fill
    free_the_taken_nickname(core)

    assert main(["sql", "--db", "core", "--from", ADD_COLUMNS]) == 0

    sql = capsys.readouterr().out
    assert sql.splitlines()[1:4] == ["SET lock_timeout = '100ms';", "", "SET statement_timeout = '3600000ms';"]
    assert "COMMIT;\n\nDO $backfill$" in sql
    assert "users.id%TYPE" in sql
    psql_url = migrated_databases["core"].replace("postgresql+psycopg2://", "postgresql://")
    applied = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", psql_url], input=sql, capture_output=True, text=True, timeout=60
    )
    assert applied.returncode == 0, applied.stderr
    assert touches(core) == {f"user{number}": 1 for number in range(1, ROWS + 1)} | {f"user{ROWS + 1}": 0}
