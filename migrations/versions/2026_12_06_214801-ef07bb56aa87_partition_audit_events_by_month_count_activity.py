"""Partition audit events by month; count each workspace's activity per day

Revision ID: ef07bb56aa87
Revises: b879a8cd5330
Create Date: 2026-12-06 21:48:01.454428+00:00

On PostgreSQL, audit_events becomes a table partitioned by month of recorded_at (src/core/partitions.py): a
partition per month from the oldest event's to three months ahead, and a default one. Its rows are copied in this
revision's transaction while the old table is locked against writes only: reads go on, and the relay waits (the
events it would deliver wait in the core outbox). On SQLite the table is rebuilt.

On both, recorded_at becomes NOT NULL and part of the primary key (events delivered before chaining began get their
occurred_at), the list's filters gain an index on outcome, the action index serves prefixes too (PostgreSQL), and
the index on occurred_at alone, which only the old prune used, goes. audit_daily_counts holds each workspace's
events per UTC day and action: a trigger adds every event inserted, whichever version of the relay inserts it, and
the events already there are counted here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "ef07bb56aa87"
down_revision: str | Sequence[str] | None = "b879a8cd5330"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade(engine_name: str) -> None:
    # A database added after this revision was written has no function here: nothing to do.
    step = globals().get(f"upgrade_{engine_name}")
    if step is not None:
        step()


def downgrade(engine_name: str) -> None:
    step = globals().get(f"downgrade_{engine_name}")
    if step is not None:
        step()


def upgrade_core() -> None:
    pass


def downgrade_core() -> None:
    pass


MONTHS_AHEAD = 3
# The list's indexes, each in the list's order (newest first within a workspace).
KEPT_INDEXES = {
    "ix_audit_events_workspace_id_occurred_at": ["workspace_id", "occurred_at", "id"],
    "ix_audit_events_workspace_id_action": ["workspace_id", "action", "occurred_at", "id"],
    "ix_audit_events_workspace_id_actor_id": ["workspace_id", "actor_id", "occurred_at", "id"],
    "ix_audit_events_target_id": ["target_id", "occurred_at", "id"],
    "ix_audit_events_workspace_id_chain_seq": ["workspace_id", "chain_seq"],
    "ix_audit_events_recorded_at": ["recorded_at"],
}
OUTCOME_INDEX = {"ix_audit_events_workspace_id_outcome": ["workspace_id", "outcome", "occurred_at", "id"]}
OCCURRED_AT_INDEX = {"ix_audit_events_occurred_at": ["occurred_at"]}
# On PostgreSQL the action index also serves LIKE 'prefix%', whatever the database's collation.
PREFIX_OPS = {"ix_audit_events_workspace_id_action": {"action": "varchar_pattern_ops"}}

FILL_RECORDED_AT = "UPDATE audit_events SET recorded_at = occurred_at WHERE recorded_at IS NULL"
# From the oldest event's month to MONTHS_AHEAD ahead, worked out by the server so that make migrate-sql writes
# it too (without % signs, which that output would double).
MONTH_PARTITIONS = f"""
DO $$
DECLARE
    month timestamp := date_trunc('month', COALESCE(
        (SELECT min(COALESCE(recorded_at, occurred_at)) FROM audit_events), now()) AT TIME ZONE 'UTC');
BEGIN
    WHILE month <= date_trunc('month', now() AT TIME ZONE 'UTC') + interval '{MONTHS_AHEAD} months' LOOP
        EXECUTE 'CREATE TABLE ' || quote_ident('audit_events_p' || to_char(month, 'YYYY_MM'))
            || ' PARTITION OF audit_events_by_month FOR VALUES FROM (' || quote_literal(month AT TIME ZONE 'UTC')
            || ') TO (' || quote_literal((month + interval '1 month') AT TIME ZONE 'UTC') || ')';
        month := month + interval '1 month';
    END LOOP;
