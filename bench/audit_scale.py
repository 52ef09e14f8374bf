"""make audit-drill: how the audit trail's reads scale with the number of events, on PostgreSQL, and a year's prune.

For each of AUDIT_DRILL_SIZES (100,000, 1,000,000 and 5,000,000 events) it makes fresh
databases, migrates them as a deploy does (python -m src.migrate upgrade, then
post-deploy), creates the monthly partitions of the audit events, and generates the
events in one INSERT ... SELECT: two years up to now, evenly spread; 200 workspaces, one
of them hot with 30% of the events; 10% of the events belong to no workspace (sign-ups,
log-ins, password changes), and the failures are failed log-ins there, as in the
service, so that ``outcome=failure`` matches nothing in a workspace. The daily counts
are kept by the table's trigger as the events go in. Then it vacuums and analyzes the
table, the state autovacuum keeps an append-only table in.

Each cell is the service's own statements: list_events and activity called on a
session, the SQL and parameters they executed captured, and each statement's
EXPLAIN (ANALYZE, BUFFERS) "Execution Time", the median of 3 runs. At the largest
size only, it then times ``python -m src.audit_jobs prune --days 365``: seconds,
events deleted, WAL written (by the whole server) and the size of the partitions
with their indexes before and after.

Prints one table and the prune, writes them with the plans as JSON to AUDIT_DRILL_OUT
(var/audit-drill.json), and exits 1 when a target is missed: every cell under 50 ms, and
at the largest size no more than 1.5 times the smallest size's time plus 1 ms (the
millisecond because timings below one are mostly noise: a cache miss, the clock).
"""

import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from bench.environment import ROOT, fresh_databases, production_env, write_report
from src.core.pagination import Cursor, PageRequest
from src.services.audit_log import EventFilter, activity, in_workspace, list_events
from src.services.audit_partitions import ensure_partitions

