"""Index audit events for the lists' filters: action, actor, and the user an event concerns

Revision ID: 53ca11195792
Revises: 4a57b1fb7aa8
Create Date: 2026-12-06 20:21:19.661981+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "53ca11195792"
down_revision: str | Sequence[str] | None = "4a57b1fb7aa8"
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
            "ix_audit_events_workspace_id_action",
            "audit_events",
            ["workspace_id", "action", "occurred_at", "id"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_audit_events_workspace_id_actor_id",
            "audit_events",
            ["workspace_id", "actor_id", "occurred_at", "id"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_audit_events_target_id",
            "audit_events",
            ["target_id", "occurred_at", "id"],
            postgresql_concurrently=True,
        )


def downgrade_audit() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_audit_events_target_id", "audit_events", postgresql_concurrently=True)
        op.drop_index("ix_audit_events_workspace_id_actor_id", "audit_events", postgresql_concurrently=True)
        op.drop_index("ix_audit_events_workspace_id_action", "audit_events", postgresql_concurrently=True)
