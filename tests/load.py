"""The load run behind ``make bench``: a real server, hundreds of simultaneous connections, figures per endpoint.

It migrates fresh SQLite files (or, with BENCH_POSTGRES=1, fresh databases on
the server at TEST_POSTGRES_URL), starts uvicorn on them with the production
password-hashing cost and the audit relay on, signs one user in, and sends each
endpoint's requests all at once over CONCURRENCY connections. It prints
throughput and latency, and fails when any request fails or times out.
Figures depend on the machine: compare runs made on the same one.
"""

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine

from src.core.config import PROJECT_ROOT
from src.core.databases import DATABASES
from tests.conftest import POSTGRES_URL, create_postgres_databases, drop_postgres_databases

CONCURRENCY = int(os.environ.get("CONCURRENCY", "256"))
REQUESTS = int(os.environ.get("REQUESTS", "1000"))
PASSWORD = "bench password 1"


@contextmanager
def fresh_databases() -> Iterator[dict[str, str]]:
    if os.environ.get("BENCH_POSTGRES") == "1":
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        urls = create_postgres_databases(admin)
        try:
            yield urls
        finally:
            drop_postgres_databases(admin, urls)
            admin.dispose()
        return
    with tempfile.TemporaryDirectory() as folder:
        yield {name: f"sqlite:///{Path(folder) / name}.db" for name in DATABASES}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(urls: dict[str, str]) -> Iterator[str]:
    env = {**os.environ, "ENVIRONMENT": "local", "AUDIT_RELAY_ENABLED": "true", "SETTINGS_FILE": "/dev/null"}
    env |= {DATABASES[name].url_setting.upper(): url for name, url in urls.items()}
    subprocess.run([sys.executable, "-m", "src.migrate", "upgrade"], cwd=PROJECT_ROOT, env=env, check=True)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "src.main:app", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


async def timed(client: httpx.AsyncClient, method: str, path: str, **kwargs: object) -> tuple[float, int | str]:
    start = time.perf_counter()
    try:
        response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        return time.perf_counter() - start, response.status_code
    except httpx.HTTPError as error:
        return time.perf_counter() - start, type(error).__name__


async def run(base: str) -> bool:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout, so none is reused as the server closes it.
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        await client.post(
            "/api/v1/users",
            json={
                "email": "bench@example.com",
                "username": "bench",
                "password": PASSWORD,
                "first_name": "B",
                "last_name": "B",
            },
        )
        token = (await client.post("/api/v1/auth/token", data={"username": "bench", "password": PASSWORD})).json()
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        workspace = (await client.post("/api/v1/workspaces", json={"name": "Bench"})).json()["id"]
        scenarios = [
            ("GET /health", "GET", "/health", {}),
            ("GET /api/v1/users/me", "GET", "/api/v1/users/me", {}),
            ("POST /api/v1/workspaces", "POST", "/api/v1/workspaces", {"json": {"name": "Load"}}),
            ("GET .../audit-events", "GET", f"/api/v1/workspaces/{workspace}/audit-events", {}),
        ]
        print(f"{REQUESTS} requests per endpoint over {CONCURRENCY} connections, all sent at once")
        print(f"{'ENDPOINT':26} {'OK':>6} {'FAILED':>6} {'REQ/S':>8} {'P50 MS':>8} {'P99 MS':>8}")
        all_ok = True
        for name, method, path, kwargs in scenarios:
            start = time.perf_counter()
            results = await asyncio.gather(*(timed(client, method, path, **kwargs) for _ in range(REQUESTS)))
            elapsed = time.perf_counter() - start
            latencies = sorted(latency * 1000 for latency, _ in results)
            failed = [status for _, status in results if not (isinstance(status, int) and status < 400)]
            all_ok &= not failed
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            print(
                f"{name:26} {len(results) - len(failed):>6} {len(failed):>6} {len(results) / elapsed:>8.0f}"
                f" {statistics.median(latencies):>8.1f} {p99:>8.1f}"
            )
            if failed:
                print(f"  failures: {sorted(set(map(str, failed)))}")
        return all_ok


def main() -> int:
    with fresh_databases() as urls, server(urls) as base:
        return 0 if asyncio.run(run(base)) else 1


if __name__ == "__main__":
    sys.exit(main())
