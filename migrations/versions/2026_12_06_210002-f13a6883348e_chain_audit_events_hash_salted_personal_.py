"""Chain audit events: hash, salted personal digest, chain heads and prune records; append-only on SQLite

Revision ID: f13a6883348e
Revises: 53ca11195792
Create Date: 2026-12-06 21:00:02.137811+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "f13a6883348e"
down_revision: str | Sequence[str] | None = "53ca11195792"
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


# The one change allowed: erasing an event's personal part (context, details, salt); all else stays as it was.
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
# Deleting is the prune's alone: it first records its cutoff in audit_prunes.
APPEND_ONLY_DELETE = """
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
WHEN NOT COALESCE(COALESCE(OLD.recorded_at, OLD.occurred_at) < (SELECT max(before) FROM audit_prunes), 0)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: only make audit-prune deletes them'); END
"""


def upgrade_audit() -> None:
    op.create_table(
        "audit_chain_heads",
        sa.Column("chain", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_chain_heads")),
    )
    op.create_table(
        "audit_prunes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.BigInteger(), nullable=False),
        sa.Column("anchors", sa.JSON(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_prunes")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("personal_salt", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("personal_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    if op.get_context().dialect.name == "sqlite":
        # PostgreSQL enforces append-only with the service's role (docs/audit.md); SQLite has no roles.
        op.execute(APPEND_ONLY_UPDATE)  # migrate-lint: allow raw-sql -- SQLite only: a trigger, created at once
        op.execute(APPEND_ONLY_DELETE)  # migrate-lint: allow raw-sql -- SQLite only: a trigger, created at once


def downgrade_audit() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER audit_events_append_only_delete")  # migrate-lint: allow raw-sql -- SQLite only
        op.execute("DROP TRIGGER audit_events_append_only_update")  # migrate-lint: allow raw-sql -- SQLite only
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("hash")
        batch_op.drop_column("personal_digest")
        batch_op.drop_column("personal_salt")
        batch_op.drop_column("recorded_at")
        batch_op.drop_column("chain_seq")

    op.drop_table("audit_prunes")
    op.drop_table("audit_chain_heads")
