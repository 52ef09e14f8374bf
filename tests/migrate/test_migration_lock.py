"""Migrations on PostgreSQL: a revision gives up on a lock instead of stalling reads, and a second
migration waits for the first one for a bounded time."""

import os
import subprocess
import sys
import threading
import time

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from src.core.config import PROJECT_ROOT, get_settings
from src.core.databases import DATABASES
from src.core.engines import get_unpooled_engine
from src.core.schema_versions import alembic_config
from src.migrate.__main__ import main
from src.migrate.migration_lock import (
    MIGRATION_LOCK_ID,
    MigrationLockTimeout,
    prepare_migration_connection,
    timeout_reason,
)
from tests.conftest import url_variables
from tests.migrate.conftest import BEFORE_ALTERS_USERS

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)]


@pytest.fixture
def core_before_users_alter(core: Engine) -> Engine:
    command.upgrade(alembic_config(db="core"), BEFORE_ALTERS_USERS)
    return core


def reading_users(connection: Connection) -> None:
    """Leave a transaction open that has read users: it holds ACCESS SHARE until it ends, as a long report would."""
    connection.execute(text("SELECT count(*) FROM users"))


def database_error(error: BaseException | None) -> DBAPIError:
    """The driver error behind an exception, however it was wrapped or chained."""
    while error is not None and not isinstance(error, DBAPIError):
        error = error.__cause__ or error.__context__
    assert error is not None, "no database error in the chain"
    return error


def wait_for_migration_waiting_on_lock(core: Engine, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with core.connect() as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query ILIKE 'ALTER TABLE users%'"
                )
            ).scalar()
            watcher.rollback()
            if waiting:
                return
            time.sleep(0.02)
    pytest.fail("the migration never waited for its lock on users")


def test_reads_queued_behind_a_waiting_revision_are_answered_once_it_gives_up(
    core_before_users_alter, monkeypatch
) -> None:
    monkeypatch.setattr(get_settings(), "migration_lock_timeout_seconds", 1)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            command.upgrade(alembic_config(db="core"), "head")
        except BaseException as error:
            errors.append(error)

    with core_before_users_alter.connect() as blocker, core_before_users_alter.connect() as reader:
        reading_users(blocker)
        # The read's own bound: without lock_timeout it would queue behind the ALTER until this ends it.
        reader.execute(text("SET statement_timeout = '5s'"))
        migration = threading.Thread(target=upgrade)
        migration.start()
        wait_for_migration_waiting_on_lock(core_before_users_alter)
        started = time.monotonic()

        count = reader.execute(text("SELECT count(*) FROM users")).scalar()

        read_seconds = time.monotonic() - started
        migration.join(timeout=30)
        blocker.rollback()
    assert count == 0
    assert read_seconds < 1 + 1.5
    assert not migration.is_alive()
    assert [type(database_error(error)).__name__ for error in errors] == ["OperationalError"]


def test_the_migration_connection_keeps_its_timeouts_across_revisions_and_the_apps_get_none(core) -> None:
    with core.connect() as connection:
        prepare_migration_connection(connection, "core")
        connection.execute(text("SELECT 1"))
        connection.rollback()  # as a failed revision would

        settings = ("lock_timeout", "statement_timeout", "client_connection_check_interval")
        timeouts = [connection.execute(text(f"SHOW {name}")).scalar() for name in settings]
    with get_unpooled_engine("core").connect() as app, core.connect() as plain:
        app_timeout = app.execute(text("SHOW statement_timeout")).scalar()
        server_default = plain.execute(text("SHOW statement_timeout")).scalar()

    assert timeouts == ["100ms", "1h", "1s"]
    assert app_timeout == server_default


@pytest.mark.parametrize(
    ("statement", "locked"),
    [
        ("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)", "table users"),
        ('ALTER TABLE IF EXISTS ONLY "public"."users" DROP COLUMN email', "table public.users"),
        ("CREATE UNIQUE INDEX ix_users_on_nickname ON users (email)", "table users"),
        ("-- backfill\nUPDATE users SET email = lower(email)", "table users"),
        ("DROP TABLE users", "table users"),
        ("CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id UUID REFERENCES users (id))", "table users"),
        ("SELECT count(*) FROM users", None),
    ],
)
def test_a_lock_timeout_names_the_table_the_statement_waited_for(
    core_before_users_alter, monkeypatch, statement, locked
) -> None:
    monkeypatch.setattr(get_settings(), "migration_lock_timeout_seconds", 0.2)
    with core_before_users_alter.connect() as blocker, core_before_users_alter.connect() as migration:
        blocker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        prepare_migration_connection(migration, "core")

        with pytest.raises(DBAPIError) as raised:
            migration.execute(text(statement))

    on = f" on {locked}" if locked else ""
    assert timeout_reason(raised.value) == f"waited 0.2s for a lock{on} (lock_timeout; MIGRATION_LOCK_TIMEOUT_SECONDS)"


