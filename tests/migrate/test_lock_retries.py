"""Lock retries on PostgreSQL: a revision that cannot get its lock is rolled back and tried again, the table is never
queued behind it for longer than one attempt, a failed concurrent index leaves nothing behind, and a killed
migration's backend stops."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, insert, text
from sqlalchemy.exc import DBAPIError

from src.core import schema_versions
from src.core.config import PROJECT_ROOT, get_settings
from src.core.schema_versions import alembic_config, current_heads
from src.migrate.__main__ import main
from src.migrate.migration_lock import MIGRATION_LOCK_ID
from tests.conftest import HEAD, Versions, url_variables
from tests.factories import USERS, user_row
from tests.migrate.conftest import ALTERS_USERS, BEFORE_ALTERS_USERS

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)]

INDEX = "ix_users_last_name"
INDEX_LAST_NAMES = """

def upgrade_core() -> None:
    with op.get_context().autocommit_block():
        op.create_index("ix_users_last_name", "users", ["last_name"], postgresql_concurrently=True)
"""


@pytest.fixture
def retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short attempts and pauses: 3 attempts within about a second."""
    settings = get_settings()
    monkeypatch.setattr(settings, "migration_lock_timeout_seconds", 0.2)
    monkeypatch.setattr(settings, "migration_lock_retry_pause_seconds", 0.2)
    monkeypatch.setattr(settings, "migration_lock_attempts", 3)


def pid_of(connection: Connection) -> int:
    return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def columns_of_users(core: Engine) -> list[str]:
    with core.connect() as connection:
        return list(connection.execute(text("SELECT * FROM users LIMIT 0")).keys())


def test_a_revision_blocked_by_a_transaction_is_retried_until_that_transaction_ends(
    core, retrying, monkeypatch, capsys
) -> None:
    command.upgrade(alembic_config(db="core"), BEFORE_ALTERS_USERS)
    monkeypatch.setattr(get_settings(), "migration_lock_attempts", 20)
    blocker = core.connect()
    blocker.execute(text("SELECT count(*) FROM users"))  # holds ACCESS SHARE until it ends, as a long report would
    blocking_pid = pid_of(blocker)
    threading.Timer(1.0, blocker.close).start()

    code = main(["upgrade", "--db", "core"])

    assert code == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"core: upgraded {BEFORE_ALTERS_USERS} -> {HEAD}"]
    retries = err.splitlines()
    assert retries, "no attempt was retried"
    assert retries[0].startswith(f"core: revision {ALTERS_USERS} (migrations/versions/")
    assert "failed and its transaction was rolled back: waited 0.2s for a lock on table users (lock_timeout;" in err
    assert f"held by pid {blocking_pid} (idle in transaction, in a transaction since " in retries[0]
    assert retries[0].endswith("; attempt 1 of 20, trying again in 0.2s")
    assert "full_name" in columns_of_users(core)


def test_a_revision_still_blocked_after_every_attempt_gives_up_rolled_back(core, retrying, capsys) -> None:
    command.upgrade(alembic_config(db="core"), BEFORE_ALTERS_USERS)
    with core.connect() as blocker:
        blocker.execute(text("SELECT count(*) FROM users"))
        blocking_pid = pid_of(blocker)

        code = main(["upgrade", "--db", "core"])

    assert code == 1
    *retries, error = capsys.readouterr().err.splitlines()
    assert [retry.rsplit("; ", 1)[1] for retry in retries] == [
        "attempt 1 of 3, trying again in 0.2s",
        "attempt 2 of 3, trying again in 0.4s",
    ]
    assert error.startswith(f"error: core: revision {ALTERS_USERS} (migrations/versions/")
    assert error.endswith(
        ") failed and its transaction was rolled back: waited 0.2s for a lock on table users (lock_timeout;"
        f" MIGRATION_LOCK_TIMEOUT_SECONDS), held by pid {blocking_pid} (idle in transaction, in a transaction since"
        f" {error.split('in a transaction since ')[1][:12]}); gave up after 3 attempts (MIGRATION_LOCK_ATTEMPTS);"
        " retrying is safe (VERBOSE=1 prints the traceback)"
    )
    with core.connect() as connection:
        assert current_heads(connection) == (BEFORE_ALTERS_USERS,)
    assert "full_name" not in columns_of_users(core)


def test_reads_never_queue_behind_the_migration_for_longer_than_one_attempt(core, retrying, monkeypatch) -> None:
    command.upgrade(alembic_config(db="core"), BEFORE_ALTERS_USERS)
    monkeypatch.setattr(get_settings(), "migration_lock_attempts", 4)
    waits: list[float] = []
    upgrading = threading.Event()

    def read_users() -> None:
        with core.connect() as reader:
            while not upgrading.is_set():
                time.sleep(0.01)
            while upgrading.is_set():
                started = time.monotonic()
                reader.execute(text("SELECT count(*) FROM users"))
                reader.rollback()
                waits.append(time.monotonic() - started)
                time.sleep(0.005)

    reader = threading.Thread(target=read_users)
    reader.start()
    with core.connect() as blocker:
        blocker.execute(text("SELECT count(*) FROM users"))
        upgrading.set()
        started = time.monotonic()
        code = main(["upgrade", "--db", "core"])
        retried_for = time.monotonic() - started
        upgrading.clear()
    reader.join()

    assert code == 1  # the blocker never ended
    assert len(waits) > 20
    # Four attempts over about two seconds; a read waited at most about one attempt's 0.2 s lock timeout.
    assert max(waits) < retried_for / 4


