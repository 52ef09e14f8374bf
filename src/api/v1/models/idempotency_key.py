import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Column, Field

from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime


class IdempotencyKey(CoreModel, table=True):
    """The answer a creating request gave under its Idempotency-Key, for its retries (src/services/idempotency.py)."""

    __tablename__ = "idempotency_keys"

    # The caller's user id; the nil UUID for a caller without a token (a sign-up).
    owner_id: uuid.UUID = Field(primary_key=True)
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)  # of the method, the path and the body
    status: int
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    location: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)  # expired keys are deleted by it