def test_a_statement_timeout_names_the_table_and_the_setting(core_before_users_alter, monkeypatch) -> None:
    monkeypatch.setattr(get_settings(), "migration_statement_timeout_seconds", 0.2)
    with core_before_users_alter.connect() as migration:
        prepare_migration_connection(migration, "core")

        with pytest.raises(DBAPIError) as raised:
            migration.execute(text("UPDATE users SET email = email FROM pg_sleep(2)"))

    assert timeout_reason(raised.value) == (
        "a statement on table users ran longer than 0.2s (statement_timeout; MIGRATION_STATEMENT_TIMEOUT_SECONDS:"
        " raise it if the statement needs longer)"
    )


@pytest.mark.parametrize(
    "statement", ["SELECT 1 / 0", "SELECT pg_cancel_backend(pg_backend_pid()), pg_sleep(2)"], ids=["error", "cancel"]
)
def test_other_errors_are_no_timeout(core, statement) -> None:
    with core.connect() as connection, pytest.raises(DBAPIError) as raised:
        connection.execute(text(statement))

    assert timeout_reason(raised.value) is None


def hold_migration_lock(connection: Connection) -> int:
    """Take the migration lock as another migration would; returns the holder's pid."""
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    connection.commit()
    return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_second_migration_proceeds_once_the_first_releases_the_lock(core, monkeypatch, capsys) -> None:
    monkeypatch.setattr(get_settings(), "migration_wait_timeout_seconds", 30)
    holder = core.connect()
    pid = hold_migration_lock(holder)
    threading.Timer(1, holder.close).start()

    with core.connect() as migration:
        started = time.monotonic()
        prepare_migration_connection(migration, "core")
        waited = time.monotonic() - started

    assert 0.5 < waited < 5
    assert f"core: another migration is running: the migration lock is held by pid {pid} (" in capsys.readouterr().err


def test_a_second_migration_gives_up_after_the_wait_timeout(core, monkeypatch) -> None:
    monkeypatch.setattr(get_settings(), "migration_wait_timeout_seconds", 1)
    with core.connect() as holder, core.connect() as migration:
        pid = hold_migration_lock(holder)

        with pytest.raises(MigrationLockTimeout, match=rf"^core: .* pid {pid} .*; retry when it finishes$"):
            prepare_migration_connection(migration, "core")


def test_status_and_check_do_not_wait_for_a_running_migration(configured_databases, core, monkeypatch, capsys) -> None:
    command.upgrade(alembic_config(), "head")
    monkeypatch.setattr(get_settings(), "migration_wait_timeout_seconds", 30)
    with core.connect() as holder:
        hold_migration_lock(holder)
        started = time.monotonic()

        assert main(["status"]) == 0
        assert main(["check"]) == 0

        elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert elapsed < 10
    assert "another migration is running" not in err
    assert out.count("match") == 2 * len(DATABASES)  # a status row and a check line per database


def test_a_second_upgrade_says_who_holds_the_lock_and_exits_2_after_the_wait_timeout(
    configured_databases, core
) -> None:
    env = {
        **os.environ,
        **url_variables(configured_databases),
        "MIGRATION_WAIT_TIMEOUT_SECONDS": "2",
    }
    with core.connect() as holder:
        pid = hold_migration_lock(holder)
        started = time.monotonic()

        run = subprocess.run(
            [sys.executable, "-m", "src.migrate", "upgrade"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

        elapsed = time.monotonic() - started
    waiting, *rest = run.stderr.splitlines()
    assert waiting.startswith(f"core: another migration is running: the migration lock is held by pid {pid} (")
    assert waiting.endswith("; waiting up to 2s (MIGRATION_WAIT_TIMEOUT_SECONDS)")
    assert len(rest) == 1, run.stderr
    assert rest[0].startswith("error: core: another migration still holds the migration lock after 2s")
    assert rest[0].endswith("; retry when it finishes")
    assert run.returncode == 2
    assert run.stdout == ""
    assert 2 <= elapsed < 15
