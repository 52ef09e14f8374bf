"""Every revision, on each database alone, on SQLite and PostgreSQL: up one step at a time, then down to base."""

import importlib.util
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import JSON, String, Uuid, column, create_engine, insert, inspect, select, table, text

from src.core.config import get_settings
from src.core.databases import DATABASES
from src.core.partitions import is_partition
from src.core.schema_versions import alembic_config, script_directory
from src.core.timestamps import UTCDateTime
from src.migrate.revisions import plain_connection
from src.migrate.status import model_changes
from tests.conftest import recorded_revisions

VERSIONS = sorted((Path(__file__).parents[2] / "migrations" / "versions").glob("*.py"))


def table_names(url: str) -> set[str]:
    """The tables of a database, its partitions left out (each is its parent's model)."""
    engine = create_engine(url)
    try:
        names = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return {name for name in names if not any(is_partition(name, db.metadata) for db in DATABASES.values())}


@pytest.mark.parametrize("path", VERSIONS, ids=lambda path: path.name)
def test_revision_file_imports_and_dispatches_per_database(path: Path) -> None:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    assert module.revision
    # A database added after the revision was written has no step here: nothing to do, no KeyError.
    module.upgrade("database_added_later")
    module.downgrade("database_added_later")


@pytest.mark.parametrize("name", list(DATABASES))
def test_each_database_upgrades_and_downgrades_one_revision_at_a_time(configured_databases, name: str) -> None:
    database = DATABASES[name]
    others = [url for other, url in configured_databases.items() if other != name]
    revisions = [script.revision for script in reversed(list(script_directory().walk_revisions()))]

    for revision in revisions:
        command.upgrade(alembic_config(db=name), revision)
        assert recorded_revisions(database.name) == (revision,)
    assert table_names(get_settings().database_url(database.name)) == set(database.metadata.tables) | {
        "alembic_version"
    }

    for expected in [*reversed(revisions[:-1]), None]:
        command.downgrade(alembic_config(db=name), "-1")
        assert recorded_revisions(database.name) == ((expected,) if expected else ())
    assert table_names(get_settings().database_url(database.name)) == {"alembic_version"}
    assert all(table_names(url) == set() for url in others)


@pytest.mark.parametrize("name", list(DATABASES))
def test_models_match_migrations_for_each_database(configured_databases, name: str) -> None:
    command.upgrade(alembic_config(db=name), "head")

    with plain_connection(DATABASES[name]) as connection:
        assert model_changes(connection, DATABASES[name]) == []


def test_guide_data_migration_fills_full_name_from_existing_rows(configured_databases) -> None:
    core = DATABASES["core"]
    first, second = [script.revision for script in reversed(list(script_directory().walk_revisions()))][:2]
    command.upgrade(alembic_config(db="core"), first)
    engine = create_engine(get_settings().database_url(core.name))
    insert = text(
        "INSERT INTO users (id, email, username, first_name, last_name, hashed_password, is_active, created_at)"
        " VALUES (:id, :email, :username, :first, :last, 'x', true, CURRENT_TIMESTAMP)"
    )
    with engine.begin() as connection:
        connection.execute(
            insert, {"id": "a" * 32, "email": "ada@example.com", "username": "ada", "first": "Ada", "last": "Lovelace"}
        )
        connection.execute(
            insert, {"id": "b" * 32, "email": "alan@example.com", "username": "alan", "first": "Alan", "last": "Turing"}
        )

    command.upgrade(alembic_config(db="core"), second)
    with engine.connect() as connection:
        names = connection.execute(text("SELECT username, full_name FROM users ORDER BY username")).all()
    columns = {column["name"]: column for column in inspect(engine).get_columns("users")}

    command.downgrade(alembic_config(db="core"), first)
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT username, first_name, last_name FROM users ORDER BY username")).all()
    columns_after_downgrade = {column["name"] for column in inspect(engine).get_columns("users")}
    engine.dispose()

    assert [tuple(row) for row in names] == [("ada", "Ada Lovelace"), ("alan", "Alan Turing")]
    assert columns["full_name"]["nullable"] is False
    assert "full_name" not in columns_after_downgrade
    assert [tuple(row) for row in kept] == [("ada", "Ada", "Lovelace"), ("alan", "Alan", "Turing")]


def test_partitioning_keeps_every_event_and_counts_them_per_day(configured_databases) -> None:
    before, partitioning = "b879a8cd5330", "ef07bb56aa87"
    command.upgrade(alembic_config(db="audit"), before)
    engine = create_engine(get_settings().database_url("audit"))
    events = table(
        "audit_events",
        *(column(name, type_) for name, type_ in [("id", Uuid()), ("workspace_id", Uuid())]),
        *(column(name, UTCDateTime()) for name in ("occurred_at", "recorded_at")),
        *(column(name, String()) for name in ("action", "outcome", "actor_type")),
        *(column(name, JSON()) for name in ("context", "details")),
    )
    workspace_id, recently, long_ago = (
        uuid.uuid4(),
        datetime.now(UTC) - timedelta(days=40),
        datetime.now(UTC) - timedelta(days=400),
    )
    chained = {"id": uuid.uuid4(), "occurred_at": recently, "recorded_at": recently}
    # Delivered before chaining began: no recording time, which partitioning needs.
    unchained = {"id": uuid.uuid4(), "occurred_at": long_ago, "recorded_at": None}
    common = {"workspace_id": workspace_id, "action": "workspace.renamed", "outcome": "success", "actor_type": "user"}
    with engine.begin() as connection:
        connection.execute(
            insert(events), [event | common | {"context": {}, "details": {}} for event in (chained, unchained)]
        )

    command.upgrade(alembic_config(db="audit"), partitioning)
    with engine.connect() as connection:
        recorded = dict(connection.execute(select(events.c.id, events.c.recorded_at)).all())
        if connection.dialect.name == "postgresql":
            where = connection.execute(text("SELECT id, tableoid::regclass::text FROM audit_events"))
            assert dict(where.all()) == {
                chained["id"]: f"audit_events_p{recently:%Y_%m}",
                unchained["id"]: f"audit_events_p{long_ago:%Y_%m}",
            }
    with engine.begin() as connection:  # as any relay would, this code's or the previous one's
        later = {"id": uuid.uuid4(), "occurred_at": recently, "recorded_at": datetime.now(UTC)}
        connection.execute(insert(events), [later | common | {"context": {}, "details": {}}])
    with engine.connect() as connection:
        counts = connection.execute(text("SELECT day, count FROM audit_daily_counts ORDER BY day")).all()
    command.downgrade(alembic_config(db="audit"), before)
    with engine.connect() as connection:
        kept = set(connection.scalars(select(events.c.id)))
    engine.dispose()

    assert recorded == {chained["id"]: recently, unchained["id"]: long_ago}
    assert [(str(day), count) for day, count in counts] == [(str(long_ago.date()), 1), (str(recently.date()), 2)]
    assert kept == {chained["id"], unchained["id"], later["id"]}