END
$$
"""
APPEND_ONLY_TRIGGERS = ("audit_events_append_only_update", "audit_events_append_only_delete")
# As revision f13a6883348e created them: SQLite drops a table's triggers when it rebuilds the table.
_UNCHANGED = " AND ".join(
    f"NEW.{column} IS OLD.{column}"
    for column in (
        "id", "occurred_at", "action", "outcome", "actor_type", "actor_id", "workspace_id", "target_type",
        "target_id", "chain_seq", "recorded_at", "personal_digest", "hash",
    )
)  # fmt: skip
APPEND_ONLY_UPDATE = f"""
CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
WHEN NOT (NEW.personal_salt IS NULL AND NEW.context = '{{}}' AND NEW.details = '{{}}' AND {_UNCHANGED})
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: only erasing personal data may change one'); END
"""
APPEND_ONLY_DELETE = """
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
WHEN NOT COALESCE(COALESCE(OLD.recorded_at, OLD.occurred_at) < (SELECT max(before) FROM audit_prunes), 0)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: only make audit-prune deletes them'); END
"""
COUNT_ON_SQLITE = """
CREATE TRIGGER audit_events_count_daily AFTER INSERT ON audit_events WHEN NEW.workspace_id IS NOT NULL
BEGIN
    INSERT INTO audit_daily_counts (workspace_id, day, action, count)
    VALUES (NEW.workspace_id, date(NEW.occurred_at), NEW.action, 1)
    ON CONFLICT (workspace_id, day, action) DO UPDATE SET count = count + 1;
END
"""
COUNT_EXISTING_ON_SQLITE = """
INSERT INTO audit_daily_counts (workspace_id, day, action, count)
SELECT workspace_id, date(occurred_at), action, count(*) FROM audit_events WHERE workspace_id IS NOT NULL
GROUP BY 1, 2, 3
"""
# Once per INSERT statement, over all the rows it inserted; in key order, so relays lock the counts in one order.
COUNT_FUNCTION = """
CREATE FUNCTION audit_events_count_daily() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_daily_counts (workspace_id, day, action, count)
    SELECT workspace_id, (occurred_at AT TIME ZONE 'UTC')::date, action, count(*)
    FROM delivered WHERE workspace_id IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (workspace_id, day, action) DO UPDATE SET count = audit_daily_counts.count + excluded.count;
    RETURN NULL;
