"""What the bench and the soak share: fresh databases, free ports and the settings of a production-like run."""

import json
import os
import platform
import secrets
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def fresh_databases(dialect: str, names: tuple[str, ...] = ("core", "audit")) -> Iterator[dict[str, str]]:
    """One empty database per name, dropped afterwards."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield {name: f"sqlite:///{Path(folder) / name}.db" for name in names}
        return
    server = make_url(os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    server = server.set(drivername="postgresql+psycopg2")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    urls = {name: server.set(database=f"{prefix}_{name}").render_as_string(hide_password=False) for name in names}
    with admin.connect() as connection:
        for url in urls.values():
            connection.execute(text(f'CREATE DATABASE "{make_url(url).database}"'))
    try:
        yield urls
    finally:
        with admin.connect() as connection:
            for url in urls.values():
                connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()


def server_log(name: str) -> Path:
    """Where a server started by the bench or the soak writes its log (a line per request): var/<name>.log."""
    path = ROOT / "var" / f"{name}.log"
    path.parent.mkdir(exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(
    command: Callable[[int], list[str]], env: dict[str, str], *, log_name: str, probe: str
) -> Iterator[tuple[str, "subprocess.Popen[bytes]"]]:
    """A server started by ``command(port)``, its log in var/; its base URL and process once ``probe`` answers."""
    port = free_port()
    with server_log(log_name).open("w") as log:
        process = subprocess.Popen(command(port), cwd=ROOT, env=env, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}{probe}", timeout=5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit(f"error: {' '.join(command(port))} did not start") from None
                    time.sleep(0.2)
            yield base, process
        finally:
            process.terminate()
            process.wait(timeout=60)


def production_env(urls: dict[str, str]) -> dict[str, str]:
    """The environment of a production-like process on these databases, reached as 127.0.0.1."""
    return {
        **os.environ,
        "SETTINGS_FILE": os.devnull,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "AUDIT_SIGNING_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": '["127.0.0.1"]',
        # Sign-ups queue confirmation mail; nothing here would receive it, and sending is not what is measured.
        "SMTP_HOST": "127.0.0.1",
        "MAIL_WORKER_ENABLED": "false",
        "CORE_DATABASE_URL": urls["core"],
        "AUDIT_DATABASE_URL": urls["audit"],
    }


def write_report(report: dict[str, Any], path: Path, missed: list[str]) -> int:
    """The report as JSON at ``path``, dated and naming the machine, then each missed target; the exit status."""
    dated = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs",
        **report,
        "missed": missed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dated, indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    for miss in missed:
        print(f"missed: {miss}")
    return 1 if missed else 0
