"""API fixtures: one migrated core database per dialect, and a rolled-back transaction per test.

The migrations run once per dialect (``migrated_engine``). Each test then works
inside one outer transaction on one connection that is rolled back at the end
(``connection``); the app's request sessions and the tests' factories join it
through savepoints, so a request's commit is real for the next request and
gone after the test.
"""

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from functools import partial

import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine
from sqlmodel import Session

from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.core.engines import create_app_engine
from src.core.schema_versions import alembic_config, script_directory
from src.core.security import create_access_token, hash_password
from src.core.sessions import RequestSessions
from src.main import create_app
from src.services import users, workspaces
from src.services.readiness import RecentReadiness
from tests.conftest import DIALECTS, create_postgres_databases, drop_postgres_databases, point_settings_at, sqlite_urls

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session", params=DIALECTS)
def migrated_engines(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Engine]]:
    """An engine per named database, brought to head by the real migrations, once per dialect."""
    if request.param == "sqlite":
        urls = sqlite_urls(tmp_path_factory.mktemp("api"))
    else:
        admin = request.getfixturevalue("postgres_admin")
        urls = create_postgres_databases(admin)
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_settings_at(urls, monkeypatch)
        command.upgrade(alembic_config(), "head")
    # The app's own kind of engine; on SQLite its real transactions let the test's rollback cover everything.
    engines = {name: create_app_engine(url) for name, url in urls.items()}
    yield engines
    for engine in engines.values():
        engine.dispose()
    if request.param == "postgresql":
        drop_postgres_databases(request.getfixturevalue("postgres_admin"), urls)


@pytest.fixture
def connections(migrated_engines: dict[str, Engine]) -> Iterator[dict[str, Connection]]:
    """The test's one connection per database, each inside a transaction that is rolled back afterwards."""
    with ExitStack() as stack:
        opened = {name: stack.enter_context(engine.connect()) for name, engine in migrated_engines.items()}
        transactions = [connection.begin() for connection in opened.values()]
        yield opened
        for transaction in transactions:
            transaction.rollback()


@pytest.fixture
def connection(connections: dict[str, Connection]) -> Connection:
    """The test's core connection."""
    return connections["core"]


@pytest.fixture
def audit_connection(connections: dict[str, Connection]) -> Connection:
    """The test's audit connection."""
    return connections["audit"]


def joined_session(connection: Connection) -> Session:
    return Session(bind=connection, join_transaction_mode="create_savepoint")


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    """The tests' own session: factories write through it, assertions read through it."""
    with joined_session(connection) as session:
        yield session


@asynccontextmanager
async def _no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


def create_test_app() -> FastAPI:
    """The real app without its lifespan, which would open the configured (development) databases."""
    app = create_app()
    app.router.lifespan_context = _no_lifespan
    return app


@pytest.fixture(scope="session")
def shared_app() -> FastAPI:
    # One app for the run: FastAPI prepares its routes on the first request, which is worth doing once.
    app = create_test_app()
    # As the lifespan would.
    app.state.schema_scripts = script_directory()
    app.state.readiness = RecentReadiness(app.state.schema_scripts, max_age=0)
    return app


def join_test_transactions(app: FastAPI, connections: dict[str, Connection]) -> None:
    """Make the app's request sessions, one per database, join the test's transactions."""
    app.state.sessions = {
        name: RequestSessions(partial(joined_session_ignoring_reads_only, connection), capacity=None, database=name)
        for name, connection in connections.items()
    }


def joined_session_ignoring_reads_only(connection: Connection, _reads_only: bool) -> Session:
    return joined_session(connection)


@pytest.fixture
def app(
    shared_app: FastAPI,
    migrated_engines: dict[str, Engine],
    connections: dict[str, Connection],
    monkeypatch: pytest.MonkeyPatch,
) -> FastAPI:
    """The real app whose request sessions join the test's transactions, without the lifespan's engines; what it
    reads outside requests (/ready, the schema's revision) comes from the same databases."""
    join_test_transactions(shared_app, connections)
    urls = {name: engine.url.render_as_string(hide_password=False) for name, engine in migrated_engines.items()}
    point_settings_at(urls, monkeypatch)
    return shared_app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # Entered once, the client keeps one event loop for all of the test's requests.
    with TestClient(app) as client:
        yield client


MakeUser = Callable[..., User]
MakeWorkspace = Callable[..., Workspace]
AddMember = Callable[[Workspace, User, Role], WorkspaceMember]


@pytest.fixture
def make_user(session: Session) -> MakeUser:
    """Register a user through the service; keyword arguments override the generated fields. ``admin``: an admin
    of the service, as ``make create-admin`` makes one."""
    numbers = itertools.count(1)

    def make(*, admin: bool = False, **fields: str) -> User:
        number = next(numbers)
        values = {
            "email": f"user{number}@example.com",
            "username": f"user{number}",
            "password": PASSWORD,
            "first_name": "Test",
            "last_name": f"User{number}",
        } | fields
        values["hashed_password"] = hash_password(values.pop("password"))
        user = users.register_user(session, **values)
        user.is_admin = admin
        session.commit()
        return user

    return make


@pytest.fixture
def make_workspace(session: Session) -> MakeWorkspace:
    """A workspace whose only member is ``owner``, as an owner."""

    def make(owner: User, name: str = "Acme") -> Workspace:
        workspace = workspaces.create_workspace(session, owner_id=owner.id, name=name).workspace
        session.commit()
        return workspace

    return make


@pytest.fixture
def add_member(session: Session) -> AddMember:
    def add(workspace: Workspace, user: User, role: Role) -> WorkspaceMember:
        member = WorkspaceMember(workspace_id=workspace.id, user_id=user.id, role=role)
        session.add(member)
        session.commit()
        return member

    return add


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth(user: User) -> dict[str, str]:
    """Headers carrying a fresh bearer token for ``user``, made without a request."""
    return bearer(create_access_token(user.id, password_hash=user.hashed_password).token)


def logged_in(client: TestClient, login: str, password: str = PASSWORD) -> dict[str, str]:
    """Headers carrying the bearer token that ``POST /auth/token`` gives ``login``."""
    response = client.post("/api/v1/auth/token", data={"username": login, "password": password})
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])