END
$$
"""
COUNT_TRIGGER = """
CREATE TRIGGER audit_events_count_daily AFTER INSERT ON {table} REFERENCING NEW TABLE AS delivered
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_count_daily()
"""


def upgrade_audit() -> None:
    op.create_table(
        "audit_daily_counts",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "day", "action", name=op.f("pk_audit_daily_counts")),
    )
    op.create_index(
        "ix_audit_daily_counts_workspace_id_day",
        "audit_daily_counts",
        ["workspace_id", "day", "action"],
        postgresql_include=["count"],
    )
    if op.get_context().dialect.name == "sqlite":
        rebuild_on_sqlite(upgrading=True)
        op.execute(COUNT_ON_SQLITE)  # migrate-lint: allow raw-sql -- SQLite only: a trigger
        op.execute(COUNT_EXISTING_ON_SQLITE)  # migrate-lint: allow raw-sql -- SQLite only: reads every event once
    else:
        op.execute(COUNT_FUNCTION)  # migrate-lint: allow raw-sql -- a function, for the trigger below
        rebuild_on_postgresql(partitioned=True)  # its trigger counts the copied events


def downgrade_audit() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER audit_events_count_daily")
        rebuild_on_sqlite(upgrading=False)
    else:
        rebuild_on_postgresql(partitioned=False)
        op.execute("DROP FUNCTION audit_events_count_daily()")
    op.drop_table("audit_daily_counts")


def audit_events(*, upgraded: bool) -> sa.Table:
    """audit_events as this revision leaves it (``upgraded``) or finds it: what SQLite's rebuild copies from, so
    that it needs no reflection and make migrate-sql can write it."""
    indexes = KEPT_INDEXES | (OUTCOME_INDEX if upgraded else OCCURRED_AT_INDEX)
    return sa.Table(
        "audit_events",
        sa.MetaData(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actor_type", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.Uuid(), nullable=True),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("chain_seq", sa.BigInteger(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=not upgraded),
        sa.Column("personal_salt", sa.String(length=32), nullable=True),
        sa.Column("personal_digest", sa.String(length=64), nullable=True),
        sa.Column("hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint(*(["id", "recorded_at"] if upgraded else ["id"]), name="pk_audit_events"),
        *(sa.Index(name, *columns) for name, columns in indexes.items()),
    )


def rebuild_on_sqlite(*, upgrading: bool) -> None:
    """Rebuild audit_events as the revision leaves it (``upgrading``) or found it, its append-only triggers kept."""
    for trigger in APPEND_ONLY_TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger}")  # migrate-lint: allow raw-sql -- SQLite only
    op.execute(FILL_RECORDED_AT)  # migrate-lint: allow raw-sql -- SQLite only
    before, after = audit_events(upgraded=not upgrading), audit_events(upgraded=upgrading)
    key = [column.name for column in after.primary_key]
    dropped = {index.name for index in before.indexes} - {index.name for index in after.indexes}
    added = [index for index in after.indexes if index.name not in {index.name for index in before.indexes}]
    # SQLite only (see the callers), where a batch operation rebuilds the table in any case.
    with op.batch_alter_table(
        "audit_events", copy_from=before, recreate="always"
    ) as batch:  # migrate-lint: allow batch-recreate -- SQLite
        batch.alter_column("recorded_at", existing_type=sa.DateTime(timezone=True), nullable=not upgrading)
        batch.drop_constraint("pk_audit_events", type_="primary")  # migrate-lint: allow drop-constraint -- SQLite
        batch.create_primary_key("pk_audit_events", key)  # migrate-lint: allow create-primary-key -- SQLite
        for name in dropped:
            batch.drop_index(name)  # migrate-lint: allow drop-index-blocking -- SQLite
        for index in added:
            batch.create_index(
                index.name, [column.name for column in index.columns]
            )  # migrate-lint: allow create-index-blocking -- SQLite
    op.execute(APPEND_ONLY_UPDATE)  # migrate-lint: allow raw-sql -- SQLite only: a trigger, created at once
    op.execute(APPEND_ONLY_DELETE)  # migrate-lint: allow raw-sql -- SQLite only: a trigger, created at once


def rebuild_on_postgresql(*, partitioned: bool) -> None:
    """Copy audit_events into a new table, partitioned by month of recorded_at (with the trigger that counts
    activity) or not, and put it in its place. Reads go on until the swap at the end; writes wait for the copy."""
    new = "audit_events_by_month" if partitioned else "audit_events_unpartitioned"
    # The copy takes as long as the table is big; the lock below holds back the relay only.
    op.execute("SET LOCAL statement_timeout = 0")  # migrate-lint: allow raw-sql -- a setting
    op.execute("LOCK TABLE audit_events IN SHARE MODE")  # migrate-lint: allow raw-sql -- blocks writes, not reads
    like = f"CREATE TABLE {new} (LIKE audit_events INCLUDING DEFAULTS)"
    if partitioned:
        op.execute(f"{like} PARTITION BY RANGE (recorded_at)")  # migrate-lint: allow raw-sql -- a new table
        op.execute(
            f"ALTER TABLE {new} ALTER COLUMN recorded_at SET NOT NULL"
        )  # migrate-lint: allow raw-sql -- new, empty
        op.execute(
            f"ALTER TABLE {new} ADD CONSTRAINT pk_{new} PRIMARY KEY (id, recorded_at)"
        )  # migrate-lint: allow raw-sql -- new, empty
        op.execute(MONTH_PARTITIONS)  # migrate-lint: allow raw-sql -- partitions of the new table
        op.execute(
            f"CREATE TABLE audit_events_default PARTITION OF {new} DEFAULT"
        )  # migrate-lint: allow raw-sql -- new
        op.execute(COUNT_TRIGGER.format(table=new))  # migrate-lint: allow raw-sql -- a trigger of the new table
        op.execute(FILL_RECORDED_AT)  # migrate-lint: allow raw-sql -- only events from before chaining began
    else:
        op.execute(like)  # migrate-lint: allow raw-sql -- a new table
        op.execute(
            f"ALTER TABLE {new} ALTER COLUMN recorded_at DROP NOT NULL"
        )  # migrate-lint: allow raw-sql -- new, empty
        op.execute(
            f"ALTER TABLE {new} ADD CONSTRAINT pk_{new} PRIMARY KEY (id)"
        )  # migrate-lint: allow raw-sql -- new, empty
    op.execute(f"INSERT INTO {new} SELECT * FROM audit_events")  # migrate-lint: allow raw-sql -- the copy
    # Renaming an index blocks no reads or writes; the new table's index takes its name.
    for index in audit_events(upgraded=not partitioned).indexes:
        op.execute(f"ALTER INDEX {index.name} RENAME TO {index.name}_old")  # migrate-lint: allow raw-sql -- a name
    for name, columns in (KEPT_INDEXES | (OUTCOME_INDEX if partitioned else OCCURRED_AT_INDEX)).items():
        ops = PREFIX_OPS.get(name, {}) if partitioned else {}
        op.create_index(
            name, new, columns, postgresql_ops=ops
        )  # migrate-lint: allow create-index-blocking -- a new table
    op.execute("DROP TABLE audit_events")  # migrate-lint: allow raw-sql -- its rows were copied, under lock
    op.execute(f"ALTER TABLE {new} RENAME TO audit_events")  # migrate-lint: allow raw-sql -- takes its place
    op.execute(
        f"ALTER TABLE audit_events RENAME CONSTRAINT pk_{new} TO pk_audit_events"
    )  # migrate-lint: allow raw-sql -- a name
