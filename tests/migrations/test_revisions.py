"""Every revision, on each database alone, on SQLite and PostgreSQL: up one step at a time, then down to base."""

import importlib.util
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from src.core.config import get_settings
from src.core.databases import DATABASES
from src.core.schema_versions import alembic_config, script_directory
from src.migrate.revisions import plain_connection
from src.migrate.status import model_changes
from tests.conftest import recorded_revisions

VERSIONS = sorted((Path(__file__).parents[2] / "migrations" / "versions").glob("*.py"))


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


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
