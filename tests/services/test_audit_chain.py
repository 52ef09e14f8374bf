"""The audit hash chains: what the relay links, and what ``verify`` finds when someone with write access to the
audit database alters, removes, inserts or reorders events, on both dialects."""

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session

from src.api.v1.models.outbox_event import OutboxEvent
from src.core.config import get_settings
from src.core.engines import get_engine
from src.core.timestamps import utcnow
from src.services import audit_chain
from src.services.audit_chain import AUDIT_EVENTS, HEADS, PRUNES, Verification, verify
from src.services.audit_erasure import erase_in_audit, erase_in_outbox
from src.services.audit_relay import relay_pending
from src.services.audit_retention import prune_audit_events
from tests.factories import record

WORKSPACE = uuid.UUID("00000000-0000-4000-8000-000000000001")


def verified(workspace_id: uuid.UUID | None = None, key: str | None = None) -> Verification:
    with get_engine("audit").connect() as audit:
        return verify(audit, key=key or get_settings().audit_signing_key, workspace_id=workspace_id)


def problems(verification: Verification) -> list[str]:
    return verification.problems + [f"{walk.chain}: {walk.problem}" for walk in verification.chains if walk.problem]


@pytest.fixture
def attacker(migrated_databases) -> Iterator[Connection]:
    """A connection to the audit database with the owner's rights: on SQLite, the append-only triggers dropped
    first, as anyone holding the file can."""
    with get_engine("audit").connect() as audit:
        if audit.dialect.name == "sqlite":
            audit.execute(text("DROP TRIGGER audit_events_append_only_update"))
            audit.execute(text("DROP TRIGGER audit_events_append_only_delete"))
            audit.commit()
        yield audit


def events_of(audit: Connection, workspace_id: uuid.UUID | None = WORKSPACE) -> list[dict[str, Any]]:
    query = select(AUDIT_EVENTS).where(AUDIT_EVENTS.c.workspace_id.is_not_distinct_from(workspace_id))
    return [dict(row) for row in audit.execute(query.order_by(AUDIT_EVENTS.c.chain_seq)).mappings()]


def at(seq: int) -> ColumnElement[bool]:
    return (AUDIT_EVENTS.c.workspace_id == WORKSPACE) & (AUDIT_EVENTS.c.chain_seq == seq)


@pytest.fixture
def chained(migrated_databases) -> list[uuid.UUID]:
    """Five events of one workspace and three of none, delivered in two runs of the relay."""
    ids = record(3, workspace_id=WORKSPACE)
    record(2)
    relay_pending(batch_size=2)
    ids += record(2, workspace_id=WORKSPACE)
    record(1)
    relay_pending(batch_size=10)
    return ids


def test_the_relay_links_each_chain_in_delivery_order_and_signs_its_head(chained) -> None:
    verification = verified()

    assert verification.ok, problems(verification)
    by_chain = {walk.chain: walk for walk in verification.chains}
    assert (by_chain[str(WORKSPACE)].events, by_chain[audit_chain.SERVICE_CHAIN].events) == (5, 3)
    with get_engine("audit").connect() as audit:
        events = events_of(audit)
        heads = {row.chain: row for row in audit.execute(select(HEADS))}
    assert [event["id"] for event in events] == chained
    assert [event["chain_seq"] for event in events] == [1, 2, 3, 4, 5]
    assert all(len(event["personal_salt"]) == 32 and len(event["hash"]) == 64 for event in events)
    head = heads[str(WORKSPACE)]
    assert (head.seq, head.hash) == (5, events[-1]["hash"])
    assert head.signature == audit_chain.head_signature(get_settings().audit_signing_key, str(WORKSPACE), 5, head.hash)
    assert verified(WORKSPACE).chains == [by_chain[str(WORKSPACE)]]


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (update(AUDIT_EVENTS).where(at(2)).values(action="workspace.deleted"), "(#2) altered, or moved"),
        (update(AUDIT_EVENTS).where(at(3)).values(context={"ip": "10.9.9.9"}), "(#3) altered: its personal data"),
        (update(AUDIT_EVENTS).where(at(4)).values(details={}, context={}), "(#4) altered: its personal data"),
        (delete(AUDIT_EVENTS).where(at(2)), "event #2 removed, before event"),
        (delete(AUDIT_EVENTS).where(at(5)), "event #5 removed, the newest of the chain"),
        (delete(AUDIT_EVENTS).where(at(4) | at(5)), "events #4 to #5 removed, the newest"),
        (update(AUDIT_EVENTS).where(at(1)).values(chain_seq=3), "event #1 removed, before event"),
        (delete(HEADS).where(HEADS.c.chain == str(WORKSPACE)), "the chain's head is missing"),
        (update(HEADS).where(HEADS.c.chain == str(WORKSPACE)).values(seq=4), "the head's signature does not match"),
    ],
    ids=["action", "context", "metadata", "middle", "newest", "two newest", "moved", "head gone", "head"],
)
def test_verify_finds_the_first_event_altered_removed_or_inserted(chained, attacker, change, found) -> None:
    attacker.execute(change)
    attacker.commit()

    verification = verified()

    assert not verification.ok
    [problem] = problems(verification)
    assert problem.startswith(f"{WORKSPACE}: ") and found in problem
    assert verified(uuid.uuid4()).ok  # another workspace's chain is not concerned


