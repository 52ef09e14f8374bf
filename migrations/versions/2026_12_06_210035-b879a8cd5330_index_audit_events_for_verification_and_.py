"""Index audit events for verification and the prune

Revision ID: b879a8cd5330
Revises: f13a6883348e
Create Date: 2026-12-06 21:00:35.428136+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b879a8cd5330"
down_revision: str | Sequence[str] | None = "f13a6883348e"
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
        op.create_index("ix_audit_events_recorded_at", "audit_events", ["recorded_at"], postgresql_concurrently=True)
        op.create_index(
            "ix_audit_events_workspace_id_chain_seq",
            "audit_events",
            ["workspace_id", "chain_seq"],
            postgresql_concurrently=True,
        )


def downgrade_audit() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_audit_events_workspace_id_chain_seq", "audit_events", postgresql_concurrently=True)
        op.drop_index("ix_audit_events_recorded_at", "audit_events", postgresql_concurrently=True)
