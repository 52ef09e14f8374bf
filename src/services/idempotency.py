"""Idempotency keys: a creating request retried under the same key gets the first answer again, not a second creation.

The answer is stored in the transaction of the creation it describes, so one exists exactly when the other does.
Two requests with the same key at once: on PostgreSQL the second waits at its insert of the key until the first
commits, then fails (409 ``idempotency_key_in_use``, its creation rolled back) and its retry gets the first answer;
on SQLite writers take turns, so the second finds the first's answer.
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

ANONYMOUS = uuid.UUID(int=0)  # the owner of keys sent without a token


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    location: str | None


def earlier_answer(session: Session, *, owner_id: uuid.UUID, key: str, fingerprint: str) -> Answer | None:
    """The answer given to the first request with this key, within the window; ``IdempotencyKeyReused`` when that
    request was another one (another operation or body)."""
    found = session.get(IdempotencyKey, (owner_id, key))
    if found is None or found.created_at < utcnow() - window():
        return None
    if found.fingerprint != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was sent with another request; use a new key for a new one")
    return Answer(found.status, found.response, found.location)


def remember(session: Session, *, owner_id: uuid.UUID, key: str, fingerprint: str, answer: Answer) -> None:
    """Store ``answer`` under the key, in the creation's transaction; the owner's expired keys go."""
    now = utcnow()
    expired = (col(IdempotencyKey.owner_id) == owner_id) & (col(IdempotencyKey.created_at) < now - window())
    session.exec(delete(IdempotencyKey).where(expired))
    session.add(
        IdempotencyKey(
            owner_id=owner_id,
            key=key,
            fingerprint=fingerprint,
            status=answer.status,
            response=answer.body,
            location=answer.location,
            created_at=now,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        raise IdempotencyKeyInUse(
            "another request with this Idempotency-Key was made at the same time; retry to get its answer"
        ) from None


def window() -> timedelta:
    return timedelta(hours=get_settings().idempotency_key_hours)