def test_verify_finds_events_swapped_in_place(chained, attacker) -> None:
    second, third = events_of(attacker)[1:3]
    attacker.execute(update(AUDIT_EVENTS).where(at(2)).values(chain_seq=-1))
    attacker.execute(update(AUDIT_EVENTS).where(at(3)).values(chain_seq=2))
    attacker.execute(update(AUDIT_EVENTS).where(at(-1)).values(chain_seq=3))
    attacker.commit()

    [problem] = problems(verified())

    assert f"event {third['id']} (#2) altered, or moved" in problem and second["id"] != third["id"]


def test_verify_finds_an_inserted_event_even_with_its_hash_recomputed(chained, attacker) -> None:
    """A forger who knows the hashing (it is in this file) but not the key rewrites the chain from #3 on: every
    hash fits again, but the head's signature does not."""
    events = events_of(attacker)
    forged = dict(events[2], id=uuid.uuid4(), action="workspace.member_added", chain_seq=3)
    chain = [*events[:2], forged, *[dict(event, chain_seq=event["chain_seq"] + 1) for event in events[2:]]]
    previous = events[1]["hash"]
    for event in chain[2:]:
        event["hash"] = previous = audit_chain.event_hash(event, previous)
    attacker.execute(
        delete(AUDIT_EVENTS).where(AUDIT_EVENTS.c.chain_seq >= 3, AUDIT_EVENTS.c.workspace_id == WORKSPACE)
    )
    attacker.execute(insert(AUDIT_EVENTS), chain[2:])
    attacker.execute(update(HEADS).where(HEADS.c.chain == str(WORKSPACE)).values(seq=6, hash=previous))
    attacker.commit()

    [problem] = problems(verified())

    assert "the head's signature does not match" in problem
    assert verified(key=get_settings().audit_signing_key + "x").ok is False  # the same trail, another key


@pytest.mark.parametrize(("place", "found"), [(3, "(#3) does not belong: inserted"), (6, "after the head (#5)")])
def test_verify_finds_a_copy_inserted_into_or_after_the_chain(chained, attacker, place, found) -> None:
    third = events_of(attacker)[2]
    copy = dict(third, id=uuid.UUID(int=third["id"].int + 1), chain_seq=place)  # listed after the original
    copy["hash"] = audit_chain.event_hash(copy, events_of(attacker)[place - 2]["hash"])
    attacker.execute(insert(AUDIT_EVENTS), [copy])
    attacker.commit()

    [problem] = problems(verified())

    assert found in problem


def test_erasing_a_persons_data_leaves_every_chain_verifiable(chained) -> None:
    with get_engine("audit").connect() as audit:
        person = events_of(audit)[1]["actor_id"]
    # Not yet delivered: erased in the outbox, and linked erased.
    pending = OutboxEvent(
        action="user.logged_in", outcome="success", actor_type="user", actor_id=person, workspace_id=WORKSPACE
    )
    pending.context = {"ip": "10.1.1.1"}
    with Session(get_engine("core")) as session:
        session.add(pending)
        session.commit()
        pending_id = pending.id
    with get_engine("core").begin() as core, get_engine("audit").begin() as audit:
        erase_in_outbox(core, person)
        erased = erase_in_audit(audit, person)
    relay_pending(batch_size=10)

    assert erased == 1
    verification = verified()
    assert verification.ok, problems(verification)
    assert {walk.chain: walk.erased for walk in verification.chains}[str(WORKSPACE)] == 1
    with get_engine("audit").connect() as audit:
        events = {event["id"]: event for event in events_of(audit)}
    assert (events[chained[1]]["context"], events[chained[1]]["details"]) == ({}, {})
    assert events[chained[1]]["personal_salt"] is None
    assert events[chained[0]]["context"] == {"ip": "127.0.0.1"}  # someone else's
    assert (events[pending_id]["chain_seq"], events[pending_id]["context"]) == (6, {})
    assert {walk.chain: walk.erased for walk in verified().chains}[str(WORKSPACE)] == 1  # a digest of nothing


