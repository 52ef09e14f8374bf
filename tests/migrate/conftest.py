"""What the PostgreSQL migration tests share: the revision that alters users, and an engine on core."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from src.core.schema_versions import script_directory

ALTERS_USERS = "1462966ae260"  # Add users.full_name: ALTER TABLE users, which needs ACCESS EXCLUSIVE
_script = script_directory().get_revision(ALTERS_USERS)
assert _script is not None and isinstance(_script.down_revision, str)
BEFORE_ALTERS_USERS = _script.down_revision


@pytest.fixture
def core(configured_databases: dict[str, str]) -> Iterator[Engine]:
    """An engine on the test's core database, outside the app's settings; unpooled, as the migrations' own."""
    engine = create_engine(configured_databases["core"], poolclass=NullPool)
    yield engine
    engine.dispose()
