"""Idempotency keys: a creating request retried under the same key gets the first answer again, not a second creation.

A request takes its key (inserts its row) before it creates anything, and stores its answer in the same transaction
as the creation, so an answer exists exactly when the creation does. Two requests with the same key at once: on
PostgreSQL the second waits at its insert of the key until the first commits, then fails (409
``idempotency_key_in_use``) before it has created anything, and its retry gets the first answer; on SQLite writers
take turns, so the second finds the first's answer.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from src.api.v1.models.idempotency_key import IdempotencyKey
from src.core.config import get_settings
from src.core.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from src.core.timestamps import utcnow


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    location: str | None


def claim(session: Session, *, owner_id: uuid.UUID, key: str, fingerprint: str) -> Answer | None:
    """The answer the first request with this key got, within the window; else None, the key now this request's
    until its transaction ends. ``IdempotencyKeyReused`` when the first request was another one (another operation
    or body), ``IdempotencyKeyInUse`` when a request with this key committed meanwhile."""
    now = utcnow()
    found = session.get(IdempotencyKey, (owner_id, key))
    if found is not None and found.created_at >= now - window():
        if found.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was sent with another request; use a new key for a new one"
            )
        return Answer(found.status, found.response, found.location)
    # Every expired key goes (this one's among them), found by its time: the table holds one window of keys.
    session.exec(delete(IdempotencyKey).where(col(IdempotencyKey.created_at) < now - window()))
    session.add(
        IdempotencyKey(owner_id=owner_id, key=key, fingerprint=fingerprint, status=0, response={}, created_at=now)
    )
    try:
        session.flush()
    except IntegrityError:
        raise IdempotencyKeyInUse(
            "another request with this Idempotency-Key was made at the same time; retry to get its answer"
        ) from None
    return None


def remember(session: Session, *, owner_id: uuid.UUID, key: str, answer: Answer) -> None:
    """Store ``answer`` under the key this request claimed, in the creation's transaction."""
    claimed = session.get_one(IdempotencyKey, (owner_id, key))
    claimed.status, claimed.response, claimed.location = answer.status, answer.body, answer.location
    session.flush()


def window() -> timedelta:
    return timedelta(hours=get_settings().idempotency_key_hours)
