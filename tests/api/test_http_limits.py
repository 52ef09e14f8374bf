"""The production server's own limits (src/core/http_protocol.py): header size and count, slow headers and bodies.

A real uvicorn server in a thread, run with the protocol ``make serve`` uses, and
raw sockets, since no HTTP client sends what these tests send.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from src.core.config import PROJECT_ROOT, get_settings
from src.core.databases import DATABASES
from src.core.http_protocol import LimitedHttpToolsProtocol
from src.main import create_app
from src.serve import worker_count
from tests.conftest import (
    UNREACHABLE_URL,
    first_answer,
    free_port,
    point_settings_at,
    server_in_thread,
    sqlite_urls,
    url_variables,
)

Address = tuple[str, int]
TIMER_SLACK = 0.05  # the event loop may fire a timer this much early


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Address]:
    point_settings_at(sqlite_urls(tmp_path), monkeypatch)
    monkeypatch.setattr(get_settings(), "request_header_timeout_seconds", 0.5)
    monkeypatch.setattr(get_settings(), "request_body_timeout_seconds", 0.5)
    monkeypatch.setattr(get_settings(), "max_request_header_bytes", 4096)
    monkeypatch.setattr(get_settings(), "max_request_headers", 20)
    config = uvicorn.Config(create_app(), http=LimitedHttpToolsProtocol, loop="uvloop", log_level="warning")
    with server_in_thread(config) as address:
        yield address


def exchange(address: Address, data: bytes) -> tuple[float, int, dict[str, str]]:
    """Send ``data``, read until the server closes; the seconds that took, the status and the JSON body."""
    with socket.create_connection(address, timeout=10) as connection:
        started = time.monotonic()
        connection.sendall(data)
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return time.monotonic() - started, int(head.split()[1]), json.loads(body)


def request(*headers: str, body: bytes = b"", end: bool = True) -> bytes:
    lines = ["POST /api/v1/users HTTP/1.1", "Host: localhost", *headers]
    return ("\r\n".join(lines) + ("\r\n\r\n" if end else "\r\n")).encode() + body


def test_an_ordinary_request_is_answered(server: Address) -> None:
    with socket.create_connection(server, timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_headers_over_the_byte_limit_are_431(server: Address) -> None:
    _, status, body = exchange(server, request("X-Big: " + "a" * get_settings().max_request_header_bytes))

    assert status == 431
    assert body["error"] == "headers_too_large"
    assert "MAX_REQUEST_HEADER_BYTES" in body["detail"]


def test_one_header_line_that_never_ends_is_431_before_it_is_held_whole(server: Address) -> None:
    with socket.create_connection(server, timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Endless: ")
        response = b""
        try:
            for _ in range(64):  # up to 1 MiB, a line that a parser would otherwise keep in memory
                connection.sendall(b"a" * 16384)
                time.sleep(0.001)
        except OSError:
            pass  # closed by the server, as it should be
        while chunk := connection.recv(65536):
            response += chunk

    assert response.startswith(b"HTTP/1.1 431 ")
    assert b'"error":"headers_too_large"' in response


def test_pipelined_requests_are_all_answered_in_order(server: Address) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    last = b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with socket.create_connection(server, timeout=10) as connection:
        connection.sendall(one * 3 + last)
        response = b""
        while chunk := connection.recv(65536):
            response += chunk

    assert re.findall(rb"HTTP/1.1 (\d{3}) ", response) == [b"200", b"200", b"200", b"404"]


def test_a_large_body_that_arrives_in_time_is_read_whole(server: Address) -> None:
    body = json.dumps({"name": "a" * 600_000}).encode()

    _, status, answer = exchange(
        server,
        request("Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close", body=body),
    )

    assert (status, answer["error"]) == (422, "validation_error")  # read and judged, not cut off


def test_too_many_headers_are_431(server: Address) -> None:
    headers = [f"X-Header-{number}: 1" for number in range(get_settings().max_request_headers + 1)]

    _, status, body = exchange(server, request(*headers))

    assert (status, body["error"]) == (431, "headers_too_large")
    assert "MAX_REQUEST_HEADERS" in body["detail"]


def test_headers_that_never_end_are_408_after_their_timeout(server: Address) -> None:
    took, status, body = exchange(server, request("Content-Type: application/json", end=False))

    assert (status, body["error"]) == (408, "request_timeout")
    assert "headers" in body["detail"]
    assert get_settings().request_header_timeout_seconds - TIMER_SLACK <= took < 5


def test_a_body_shorter_than_its_length_is_408_after_its_timeout(server: Address) -> None:
    data = request("Content-Type: application/json", "Content-Length: 100", body=b'{"email": ')

    took, status, body = exchange(server, data)

    assert (status, body["error"]) == (408, "request_timeout")
    assert "body" in body["detail"]
    assert get_settings().request_body_timeout_seconds - TIMER_SLACK <= took < 5


def test_a_connection_that_sends_nothing_is_closed(server: Address) -> None:
    took, status, _ = exchange(server, b"")

    assert status == 408
    assert took < 5


def test_a_connection_whose_body_was_not_read_is_closed_once_answered(server: Address) -> None:
    # A probe with a huge declared body: answered at once; the client then sends a byte and goes silent.
    with socket.create_connection(server, timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n\r\n")
        answer = connection.recv(65536)
        connection.sendall(b"x")
        started = time.monotonic()
        rest = b""
        with contextlib.suppress(ConnectionResetError):  # closed with the byte unread: the kernel may reset
            while chunk := connection.recv(65536):
                rest += chunk
        closed_after = time.monotonic() - started

    assert answer.startswith(b"HTTP/1.1 200 ") and rest == b""
    assert closed_after < 1  # closed by the server, not by the socket's 10 s timeout


def test_connections_past_the_limit_are_closed_at_once_with_a_log_line(
    server: Address, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(get_settings(), "max_connections_per_worker", 3)
    silent = [socket.create_connection(server, timeout=10) for _ in range(3)]
    try:
        time.sleep(0.1)
        with socket.create_connection(server, timeout=10) as refused, contextlib.suppress(ConnectionResetError):
            assert refused.recv(1) == b""  # closed by the server at once
        for connection in silent:
            connection.close()
        time.sleep(0.1)
        assert exchange(server, b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")[1] == 200
    finally:
        for connection in silent:
            connection.close()

    assert "connection limit reached: 3 connections held" in caplog.text


def test_slow_clients_do_not_hold_up_others(server: Address) -> None:
    slow = [socket.create_connection(server) for _ in range(50)]
    for connection in slow:
        connection.sendall(b"POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\n")
    try:
        started = time.monotonic()
        response = httpx.get(f"http://{server[0]}:{server[1]}/health", timeout=5)
        assert response.status_code == 200
        assert time.monotonic() - started < 1
    finally:
        for connection in slow:
            connection.close()


def test_invalid_http_is_400_in_the_error_shape(server: Address) -> None:
    _, status, body = exchange(server, b"NOT HTTP AT ALL\r\n\r\n")

    assert (status, body["error"]) == (400, "bad_request")


@pytest.mark.parametrize(
    ("given", "sqlite", "expected"), [("", False, 2), ("3", False, 3), ("", True, 1), ("1", True, 1)]
)
def test_workers_follow_web_concurrency_or_the_cores(
    given: str, sqlite: bool, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", given)

    assert worker_count(sqlite=sqlite, cores=2) == expected


@pytest.mark.parametrize(("given", "message"), [("2", "needs PostgreSQL"), ("two", "whole number"), ("0", "1 or more")])
def test_bad_worker_counts_are_refused(given: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", given)

    with pytest.raises(ValueError, match=message):
        worker_count(sqlite=True, cores=2)


def test_serve_runs_the_app_and_stops_gracefully(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | url_variables(sqlite_urls(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "-m", "src.serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env, stderr=subprocess.PIPE
    )
    try:
        response = first_answer(process, f"http://127.0.0.1:{port}/health")
        assert response.status_code == 200
        assert "server" not in response.headers
        # One worker: its metrics are read from the folder make serve made, like several workers' would be.
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'http_requests_total{method="GET",route="/health",status="200"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    # uvicorn re-raises the signal once it has shut down, as the default handler would.
    assert process.returncode == -signal.SIGTERM
    assert b"Application shutdown complete" in stderr


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    env = os.environ | {"WEB_CONCURRENCY": "2"}
    env |= url_variables(sqlite_urls(tmp_path))

    result = subprocess.run(
        [sys.executable, "-m", "src.serve"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 1
    assert result.stderr == (
        "error: WEB_CONCURRENCY above 1 needs PostgreSQL: SQLite databases allow one worker process\n"
    )


def test_serve_refuses_to_start_without_an_environment(tmp_path: Path) -> None:
    # Unset, it would run as local: with the example secret key, answering any Host.
    env = os.environ | {"SETTINGS_FILE": os.devnull} | url_variables(sqlite_urls(tmp_path))
    env.pop("ENVIRONMENT", None)

    result = subprocess.run(
        [sys.executable, "-m", "src.serve"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 1
    assert result.stderr.startswith("error: make serve runs as production does: set ENVIRONMENT")


def test_a_dual_stack_server_sees_ipv4_clients_as_ipv4_and_trusts_its_ipv4_proxy() -> None:
    # Several workers share one socket bound to :: that takes IPv4 too (one worker's asyncio socket is IPv6 only).
    # Nothing here reaches a database: the URLs need only be PostgreSQL's, which allow several workers.
    port = free_port()
    env = os.environ | {"FORWARDED_ALLOW_IPS": "127.0.0.1", "LOG_FORMAT": "json", "WEB_CONCURRENCY": "2"}
    env |= {database.url_setting.upper(): f"{UNREACHABLE_URL}_{name}" for name, database in DATABASES.items()}
    process = subprocess.Popen(
        [sys.executable, "-m", "src.serve", "--host", "::", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        direct = first_answer(process, f"http://127.0.0.1:{port}/api/v1/users/me")
        proxied = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/users/me", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=2
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)

    assert (direct.status_code, proxied.status_code) == (401, 401)
    requests = [json.loads(line) for line in stderr.splitlines() if '"logger": "src.requests"' in line]
    # The direct request may have been sent more than once while the workers started on a loaded machine.
    *direct_ones, last = [line["client"] for line in requests]
    assert (set(direct_ones), last) == ({"127.0.0.1"}, "203.0.113.9")
