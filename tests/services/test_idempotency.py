"""Two requests with one Idempotency-Key at the same time: one answer is stored, the other request fails whole."""

import threading
import uuid

from sqlmodel import Session

from src.core.engines import get_engine
from src.core.errors import IdempotencyKeyInUse
from src.services.idempotency import Answer, earlier_answer, remember


def test_the_second_of_two_requests_with_one_key_at_once_is_refused(migrated_databases) -> None:
    owner, answer = uuid.uuid4(), Answer(201, {"id": "first"}, "/api/v1/workspaces/first")
    outcome: list[str] = []

    def second_request() -> None:
        with Session(get_engine("core")) as session:
            try:
                remember(session, owner_id=owner, key="k", fingerprint="f", answer=Answer(201, {"id": "second"}, None))
                session.commit()
                outcome.append("stored")
            except IdempotencyKeyInUse:
                outcome.append("in use")

    with Session(get_engine("core")) as first:
        remember(first, owner_id=owner, key="k", fingerprint="f", answer=answer)
        second = threading.Thread(target=second_request)
        second.start()
        second.join(0.5)
        assert second.is_alive()  # waiting for the first request's transaction
        first.commit()
    second.join(10)

    assert outcome == ["in use"]
    with Session(get_engine("core")) as session:
        assert earlier_answer(session, owner_id=owner, key="k", fingerprint="f") == answer
