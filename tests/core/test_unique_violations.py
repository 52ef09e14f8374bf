"""Integrity errors told apart by the constraint the database names (PostgreSQL) or the columns (SQLite)."""

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from src.core.databases import constraint_violation, unique_violation_columns
from src.core.engines import get_engine
from tests.conftest import DatabaseUrls
from tests.factories import USERS, user_row


@pytest.mark.parametrize(
    ("second", "columns"),
    [(("other", "ada@example.com"), {"email"}), (("ada", "other@example.com"), {"username"})],
)
def test_the_clashing_column_is_named(
    migrated_databases: DatabaseUrls, second: tuple[str, str], columns: set[str]
) -> None:
    with get_engine("core").begin() as connection:
        connection.execute(insert(USERS), user_row("ada"))
    with pytest.raises(IntegrityError) as clash, get_engine("core").begin() as connection:
        username, email = second
        connection.execute(insert(USERS), user_row(username, email=email))

    assert unique_violation_columns(clash.value, USERS) == columns


def test_an_error_that_is_no_unique_clash_names_no_column(migrated_databases: DatabaseUrls) -> None:
    with pytest.raises(IntegrityError) as clash, get_engine("core").begin() as connection:
        connection.execute(insert(USERS), user_row("ada", created_at=None))

    assert unique_violation_columns(clash.value, USERS) == set()


def test_a_violation_is_named_by_its_constraint(migrated_databases: DatabaseUrls, dialect: str) -> None:
    with get_engine("core").begin() as connection:
        connection.execute(insert(USERS), user_row("ada"))
    with pytest.raises(IntegrityError) as clash, get_engine("core").begin() as connection:
        connection.execute(insert(USERS), user_row("ada", email="other@example.com"))
    with pytest.raises(IntegrityError) as missing, get_engine("core").begin() as connection:
        connection.execute(insert(USERS), user_row("bob", created_at=None))

    assert constraint_violation(clash.value) == (
        "the unique constraint uq_users_username of users"
        if dialect == "postgresql"
        else "the unique constraint on users.username"
    )
    assert constraint_violation(missing.value) == "the not-null constraint on users.created_at"
