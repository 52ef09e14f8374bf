"""make relay-drill: how fast the audit relay drains a backlog, and how much draining slows the web path.

Two layouts, taken in turn (RELAY_DRAIN_ROUNDS rounds, default 1), each on fresh PostgreSQL
databases migrated as a deploy leaves them (python -m src.migrate post-deploy):

- a: ``python -m src.serve``, two workers and the relay a process of its own at nice +10;
- b: the layout before it, uvicorn (with make serve's HTTP protocol) and two workers, a relay in each.

A user with 25 workspaces is seeded through the API (bench/__main__.py's seed). An
async httpx client sends ``PATCH /api/v1/workspaces/{id}`` (a rename) at RELAY_DRAIN_RATE
requests per second (default 50), open loop: each request leaves at its own time whatever
the earlier ones do, and its latency counts from that time. After a warm-up, the load runs
for RELAY_DRAIN_SECONDS (default 30) while idle. Then one INSERT ... SELECT generate_series
commits RELAY_BACKLOG events (default 500,000, 200 workspaces, the last hour) to core's
audit_outbox, and the same load runs again once the relay has begun draining it. The outbox
is counted every second until empty, on one core, and not while the latencies are measured:
counted every 0.5 s by a parallel scan, which takes both cores for a moment, in the measured
window too, the p95 while draining was 2.8 x idle against 1.1 x without. The drain rate is the
backlog over the seconds from the commit to the empty outbox. RELAY_DRAIN_LAYOUTS (default
"ab") names the layouts to run. Progress lines give, for each phase, the CPU seconds
of the web workers (in b, their relays too), the relay process, the PostgreSQL backends of
the run's databases and this client, and how busy the whole machine was.

Prints a table: drain events/s, p50/p95/p99 idle and while draining, their ratios, failed
requests. Writes it as JSON to RELAY_DRAIN_OUT (var/relay-drain.json), and exits 1 when
layout a's draining p50 or p95 is above 1.5 x idle, a request failed, or a drain took
longer than RELAY_DRAIN_TIMEOUT seconds (default 1200). The machine is shared: compare
the layouts within one run.
"""

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.__main__ import seed
from bench.environment import ROOT, fresh_databases, production_env, running_server, write_report
from bench.wrk import cpu_seconds
from src.serve import PROTOCOL

BACKLOG = int(os.environ.get("RELAY_BACKLOG", "500000"))
RATE = float(os.environ.get("RELAY_DRAIN_RATE", "50"))
SECONDS = float(os.environ.get("RELAY_DRAIN_SECONDS", "30"))
ROUNDS = int(os.environ.get("RELAY_DRAIN_ROUNDS", "1"))
CHOSEN = os.environ.get("RELAY_DRAIN_LAYOUTS", "ab")
DRAIN_TIMEOUT = float(os.environ.get("RELAY_DRAIN_TIMEOUT", "1200"))
WARM_UP_SECONDS = 3
POLL_SECONDS = 1
METER_SECONDS = 0.1
WORKSPACES = 200
TARGET_RATIO = 1.5
WORKERS = 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FILL = """
INSERT INTO audit_outbox (id, occurred_at, action, outcome, actor_type, actor_id, workspace_id, target_type,
                          target_id, context, details)
SELECT gen_random_uuid(), now() - interval '1 hour' + n * interval '1 hour' / :backlog, 'workspace.updated',
       'success', 'user', CAST(:actor AS uuid), workspace_id, 'workspace', workspace_id,
       json_build_object('request_id', md5(n::text), 'ip', '198.51.100.7', 'user_agent', 'relay-drain'),
       json_build_object('before', json_build_object('name', 'Team ' || n), 'after',
                         json_build_object('name', 'Team ' || n + 1))
FROM (SELECT n, md5('workspace-' || n % :workspaces)::uuid AS workspace_id
      FROM generate_series(1, :backlog) AS n) AS numbered
"""


@dataclass(frozen=True)
class Layout:
    name: str
    label: str
    command: Callable[[int], list[str]]


LAYOUTS = (
    Layout("a", "src.serve, relay process", lambda port: [sys.executable, "-m", "src.serve", "--port", str(port)]),
    Layout(
        "b",
        "uvicorn, relay per worker",
        lambda port: [
            *(sys.executable, "-m", "uvicorn", "src.main:app", "--port", str(port), "--workers", str(WORKERS)),
            *("--loop", "uvloop", "--http", PROTOCOL, "--no-access-log", "--log-level", "warning"),
        ],
    ),
)


