"""``make abuse``: floods against the API served as in production, and what an uninvolved client sees meanwhile.

The app runs as ``make serve`` runs it (PostgreSQL, two workers, relay on). For
ABUSE_SECONDS each (default 10), one attacker address floods the service:

- log-ins: 150 at once, without end, for one account, with wrong passwords;
- sign-ups: 200 at once, without end, each a new account;
- silent sockets: 2,000 connections that declare a 1 GB body, read the answer, send one byte and go silent;
- probes: 200 ``GET /ready`` at once, without end.

Meanwhile a bystander at another address logs in and reads its workspaces, one
request after another. Addresses are given as X-Forwarded-For, which the server
believes from 127.0.0.1 (FORWARDED_ALLOW_IPS). It prints, per flood, the
bystander's latencies (median and worst) and the attacker's answers by status,
and exits 1 when any of the bystander's requests did not succeed.
"""

import asyncio
import collections
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bench.environment import ROOT, fresh_databases, production_env, running_server
from src.serve import raise_descriptor_limit

SECONDS = float(os.environ.get("ABUSE_SECONDS", "10"))
PASSWORD = "bystander password, long enough"
ATTACKER = {"X-Forwarded-For": "203.0.113.66"}
BYSTANDER = {"X-Forwarded-For": "198.51.100.7"}


@dataclass
class Observed:
    log_ins: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    attacker: collections.Counter[str] = field(default_factory=collections.Counter)


async def bystander(client: httpx.AsyncClient, stop: asyncio.Event, observed: Observed) -> None:
    """Log in, then read, again and again until ``stop``; each request's seconds."""
    while not stop.is_set():
        started = time.monotonic()
        token = await client.post(
            "/api/v1/auth/token", data={"username": "bystander", "password": PASSWORD}, headers=BYSTANDER
        )
        observed.log_ins.append(time.monotonic() - started)
        if token.status_code != 200:
            observed.failures.append(f"log-in: {token.status_code} {token.text[:120]}")
            continue
        started = time.monotonic()
        read = await client.get(
            "/api/v1/workspaces", headers=BYSTANDER | {"Authorization": f"Bearer {token.json()['access_token']}"}
        )
        observed.reads.append(time.monotonic() - started)
        if read.status_code != 200:
            observed.failures.append(f"read: {read.status_code} {read.text[:120]}")


async def flood(at_once: int, attack: Callable[[int], Awaitable[str]], stop: asyncio.Event, observed: Observed) -> None:
    """``at_once`` attackers, each repeating ``attack`` until ``stop``; their outcomes counted."""

    async def attacker(number: int) -> None:
        while not stop.is_set():
            try:
                observed.attacker[await attack(number)] += 1
            except httpx.HTTPError as error:
                observed.attacker[type(error).__name__] += 1

    await asyncio.gather(*(attacker(number) for number in range(at_once)))


def log_ins(client: httpx.AsyncClient) -> Callable[[int], Awaitable[str]]:
    async def attempt(_number: int) -> str:
        reply = await client.post(
            "/api/v1/auth/token", data={"username": "victim", "password": "a guess"}, headers=ATTACKER
        )
        return str(reply.status_code)

    return attempt


def sign_ups(client: httpx.AsyncClient) -> Callable[[int], Awaitable[str]]:
    count = iter(range(10**9))

    async def attempt(_number: int) -> str:
        name = f"flood{next(count)}"
        body = {
            "email": f"{name}@example.com",
            "username": name,
            "password": PASSWORD,
            "first_name": "F",
            "last_name": "L",
        }
        return str((await client.post("/api/v1/users", json=body, headers=ATTACKER)).status_code)

    return attempt


def probes(client: httpx.AsyncClient) -> Callable[[int], Awaitable[str]]:
    async def attempt(_number: int) -> str:
        return str((await client.get("/ready", headers=ATTACKER)).status_code)

    return attempt


