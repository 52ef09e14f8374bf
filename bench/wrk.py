"""One wrk run: the requests it sends, and what it measured."""

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPORT_SCRIPT = Path(__file__).with_name("report.lua")


def ensure_wrk() -> str:
    """The wrk binary, installed with apt-get when missing."""
    found = shutil.which("wrk")
    if found is None:
        print("wrk not found: installing it with apt-get")
        subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("error: wrk could not be installed; install it (apt-get install wrk) and run again")
    return found


def pinned(core: int | None, command: list[str]) -> list[str]:
    """The command bound to one CPU core, when the machine has more than one."""
    return ["taskset", "-c", str(core), *command] if core is not None else command


@dataclass(frozen=True)
class Load:
    """What wrk sends: one method and body to paths taken in turn."""

    paths: tuple[str, ...]
    method: str = "GET"
    body: str = ""
    content_type: str = ""
    token: str = ""


@dataclass(frozen=True)
class Measured:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    stalls: int  # whole seconds, after the first, in which no response completed

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def start_wrk(base: str, load: Load, *, connections: int, seconds: int, core: int | None) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "BENCH_PATHS": " ".join(load.paths),
        "BENCH_METHOD": load.method,
        "BENCH_BODY": load.body,
        "BENCH_CONTENT_TYPE": load.content_type,
        "BENCH_TOKEN": load.token,
    }
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(REPORT_SCRIPT)]
    return subprocess.Popen(pinned(core, [*command, base + load.paths[0]]), env=env, stdout=subprocess.PIPE, text=True)


def result_of(process: subprocess.Popen[str]) -> Measured:
    out, _ = process.communicate(timeout=600)
    line = next((line for line in out.splitlines() if line.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise SystemExit(f"error: wrk failed (exit {process.returncode}):\n{out}")
    report = json.loads(line.removeprefix("BENCH_JSON "))
    return Measured(
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        non_2xx=report["non_2xx"],
        errors=report["errors"],
        # The first second is left out: wrk opens every connection then, and each waits for its turn.
        stalls=sum(1 for count in report["per_second"][1:] if count == 0),
    )


def run_wrk(base: str, load: Load, *, connections: int, seconds: int, core: int | None) -> Measured:
    return result_of(start_wrk(base, load, connections=connections, seconds=seconds, core=core))


# /proc/net/tcp states of a connection the server has not finished closing: established, SYN received,
# FIN wait 1 and 2, close wait, last ACK, closing. (Listening and TIME_WAIT sockets hold no client.)
OPEN_STATES = frozenset({"01", "03", "04", "05", "08", "09", "0B"})


def server_connections(port: int) -> int:
    """Connections to ``port`` on this machine that the server side has not closed yet."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                local, _, state = line.split()[1:4]
                count += int(local.rpartition(":")[2], 16) == port and state in OPEN_STATES
    return count


def wait_until_closed(base: str, timeout: float = 30) -> None:
    """Until the server has closed the connections of the previous run.

    wrk closes its connections when it stops; a server still busy with their last requests closes its side
    later. A run started before that reuses client ports the server still holds open, and those connections
    wait for TCP to retry the handshake (a second or more), which would show in the next row's p99.
    """
    port = urlsplit(base).port
    deadline = time.monotonic() + timeout
    while port and server_connections(port) and time.monotonic() < deadline:
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """The CPU time, user and system, that process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int, timeout: float = 60) -> None:
    """Until the server has worked through the requests of the previous run.

    wrk stops with requests still queued in the server: their clients are gone, but the server answers them
    anyway. A run started sooner shares the server's core with that backlog, which takes a slow route at 256
    connections about a second: fewer requests per second, and no response at all in the run's first second.
    """
    deadline = time.monotonic() + timeout
    used = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        used, before = cpu_seconds(pid), used
        if used - before < 0.02:  # a fifth of a core at most: idle, but for the audit relay's polling
            return


@dataclass(frozen=True)
class Server:
    base: str
    pid: int

    def settle(self) -> None:
        """Until the previous run has left no connection and no request behind."""
        wait_until_closed(self.base)
        wait_until_idle(self.pid)