SIZES = [int(size) for size in os.environ.get("AUDIT_DRILL_SIZES", "100000,1000000,5000000").split(",")]
RUNS = 3
DEEP = 100_000
YEARS = 2
HOT = uuid.UUID("00000000-0000-4000-8000-000000000001")
QUIET = uuid.UUID(hashlib.md5(b"workspace-7").hexdigest())  # one of the 199 others, as GENERATE names them
TARGET_MS = 50
GROWTH, GROWTH_SLACK_MS = 1.5, 1.0
PRUNE_DAYS = 365
PARTITION = re.compile(r"_(p\d{4}_\d{2}|default)(?=_|$)")  # audit_events_p2025_01_..._idx: audit_events_*_..._idx
# Weights in percent; the service's own actions (src/services/workspaces.py, members.py, users.py).
WORKSPACE_ACTIONS = {
    "audit.read": 30,
    "workspace.member_added": 22,
    "workspace.updated": 20,
    "workspace.member_role_changed": 15,
    "workspace.member_removed": 10,
    "workspace.created": 2,
    "workspace.deleted": 1,
}
USER_ACTIONS = {
    "user.logged_in": 60,
    "user.login_failed": 15,
    "user.profile_updated": 8,
    "user.password_changed": 5,
    "user.signed_up": 5,
    "user.login_throttled": 4,
    "user.password_check_failed": 3,
}
FAILURES = ["user.login_failed", "user.login_throttled", "user.password_check_failed"]
GENERATE = """
INSERT INTO audit_events (id, occurred_at, recorded_at, action, outcome, actor_type, actor_id, workspace_id,
                          target_type, target_id, context, details)
SELECT gen_random_uuid(), at, at + interval '1 second', action,
       CASE WHEN failed THEN 'failure' ELSE 'success' END,
       CASE WHEN failed THEN 'anonymous' ELSE 'user' END,
       CASE WHEN failed THEN NULL ELSE actor END,
       workspace_id,
       CASE WHEN workspace_id IS NULL OR action LIKE 'workspace.member%' THEN 'user' ELSE 'workspace' END,
       CASE WHEN action LIKE 'workspace.member%' THEN member WHEN workspace_id IS NULL THEN actor ELSE workspace_id END,
       json_build_object('ip_address', '10.1.' || actor_n / 250 || '.' || actor_n % 250,
                         'user_agent', 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
                         'request_id', md5(n::text)),
       CASE WHEN action LIKE 'workspace.member%' THEN json_build_object('role', (ARRAY['member', 'admin'])[1 + n % 2])
            WHEN action = 'workspace.updated' THEN json_build_object('before', json_build_object('name', 'Team'),
                                                                     'after', json_build_object('name', 'Team ' || n))
            WHEN action = 'audit.read' THEN json_build_object('asked', '/api/v1/workspaces/' || workspace_id
                                                                       || '/audit-events?limit=20')
            WHEN failed THEN json_build_object('username', 'user' || actor_n, 'failures', 1 + n % 5)
            ELSE json_build_object('name', 'Team ' || n % 200) END
FROM (
    SELECT n, at, workspace_id, actor_n, actor, member, action, action = ANY(CAST(:failures AS text[])) AS failed
    FROM (
        SELECT n, to_timestamp(:start + :span * (n - 1 + jitter) / :events) AS at, workspace_id, actor_n,
               md5('user-' || actor_n)::uuid AS actor, md5('user-' || member_n)::uuid AS member,
               CASE WHEN workspace_id IS NULL THEN (CAST(:user_actions AS text[]))[1 + floor(pick * 100)::int]
                    ELSE (CAST(:workspace_actions AS text[]))[1 + floor(pick * 100)::int] END AS action
        FROM (
            SELECT n, random() AS jitter, random() AS pick, floor(random() * 2000)::int AS actor_n,
                   floor(random() * 2000)::int AS member_n,
                   CASE WHEN place < 0.3 THEN CAST(:hot AS uuid) WHEN place < 0.4 THEN NULL
                        ELSE md5('workspace-' || floor(random() * 199)::int)::uuid END AS workspace_id
            FROM (SELECT n, random() AS place FROM generate_series(1, :events) AS n) AS numbered
        ) AS drawn
    ) AS chosen
) AS events
"""
QUERIES = [
    "first page",
    f"a page {DEEP:,} rows deep",
    "`action=` matching nothing",
    "`action_prefix=` matching nothing",
    "`actor_id=` matching nothing",
    "`target_id=` matching nothing",
    "`outcome=` matching nothing",
    "activity over the whole range",
    "first page of a quiet workspace",
]


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: dict[str, str]
    execution_ms: list[float]
    plan: dict[str, Any]  # of the median run


@dataclass(frozen=True)
class Cell:
    ms: float  # the median execution time of each statement the call ran, summed
    statements: list[Statement]


@dataclass
class Size:
    events: int
    postgresql: str
    hot_events: int
    load_seconds: float
    cells: dict[str, Cell | None] = field(default_factory=dict)  # None: not measurable at this size


@dataclass(frozen=True)
class Prune:
    seconds: float
    deleted: int | None
    output: str
    wal_bytes: int
    bytes_before: int
    bytes_after: int


def label(events: int) -> str:
    """100k, 1M, 2.5M."""
    if events >= 1_000_000:
        return f"{events / 1_000_000:g}M"
    return f"{events / 1000:g}k" if events >= 1000 else str(events)


@contextmanager
def step(doing: str) -> Iterator[None]:
    print(f"  {doing}…", end=" ", flush=True)
    started = time.monotonic()
    yield
    print(f"done in {time.monotonic() - started:.1f} s", flush=True)


def migrate(env: dict[str, str]) -> None:
    """To head as a deploy migrates: before it, then the post-deploy revisions."""
    for command in ("upgrade", "post-deploy"):
        run = subprocess.run([sys.executable, "-m", "src.migrate", command], cwd=ROOT, env=env, capture_output=True)
        if run.returncode != 0:
            sys.stdout.write(run.stdout.decode() + run.stderr.decode())
            raise SystemExit(f"error: python -m src.migrate {command} failed")


def months(start: datetime, end: datetime) -> tuple[date, date]:
    """The first days of the first and the last month that recording times from ``start`` to ``end`` fall in."""
    return start.date().replace(day=1), (end + timedelta(seconds=1)).date().replace(day=1)


