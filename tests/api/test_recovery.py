"""The service recovers by itself when PostgreSQL drops its connections or the core database goes away and comes back.

The app runs with its lifespan, real engines and pools; the outage is a TCP proxy
in front of PostgreSQL that this test closes and opens again.
"""

import contextlib
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from src.core.config import get_settings
from src.core.engines import dispose_engines, get_engine
from src.main import create_app
from tests.api.conftest import PASSWORD, logged_in
from tests.conftest import DatabaseUrls

pytestmark = pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgres)])

SIGN_UP = {"email": "ada@example.com", "username": "ada", "password": PASSWORD, "first_name": "Ada", "last_name": "L"}


class Proxy:
    """Forwards 127.0.0.1:<port> to a server; ``stop`` closes it and every connection, as an outage would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._running = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        self._running.clear()
        time.sleep(0.1)  # the accept loop closes its listener
        for connection in self._sockets:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._running.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                upstream = socket.create_connection(self.target)
                self._sockets += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass


@pytest.fixture
def proxied_core(migrated_databases: DatabaseUrls, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    url = make_url(migrated_databases["core"])
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    monkeypatch.setattr(
        get_settings(), "core_database_url", url.set(port=proxy.port).render_as_string(hide_password=False)
    )
    yield proxy
    proxy.stop()


def test_requests_succeed_after_postgresql_kills_every_connection(migrated_databases: DatabaseUrls) -> None:
    with TestClient(create_app()) as client:
        assert client.post("/api/v1/users", json=SIGN_UP).status_code == 201
        headers = logged_in(client, "ada")
        assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        admin = create_engine(migrated_databases["core"], isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            others = " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            killed = connection.execute(text("SELECT count(pg_terminate_backend(pid))" + others)).scalar_one()
            # pg_terminate_backend only signals: each backend says goodbye, and is gone, a moment later.
            deadline = time.monotonic() + 10
            while connection.execute(text("SELECT count(*)" + others)).scalar_one() and time.monotonic() < deadline:
                time.sleep(0.01)
        admin.dispose()

        statuses = [client.get("/api/v1/users/me", headers=headers).status_code for _ in range(5)]

    assert killed >= 1
    assert statuses == [200] * 5


def test_the_service_answers_503_during_a_core_outage_and_recovers_after_it(proxied_core: Proxy) -> None:
    with TestClient(create_app()) as client:
        assert client.post("/api/v1/users", json=SIGN_UP).status_code == 201
        headers = logged_in(client, "ada")

        proxied_core.stop()
        during = client.get("/api/v1/users/me", headers=headers)
        ready_during = client.get("/ready")
        proxied_core.start()
        after = [client.get("/api/v1/users/me", headers=headers).status_code for _ in range(3)]
        ready_after = client.get("/ready")

    assert (during.status_code, during.json()["error"]) == (503, "database_unavailable")
    assert ready_during.status_code == 503
    assert after == [200, 200, 200]
    assert ready_after.status_code == 200


def test_pooled_connections_are_checked_above_descriptor_1024(migrated_databases: DatabaseUrls) -> None:
    # select() refuses descriptors above 1023; a busy worker's database sockets get there.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the descriptor limit ({hard}) leaves no room above 1024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        engine = get_engine("core")
        for _ in range(2):  # the second checkout takes the pooled connection, whose socket is checked
            with engine.connect() as connection:
                assert connection.connection.dbapi_connection.fileno() > 1024  # type: ignore[union-attr]
                assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        for descriptor in held:
            os.close(descriptor)
        dispose_engines()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
