"""Two-dialect fixtures: every test that asks for ``database_urls`` runs on SQLite and on PostgreSQL.

PostgreSQL tests use the server at TEST_POSTGRES_URL, each in freshly created
databases that are dropped afterwards. When the server does not answer they are
skipped, unless REQUIRE_POSTGRES=1, where that is a failure.
"""

import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx
import pytest
import uvicorn
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from src.core import schema_versions
from src.core.config import PROJECT_ROOT, get_settings, normalize_database_url
from src.core.databases import DATABASES
from src.core.engines import dispose_engines
from src.core.schema_versions import alembic_config, current_heads, script_directory
from src.migrate.revisions import plain_connection

POSTGRES_URL = normalize_database_url(
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
DatabaseUrls = dict[str, str]
HEAD = next(script_directory().walk_revisions()).revision  # the project's head: revisions are walked newest first
# Nothing listens on port 1: connecting fails at once.
UNREACHABLE_URL = "postgresql://app:secret@127.0.0.1:1/app"
# A database name no entry of DATABASES will ever have.
UNKNOWN_DATABASE = "nosuchdb"


# A bearer token (a JWT), a password hash, or a database URL's password: none may reach a log line.
_SECRET_SHAPES = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+|\$argon2id?\$|://[^:/@\s]+:[^@\s*]+@")


def carries_a_secret(record: logging.LogRecord) -> bool:
    text = f"{record.getMessage()} {getattr(record, 'fields', '')}"
    if record.exc_info:
        text += "".join(traceback.format_exception(*record.exc_info))
    settings = get_settings()
    return bool(_SECRET_SHAPES.search(text)) or settings.secret_key in text or settings.audit_signing_key in text


@contextmanager
def server_in_thread(config: uvicorn.Config) -> Iterator[tuple[str, int]]:
    """A real uvicorn server on a free port in a thread of this process; its address once it has started."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the server did not start"
    try:
        yield listener.getsockname()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def first_answer(process: "subprocess.Popen[Any]", url: str, *, seconds: float = 20) -> httpx.Response:
    """The answer to a GET of ``url`` from the server ``process`` runs, once it has started (within ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, "make serve did not start"
            time.sleep(0.1)


@pytest.fixture(scope="session", autouse=True)
def no_log_line_carries_a_secret() -> Iterator[None]:
    """Every log record of the whole run, from every test and every logger, is checked for secrets.

    Checked where each logger handles its records, its structured fields included: uvicorn's loggers do not pass
    theirs on to the root.
    """
    leaks: list[str] = []
    handle = logging.Logger.handle

    def checked_handle(logger: logging.Logger, record: logging.LogRecord) -> Any:
        if carries_a_secret(record):
            leaks.append(f"{record.name}: {record.getMessage()}")
        return handle(logger, record)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.Logger, "handle", checked_handle)
        root = logging.getLogger()
        level = root.level
        root.setLevel(min(level, logging.INFO))
        yield
        root.setLevel(level)
    assert not leaks, f"log lines carrying a secret: {leaks[:5]}"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An autocommit engine on the maintenance database, to create and drop test databases."""
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except OperationalError as error:
        reason = f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()} is unreachable: {error.orig}".strip()
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(reason.splitlines()[0])
    yield engine
    engine.dispose()


def create_postgres_databases(admin: Engine) -> DatabaseUrls:
    prefix = f"test_{uuid.uuid4().hex[:12]}"
    urls = {}
    with admin.connect() as connection:
        for name in DATABASES:
            connection.execute(text(f'CREATE DATABASE "{prefix}_{name}"'))
            # Test data need not survive a server crash: commits skip waiting for the disk.
            connection.execute(text(f'ALTER DATABASE "{prefix}_{name}" SET synchronous_commit = off'))
            urls[name] = make_url(POSTGRES_URL).set(database=f"{prefix}_{name}").render_as_string(hide_password=False)
    return urls


def drop_postgres_databases(admin: Engine, urls: DatabaseUrls) -> None:
    with admin.connect() as connection:
        for url in urls.values():
            connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))


# The one dialect parameter: every test that runs on both dialects is parametrized by it.
DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def sqlite_urls(folder: Path) -> DatabaseUrls:
    """A URL per named database: SQLite files in ``folder``."""
    return {name: f"sqlite:///{folder / name}.db" for name in DATABASES}


def recorded_revisions(name: str) -> tuple[str, ...]:
    """The revisions the named database records, read as the migrate commands read them."""
    with plain_connection(DATABASES[name]) as connection:
        return current_heads(connection)


def point_settings_at(urls: DatabaseUrls, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's settings (and so the migrations) use these databases until ``monkeypatch`` undoes it."""
    for name, url in urls.items():
        monkeypatch.setattr(get_settings(), DATABASES[name].url_setting, url)


def url_variables(urls: DatabaseUrls) -> dict[str, str]:
    """The environment variables that point a process's settings (a server, a make call) at these databases."""
    return {DATABASES[name].url_setting.upper(): url for name, url in urls.items()}


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def postgres_databases(postgres_admin: Engine) -> Iterator[DatabaseUrls]:
    """This test process's own PostgreSQL databases, emptied before each test that uses them."""
    urls = create_postgres_databases(postgres_admin)
    yield urls
    drop_postgres_databases(postgres_admin, urls)


def empty_postgres_database(url: str) -> None:
    """Drop everything in the database: far quicker than creating a new one for every test."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        # Connections a previous test left behind (a server, a thread) must not hold locks on what is dropped.
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture
def database_urls(
    dialect: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DatabaseUrls:
    """Empty databases, one per named database, on the test's dialect."""
    if dialect == "sqlite":
        return sqlite_urls(tmp_path_factory.mktemp("sqlite"))
    urls: DatabaseUrls = request.getfixturevalue("postgres_databases")
    for url in urls.values():
        empty_postgres_database(url)
    return urls


@pytest.fixture
def configured_databases(database_urls: DatabaseUrls, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseUrls]:
    """Point the app's settings (and so the migrations) at the test's databases."""
    point_settings_at(database_urls, monkeypatch)
    yield database_urls
    dispose_engines()


@pytest.fixture
def migrated_databases(configured_databases: DatabaseUrls) -> DatabaseUrls:
    """The test's databases brought to head by the real migrations."""
    command.upgrade(alembic_config(), "head")
    return configured_databases


REVISION = '''"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down!r}
{marker}

def upgrade(engine_name: str) -> None:
    step = globals().get(f"upgrade_{{engine_name}}")
    if step is not None:
        step()


def downgrade(engine_name: str) -> None:
    step = globals().get(f"downgrade_{{engine_name}}")
    if step is not None:
        step()
{body}'''


# The body of a revision that adds a nullable users.nickname: the expand step of the recipes in docs/migrations.md.
ADD_USERS_NICKNAME = """

def upgrade_core() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("nickname", sa.String(32), nullable=True))
"""


class Versions:
    """A copy of migrations/ that the migrate commands and the app use instead of the project's own."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "migrations" / "versions"

    def write(
        self,
        name: str,
        *,
        message: str,
        revision: str,
        down: str | tuple[str, ...],
        body: str,
        post_deploy: bool = False,
    ) -> Path:
        """A revision file whose body (its upgrade_<db> and downgrade_<db> functions) is ``body``."""
        path = self.folder / name
        marker = "post_deploy = True\n" if post_deploy else ""
        text = REVISION.format(message=message, revision=revision, down=down, marker=marker, body=dedent(body))
        path.write_text(text)
        return path


@pytest.fixture
def versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Versions:
    for name in ("migrations", "alembic.ini", "pyproject.toml"):
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    monkeypatch.setattr(schema_versions, "ALEMBIC_INI", tmp_path / "alembic.ini")
    return Versions(tmp_path)
