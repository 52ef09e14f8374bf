"""Monthly range partitions of a PostgreSQL table, as pg_partman lays them out, kept by the service's own jobs.

A table partitioned by a timestamp (``postgresql_partition_by`` on its model) has a partition per UTC month,
``<table>_pYYYY_MM``, and ``<table>_default`` for the rows of a month that has none yet, so an insert never fails.
Creating a month moves its rows out of the default partition; dropping a month removes its rows without a
row-by-row delete (no WAL per row, nothing left for VACUUM).
"""

import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, MetaData, text


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def months_between(first: date, last: date) -> list[date]:
    """The first day of every month from ``first``'s to ``last``'s, both included."""
    months, month = [], first_of_month(first)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y_%m}"


def default_partition(table: str) -> str:
    return f"{table}_default"


def partition_pattern(table: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(table)}_(p(?P<year>\d{{4}})_(?P<month>\d{{2}})|default)")


def partitioned_tables(metadata: MetaData) -> list[str]:
    return [name for name, table in metadata.tables.items() if table.dialect_options["postgresql"]["partition_by"]]


def is_partition(name: str, metadata: MetaData) -> bool:
    """Whether ``name`` is a partition of one of ``metadata``'s partitioned tables (which no model describes)."""
    return any(partition_pattern(table).fullmatch(name) for table in partitioned_tables(metadata))


def is_partitioned(connection: Connection, table: str) -> bool:
    query = text("SELECT EXISTS (SELECT FROM pg_partitioned_table WHERE partrelid = to_regclass(:table))")
    return connection.dialect.name == "postgresql" and bool(connection.scalar(query, {"table": table}))


def month_partitions(connection: Connection, table: str) -> dict[date, str]:
    """The month partitions ``table`` has, by their first day."""
    names = connection.scalars(
        text(
            "SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
            " WHERE pg_inherits.inhparent = to_regclass(:table)"
        ),
        {"table": table},
    )
    pattern, months = partition_pattern(table), {}
    for name in names:
        found = pattern.fullmatch(name)
        if found and found["year"]:
            months[date(int(found["year"]), int(found["month"]), 1)] = name
    return months


def create_month(connection: Connection, table: str, column: str, month: date) -> str:
    """Add ``month``'s partition, with the rows of that month the default partition holds, in the caller's
    transaction. Attached rather than created as a partition: the parent stays open to reads and writes."""
    name, lower, upper = partition_name(table, month), month_start(month), month_start(next_month(month))
    in_month = f"{column} >= '{lower.isoformat()}' AND {column} < '{upper.isoformat()}'"
    connection.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"))
    connection.execute(
        text(
            f"WITH moved AS (DELETE FROM {default_partition(table)} WHERE {in_month} RETURNING *)"
            f" INSERT INTO {name} SELECT * FROM moved"
        )
    )
    connection.execute(
        text(
            f"ALTER TABLE {table} ATTACH PARTITION {name}"
            f" FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
        )
    )
    return name


def ensure_months(connection: Connection, table: str, column: str, first: date, last: date) -> list[str]:
    """Create the partitions missing from ``first``'s month to ``last``'s; returns their names."""
    missing = months_between(first, last) - month_partitions(connection, table).keys()
    return [create_month(connection, table, column, month) for month in sorted(missing)]


def drop_months_before(connection: Connection, table: str, cutoff: datetime) -> tuple[list[str], int]:
    """Drop the partitions of months that ended by ``cutoff``; returns their names and how many rows they held."""
    dropped, rows = [], 0
    for month, name in sorted(month_partitions(connection, table).items()):
        if month_start(next_month(month)) <= cutoff:
            rows += connection.scalar(text(f"SELECT count(*) FROM {name}")) or 0
            connection.execute(text(f"DROP TABLE {name}"))
            dropped.append(name)
    return dropped, rows