@pytest.fixture
def before_index(versions: Versions, migrated_databases: dict[str, str]) -> Versions:
    versions.write(
        "2030_01_01_100000-c1c1c1c1c1c1_index_last_names.py",
        message="Index last names",
        revision="c1c1c1c1c1c1",
        down=HEAD,
        body=INDEX_LAST_NAMES,
    )
    return versions


def index_state(core: Engine) -> bool | None:
    """True for a valid index, False for an INVALID one, None when there is none."""
    with core.connect() as connection:
        return connection.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:index)"), {"index": INDEX}
        ).scalar()


def test_a_concurrent_index_behind_an_old_transaction_says_so_and_leaves_no_invalid_index(
    before_index, core, retrying, capsys
) -> None:
    with core.connect() as old:
        # A snapshot older than the index build, on another table: the build waits for it all the same.
        old.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        old.execute(text("SELECT count(*) FROM workspaces"))
        old_pid = pid_of(old)

        code = main(["upgrade", "--db", "core"])

        assert index_state(core) is None
    assert code == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert (
        "failed: waited 0.2s for older transactions to end (lock_timeout; MIGRATION_LOCK_TIMEOUT_SECONDS): an" in error
    )
    assert "whatever table that transaction uses, the oldest open transactions pid " in error
    assert f"pid {old_pid} (idle in transaction, in a transaction since " in error
    assert f"the INVALID index {INDEX} it left was dropped; gave up after 3 attempts" in error

    assert main(["upgrade", "--db", "core"]) == 0
    assert index_state(core) is True


def test_a_concurrent_index_behind_a_transaction_on_its_own_table_is_built_by_the_next_run(
    before_index, core, retrying, capsys
) -> None:
    with core.connect() as report:
        # A long report on users: the build waits for it, and so does dropping what the build left.
        report.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        report.execute(text("SELECT count(*) FROM users"))

        code = main(["upgrade", "--db", "core"])

    assert code == 1
    *retries, error = capsys.readouterr().err.splitlines()
    assert len(retries) == 2
    assert "failed: waited 0.2s for older transactions to end" in retries[0]
    assert error.startswith("error: core: revision c1c1c1c1c1c1 (")
    assert f"; the INVALID index {INDEX} it left is still there (dropping it waited too long as well)" in error
    assert "gave up after 3 attempts (MIGRATION_LOCK_ATTEMPTS)" in error

    assert main(["upgrade", "--db", "core"]) == 0
    assert index_state(core) is True


def test_an_invalid_index_left_by_an_earlier_run_is_dropped_and_built_again(
    before_index, core, retrying, capsys
) -> None:
    with core.begin() as connection:
        connection.execute(insert(USERS), user_row("bob", last_name="Bob"))
    # As an interrupted run leaves it: a concurrent build of the index that failed half way.
    with core.connect() as connection, pytest.raises(DBAPIError, match="division by zero"):
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text(f"CREATE INDEX CONCURRENTLY {INDEX} ON users ((1 / (length(last_name) - 3)))"))
    assert index_state(core) is False

    code = main(["upgrade", "--db", "core"])

    assert code == 0
    assert f"the INVALID index {INDEX} it left was dropped; attempt 1 of 3" in capsys.readouterr().err
    assert index_state(core) is True


def test_a_killed_migration_stops_on_the_server_and_releases_its_locks(versions, migrated_databases, core) -> None:
    versions.write(
        "2030_01_01_100000-c2c2c2c2c2c2_long_statement.py",
        message="A long statement",
        revision="c2c2c2c2c2c2",
        down=HEAD,
        body="""

        def upgrade_core() -> None:
            op.execute("LOCK TABLE users")  # migrate-lint: allow raw-sql -- a test of a killed migration
            op.execute("SELECT pg_sleep(60)")  # migrate-lint: allow raw-sql -- a test of a killed migration
        """,
    )
    env = {**os.environ, **url_variables(migrated_databases)}
    # The migrate command, on the copy of the migrations with the long revision.
    script = (
        "import sys, pathlib; from src.core import schema_versions;"
        f" schema_versions.ALEMBIC_INI = pathlib.Path({str(schema_versions.ALEMBIC_INI)!r});"
        " from src.migrate.__main__ import main; sys.exit(main(['upgrade']))"
    )
    migration = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env)
    try:
        sleeping = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'SELECT pg_sleep(60)'"
        )
        backend = wait_for(core, sleeping)
        os.kill(migration.pid, signal.SIGKILL)
        started = time.monotonic()
        gone = wait_for(
            core,
            f"SELECT true WHERE NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = {backend})",
            timeout=30,
        )
        stopped_after = time.monotonic() - started
    finally:
        migration.kill()
        migration.wait()
    assert gone
    assert stopped_after < 10  # the statement had 60 s to go
    with core.connect() as connection:
        locks = connection.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :id"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"id": MIGRATION_LOCK_ID & 0xFFFFFFFF},
        ).scalar()
        connection.execute(text("SET lock_timeout = '1s'"))
        count = connection.execute(text("SELECT count(*) FROM users")).scalar()
    assert locks == 0
    assert count == 0


def wait_for(core: Engine, query: str, timeout: float = 20) -> object:
    """The first value ``query`` returns, polled until it returns a row."""
    deadline = time.monotonic() + timeout
    with core.connect() as watcher:
        while time.monotonic() < deadline:
            value = watcher.execute(text(query)).scalar()
            watcher.rollback()
            if value is not None:
                return value
            time.sleep(0.05)
    pytest.fail(f"nothing came of {query!r} within {timeout}s")
