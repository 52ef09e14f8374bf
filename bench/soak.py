"""``make soak``: mixed traffic for a bounded time, with the audit database stopped for part of it.

Core lives on the PostgreSQL server at TEST_POSTGRES_URL; audit on a second
PostgreSQL cluster this run creates under a temporary folder on a free port, so
that it can be stopped and started again. The app runs as ``make serve`` runs it,
two workers, relay on. Virtual users sign up, log in (now and then with a wrong
password), create, rename and list workspaces and read their audit trail; traffic
goes to 127.0.0.1 only. The audit cluster is stopped for the middle third of the
run.

At the end it checks, prints and exits 1 when any fails:
- every change answered with success has exactly one audit event, and the outbox is empty;
- every answer was the one expected (a wrong password's 401 included), except 503 ``database_unavailable``
  from audit reads during the outage;
- the server's memory at the end is within 1.5x (plus 50 MiB) of what it was after the warm-up.
"""

import asyncio
import collections
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from bench.environment import ROOT, free_port, fresh_databases, production_env, running_server

SECONDS = int(os.environ.get("SOAK_SECONDS", "90"))
USERS = 24
PASSWORD = "soak password, long enough"
WARM_UP_SECONDS = 5


@dataclass
class Tally:
    """What the client saw: successful changes by the audit action they record, and every unexpected answer."""

    expected_events: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    outage_503s: int = 0
    unexpected: list[str] = field(default_factory=list)


class AuditCluster:
    """A PostgreSQL cluster of its own under ``folder``, run as the postgres user when this process is root."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "audit-cluster"
        self.port = free_port()
        self.bin = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip())

    def run(self, *command: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def create(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.folder.parent, "postgres")
        self.run(str(self.bin / "initdb"), "-D", str(self.folder), "-U", "postgres", "--auth=trust")
        self.start()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.folder), "-o", options, "-w", "start")

    def stop(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.folder), "-m", "fast", "-w", "stop")


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (the workers)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        pids += [int(child) for child in children]
    return total / 1024


async def virtual_user(
    client: httpx.AsyncClient, number: int, tally: Tally, ends_at: float, outage: asyncio.Event
) -> None:
    rng = random.Random(number)
    name = f"soak{number}"

    async def call(
        method: str, url: str, expected: int, *, event: str | None = None, audit_read: bool = False, **kwargs: object
    ) -> httpx.Response:
        """One request; an answer other than ``expected`` is a failure of the soak, but for the outage's 503s."""
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        tally.statuses[response.status_code] += 1
        outage_503 = response.status_code == 503 and response.json().get("error") == "database_unavailable"
        if response.status_code == expected:
            if event:
                tally.expected_events[event] += 1
        elif audit_read and outage_503 and outage.is_set():
            tally.outage_503s += 1
        else:
            tally.unexpected.append(f"{method} {url}: {response.status_code} {response.text[:200]}")
        return response

    user = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, "first_name": "S", "last_name": "K"}
    await call("POST", "/api/v1/users", 201, json=user, event="user.signed_up")

    async def log_in(password: str) -> dict[str, str]:
        right = password == PASSWORD
        form = {"username": name, "password": password}
        event = "user.logged_in" if right else "user.login_failed"
        response = await call("POST", "/api/v1/auth/token", 200 if right else 401, data=form, event=event)
        return {"Authorization": f"Bearer {response.json()['access_token']}"} if response.status_code == 200 else {}

    headers = await log_in(PASSWORD)
    workspaces: list[str] = []
    renames = 0
    while time.monotonic() < ends_at:
        roll = rng.random()
        if roll < 0.02:
            await log_in("wrong password")
            headers = await log_in(PASSWORD)
        elif roll < 0.12 or not workspaces:
            response = await call(
                "POST",
                "/api/v1/workspaces",
                201,
                json={"name": f"W{len(workspaces)}"},
                headers=headers,
                event="workspace.created",
            )
            if response.status_code == 201:
                workspaces.append(response.json()["id"])
        elif roll < 0.32:
            renames += 1
            workspace = rng.choice(workspaces)
            await call(
                "PATCH",
                f"/api/v1/workspaces/{workspace}",
                200,
                json={"name": f"R{renames}"},
                headers=headers,
                event="workspace.updated",
            )
        elif roll < 0.42:
            audit_events = f"/api/v1/workspaces/{rng.choice(workspaces)}/audit-events"
            await call("GET", audit_events, 200, headers=headers, audit_read=True)
        elif roll < 0.7:
            await call("GET", "/api/v1/workspaces", 200, headers=headers)
        else:
            await call("GET", "/api/v1/users/me", 200, headers=headers)


