"""``op.backfill``: update every row of a table in batches by key, each batch its own short transaction.

A revision calls it instead of one ``UPDATE`` of the whole table, which would hold
its row locks, and every lock the revision took before it, until the end:

    op.backfill("users", "full_name = first_name || ' ' || last_name", where="full_name IS NULL")

On PostgreSQL it commits what the revision did before it (as ``autocommit_block``
does), then updates ``batch_size`` rows at a time in key order, on a connection of
its own with the migration's timeouts, pausing between batches and printing its
progress. Each batch commits together with its progress row, so a rerun after an
interruption continues after the last committed batch: no batch is done twice or
left half done. A batch that waits too long for a row lock fails the revision,
whose lock retries run it again from there. The progress table is dropped when
the revision's version is recorded (``clear_progress``, called from env.py). On
SQLite (a laptop, where nothing else writes meanwhile) the batches run in the
revision's transaction.

Registered as an Alembic operation when env.py imports this module, so revisions
import nothing from the app.
"""

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic.operations import MigrateOperation, Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from src.core.config import get_settings
from src.core.schema_versions import BACKFILL_PROGRESS_TABLE
from src.migrate.migration_lock import prepare_migration_connection

PROGRESS_EVERY_SECONDS = 2.0

_progress_rows = sa.Table(
    BACKFILL_PROGRESS_TABLE,
    sa.MetaData(),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("last_key", sa.Text()),
    sa.Column("rows_done", sa.BigInteger(), nullable=False),
    sa.Column("rows_updated", sa.BigInteger(), nullable=False),
    sa.Column("rows_total", sa.BigInteger(), nullable=False),
    sa.Column("is_finished", sa.Boolean(), nullable=False),
)

T = TypeVar("T")


@Operations.register_operation("backfill")
class BackfillOp(MigrateOperation):
    """Set ``assignments`` (SQL: ``col = expr, ...``) on the rows of ``table_name`` in batches by ``key``."""

    def __init__(
        self, table_name: str, assignments: str, *, where: str | None, key: str, batch_size: int | None
    ) -> None:
        self.table_name = table_name
        self.assignments = assignments
        self.where = where
        self.key = key
        self.batch_size = batch_size

    @classmethod
    def backfill(
        cls,
        operations: Operations,
        table_name: str,
        assignments: str,
        *,
        where: str | None = None,
        key: str = "id",
        batch_size: int | None = None,
    ) -> None:
        """Set ``assignments`` on every row of ``table_name`` where ``where`` holds, ``batch_size`` rows at a time.

        ``key`` is a unique, indexed column (the primary key) whose order the batches follow;
        ``batch_size`` defaults to MIGRATION_BACKFILL_BATCH_SIZE.
        """
        operations.invoke(cls(table_name, assignments, where=where, key=key, batch_size=batch_size))

    @property
    def progress_name(self) -> str:
        """Its progress row: the table and a digest of what is set where."""
        what = f"{self.assignments}\n{self.where or ''}\n{self.key}"
        return f"{self.table_name}:{hashlib.sha256(what.encode()).hexdigest()[:16]}"


@dataclasses.dataclass(frozen=True)
class _Progress:
    last_key: str | None
    rows_done: int  # visited, in key order
    rows_updated: int  # of those, the ones ``where`` selected
    rows_total: int
    is_finished: bool