def load(engine: Engine, events: int, start: datetime, end: datetime) -> None:
    """``events`` events from ``start`` to ``end`` in their partitions (and daily counts), the table analyzed."""
    first, last = months(start, end)
    with step(f"partitions from {first:%Y-%m} to {last:%Y-%m}"), engine.begin() as connection:
        ensure_partitions(connection, first, last)
    with step(f"generating {events:,} events"), engine.begin() as connection:
        connection.execute(
            text(GENERATE),
            {
                "events": events,
                "start": start.timestamp(),
                "span": (end - start).total_seconds(),
                "hot": str(HOT),
                "failures": FAILURES,
                "workspace_actions": [action for action, weight in WORKSPACE_ACTIONS.items() for _ in range(weight)],
                "user_actions": [action for action, weight in USER_ACTIONS.items() for _ in range(weight)],
            },
        )
    with step("VACUUM ANALYZE"), engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The statements and parameters sent to the database meanwhile."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        sent.append((statement, dict(parameters or {})))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def explained(connection: Connection, sql: str, parameters: dict[str, Any]) -> Statement:
    """The statement run RUNS times under EXPLAIN ANALYZE: each run's execution time, the median run's plan."""
    runs = []
    for _ in range(RUNS):
        output = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", parameters).scalar_one()
        report = (json.loads(output) if isinstance(output, str) else output)[0]
        runs.append((float(report["Execution Time"]), report["Plan"]))
    ms = [run[0] for run in runs]
    median = statistics.median(ms)
    plan = next(plan for run_ms, plan in runs if run_ms == median)
    return Statement(sql, {name: str(value) for name, value in parameters.items()}, ms, plan)


