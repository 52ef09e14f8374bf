"""make serve's production layout: the web workers, and the audit relay and the mail worker as processes of their
own."""

import os
import subprocess
import sys
from pathlib import Path

from src.core.config import PROJECT_ROOT
from src.serve import RELAY_NICENESS
from tests.conftest import DatabaseUrls, first_answer, free_port, url_variables


def children(pid: int) -> dict[int, str]:
    """The command lines of a process's children, by pid, read from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found[int(stat.parent.name)] = command
    return found


def test_the_jobs_run_beside_the_workers_at_a_lower_priority_and_stop_with_them(
    migrated_databases: DatabaseUrls,
) -> None:
    port = free_port()
    jobs = {"AUDIT_RELAY_ENABLED": "true", "MAIL_WORKER_ENABLED": "true"}
    env = os.environ | {"WEB_CONCURRENCY": "1", **jobs, **url_variables(migrated_databases)}
    server = subprocess.Popen(
        [sys.executable, "-m", "src.serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env, stderr=subprocess.DEVNULL
    )
    try:
        first_answer(server, f"http://127.0.0.1:{port}/health", seconds=30)
        running = children(server.pid)
        [relay] = [pid for pid, command in running.items() if "src.audit_jobs relay --loop" in command]
        [mail] = [pid for pid, command in running.items() if "src.account_jobs mail --loop" in command]
        niceness = [int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16]) for pid in (relay, mail)]
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert niceness == [RELAY_NICENESS, RELAY_NICENESS]
    assert not Path(f"/proc/{relay}").exists() and not Path(f"/proc/{mail}").exists()