@dataclasses.dataclass(frozen=True)
class _Backfill:
    """One backfill's statements on one connection, its table and key quoted for that connection's dialect."""

    operation: BackfillOp
    connection: Connection
    batch_size: int

    def _quoted(self, name: str) -> str:
        return str(self.connection.dialect.identifier_preparer.quote(name))

    def start(self) -> _Progress:
        """The progress row, made (with the table's row count) on the first run."""
        _progress_rows.create(self.connection, checkfirst=True)
        name = self.operation.progress_name
        row = self.connection.execute(sa.select(_progress_rows).where(_progress_rows.c.name == name)).first()
        if row is not None:
            return _Progress(row.last_key, row.rows_done, row.rows_updated, row.rows_total, row.is_finished)
        table, key = self._quoted(self.operation.table_name), self._quoted(self.operation.key)
        without_key = self.connection.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {key} IS NULL")).scalar()
        if without_key:
            raise ValueError(
                f"op.backfill: {self.operation.table_name}.{self.operation.key} is NULL in {without_key} row(s), which"
                " batches by key cannot reach; pass key= a column that is never NULL (the primary key)"
            )
        total = self.connection.execute(sa.text(f"SELECT count(*) FROM {table}"))
        progress = _Progress(None, 0, 0, int(total.scalar_one()), False)
        self.connection.execute(sa.insert(_progress_rows).values(name=name, **dataclasses.asdict(progress)))
        return progress

    def next_batch(self, progress: _Progress) -> _Progress:
        """Update the next batch of rows after ``progress.last_key``, and record it."""
        table, key = self._quoted(self.operation.table_name), self._quoted(self.operation.key)
        after = progress.last_key
        bounds = [f"{key} > :last_key"] if after is not None else []
        parameters = {"last_key": after, "batch_size": self.batch_size}
        where = f" WHERE {bounds[0]}" if bounds else ""
        keys = self.connection.execute(
            sa.text(f"SELECT {key} FROM {table}{where} ORDER BY {key} LIMIT :batch_size"), parameters
        ).scalars()
        batch = list(keys)
        if not batch:
            done = dataclasses.replace(progress, is_finished=True)
        else:
            conditions = [*bounds, f"{key} <= :upper_key"]
            if self.operation.where:
                conditions.append(f"({_literal_colons(self.operation.where)})")
            assignments = _literal_colons(self.operation.assignments)
            updated = self.connection.execute(
                sa.text(f"UPDATE {table} SET {assignments} WHERE {' AND '.join(conditions)}"),
                {**parameters, "upper_key": batch[-1]},
            ).rowcount
            done = _Progress(
                str(batch[-1]),
                progress.rows_done + len(batch),
                progress.rows_updated + updated,
                progress.rows_total,
                False,
            )
        self.connection.execute(
            sa.update(_progress_rows)
            .where(_progress_rows.c.name == self.operation.progress_name)
            .values(**dataclasses.asdict(done))
        )
        return done


def _literal_colons(sql: str) -> str:
    """The revision's SQL as it is: a colon in it (a cast, a JSON literal) is no bind parameter."""
    return sql.replace(":", "\\:")


@Operations.implementation_for(BackfillOp)
def run_backfill(operations: Operations, operation: BackfillOp) -> None:
    context = operations.get_context()
    batch_size = operation.batch_size or get_settings().migration_backfill_batch_size
    if context.as_sql:
        _write_sql(operations, operation, batch_size)
        return
    bind = context.bind
    assert bind is not None
    database = str(context.opts.get("database_name", ""))
    if bind.dialect.name != "postgresql":
        _run(_Backfill(operation, bind, batch_size), database=database, transaction=_as_it_is)
        return
    with context.autocommit_block(), _own_connection(bind) as connection:
        _run(_Backfill(operation, connection, batch_size), database=database, transaction=_committed(connection))


def clear_progress(ctx: MigrationContext, **_: Any) -> None:
    """``on_version_apply``: once a revision's version is recorded, it has no unfinished backfill.

    The progress table goes in the transaction that records the version: the schema is left as the models say,
    and a later downgrade and upgrade backfills again.
    """
    connection = ctx.connection
    if not ctx.as_sql and connection is not None:
        _progress_rows.drop(connection, checkfirst=True)


@contextmanager
def _own_connection(bind: Connection) -> Iterator[Connection]:
    """A second connection with the migration's timeouts; the migration's own waits outside any transaction."""
    with bind.engine.connect() as connection:
        prepare_migration_connection(connection, "backfill", lock=False)
        yield connection