def measure(engine: Engine, call: Callable[[Session], object]) -> Cell:
    """What ``call`` reads on a session of its own, each of its queries explained."""
    with captured(engine) as sent, Session(engine) as session:
        call(session)
    reads = [(sql, parameters) for sql, parameters in sent if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
    if not reads:
        raise SystemExit(f"error: {call} ran no query")
    with engine.connect() as connection:
        statements = [explained(connection, sql, parameters) for sql, parameters in reads]
        connection.rollback()
    return Cell(sum(statistics.median(s.execution_ms) for s in statements), statements)


def deep_page(engine: Engine) -> PageRequest | None:
    """The page after the hot workspace's DEEP-th event in the list's order, as the route builds it from its cursor."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT occurred_at, id FROM audit_events WHERE workspace_id = :hot"
                " ORDER BY occurred_at DESC, id DESC OFFSET :skip LIMIT 1"
            ),
            {"hot": HOT, "skip": DEEP - 1},
        ).first()
    if row is None:
        return None
    cursor = Cursor(row.occurred_at.astimezone(UTC), uuid.UUID(str(row.id))).encode()
    return PageRequest(cursor=Cursor.decode(cursor))


def calls(engine: Engine, days: int) -> dict[str, Callable[[Session], object] | None]:
    """Each row's service call (on the hot workspace but for the last); None where the data cannot have it."""

    def listed(filters: EventFilter, page: PageRequest | None) -> Callable[[Session], object] | None:
        if page is None:
            return None
        return lambda session: list_events(session, scope=in_workspace(HOT), filters=filters, page=page)

    nothing = [
        EventFilter(action="workspace.archived"),
        EventFilter(action_prefix="billing."),
        EventFilter(actor_id=uuid.uuid4()),
        EventFilter(target_id=uuid.uuid4()),
        EventFilter(outcome="failure"),
    ]
    found = [listed(EventFilter(), PageRequest()), listed(EventFilter(), deep_page(engine))]
    found += [listed(filters, PageRequest()) for filters in nothing]
    found.append(lambda session: activity(session, workspace_id=HOT, days=days))
    found.append(
        lambda session: list_events(session, scope=in_workspace(QUIET), filters=EventFilter(), page=PageRequest())
    )
    return dict(zip(QUERIES, found, strict=True))


def partitions_bytes(connection: Connection) -> int:
    """audit_events and its indexes, summed over its partitions."""
    sql = "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('audit_events')"
    return int(connection.execute(text(sql)).scalar_one())


def prune(engine: Engine, env: dict[str, str]) -> Prune:
    """``python -m src.audit_jobs prune --days PRUNE_DAYS`` as make audit-prune runs it, timed."""
    with engine.connect() as connection:
        before = connection.execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
        bytes_before = partitions_bytes(connection)
        connection.rollback()
    started = time.monotonic()
    command = [sys.executable, "-m", "src.audit_jobs", "prune", "--days", str(PRUNE_DAYS)]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        sys.stdout.write(run.stdout + run.stderr)
        raise SystemExit(f"error: {' '.join(command[1:])} failed")
    with engine.connect() as connection:
        wal = connection.execute(text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :lsn)"), {"lsn": before})
        wal_bytes = int(wal.scalar_one())
        bytes_after = partitions_bytes(connection)
    output = run.stdout.strip()
    deleted = re.search(r"deleted ([\d,]+)", output)
    return Prune(
        seconds, int(deleted[1].replace(",", "")) if deleted else None, output, wal_bytes, bytes_before, bytes_after
    )


def drill(events: int, *, with_prune: bool) -> tuple[Size, Prune | None]:
    """Fresh databases holding ``events`` events; each row's cell, and the prune if asked."""
    print(f"{events:,} events:", flush=True)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=365 * YEARS)
    with fresh_databases("postgresql") as urls:
        env = production_env(urls)
        with step("migrating"):
            migrate(env)
        engine = create_engine(urls["audit"])
        started = time.monotonic()
        load(engine, events, start, end)
        with engine.connect() as connection:
            hot = connection.execute(text("SELECT count(*) FROM audit_events WHERE workspace_id = :hot"), {"hot": HOT})
            hot_events = int(hot.scalar_one())
            version = str(connection.execute(text("SHOW server_version")).scalar_one())
        size = Size(events, version, hot_events, time.monotonic() - started)
        days = (end.date() - start.date()).days + 1
        with step(f"measuring {len(QUERIES)} queries, {RUNS} runs each"):
            size.cells = {name: measure(engine, call) if call else None for name, call in calls(engine, days).items()}
        engine.dispose()
        if not with_prune:
            return size, None
        with step(f"pruning the events older than {PRUNE_DAYS} days"):
            unpooled = create_engine(urls["audit"], poolclass=NullPool)
            pruned = prune(unpooled, env)
            unpooled.dispose()
        return size, pruned


def shown(cell: Cell | None) -> str:
    if cell is None:
        return "—"
    return f"{cell.ms:.2f} ms" if cell.ms < 10 else f"{cell.ms:.1f} ms" if cell.ms < 100 else f"{cell.ms:.0f} ms"


def baseline(sizes: list[Size], query: str) -> tuple[Size, Cell, Cell] | None:
    """The smallest size that has the query measured, its cell and the largest size's, which is held against it."""
    first = next((size for size in sizes if size.cells[query] is not None), None)
    if first is None or first is sizes[-1]:
        return None
    smallest, largest = first.cells[query], sizes[-1].cells[query]
    return (first, smallest, largest) if smallest and largest else None


def growth(sizes: list[Size], query: str) -> str:
    compared = baseline(sizes, query)
    if compared is None:
        return "—"
    first, smallest, largest = compared
    ratio = f"{largest.ms / smallest.ms:.2f}x" if smallest.ms else "—"
    return ratio if first is sizes[0] else f"{ratio} (of {label(first.events)})"