@dataclass(frozen=True)
class Served:
    """The server under test, and the seeded user's token and workspaces."""

    base: str
    pid: int
    postmaster: int
    databases: tuple[str, ...]
    token: str
    workspaces: list[str]


@dataclass(frozen=True)
class CpuSample:
    at: float
    by_role: dict[str, float]
    machine_busy: float


@dataclass(frozen=True)
class Phase:
    requests: int
    errors: list[str]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_seconds: dict[str, float]
    machine_busy: float  # of all the cores, over the phase


@dataclass
class Run:
    layout: str
    round: int
    idle: Phase
    draining: Phase
    drain_cpu_seconds: dict[str, float]
    drain_seconds: float | None  # None: not empty after DRAIN_TIMEOUT
    outbox_counts: list[tuple[float, int]] = field(default_factory=list)  # seconds since the commit, events left

    @property
    def events_per_second(self) -> float | None:
        return BACKLOG / self.drain_seconds if self.drain_seconds else None

    def ratios(self) -> tuple[float, float, float]:
        return (
            self.draining.p50_ms / self.idle.p50_ms,
            self.draining.p95_ms / self.idle.p95_ms,
            self.draining.p99_ms / self.idle.p99_ms,
        )


def children(pid: int) -> list[int]:
    with suppress(FileNotFoundError, ProcessLookupError):
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending += children(current)
    return found


def postmaster(core: Engine) -> int:
    """The process of the PostgreSQL server ``core`` is on: the parent of every backend."""
    with core.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return int(Path(f"/proc/{backend}/stat").read_text().rpartition(")")[2].split()[1])


def machine_busy_seconds() -> float:
    """CPU seconds the machine's cores have spent on anything but idling, since boot."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


class CpuMeter:
    """The CPU each role has used, read every METER_SECONDS in a thread: a process that ends (the relay's
    connection to a database, once the outbox is empty) keeps what it used until then."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.used: dict[int, tuple[str, float]] = {}
        self.known: dict[int, str] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.keep_reading, daemon=True)

    def __enter__(self) -> "CpuMeter":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join()

    def keep_reading(self) -> None:
        while not self.stopping.wait(METER_SECONDS):
            self.read()

    def read(self) -> None:
        with self.lock:
            for pid, role in self.roles().items():
                with suppress(FileNotFoundError, ProcessLookupError):
                    self.used[pid] = (role, cpu_seconds(pid))

    def roles(self) -> dict[int, str]:
        """The processes measured now, each with its role: the server's, and the backends of the run's databases."""
        found = {}
        for pid in descendants(self.served.pid):
            with suppress(FileNotFoundError, ProcessLookupError):
                if pid not in self.known:
                    relay = b"src.audit_jobs" in Path(f"/proc/{pid}/cmdline").read_bytes()
                    self.known[pid] = "relay process" if relay else "web workers"
                found[pid] = self.known[pid]
        for pid in children(self.served.postmaster):
            # A backend sets its title ("postgres: ...", with its database) as it starts: until then, look again.
            if pid not in self.known:
                with suppress(FileNotFoundError, ProcessLookupError):
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split()
                    if any(database in title for database in self.served.databases):
                        self.known[pid] = "postgres"
                    elif title[:1] == ["postgres:"]:
                        self.known[pid] = ""
            if self.known.get(pid):
                found[pid] = self.known[pid]
        return found

    def sample(self) -> CpuSample:
        self.read()
        by_role = dict.fromkeys(("web workers", "relay process", "postgres"), 0.0)
        with self.lock:
            for role, seconds in self.used.values():
                by_role[role] += seconds
        by_role["client"] = time.process_time()
        return CpuSample(time.monotonic(), by_role, machine_busy_seconds())


def cpu_between(start: CpuSample, end: CpuSample) -> tuple[dict[str, float], float]:
    """CPU seconds by role from ``start`` to ``end``, and the share of all the cores that was busy."""
    used = {role: round(end.by_role[role] - start.by_role[role], 2) for role in start.by_role}
    busy = (end.machine_busy - start.machine_busy) / ((end.at - start.at) * (os.cpu_count() or 1))
    return used, busy


def format_cpu(used: dict[str, float], busy: float) -> str:
    return ", ".join(f"{role} {seconds:.1f}" for role, seconds in used.items()) + f" CPU s; machine {busy:.0%} busy"


