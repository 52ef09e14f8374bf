"""Index audit events by target

Revision ID: 65f255def238
Revises: 53ca11195792
Create Date: 2026-12-06 20:29:33.983602+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "65f255def238"
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


def upgrade_audit() -> None:
    # Built while the relay keeps writing: concurrently, outside a transaction (a plain build blocks writes).
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_audit_events_target_id",
            "audit_events",
            ["target_id", "occurred_at", "id"],
            postgresql_concurrently=True,
        )


def downgrade_audit() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_audit_events_target_id", "audit_events", postgresql_concurrently=True)