async def drive(base: str, cluster: AuditCluster, server: subprocess.Popen[bytes], tally: Tally) -> tuple[float, float]:
    """The traffic, the outage in the middle third; memory after the warm-up and at the end."""
    outage = asyncio.Event()
    started = time.monotonic()
    ends_at = started + SECONDS
    limits = httpx.Limits(max_connections=USERS)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        users = [asyncio.create_task(virtual_user(client, number, tally, ends_at, outage)) for number in range(USERS)]
        await asyncio.sleep(WARM_UP_SECONDS)
        memory_after_warm_up = rss_mib(server.pid)
        await asyncio.sleep(max(0.0, started + SECONDS / 3 - time.monotonic()))
        print(f"{time.monotonic() - started:5.0f}s stopping the audit database", flush=True)
        outage.set()
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(max(0.0, started + 2 * SECONDS / 3 - time.monotonic()))
        await asyncio.to_thread(cluster.start)
        print(f"{time.monotonic() - started:5.0f}s the audit database is back", flush=True)
        # Audit reads already in flight may still fail; a few seconds of grace.
        await asyncio.sleep(3)
        outage.clear()
        await asyncio.gather(*users)
    return memory_after_warm_up, rss_mib(server.pid)


def audit_counts(audit_url: str, core_url: str) -> tuple[collections.Counter[str], int, int]:
    """Events by action in audit, events recorded more than once, and what is left in the outbox."""
    audit, core = create_engine(audit_url), create_engine(core_url)
    with audit.connect() as connection:
        rows = connection.execute(text("SELECT action, count(*) FROM audit_events GROUP BY action")).all()
        repeated = connection.execute(text("SELECT count(*) - count(DISTINCT id) FROM audit_events")).scalar_one()
    with core.connect() as connection:
        left = connection.execute(text("SELECT count(*) FROM audit_outbox")).scalar_one()
    audit.dispose()
    core.dispose()
    return collections.Counter({action: count for action, count in rows}), repeated, left


def main() -> int:
    tally = Tally()
    with tempfile.TemporaryDirectory() as folder, fresh_databases("postgresql", names=("core",)) as core:
        cluster = AuditCluster(Path(folder))
        urls = {"core": core["core"], "audit": cluster.create()}
        try:
            env = production_env(urls) | {
                "WEB_CONCURRENCY": "2",
                "AUDIT_RELAY_INTERVAL_SECONDS": "0.5",
                # Every virtual user comes from 127.0.0.1: its address budgets would throttle them all.
                "LOGIN_FAILURES_PER_ADDRESS": "1000000",
                "SIGN_UPS_PER_ADDRESS": "1000000",
                "PASSWORD_CHECKS_PER_CLIENT": "1000",
            }
            subprocess.run([sys.executable, "-m", "src.migrate", "upgrade"], cwd=ROOT, env=env, check=True)
            print(f"soak: {SECONDS}s, {USERS} virtual users, audit stopped for the middle third", flush=True)
            serve = [sys.executable, "-m", "src.serve", "--port"]
            server_run = running_server(lambda port: [*serve, str(port)], env, log_name="soak-server", probe="/health")
            with server_run as (base, server):
                memory_start, memory_end = asyncio.run(drive(base, cluster, server, tally))
                deadline = time.monotonic() + 60
                while (counts := audit_counts(urls["audit"], urls["core"]))[2] and time.monotonic() < deadline:
                    time.sleep(1)
        finally:
            cluster.stop()
    events, repeated, left = counts
    print(f"answers by status: {dict(sorted(tally.statuses.items()))}")
    print(f"503 database_unavailable from audit reads during the outage: {tally.outage_503s}")
    print(f"server memory: {memory_start:.0f} MiB after warm-up, {memory_end:.0f} MiB at the end")
    failures = [f"unexpected answer: {line}" for line in tally.unexpected[:10]]
    for action in sorted(tally.expected_events | events):
        line = f"{action}: {tally.expected_events[action]} answered, {events[action]} audit events"
        print(line)
        if tally.expected_events[action] != events[action]:
            failures.append(line)
    if repeated:
        failures.append(f"{repeated} audit event(s) recorded more than once")
    if left:
        failures.append(f"{left} event(s) left in the outbox after 60 s")
    if memory_end > 1.5 * memory_start + 50:
        failures.append(f"memory grew from {memory_start:.0f} to {memory_end:.0f} MiB")
    for failure in failures:
        print(f"failed: {failure}")
    print("soak passed" if not failures else f"soak failed: {len(failures)} check(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
