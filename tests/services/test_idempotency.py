"""Two requests with one Idempotency-Key at the same time: the second waits for the first and creates nothing."""

import threading
import uuid

from sqlmodel import Session

from src.core.engines import get_engine
from src.core.errors import IdempotencyKeyInUse
from src.services.idempotency import Answer, claim, remember


def test_the_second_of_two_requests_with_one_key_at_once_is_refused_before_it_creates(migrated_databases) -> None:
    owner, answer = uuid.uuid4(), Answer(201, {"id": "first"}, "/api/v1/workspaces/first")
    outcome: list[str] = []

    def second_request() -> None:
        with Session(get_engine("core")) as session:
            try:
                outcome.append("replayed" if claim(session, owner_id=owner, key="k", fingerprint="f") else "created")
            except IdempotencyKeyInUse:
                outcome.append("in use")

    with Session(get_engine("core")) as first:
        assert claim(first, owner_id=owner, key="k", fingerprint="f") is None
        second = threading.Thread(target=second_request)
        second.start()
        second.join(0.5)
        assert second.is_alive()  # waiting for the first request's transaction, before creating anything
        remember(first, owner_id=owner, key="k", answer=answer)
        first.commit()
    second.join(10)

    with Session(get_engine("core")) as session:
        retried = claim(session, owner_id=owner, key="k", fingerprint="f")
    # PostgreSQL: the second insert of the key waited and failed. SQLite: the second waited for the write lock and
    # found the first's answer.
    assert outcome in (["in use"], ["replayed"])
    assert retried == answer