async def renames(served: Served, seconds: float) -> tuple[list[float], list[str]]:
    """Renames at RATE per second for ``seconds``, open loop; the latencies (ms) of the successes, and the failures."""
    latencies: list[float] = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {served.token}"}
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        base_url=f"{served.base}/api/v1", headers=headers, timeout=30, limits=limits
    ) as client:

        async def rename(number: int, due: float) -> None:
            await asyncio.sleep(due - loop.time())
            path = f"/workspaces/{served.workspaces[number % len(served.workspaces)]}"
            try:
                response = await client.patch(path, json={"name": f"Renamed {number}"})
            except httpx.HTTPError as error:
                errors.append(f"PATCH {path}: {type(error).__name__}")
                return
            if response.status_code == 200:
                latencies.append((loop.time() - due) * 1000)
            else:
                errors.append(f"PATCH {path}: {response.status_code} {response.text[:120]}")

        start = loop.time() + 0.1
        await asyncio.gather(*(rename(number, start + number / RATE) for number in range(int(seconds * RATE))))
    return latencies, errors


def phase(latencies: list[float], errors: list[str], start: CpuSample, end: CpuSample) -> Phase:
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    used, busy = cpu_between(start, end)
    return Phase(len(latencies) + len(errors), errors, cuts[49], cuts[94], cuts[98], used, busy)


def outbox_count(core: Engine) -> int:
    with core.connect() as connection:
        connection.execute(text("SET max_parallel_workers_per_gather = 0"))
        return int(connection.execute(text("SELECT count(*) FROM audit_outbox")).scalar_one())


async def watch_outbox(
    core: Engine, since: float, counts: list[tuple[float, int]], measuring: asyncio.Event | None = None
) -> float | None:
    """Count the outbox every POLL_SECONDS until it is empty, not while ``measuring`` is set; the seconds from
    ``since``, None after DRAIN_TIMEOUT."""
    while time.monotonic() - since < DRAIN_TIMEOUT:
        if measuring and measuring.is_set():
            await asyncio.sleep(POLL_SECONDS)
            continue
        left = await asyncio.to_thread(outbox_count, core)
        counts.append((round(time.monotonic() - since, 2), left))
        if not left:
            return time.monotonic() - since
        await asyncio.sleep(POLL_SECONDS)
    return None


def fill_backlog(core: Engine) -> float:
    """BACKLOG events in the outbox in one transaction; when it committed."""
    with core.begin() as connection:
        parameters = {"backlog": BACKLOG, "workspaces": WORKSPACES, "actor": str(uuid.uuid4())}
        connection.execute(text(FILL), parameters)
    return time.monotonic()


async def loaded_phase(served: Served, meter: CpuMeter, name: str) -> Phase:
    """Renames at RATE per second for SECONDS: their latencies, and the CPU each role used meanwhile."""
    start = meter.sample()
    latencies, errors = await renames(served, SECONDS)
    measured = phase(latencies, errors, start, meter.sample())
    print(
        f"  {name}: {measured.requests} renames; {format_cpu(measured.cpu_seconds, measured.machine_busy)}", flush=True
    )
    return measured


async def measure(layout: Layout, served: Served, core: Engine, round_: int) -> Run:
    """After a warm-up: the renames while idle, then while the relay drains BACKLOG events, and the drain's time."""
    await renames(served, WARM_UP_SECONDS)
    await watch_outbox(core, time.monotonic(), [])
    with CpuMeter(served) as meter:
        idle = await loaded_phase(served, meter, f"{layout.name} idle")
        await watch_outbox(core, time.monotonic(), [])
        filling = time.monotonic()
        committed = await asyncio.to_thread(fill_backlog, core)
        print(f"  {layout.name} {BACKLOG:,} events committed to the outbox in {committed - filling:.1f} s", flush=True)
        start = meter.sample()
        counts: list[tuple[float, int]] = []
        measuring = asyncio.Event()
        watching = asyncio.create_task(watch_outbox(core, committed, counts, measuring))
        while not watching.done() and (not counts or counts[-1][1] >= BACKLOG):
            await asyncio.sleep(0.05)  # the relay wakes every AUDIT_RELAY_INTERVAL_SECONDS
        print(f"  {layout.name} the relay began draining within {counts[-1][0]:.1f} s", flush=True)
        measuring.set()
        draining = await loaded_phase(served, meter, f"{layout.name} draining")
        measuring.clear()
        drain_seconds = await watching
        drain_cpu, drain_busy = cpu_between(start, meter.sample())
    took = f"empty after {drain_seconds:.1f} s" if drain_seconds else f"not empty after {DRAIN_TIMEOUT:.0f} s"
    print(f"  {layout.name} whole drain: outbox {took}; {format_cpu(drain_cpu, drain_busy)}", flush=True)
    return Run(layout.name, round_, idle, draining, drain_cpu, drain_seconds, counts)


