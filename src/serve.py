"""``make serve``: the app as production runs it.

No reload, uvloop, uvicorn's httptools protocol with the request limits of
src/core/http_protocol.py, no access log, proxy headers trusted from
FORWARDED_ALLOW_IPS only (uvicorn's default: 127.0.0.1), and a graceful shutdown
that lets requests in flight finish. WEB_CONCURRENCY sets the worker processes
(default: the usable cores); SQLite databases allow one.
"""

import argparse
import os
import sys

import uvicorn
from pydantic import ValidationError

from src.core.cli import fail, invalid_settings

PROTOCOL = "src.core.http_protocol:LimitedHttpToolsProtocol"
GRACEFUL_SHUTDOWN_SECONDS = 30


def worker_count(*, sqlite: bool, cores: int) -> int:
    given = os.environ.get("WEB_CONCURRENCY", "")
    if (given and not given.isdigit()) or given == "0":
        raise ValueError(f"WEB_CONCURRENCY must be a whole number of workers, 1 or more, not {given!r}")
    if sqlite:
        if given and int(given) > 1:
            raise ValueError("WEB_CONCURRENCY above 1 needs PostgreSQL: SQLite databases allow one worker process")
        return 1
    return int(given) if given else cores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        # Imported here so that invalid settings are reported in one line too.
        from src.core.config import usable_cores
        from src.core.databases import DATABASES

        sqlite = any(database.url.startswith("sqlite") for database in DATABASES.values())
        workers = worker_count(sqlite=sqlite, cores=usable_cores())
    except ValidationError as error:
        return invalid_settings(error)
    except ValueError as error:
        return fail(str(error))
    uvicorn.run(
        "src.main:app",
        host=args.host,
        port=args.port,
        workers=workers,
        loop="uvloop",
        http=PROTOCOL,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
