"""The Idempotency-Key header of the creating POSTs, and their one way to answer 201 (src/services/idempotency.py
keeps the answers)."""

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Session

from src.services import idempotency

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A key of your own (a random UUID) that makes retries of this request safe: the same key and"
        " body within IDEMPOTENCY_KEY_HOURS answer the first response again (with Idempotent-Replayed: true),"
        " the same key with another body 422",
    ),
]


def created(view: BaseModel, location: str) -> JSONResponse:
    """201 with the new resource's public view, and its path in Location."""
    return JSONResponse(view.model_dump(mode="json"), status_code=201, headers={"Location": location})


def created_once(
    session: Session,
    request: Request,
    key: str | None,
    *,
    owner_id: uuid.UUID,
    request_body: dict[str, Any],
    create: Callable[[], tuple[BaseModel, str]],
) -> JSONResponse:
    """``created`` with what ``create`` makes (its public view and path). Under an Idempotency-Key, a request
    already answered gets that answer again and creates nothing; ``request_body`` is what tells requests apart."""
    if key is None:
        return created(*create())
    content = json.dumps([request.method, request.url.path, request_body], sort_keys=True, default=str)
    fingerprint = hashlib.sha256(content.encode()).hexdigest()
    earlier = idempotency.claim(session, owner_id=owner_id, key=key, fingerprint=fingerprint)
    if earlier is not None:
        headers = {"Idempotent-Replayed": "true"} | ({"Location": earlier.location} if earlier.location else {})
        return JSONResponse(earlier.body, status_code=earlier.status, headers=headers)
    view, location = create()
    idempotency.remember(
        session, owner_id=owner_id, key=key, answer=idempotency.Answer(201, view.model_dump(mode="json"), location)
    )
    return created(view, location)