def table(sizes: list[Size]) -> list[str]:
    heads = [f"{label(sizes[0].events)} events"] + [label(size.events) for size in sizes[1:]]
    heads.append(f"{label(sizes[-1].events)} / {label(sizes[0].events)}")
    lines = ["| query (hot workspace) | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for query in QUERIES:
        cells = [shown(size.cells[query]) for size in sizes] + [growth(sizes, query)]
        lines.append(f"| {query} | " + " | ".join(cells) + " |")
    return lines


def outline(cell: Cell) -> str:
    """The scans of a cell's plans, a partition's counted with its likes: what they read, and read for nothing."""
    scans: dict[str, list[int]] = {}

    def walk(node: dict[str, Any]) -> None:
        if "Scan" in node["Node Type"]:
            name = f"{node['Node Type']} {node.get('Index Name') or node.get('Relation Name', '')}".strip()
            name = PARTITION.sub("_*", name)
            seen = scans.setdefault(name, [0, 0, 0])
            loops = int(node.get("Actual Loops", 1))
            seen[0] += 1
            seen[1] += int(node.get("Actual Rows", 0)) * loops
            seen[2] += int(node.get("Rows Removed by Filter", 0)) * loops
        for child in node.get("Plans", []):
            walk(child)

    for statement in cell.statements:
        walk(statement.plan)
    return "; ".join(
        f"{name}{f' x{n}' if n > 1 else ''}: {rows:,} rows, {removed:,} removed by filter"
        for name, (n, rows, removed) in scans.items()
    )


def missed_targets(sizes: list[Size]) -> list[str]:
    missed = []
    for size in sizes:
        for query, cell in size.cells.items():
            if cell is not None and cell.ms >= TARGET_MS:
                missed.append(f"{query} at {label(size.events)}: {shown(cell)} ≥ {TARGET_MS} ms ({outline(cell)})")
    for query in QUERIES:
        compared = baseline(sizes, query)
        if compared is None:
            continue
        first, smallest, largest = compared
        if largest.ms > GROWTH * smallest.ms + GROWTH_SLACK_MS:
            missed.append(
                f"{query}: {shown(largest)} at {label(sizes[-1].events)} > {GROWTH} x {shown(smallest)} at"
                f" {label(first.events)} + {GROWTH_SLACK_MS:g} ms ({outline(largest)})"
            )
    return missed


def size_report(size: Size) -> dict[str, Any]:
    return {
        "events": size.events,
        "postgresql": size.postgresql,
        "hot_events": size.hot_events,
        "load_seconds": size.load_seconds,
        "cells": {query: cell and asdict(cell) for query, cell in size.cells.items()},
    }


def main() -> int:
    out_path = ROOT / os.environ.get("AUDIT_DRILL_OUT", "var/audit-drill.json")
    ordered = sorted(SIZES)
    print(
        f"PostgreSQL, {', '.join(label(n) for n in ordered)} audit events over {YEARS} years, 30% in one hot workspace;"
        f" each cell the median EXPLAIN ANALYZE execution time of {RUNS} runs of the service's own statements"
    )
    started = time.monotonic()
    sizes, pruned = [], None
    for events in ordered:
        size, done = drill(events, with_prune=events == ordered[-1])
        sizes.append(size)
        pruned = done or pruned
    print()
    for line in table(sizes):
        print(line)
    print(
        f"\ntargets: every cell under {TARGET_MS} ms; at {label(ordered[-1])} no more than {GROWTH} x the"
        f" {label(ordered[0])} time + {GROWTH_SLACK_MS:g} ms (the deep page: than at the first size that has it)"
    )
    if pruned:
        print(
            f"\nprune of the events older than {PRUNE_DAYS} days at {label(ordered[-1])}: {pruned.seconds:.1f} s,"
            f" {pruned.deleted if pruned.deleted is None else f'{pruned.deleted:,}'} events deleted,"
            f" {pruned.wal_bytes / 2**20:,.1f} MiB of WAL; audit_events with its indexes"
            f" {pruned.bytes_before / 2**20:,.0f} MiB before, {pruned.bytes_after / 2**20:,.0f} MiB after"
        )
    seconds = time.monotonic() - started
    print(f"\nthe whole drill took {seconds / 60:.1f} min")
    missed = missed_targets(sizes)
    report = {
        "runs": RUNS,
        "sizes": [size_report(size) for size in sizes],
        "prune": pruned and asdict(pruned),
        "seconds": seconds,
    }
    return write_report(report, out_path, missed)


if __name__ == "__main__":
    sys.exit(main())