def test_a_prune_keeps_the_rest_verifiable_from_its_signed_record(migrated_databases, monkeypatch) -> None:
    recorded_long_ago = utcnow() - timedelta(days=40)
    with monkeypatch.context() as clock:
        clock.setattr(audit_chain, "utcnow", lambda: recorded_long_ago)
        record(3, workspace_id=WORKSPACE, start_minutes_ago=60 * 24 * 40)
        record(2, start_minutes_ago=60 * 24 * 40)
        relay_pending(batch_size=10)
    kept = record(2, workspace_id=WORKSPACE)
    relay_pending(batch_size=10)

    assert (
        prune_audit_events(older_than_days=30, signing_key=get_settings().audit_signing_key, batch_size=2).deleted == 5
    )

    relay_pending(batch_size=10)  # the prune's own event
    verification = verified()
    assert verification.ok, problems(verification)
    walks = {walk.chain: walk for walk in verification.chains}
    assert (walks[str(WORKSPACE)].events, walks[str(WORKSPACE)].seq) == (2, 5)
    assert (walks[audit_chain.SERVICE_CHAIN].events, walks[audit_chain.SERVICE_CHAIN].seq) == (1, 3)
    with get_engine("audit").connect() as audit:
        assert [event["id"] for event in events_of(audit)] == kept
        [prune] = audit.execute(select(PRUNES)).mappings()
    assert prune["deleted"] == 5
    assert prune["anchors"][str(WORKSPACE)][0] == 3 and prune["anchors"][audit_chain.SERVICE_CHAIN][0] == 2


def test_an_altered_prune_record_fails_verification(migrated_databases, attacker) -> None:
    record(2)
    relay_pending(batch_size=10)
    prune_audit_events(older_than_days=0, signing_key=get_settings().audit_signing_key)
    attacker.execute(update(PRUNES).values(anchors={audit_chain.SERVICE_CHAIN: [1, audit_chain.GENESIS]}))
    attacker.commit()

    verification = verified()

    assert verification.problems == ["the record of prune #1 was altered: its signature does not match"]


def test_events_delivered_before_chaining_began_are_counted_not_verified(migrated_databases) -> None:
    record(1)
    relay_pending(batch_size=10)
    with get_engine("audit").begin() as audit:
        now = utcnow()
        old = {
            "id": uuid.uuid4(),
            "occurred_at": now,
            "recorded_at": now,
            "action": "user.signed_up",
            "outcome": "success",
        }
        audit.execute(insert(AUDIT_EVENTS), [old | {"actor_type": "user", "context": {}, "details": {}}])

    verification = verified()

    assert verification.ok and verification.unchained == 1


def test_sqlite_refuses_changing_or_deleting_an_event_outside_erasure_and_the_prune(migrated_databases) -> None:
    if get_engine("audit").dialect.name != "sqlite":
        pytest.skip("PostgreSQL enforces append-only with roles: tests/services/test_audit_roles.py")
    record(1)
    relay_pending(batch_size=10)

    with get_engine("audit").begin() as audit, pytest.raises(DatabaseError, match="append-only: only erasing"):
        audit.execute(update(AUDIT_EVENTS).values(action="user.deleted"))
    with get_engine("audit").begin() as audit, pytest.raises(DatabaseError, match="append-only: only erasing"):
        audit.execute(update(AUDIT_EVENTS).values(context={}, details={"ip": "forged"}, personal_salt=None))
    with get_engine("audit").begin() as audit, pytest.raises(DatabaseError, match="only make audit-prune"):
        audit.execute(delete(AUDIT_EVENTS))
    with get_engine("audit").connect() as audit:
        assert audit.scalar(select(func.count()).select_from(AUDIT_EVENTS)) == 1
