"""index idempotency keys by time

Revision ID: 8760cd26e339
Revises: e47f49854bf0
Create Date: 2026-12-07 02:26:45.097326+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "8760cd26e339"
down_revision: str | Sequence[str] | None = "e47f49854bf0"
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
    # Built while requests keep writing keys: concurrently, outside a transaction (a plain build blocks writes).
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], postgresql_concurrently=True
        )


def downgrade_core() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_idempotency_keys_created_at", "idempotency_keys", postgresql_concurrently=True)


def upgrade_audit() -> None:
    pass


def downgrade_audit() -> None:
    pass
