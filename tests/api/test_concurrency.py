"""The server keeps answering when in-flight requests far outnumber threads and pooled connections.

A real uvicorn server in a thread, its real session dependency and a core
database pool of two connections; a stall shows up as pool timeouts, so a
regression fails in seconds.
"""

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import uvicorn
from alembic import command
from sqlalchemy import create_engine, delete, text
from sqlmodel import Session, col, func, select

from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.core.config import get_settings
from src.core.engines import get_engine
from src.core.schema_versions import alembic_config
from src.core.security import hashing_threads
from src.main import create_app
from src.services import workspaces
from tests.api.conftest import PASSWORD, auth
from tests.conftest import DatabaseUrls, server_in_thread
from tests.factories import register

SIMULTANEOUS_REQUESTS = 200


@dataclass(frozen=True)
class LiveServer:
    host: str
    port: int
    headers: dict[str, str]


@pytest.fixture
def live_server(configured_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setattr(get_settings(), "db_pool_size", 2)
    monkeypatch.setattr(get_settings(), "db_max_overflow", 0)
    monkeypatch.setattr(get_settings(), "db_pool_timeout", 3.0)
    command.upgrade(alembic_config(), "head")
    with Session(get_engine("core")) as session:
        user = register(session, "load")
        session.commit()
        headers = auth(user)

    with server_in_thread(uvicorn.Config(create_app(), log_level="warning", backlog=512)) as (host, port):
        yield LiveServer(host=host, port=port, headers=headers)


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def send(server: LiveServer, method: str, path: str, body: dict[str, str] | None) -> Reply:
    """One request on its own connection; plain asyncio streams, so the client costs the server little CPU."""
    content = json.dumps(body).encode() if body is not None else b""
    return await exchange(server, method, path, content, "application/json" if body is not None else None)


async def exchange(server: LiveServer, method: str, path: str, content: bytes, content_type: str | None) -> Reply:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    headers = server.headers | {"Host": server.host, "Connection": "close", "Content-Length": str(len(content))}
    if content_type is not None:
        headers["Content-Type"] = content_type
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + content)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return Reply(status_code=int(status_line.split()[1]), body=rest.partition(b"\r\n\r\n")[2])


Request = tuple[str, str, dict[str, str] | None]


async def send_all(server: LiveServer, requests: list[Request]) -> list[Reply]:
    """All requests at once, each on its own connection; a stalled server fails the test in bounded time."""
    async with asyncio.timeout(30):
        return await asyncio.gather(*(send(server, method, path, body) for method, path, body in requests))


