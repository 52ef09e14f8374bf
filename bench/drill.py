"""make drill: migrations on a live, populated PostgreSQL table, with one reader and one writer timing every query.

Each scenario gets fresh databases at head with DRILL_ROWS users (300,000), then a
thread reads a random user by id and another updates a random user's last name,
each query its own transaction, while the scenario's migrations run as
``python -m src.migrate`` would run them. Reported per scenario: the queries run
and the worst wait of each kind. The scenarios:

- one revision: the old way, a nullable column added, every row updated and the
  column set NOT NULL in one revision (one transaction);
- the recipe: the way docs/migrations.md adds a NOT NULL column: expand (make
  migrate-upgrade), then op.backfill with a NOT VALID check, and VALIDATE with SET
  NOT NULL, two post-deploy revisions (make migrate-post-deploy);
- behind a long transaction: the expand revision while a transaction that read
  users stays open for 5 s, once with the old settings (one attempt with a 10 s
  lock timeout) and once with the defaults (lock retries).

Prints one table, writes it as JSON to DRILL_OUT (var/drill.json), and exits 1
when a read or write waited more than 200 ms in the recipe or with lock retries, or any query failed.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from bench.environment import ROOT, fresh_databases, production_env

ROWS = int(os.environ.get("DRILL_ROWS", "300000"))
TARGET_MS = 200
BLOCKER_SECONDS = 5
HEADER = '''"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
{post_deploy}

def upgrade(engine_name: str) -> None:
    step = globals().get(f"upgrade_{{engine_name}}")
    if step is not None:
        step()


def downgrade(engine_name: str) -> None:
    pass


def upgrade_core() -> None:
{body}
'''
ONE_REVISION = [
    (
        "Add, fill and require users.nickname in one revision",
        False,
        """
        with op.batch_alter_table("users") as batch_op:
            batch_op.add_column(sa.Column("nickname", sa.String(32), nullable=True))
        op.execute("UPDATE users SET nickname = username")  # migrate-lint: allow raw-sql -- the drill's old way
        with op.batch_alter_table("users") as batch_op:
            batch_op.alter_column("nickname", nullable=False)  # migrate-lint: allow set-not-null -- the old way
        """,
    )
]
# The recipe "Add a NOT NULL column" of docs/migrations.md, revision by revision.
RECIPE = [
    (
        "Add users.nickname",
        False,
        """
        with op.batch_alter_table("users") as batch_op:
            batch_op.add_column(sa.Column("nickname", sa.String(32), nullable=True))
        """,
    ),
    (
        "Fill users.nickname",
        True,
        """
        op.backfill("users", "nickname = username", where="nickname IS NULL")
        with op.batch_alter_table("users") as batch_op:
            batch_op.create_check_constraint("nickname_not_null", "nickname IS NOT NULL", postgresql_not_valid=True)
        """,
    ),
    (
        "Require users.nickname",
        True,
        """
        if op.get_bind().dialect.name == "postgresql":  # SQLite checked every row when it rebuilt the table
            op.execute(
                "ALTER TABLE users VALIDATE CONSTRAINT ck_users_nickname_not_null"
            )  # migrate-lint: allow raw-sql -- VALIDATE lets reads and writes go on
        with op.batch_alter_table("users") as batch_op:
            batch_op.alter_column(
                "nickname", existing_type=sa.String(32), nullable=False
            )  # migrate-lint: allow set-not-null -- the validated check spares PostgreSQL the scan
            batch_op.drop_constraint("nickname_not_null", type_="check")
        """,
    ),
]
OLD_SETTINGS = {"MIGRATION_LOCK_ATTEMPTS": "1", "MIGRATION_LOCK_TIMEOUT_SECONDS": "10"}


@dataclass
class Waits:
    """How long each query of one kind took, in seconds, and the errors they met."""

    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def worst_ms(self) -> float:
        return 1000 * max(self.seconds, default=0.0)


@dataclass(frozen=True)
class Result:
    scenario: str
    migration_seconds: float
    reads: int
    worst_read_ms: float
    writes: int
    worst_write_ms: float
    errors: list[str]
    checked: bool  # held against the 200 ms target


def populate(url: str) -> list[str]:
    """ROWS users, vacuumed; a sample of their ids."""
    with connect(url) as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, username, first_name, last_name, full_name, hashed_password,"
                " is_active, created_at) SELECT gen_random_uuid(), 'user' || n || '@example.com', 'user' || n, 'Ada',"
                " 'Lovelace', 'Ada Lovelace', 'x', true, now() FROM generate_series(1, :rows) AS n"
            ),
            {"rows": ROWS},
        )
        connection.execute(text("VACUUM ANALYZE users"))
        sample = connection.execute(text("SELECT id FROM users TABLESAMPLE SYSTEM (5) LIMIT 10000"))
        return [str(id_) for id_ in sample.scalars()]


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    """A connection of its own in autocommit: each statement its own transaction."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def timed(url: str, ids: list[str], statement: str, waits: Waits, running: threading.Event) -> None:
    """Run ``statement`` for random ids, each in its own transaction, timing each, while ``running`` is set."""
    query = text(statement)
    with connect(url) as connection:
        while running.is_set():
            started = time.monotonic()
            try:
                connection.execute(query, {"id": random.choice(ids)})
            except DBAPIError as error:
                waits.errors.append(str(error.orig).splitlines()[0])
            waits.seconds.append(time.monotonic() - started)
            time.sleep(0.002)