def run_layout(layout: Layout, round_: int) -> Run:
    """The layout on fresh databases: seeded, measured idle and draining, stopped, its databases dropped."""
    print(f"round {round_}, layout {layout.name} ({layout.label})", flush=True)
    with fresh_databases("postgresql") as urls:
        env = production_env(urls) | {"WEB_CONCURRENCY": str(WORKERS), "AUDIT_RELAY_ENABLED": "true"}
        migrate = [sys.executable, "-m", "src.migrate", "post-deploy"]
        subprocess.run(migrate, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        core = create_engine(urls["core"], isolation_level="AUTOCOMMIT")
        try:
            log_name = f"relay-drain-{layout.name}"
            with running_server(layout.command, env, log_name=log_name, probe="/health") as (base, server):
                databases = tuple(str(make_url(url).database) for url in urls.values())
                token, workspaces, _key = seed(base)
                served = Served(base, server.pid, postmaster(core), databases, token, workspaces)
                return asyncio.run(measure(layout, served, core, round_))
        finally:
            core.dispose()


def milliseconds(phase: Phase) -> str:
    return f"{phase.p50_ms:.1f}/{phase.p95_ms:.1f}/{phase.p99_ms:.1f}"


def table(runs: list[Run]) -> list[str]:
    labels = {layout.name: f"{layout.name} {layout.label}" for layout in LAYOUTS}
    lines = [
        f"{'LAYOUT':29} {'ROUND':>5} {'DRAIN EV/S':>10} {'IDLE P50/P95/P99 MS':>20} {'DRAINING P50/P95/P99 MS':>24}"
        f" {'RATIOS':>15} {'ERRORS':>6}"
    ]
    for run in runs:
        rate = f"{run.events_per_second:,.0f}" if run.events_per_second else "timeout"
        ratios = "/".join(f"{ratio:.2f}" for ratio in run.ratios())
        errors = len(run.idle.errors) + len(run.draining.errors)
        lines.append(
            f"{labels[run.layout]:29} {run.round:>5} {rate:>10} {milliseconds(run.idle):>20}"
            f" {milliseconds(run.draining):>24} {ratios:>15} {errors:>6}"
        )
    return lines


def missed_targets(runs: list[Run]) -> list[str]:
    missed = []
    for run in runs:
        name = f"layout {run.layout}, round {run.round}"
        for phase_name, measured in (("idle", run.idle), ("draining", run.draining)):
            missed += [f"{name}, {phase_name}: {error}" for error in measured.errors[:5]]
            if len(measured.errors) > 5:
                missed.append(f"{name}, {phase_name}: {len(measured.errors) - 5} more failed requests")
        if run.drain_seconds is None:
            missed.append(f"{name}: the outbox was not empty after {DRAIN_TIMEOUT:.0f} s")
        p50, p95, _ = run.ratios()
        if run.layout == "a" and (p50 > TARGET_RATIO or p95 > TARGET_RATIO):
            missed.append(f"{name}: draining p50/p95 {p50:.2f}/{p95:.2f} x idle, target {TARGET_RATIO} x")
    return missed


def main() -> int:
    chosen = [layout for layout in LAYOUTS if layout.name in CHOSEN]
    if not chosen:
        print(f"error: RELAY_DRAIN_LAYOUTS={CHOSEN!r} names no layout: use a, b or ab", file=sys.stderr)
        return 2
    out_path = ROOT / os.environ.get("RELAY_DRAIN_OUT", "var/relay-drain.json")
    print(
        f"PostgreSQL, {BACKLOG:,} events in the outbox; PATCH /workspaces/{{id}} at {RATE:g}/s open loop (httpx),"
        f" {SECONDS:g} s idle then {SECONDS:g} s draining; {WORKERS} workers, {os.cpu_count()} CPUs",
        flush=True,
    )
    started = time.monotonic()
    runs = [run_layout(layout, round_) for round_ in range(1, ROUNDS + 1) for layout in chosen]
    seconds = time.monotonic() - started
    print()
    for line in table(runs):
        print(line)
    print(f"\ntarget: layout a's draining p50 and p95 within {TARGET_RATIO} x idle, no failed request")
    print(f"the whole run took {seconds / 60:.1f} min")
    missed = missed_targets(runs)
    report = {
        "backlog": BACKLOG,
        "rate_per_second": RATE,
        "phase_seconds": SECONDS,
        "layouts": {layout.name: layout.label for layout in LAYOUTS},
        "runs": [asdict(run) | {"events_per_second": run.events_per_second, "ratios": run.ratios()} for run in runs],
        "seconds": seconds,
    }
    return write_report(report, out_path, missed)


if __name__ == "__main__":
    sys.exit(main())