def count(model: type[User] | type[Workspace]) -> int:
    with Session(get_engine("core")) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_simultaneous_requests_beyond_threads_and_pool_all_complete(live_server: LiveServer) -> None:
    reads: list[Request] = [("GET", "/api/v1/users/me", None)] * (SIMULTANEOUS_REQUESTS // 2)
    writes: list[Request] = [
        ("POST", "/api/v1/workspaces", {"name": f"W{number}"}) for number in range(SIMULTANEOUS_REQUESTS // 2)
    ]

    responses = asyncio.run(send_all(live_server, reads + writes))

    statuses = [response.status_code for response in responses]
    assert statuses == [200] * len(reads) + [201] * len(writes), {status: statuses.count(status) for status in statuses}
    assert count(Workspace) == len(writes)


def test_simultaneous_sign_ups_with_one_email_create_one_user(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From one address: its limits on sign-ups would refuse most of them before they race.
    monkeypatch.setattr(get_settings(), "password_checks_per_client", 20)
    sign_ups: list[Request] = [
        (
            "POST",
            "/api/v1/users",
            {
                "email": "race@example.com",
                "username": f"racer{number}",
                "password": PASSWORD,
                "first_name": "Race",
                "last_name": f"R{number}",
            },
        )
        for number in range(20)
    ]

    responses = asyncio.run(send_all(live_server, sign_ups))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19
    assert {response.json()["error"] for response in responses if response.status_code == 409} == {"email_taken"}
    assert count(User) == 2


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_reads_do_not_wait_for_a_writer_on_sqlite(live_server: LiveServer, configured_databases: DatabaseUrls) -> None:
    writer = sqlite3.connect(configured_databases["core"].removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock, as a long write would
    try:
        started = time.monotonic()
        [read] = asyncio.run(send_all(live_server, [("GET", "/api/v1/users/me", None)]))
        elapsed = time.monotonic() - started
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert read.status_code == 200
    assert elapsed < 2  # the busy timeout a waiting read would run into is 5 s


@pytest.mark.parametrize("waiting", ["log-in", "sign-up"])
def test_requests_waiting_for_a_hash_hold_up_no_other_request(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, waiting: str
) -> None:
    # More log-ins than the pool has connections (two), all waiting for the one hashing thread.
    monkeypatch.setattr(get_settings(), "password_hash_concurrency", 1)
    monkeypatch.setattr(get_settings(), "password_checks_per_client", 3)
    hash_in_progress = threading.Event()
    hashing_threads().submit(hash_in_progress.wait, 10)  # takes the one hashing thread

    async def log_in_then_read_and_write() -> tuple[list[Reply], list[Reply], float]:
        log_ins = [asyncio.create_task(hashing_request(live_server, waiting, number)) for number in range(3)]
        await asyncio.sleep(0.5)
        assert not any(log_in.done() for log_in in log_ins), f"a {waiting} did not wait for the hashing thread"
        started = time.monotonic()
        others = await send_all(
            live_server, [("GET", "/api/v1/users/me", None), ("POST", "/api/v1/workspaces", {"name": "W"})]
        )
        elapsed = time.monotonic() - started
        hash_in_progress.set()
        return others, list(await asyncio.gather(*log_ins)), elapsed

    others, logged_in, elapsed = asyncio.run(log_in_then_read_and_write())

    assert [reply.status_code for reply in others] == [200, 201] and elapsed < 2
    assert [reply.status_code for reply in logged_in] == [200 if waiting == "log-in" else 201] * 3


def test_password_work_past_its_budget_is_refused_at_once_without_hashing(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's log-ins beyond PASSWORD_CHECKS_PER_CLIENT, and any hash beyond PASSWORD_HASH_QUEUE, are refused
    while the hashing thread is busy: they never queue behind it."""
    monkeypatch.setattr(get_settings(), "password_hash_concurrency", 1)
    monkeypatch.setattr(get_settings(), "password_hash_queue", 3)
    hash_in_progress = threading.Event()
    hashing_threads().submit(hash_in_progress.wait, 10)  # takes the one hashing thread

    async def flood() -> tuple[list[Reply], list[Reply], list[Reply]]:
        log_ins = [
            asyncio.create_task(send_form(live_server, "/api/v1/auth/token", "load", PASSWORD)) for _ in range(6)
        ]
        refused_log_ins = await answered_while_hashing(log_ins, expected=4)
        sign_ups = [
            asyncio.create_task(send(live_server, "POST", "/api/v1/users", sign_up_body(f"flood{number}")))
            for number in range(3)
        ]
        refused_sign_ups = await answered_while_hashing(sign_ups, expected=2)
        hash_in_progress.set()
        return refused_log_ins, refused_sign_ups, list(await asyncio.gather(*log_ins, *sign_ups))

    refused_log_ins, refused_sign_ups, everything = asyncio.run(flood())

    # Two log-ins of the account wait for the hash; four are refused at once.
    assert [(reply.status_code, reply.json()["error"]) for reply in refused_log_ins] == [(429, "too_many_attempts")] * 4
    # The queue holds three hashes: the two log-ins' and one sign-up's; two sign-ups are refused at once.
    assert [(reply.status_code, reply.json()["error"]) for reply in refused_sign_ups] == [(503, "busy")] * 2
    assert sorted(reply.status_code for reply in everything) == [200] * 2 + [201] + [429] * 4 + [503] * 2


async def answered_while_hashing(requests: list["asyncio.Task[Reply]"], *, expected: int) -> list[Reply]:
    """The replies to ``requests`` once ``expected`` of them came (within ten seconds, however loaded the machine),
    and half a second more: those that wait for the hash stay unanswered."""
    deadline = time.monotonic() + 10
    while sum(request.done() for request in requests) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    return [request.result() for request in requests if request.done()]


async def hashing_request(server: LiveServer, kind: str, number: int) -> Reply:
    """A request that hashes a password: a log-in of the server's user, or a sign-up."""
    if kind == "log-in":
        return await send_form(server, "/api/v1/auth/token", "load", PASSWORD)
    return await send(server, "POST", "/api/v1/users", sign_up_body(f"waiting{number}"))


def sign_up_body(name: str) -> dict[str, str]:
    return {"email": f"{name}@example.com", "username": name, "password": PASSWORD, "first_name": "F", "last_name": "L"}


async def send_form(server: LiveServer, path: str, username: str, password: str) -> Reply:
    content = f"username={username}&password={password.replace(' ', '+')}".encode()
    return await exchange(server, "POST", path, content, "application/x-www-form-urlencoded")


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_audit_reads_waiting_for_the_audit_database_hold_no_core_connection(
    live_server: LiveServer, configured_databases: DatabaseUrls
) -> None:
    """More audit reads than the core pool has connections (two) wait on a locked audit table; others go on."""
    [created] = asyncio.run(send_all(live_server, [("POST", "/api/v1/workspaces", {"name": "Audited"})]))
    audit_events = f"/api/v1/workspaces/{created.json()['id']}/audit-events"
    locker = create_engine(configured_databases["audit"])
    with locker.connect() as connection:
        connection.execute(text("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE"))  # as a long migration would

        async def read_while_audit_waits() -> tuple[list[Reply], float, list[Reply]]:
            waiting = [asyncio.create_task(send(live_server, "GET", audit_events, None)) for _ in range(3)]
            await asyncio.sleep(0.5)
            started = time.monotonic()
            others = await send_all(live_server, [("GET", "/api/v1/users/me", None)] * 3)
            elapsed = time.monotonic() - started
            connection.rollback()  # releases the lock
            return others, elapsed, list(await asyncio.gather(*waiting))

        others, elapsed, audited = asyncio.run(read_while_audit_waits())
    locker.dispose()

    assert [reply.status_code for reply in others] == [200] * 3 and elapsed < 2
    assert [reply.status_code for reply in audited] == [200] * 3


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_connections_killed_under_load_fail_only_requests_in_flight(
    live_server: LiveServer, configured_databases: DatabaseUrls
) -> None:
    admin = create_engine(configured_databases["core"], isolation_level="AUTOCOMMIT")

    async def kill_during_a_burst() -> tuple[list[Reply], list[Reply]]:
        burst = asyncio.create_task(send_all(live_server, [("GET", "/api/v1/users/me", None)] * 100))
        await asyncio.sleep(0.1)
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        in_flight = await burst
        return in_flight, await send_all(live_server, [("GET", "/api/v1/users/me", None)] * 20)

    in_flight, after = asyncio.run(kill_during_a_burst())
    admin.dispose()

    assert {reply.status_code for reply in in_flight} <= {200, 503}
    assert all(reply.json()["error"] == "database_unavailable" for reply in in_flight if reply.status_code == 503)
    assert [reply.status_code for reply in after] == [200] * 20


def owned_workspace(live_server: LiveServer) -> Workspace:
    """A workspace of the live server's user, who owns it (and, an admin of the service, adds members directly)."""
    with Session(get_engine("core")) as session:
        owner = session.exec(select(User).where(User.username == "load")).one()
        owner.is_admin = True
        workspace = workspaces.create_workspace(session, owner_id=owner.id, name="Race").workspace
        session.commit()
        session.refresh(workspace)
        return workspace


def test_simultaneous_adds_of_one_member_add_it_once(live_server: LiveServer) -> None:
    workspace = owned_workspace(live_server)
    with Session(get_engine("core")) as session:
        register(session, "bob")
        session.commit()
    add: Request = (
        "POST",
        f"/api/v1/workspaces/{workspace.id}/members",
        {"email": "bob@example.com", "role": "member"},
    )

    responses = asyncio.run(send_all(live_server, [add] * 10))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 9, [response.body for response in responses]
    assert {response.json()["error"] for response in responses if response.status_code == 409} == {"already_member"}


def as_user(live_server: LiveServer, user: User) -> LiveServer:
    return replace(live_server, headers=auth(user))


def test_two_owners_demoting_each_other_at_once_take_turns(live_server: LiveServer) -> None:
    workspace = owned_workspace(live_server)
    with Session(get_engine("core")) as session:
        owner = session.exec(select(User).where(User.username == "load")).one()
        other = register(session, "bo")
        session.add(WorkspaceMember(workspace_id=workspace.id, user_id=other.id, role=Role.OWNER))
        session.commit()
        session.refresh(owner)
        session.refresh(other)
    members = f"/api/v1/workspaces/{workspace.id}/members"

    async def both() -> tuple[Reply, Reply]:
        async with asyncio.timeout(30):
            return await asyncio.gather(
                send(as_user(live_server, owner), "PATCH", f"{members}/{other.id}", {"role": "admin"}),
                send(as_user(live_server, other), "PATCH", f"{members}/{owner.id}", {"role": "admin"}),
            )

    replies = asyncio.run(both())

    # The second finds itself demoted already (403), or, having passed its check first, the last owner (409).
    [refused] = [reply for reply in replies if reply.status_code != 200]
    assert (refused.status_code, refused.json()["error"]) in {(403, "insufficient_role"), (409, "last_owner")}
    with Session(get_engine("core")) as session:
        roles = session.exec(select(WorkspaceMember.role).where(WorkspaceMember.workspace_id == workspace.id)).all()
    assert sorted(roles) == sorted([Role.OWNER, Role.ADMIN])


@pytest.mark.parametrize("change", ["add a member", "rename"])
def test_changing_a_workspace_deleted_meanwhile_is_404(
    live_server: LiveServer, configured_databases: DatabaseUrls, change: str
) -> None:
    workspace = owned_workspace(live_server)
    with Session(get_engine("core")) as session:
        register(session, "cy")
        session.commit()
    request: Request = (
        ("POST", f"/api/v1/workspaces/{workspace.id}/members", {"email": "cy@example.com", "role": "member"})
        if change == "add a member"
        else ("PATCH", f"/api/v1/workspaces/{workspace.id}", {"name": "Renamed"})
    )
    deleter = create_engine(configured_databases["core"])

    async def change_while_deleting() -> Reply:
        with deleter.connect() as connection:
            # The deletion holds its locks, uncommitted, while the change arrives; then it commits.
            connection.execute(delete(WorkspaceMember).where(col(WorkspaceMember.workspace_id) == workspace.id))
            connection.execute(delete(Workspace).where(col(Workspace.id) == workspace.id))
            changing = asyncio.create_task(send(live_server, *request))
            await asyncio.sleep(0.5)
            connection.commit()
        return await changing

    reply = asyncio.run(change_while_deleting())
    deleter.dispose()

    assert (reply.status_code, reply.json()["error"]) == (404, "workspace_not_found")