@contextmanager
def copy_of_migrations(revisions: list[tuple[str, bool, str]]) -> Iterator[Path]:
    """The project's migrations plus ``revisions`` (message, post-deploy, body) after its head; the alembic.ini."""
    from src.core.schema_versions import script_directory

    down = script_directory().get_current_head()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copytree(ROOT / "migrations", root / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(ROOT / "alembic.ini", root / "alembic.ini")
        shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
        for number, (message, post_deploy, body) in enumerate(revisions, 1):
            revision = f"d{number:011d}"
            (root / "migrations" / "versions" / f"2099_01_01_00000{number}-{revision}_drill.py").write_text(
                HEADER.format(
                    message=message,
                    revision=revision,
                    down=down,
                    post_deploy="post_deploy = True\n" if post_deploy else "",
                    body=textwrap.indent(textwrap.dedent(body).strip(), "    "),
                )
            )
            down = revision
        yield root / "alembic.ini"


def migrate(ini: Path, env: dict[str, str], *argv: str) -> None:
    """``python -m src.migrate ARGV`` on the copy of the migrations that ``ini`` names."""
    script = (
        "import pathlib, sys; from src.core import schema_versions;"
        f" schema_versions.ALEMBIC_INI = pathlib.Path({str(ini)!r});"
        f" from src.migrate.__main__ import main; sys.exit(main({list(argv)!r}))"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    for line in (run.stdout + run.stderr).splitlines():
        print(f"    {line}")
    if run.returncode != 0:
        raise SystemExit(f"error: python -m src.migrate {' '.join(argv)} failed")


def scenario(
    name: str,
    revisions: list[tuple[str, bool, str]],
    *,
    settings: dict[str, str] | None = None,
    during: Callable[[str], None] | None = None,
    checked: bool = True,
) -> Result:
    """Fresh populated databases; the reader and the writer run while ``revisions`` are applied."""
    print(f"{name}:", flush=True)
    with fresh_databases("postgresql") as urls, copy_of_migrations(revisions) as ini:
        env = production_env(urls) | (settings or {})
        subprocess.run([sys.executable, "-m", "src.migrate", "upgrade"], cwd=ROOT, env=env, check=True)
        ids = populate(urls["core"])
        reads, writes, running = Waits(), Waits(), threading.Event()
        read = "SELECT * FROM users WHERE id = :id"
        write = "UPDATE users SET last_name = 'Byron' WHERE id = :id"
        threads = [
            threading.Thread(target=timed, args=(urls["core"], ids, read, reads, running)),
            threading.Thread(target=timed, args=(urls["core"], ids, write, writes, running)),
        ]
        if during:
            threads.append(threading.Thread(target=during, args=(urls["core"],)))
        running.set()
        try:
            for thread in threads:
                thread.start()
                time.sleep(0.3)
            started = time.monotonic()
            migrate(ini, env, "upgrade")
            migrate(ini, env, "upgrade", "--post-deploy")
            migration_seconds = time.monotonic() - started
            time.sleep(0.5)
        finally:
            running.clear()
            for thread in threads:
                thread.join()
    return Result(
        name,
        migration_seconds,
        len(reads.seconds),
        reads.worst_ms,
        len(writes.seconds),
        writes.worst_ms,
        reads.errors + writes.errors,
        checked,
    )


def long_transaction(url: str) -> None:
    """A transaction that has read users and stays open BLOCKER_SECONDS, as a long report would."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT count(*) FROM users"))
        time.sleep(BLOCKER_SECONDS)
        connection.rollback()
    engine.dispose()


def main() -> int:
    out_path = ROOT / os.environ.get("DRILL_OUT", "var/drill.json")
    print(f"PostgreSQL, {ROWS:,} users; a reader and a writer, each query its own transaction")
    results = [
        scenario("one revision: add, update every row, set NOT NULL", ONE_REVISION, checked=False),
        scenario("the recipe: expand, backfill, NOT VALID check, validate and set NOT NULL", RECIPE),
        scenario(
            f"behind a {BLOCKER_SECONDS} s transaction, one attempt with a 10 s lock timeout (the old settings)",
            RECIPE[:1],
            settings=OLD_SETTINGS,
            during=long_transaction,
            checked=False,
        ),
        scenario(
            f"behind a {BLOCKER_SECONDS} s transaction, lock retries (the defaults)",
            RECIPE[:1],
            during=long_transaction,
        ),
    ]
    print(
        f"\n{'SCENARIO':92} {'MIGRATION':>9} {'READS':>6} {'WORST READ':>10} {'WRITES':>6} {'WORST WRITE':>11}"
        f" {'ERRORS':>6}"
    )
    for r in results:
        print(
            f"{r.scenario:92} {r.migration_seconds:8.1f}s {r.reads:6} {r.worst_read_ms:8.0f}ms {r.writes:6}"
            f" {r.worst_write_ms:9.0f}ms {len(r.errors):6}"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"rows": ROWS, "results": [asdict(r) for r in results]}, indent=2) + "\n")
    print(f"wrote {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    missed = [
        f"{r.scenario}: worst {kind} wait {worst:.0f} ms > {TARGET_MS} ms"
        for r in results
        if r.checked
        for kind, worst in (("read", r.worst_read_ms), ("write", r.worst_write_ms))
        if worst > TARGET_MS
    ]
    missed += [f"{r.scenario}: {len(r.errors)} queries failed, the first: {r.errors[0]}" for r in results if r.errors]
    for miss in missed:
        print(f"missed: {miss}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