def silent_sockets(host: str, port: int, stop: asyncio.Event) -> Callable[[int], Awaitable[str]]:
    async def attempt(_number: int) -> str:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as error:
            await asyncio.sleep(0.1)
            return type(error).__name__
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n")
            await writer.drain()
            answer = await reader.read(1024)
            writer.write(b"x")
            await writer.drain()
            # Silent from here: held until the server closes the connection, or the flood ends.
            closed, stopped = asyncio.ensure_future(reader.read()), asyncio.ensure_future(stop.wait())
            await asyncio.wait([closed, stopped], return_when=asyncio.FIRST_COMPLETED)
            by_server = closed.done()
            for waiting in (closed, stopped):
                waiting.cancel()
            await asyncio.gather(closed, stopped, return_exceptions=True)  # a reset is a close as well
            return "answered, closed by the server" if by_server and answer else "held open"
        except OSError as error:
            return type(error).__name__
        finally:
            writer.close()

    return attempt


async def run_flood(base: str, name: str, at_once: int, attack_for: Callable[..., object]) -> Observed:
    observed = Observed()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=at_once + 10, max_keepalive_connections=at_once + 10)
    async with (
        httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as attacking,
        httpx.AsyncClient(base_url=base, timeout=120) as bystanding,
    ):
        attack = attack_for(attacking) if at_once else None
        tasks = [asyncio.ensure_future(bystander(bystanding, stop, observed))]
        if attack is not None:
            tasks.append(asyncio.ensure_future(flood(at_once, attack, stop, observed)))  # type: ignore[arg-type]
        await asyncio.sleep(SECONDS)
        stop.set()
        await asyncio.gather(*tasks)
    print(report(name, observed), flush=True)
    return observed


def report(name: str, observed: Observed) -> str:
    def figures(seconds: list[float]) -> str:
        if not seconds:
            return "none"
        return f"{statistics.median(seconds) * 1000:7.0f} {max(seconds) * 1000:7.0f}"

    answers = ", ".join(f"{status}: {count}" for status, count in sorted(observed.attacker.items())) or "-"
    return f"{name:<16} {figures(observed.log_ins):>15} {figures(observed.reads):>15}   {answers}"


async def drive(base: str) -> list[Observed]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for name in ("bystander", "victim"):
            body = {
                "email": f"{name}@example.com",
                "username": name,
                "password": PASSWORD,
                "first_name": "B",
                "last_name": "Y",
            }
            created = await client.post("/api/v1/users", json=body, headers=BYSTANDER)
            assert created.status_code == 201, created.text
        token = await client.post(
            "/api/v1/auth/token", data={"username": "bystander", "password": PASSWORD}, headers=BYSTANDER
        )
        headers = BYSTANDER | {"Authorization": f"Bearer {token.json()['access_token']}"}
        for number in range(5):
            await client.post("/api/v1/workspaces", json={"name": f"W{number}"}, headers=headers)
    host, port = base.removeprefix("http://").split(":")
    print(f"abuse: {SECONDS:g}s per flood; the bystander's log-in and read, median and worst in ms")
    print(f"{'FLOOD':<16} {'LOG-IN P50 MAX':>15} {'READ P50 MAX':>15}   ATTACKER'S ANSWERS")
    stop_sockets = asyncio.Event()
    observed = [
        await run_flood(base, "none", 0, lambda client: None),
        await run_flood(base, "log-ins", 150, log_ins),
        await run_flood(base, "sign-ups", 200, sign_ups),
        await run_flood(base, "silent sockets", 2000, lambda _client: silent_sockets(host, int(port), stop_sockets)),
        await run_flood(base, "probes", 200, probes),
    ]
    stop_sockets.set()
    return observed


def main() -> int:
    raise_descriptor_limit()  # the attacker's 2,000 sockets are this process's too
    with fresh_databases("postgresql") as urls:
        env = production_env(urls) | {"WEB_CONCURRENCY": "2", "FORWARDED_ALLOW_IPS": "127.0.0.1"}
        subprocess.run([sys.executable, "-m", "src.migrate", "upgrade"], cwd=ROOT, env=env, check=True)
        serve = [sys.executable, "-m", "src.serve", "--port"]
        with running_server(lambda port: [*serve, str(port)], env, log_name="abuse-server", probe="/health") as (
            base,
            _server,
        ):
            observed = asyncio.run(drive(base))
    failures = [failure for run in observed for failure in run.failures]
    for failure in failures[:10]:
        print(f"failed: the bystander got {failure}")
    print(
        "abuse passed: every request of the bystander succeeded" if not failures else f"abuse failed: {len(failures)}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
