"""``make serve``: the app as production runs it.

No reload, uvloop, uvicorn's httptools protocol with the request limits of
src/core/http_protocol.py, no access log (the app logs a line per request),
proxy headers trusted from FORWARDED_ALLOW_IPS only (default: 127.0.0.1), and a
graceful shutdown that lets requests in flight and a relay batch finish.
WEB_CONCURRENCY sets the worker processes (default: the usable cores); SQLite
databases allow one. The audit relay and the mail worker run as processes of
their own at a lower CPU priority (AUDIT_RELAY_ENABLED=false,
MAIL_WORKER_ENABLED=false: none), so that delivering a backlog does not slow
the workers' requests. The workers' and the jobs' metrics meet in
PROMETHEUS_MULTIPROC_DIR (default: a temporary folder for this run).
"""

import argparse
import ipaddress
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from pydantic import ValidationError

# Nothing of src is imported at the top: prometheus-client, which src imports, decides on its first import
# whether values go to PROMETHEUS_MULTIPROC_DIR, and metrics_folder() sets that first.

PROTOCOL = "src.core.http_protocol:LimitedHttpToolsProtocol"
GRACEFUL_SHUTDOWN_SECONDS = 30
METRICS_FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's; src/core/metrics.py
RELAY_NICENESS = 10  # the relay and the mail worker get the CPU the workers leave


def worker_count(*, sqlite: bool, cores: int) -> int:
    given = os.environ.get("WEB_CONCURRENCY", "")
    if (given and not given.isdigit()) or given == "0":
        raise ValueError(f"WEB_CONCURRENCY must be a whole number of workers, 1 or more, not {given!r}")
    if sqlite:
        if given and int(given) > 1:
            raise ValueError("WEB_CONCURRENCY above 1 needs PostgreSQL: SQLite databases allow one worker process")
        return 1
    return int(given) if given else cores


def raise_descriptor_limit() -> None:
    """Open files (client connections among them) up to the hard limit the system sets, not the soft 1024 most
    shells start with; the workers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def dual_stack(addresses: str) -> str:
    """FORWARDED_ALLOW_IPS as a server on ``::`` sees them too: an IPv4 proxy connects as ``::ffff:a.b.c.d``."""
    given = [address.strip() for address in addresses.split(",") if address.strip()]
    mapped = []
    for address in given:
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            continue  # "*", or a name uvicorn matches as written
        if network.version == 4:
            mapped.append(f"::ffff:{network.network_address}/{96 + network.prefixlen}")
    return ",".join(given + mapped)


@contextmanager
def metrics_folder() -> Iterator[None]:
    """A folder where every worker writes its metrics, emptied of an earlier run's.

    Set before prometheus-client is first imported: it chooses where values live on import.
    """
    given = os.environ.get(METRICS_FOLDER_VARIABLE)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    with tempfile.TemporaryDirectory(prefix="metrics-") as folder:
        os.environ[METRICS_FOLDER_VARIABLE] = folder
        yield


def stopped(signal_number: int, _frame: object) -> None:
    raise SystemExit(128 + signal_number)


@contextmanager
def job_process(module: str, command: str, *, enabled: bool, setting: str) -> Iterator[None]:
    """A job's ``--loop`` (the audit relay, the mail worker) as a process beside the workers, which then run none of
    their own (``setting`` off); stopped as they are: its batch finishes first."""
    if not enabled:
        yield
        return
    # A session of its own: Ctrl-C in a terminal reaches the server, which then stops the job once.
    job = subprocess.Popen(
        [sys.executable, "-m", module, command, "--loop"],
        start_new_session=True,
        preexec_fn=lambda: os.nice(RELAY_NICENESS),
    )
    os.environ[setting] = "false"  # read by the workers' settings
    # Uvicorn raises the signal that stopped it again once it has: as an exception, it lets the job stop too.
    signal.signal(signal.SIGTERM, stopped)
    try:
        yield
    finally:
        job.send_signal(signal.SIGINT)
        try:
            job.wait(timeout=GRACEFUL_SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    with metrics_folder():
        return serve(args.host, args.port)


def serve(host: str, port: int) -> int:
    from src.core.cli import fail, invalid_settings

    try:
        from src.core.config import get_settings, usable_cores
        from src.core.logs import configure_logging

        settings = get_settings()
        configure_logging(settings.effective_log_format, settings.log_level)
        if "environment" not in settings.model_fields_set:
            # Unset, it would be local: the example secret key and any Host header accepted.
            return fail(
                "make serve runs as production does: set ENVIRONMENT (production or staging; local or test to try it"
                " with the example settings)"
            )
        raise_descriptor_limit()
        sqlite = any(url.startswith("sqlite") for url in get_settings().database_urls().values())
        workers = worker_count(sqlite=sqlite, cores=usable_cores())
    except ValidationError as error:
        return invalid_settings(error)
    except ValueError as error:
        return fail(str(error))
    with (
        job_process("src.audit_jobs", "relay", enabled=settings.audit_relay_enabled, setting="AUDIT_RELAY_ENABLED"),
        job_process("src.account_jobs", "mail", enabled=settings.mail_worker_enabled, setting="MAIL_WORKER_ENABLED"),
    ):
        get_settings.cache_clear()  # a single worker runs in this process: it reads the jobs' settings again
        run_workers(host, port, workers, settings.forwarded_allow_ips)
    return 0


def run_workers(host: str, port: int, workers: int, forwarded_allow_ips: str) -> None:
    uvicorn.run(
        "src.main:app",
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=PROTOCOL,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=dual_stack(forwarded_allow_ips),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_config=None,  # configured above, and by the app in each worker (src/core/logs.py)
    )


if __name__ == "__main__":
    sys.exit(main())