def _as_it_is(work: Callable[[], T]) -> T:
    return work()


def _committed(connection: Connection) -> Callable[[Callable[[], T]], T]:
    """Each piece of work in a transaction of its own. One that waits too long for a row lock fails the revision,
    whose lock retries run it again: it resumes after the last committed batch."""

    def transaction(work: Callable[[], T]) -> T:
        with connection.begin():
            return work()

    return transaction


def _run(backfill: _Backfill, *, database: str, transaction: Callable[[Callable[[], _Progress]], _Progress]) -> None:
    label = f"{database}: backfill {backfill.operation.table_name}"
    progress = transaction(backfill.start)
    if progress.is_finished:
        print(f"{label}: done before ({progress.rows_done:,} rows)", flush=True)
        return
    pause = get_settings().migration_backfill_pause_seconds
    started = shown = time.monotonic()
    resumed_from = progress.rows_done
    if resumed_from:
        print(f"{label}: resuming after {resumed_from:,} rows", flush=True)
    while not progress.is_finished:
        progress = transaction(functools.partial(backfill.next_batch, progress))
        if progress.is_finished:
            break
        if time.monotonic() - shown >= PROGRESS_EVERY_SECONDS:
            shown = time.monotonic()
            print(f"{label}: {_rate(progress, resumed_from, shown - started)}", flush=True)
        time.sleep(pause)
    if progress.rows_done:  # an empty table (a new database) has nothing worth a line
        elapsed = time.monotonic() - started
        print(f"{label}: {progress.rows_done:,} rows, {progress.rows_updated:,} updated, in {elapsed:.1f}s", flush=True)


def _rate(progress: _Progress, resumed_from: int, elapsed: float) -> str:
    """'120,000 of 300,000 rows (40%), 24,000 rows/s, about 8s left'."""
    total = max(progress.rows_total, progress.rows_done)
    rate = (progress.rows_done - resumed_from) / elapsed if elapsed > 0 else 0.0
    left = f", about {(total - progress.rows_done) / rate:.0f}s left" if rate else ""
    percent = 100 * progress.rows_done // total if total else 100
    return f"{progress.rows_done:,} of {total:,} rows ({percent}%), {rate:,.0f} rows/s{left}"


def _write_sql(operations: Operations, operation: BackfillOp, batch_size: int) -> None:
    """Offline SQL: on PostgreSQL a DO block that commits each batch, run outside the revision's transaction."""
    context = operations.get_context()
    quote = context.dialect.identifier_preparer.quote
    table, key = quote(operation.table_name), quote(operation.key)
    if context.dialect.name != "postgresql":
        where = f" WHERE {operation.where}" if operation.where else ""
        operations.execute(f"UPDATE {table} SET {operation.assignments}{where}")
        return
    where = f" AND ({operation.where})" if operation.where else ""
    pause = get_settings().migration_backfill_pause_seconds
    with context.autocommit_block():
        # Written as it is: passed through the driver's paramstyle, %TYPE would come out as %%TYPE.
        context.impl.static_output(f"""DO $backfill$
DECLARE
    last_key {table}.{key}%TYPE;
    upper_key {table}.{key}%TYPE;
BEGIN
    LOOP
        upper_key := NULL;
        SELECT batch.{key} INTO upper_key FROM (
            SELECT {key} FROM {table} WHERE last_key IS NULL OR {key} > last_key ORDER BY {key} LIMIT {batch_size}
        ) AS batch ORDER BY batch.{key} DESC LIMIT 1;
        EXIT WHEN upper_key IS NULL;
        UPDATE {table} SET {operation.assignments}
            WHERE (last_key IS NULL OR {key} > last_key) AND {key} <= upper_key{where};
        COMMIT;
        PERFORM pg_sleep({pause});
        last_key := upper_key;
    END LOOP;
END
$backfill${context.impl.command_terminator}""")
