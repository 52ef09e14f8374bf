"""Prometheus metrics the service records as it works; ``GET /metrics`` (src/api/metrics.py) exposes them.

With several worker processes (``make serve``), PROMETHEUS_MULTIPROC_DIR names a
folder where each process writes its values, and a scrape of any worker adds
them up (prometheus-client's multiprocess mode). Without it, values live in the
process.
"""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import Engine, event

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROCESS_DIR):
    # prometheus-client writes there as soon as a metric without labels is defined, below.
    Path(os.environ[MULTIPROCESS_DIR]).mkdir(parents=True, exist_ok=True)
# This process's metrics, when there is no multiprocess folder.
PROCESS_REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "http_requests",
    "Requests answered, by method, route template and status",
    ["method", "route", "status"],
    registry=PROCESS_REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to its response, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=PROCESS_REGISTRY,
)
REQUESTS_IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "Requests received and not yet answered",
    registry=PROCESS_REGISTRY,
    multiprocess_mode="livesum",
)
POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Pooled connections handed out to requests, per database",
    ["database"],
    registry=PROCESS_REGISTRY,
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "db_pool_requests_waiting",
    "Requests waiting to be admitted to a database's pool",
    ["database"],
    registry=PROCESS_REGISTRY,
    multiprocess_mode="livesum",
)
RELAY_DELIVERED = Counter(
    "audit_relay_delivered_events",
    "Audit events the relay moved from the core outbox to the audit database",
    registry=PROCESS_REGISTRY,
)
RELAY_FAILURES = Counter(
    "audit_relay_failures",
    "Relay runs that failed (a database unreachable, or a bug); the relay tries again",
    registry=PROCESS_REGISTRY,
)
MAIL_SENT = Counter(
    "mail_sent",
    "Messages the mail worker handed to the SMTP server (or wrote under MAIL_DIRECTORY)",
    registry=PROCESS_REGISTRY,
)
MAIL_SEND_ERRORS = Counter(
    "mail_send_errors",
    "Attempts to send a message that failed; the message is tried again later",
    registry=PROCESS_REGISTRY,
)
MAIL_FAILED = Counter(
    "mail_failed",
    "Messages given up after MAIL_MAX_ATTEMPTS failed attempts",
    registry=PROCESS_REGISTRY,
)
LOGINS_THROTTLED = Counter(
    "login_throttled_attempts",
    "Log-in attempts refused while an account or a client address was locked out, by which",
    ["limit"],
    registry=PROCESS_REGISTRY,
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR) or None


def collected_registry() -> CollectorRegistry:
    """What a scrape reports of what the processes recorded."""
    folder = multiprocess_dir()
    if folder is None:
        return PROCESS_REGISTRY
    forget_dead_processes(folder)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def forget_dead_processes(folder: str) -> None:
    """A worker that died without shutting down (killed, crashed) leaves its live gauges: they stop counting."""
    for path in Path(folder).iterdir():
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and not _alive(int(match[1])):
            mark_process_dead(int(match[1]), folder)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_this_process() -> None:
    """At a worker's exit: its live gauges (requests in progress, pool) no longer count."""
    if multiprocess_dir() is not None:
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


# Any other method a client sends is counted as "other": each label value is a series kept for good.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    count, duration = _request_metrics(method if method in METHODS else "other", route or "unmatched", status)
    count.inc()
    duration.observe(seconds)


@cache
def _request_metrics(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The counter and histogram of one method, route template and status, looked up once: on a probe,
    looking them up cost more than counting. Few such triples exist (known methods, route templates)."""
    labels = (method, route, str(status))
    return REQUESTS.labels(*labels), REQUEST_SECONDS.labels(*labels)


def watch_pool(engine: Engine, database: str) -> None:
    """Count the engine's connections handed out, as the pool hands them out and takes them back."""
    in_use = POOL_IN_USE.labels(database)
    event.listen(engine, "checkout", lambda *_: in_use.inc())
    event.listen(engine, "checkin", lambda *_: in_use.dec())


@contextmanager
def waiting_for(database: str) -> Iterator[None]:
    gauge = POOL_WAITING.labels(database)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()
