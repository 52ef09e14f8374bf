"""A unique clash is told apart by the constraint the database names (PostgreSQL) or the columns (SQLite)."""

import uuid

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from src.api.v1.models.user import User
from src.core.databases import get_engine, unique_violation_columns
from src.core.timestamps import utcnow
from tests.conftest import DatabaseUrls

USERS = User.metadata.tables[User.__tablename__]


def user_row(email: str, username: str) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "email": email,
        "username": username,
        "first_name": "A",
        "last_name": "B",
        "full_name": "A B",
        "hashed_password": "x",
        "is_active": True,
        "created_at": utcnow(),
    }


@pytest.mark.parametrize(
    ("second", "columns"),
    [(("ada@example.com", "other"), {"email"}), (("other@example.com", "ada"), {"username"})],
)
def test_the_clashing_column_is_named(
    migrated_databases: DatabaseUrls, second: tuple[str, str], columns: set[str]
) -> None:
    with get_engine("core").begin() as connection:
        connection.execute(insert(USERS), user_row("ada@example.com", "ada"))
    with pytest.raises(IntegrityError) as clash, get_engine("core").begin() as connection:
        connection.execute(insert(USERS), user_row(*second))

    assert unique_violation_columns(clash.value, USERS) == columns


def test_an_error_that_is_no_unique_clash_names_no_column(migrated_databases: DatabaseUrls) -> None:
    with pytest.raises(IntegrityError) as clash, get_engine("core").begin() as connection:
        connection.execute(insert(USERS), user_row("ada@example.com", "ada") | {"created_at": None})

    assert unique_violation_columns(clash.value, USERS) == set()
