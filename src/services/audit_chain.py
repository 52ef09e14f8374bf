"""Tamper evidence for the audit trail: per-workspace hash chains with signed heads.

The relay links every event it delivers into its chain: the workspace's, or the service's for events of no
workspace. An event's ``hash`` covers its place in the chain (``chain_seq``), what it says (action, outcome, actor,
workspace, target, time) and the previous event's hash. Its personal data (``context``: address, user agent;
``details``: logins, names) enters only through ``personal_digest``, a salted digest: erasing the data and the salt
leaves the chain verifiable, and what was erased cannot be guessed back from the digest.

Each chain's head (its last place and hash) is signed with AUDIT_SIGNING_KEY, and so is each prune's record of
where each chain now begins. Someone who can write to the database but does not hold the key can alter, remove,
insert or reorder events, but not without ``verify`` finding the first event that no longer fits.
"""

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select

from src.api.v1.models.audit_chain import AuditChainHead, AuditPrune
from src.api.v1.models.audit_event import AuditEvent
from src.core.databases import upsert_insert
from src.core.timestamps import utcnow

AUDIT_EVENTS: Table = AuditEvent.metadata.tables[AuditEvent.__tablename__]
HEADS: Table = AuditChainHead.metadata.tables[AuditChainHead.__tablename__]
PRUNES: Table = AuditPrune.metadata.tables[AuditPrune.__tablename__]

SERVICE_CHAIN = "service"
GENESIS = "0" * 64
ERASED: dict[str, Any] = {}


def chain_of(workspace_id: uuid.UUID | None) -> str:
    return str(workspace_id) if workspace_id else SERVICE_CHAIN


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def optional(value: object) -> str | None:
    return None if value is None else str(value)


def personal_digest(salt: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + canonical([event["context"], event["details"]])).hexdigest()


def event_hash(event: Mapping[str, Any], previous: str) -> str:
    content = [
        previous,
        event["chain_seq"],
        str(event["id"]),
        timestamp(event["occurred_at"]),
        timestamp(event["recorded_at"]),
        event["action"],
        event["outcome"],
        event["actor_type"],
        optional(event["actor_id"]),
        optional(event["workspace_id"]),
        event["target_type"],
        optional(event["target_id"]),
        event["personal_digest"],
    ]
    return hashlib.sha256(canonical(content)).hexdigest()


def sign(key: str, content: object) -> str:
    return hmac.new(key.encode(), canonical(content), hashlib.sha256).hexdigest()


def head_signature(key: str, chain: str, seq: int, hash_: str) -> str:
    return sign(key, ["head", chain, seq, hash_])


def prune_signature(key: str, before: datetime, anchors: Mapping[str, Any]) -> str:
    return sign(key, ["prune", timestamp(before), anchors])


def upsert_heads(connection: Connection) -> Any:
    insert = upsert_insert(connection, HEADS)
    moved = {name: insert.excluded[name] for name in ("seq", "hash", "recorded_at", "signature")}
    return insert.on_conflict_do_update(index_elements=["chain"], set_=moved)


def link_events(audit: Connection, events: list[dict[str, Any]], *, key: str) -> list[dict[str, Any]]:
    """Chain ``events`` (in delivery order) in the caller's audit transaction: those not yet delivered get their
    place, salt, digests and delivery time, each chain's head moves on and is signed. Returns the events to insert.

    The heads are locked in one order (PostgreSQL), so relays extending the same chain take turns.
    """
    ids = [event["id"] for event in events]
    delivered = set(audit.scalars(select(AUDIT_EVENTS.c.id).where(AUDIT_EVENTS.c.id.in_(ids))))
    new = [event for event in events if event["id"] not in delivered]
    if not new:
        return []
    chains = sorted({chain_of(event["workspace_id"]) for event in new})
    now = utcnow()
    genesis = [{"chain": chain, "seq": 0, "hash": GENESIS, "recorded_at": now, "signature": ""} for chain in chains]
    audit.execute(upsert_insert(audit, HEADS).on_conflict_do_nothing().returning(HEADS.c.chain), genesis)
    locked = select(HEADS).where(HEADS.c.chain.in_(chains)).order_by(HEADS.c.chain)
    if audit.dialect.name == "postgresql":
        locked = locked.with_for_update()
    heads = {row.chain: dict(row._mapping) for row in audit.execute(locked)}
    for event in new:
        head = heads[chain_of(event["workspace_id"])]
        salt = secrets.token_hex(16)
        event |= {
            "chain_seq": head["seq"] + 1,
            # Never before the previous event's, even if the clock stepped back.
            "recorded_at": max(now, head["recorded_at"]),
            "personal_salt": salt,
            "personal_digest": personal_digest(salt, event),
        }
        event["hash"] = event_hash(event, head["hash"])
        head.update(seq=event["chain_seq"], hash=event["hash"], recorded_at=event["recorded_at"])
    moved = [
        head | {"signature": head_signature(key, chain, head["seq"], head["hash"])} for chain, head in heads.items()
    ]
    # One multi-row statement (RETURNING makes SQLAlchemy batch it), not an UPDATE per chain.
    audit.execute(upsert_heads(audit).returning(HEADS.c.chain), moved)
    return new


@dataclass
class ChainWalk:
    """One chain, walked in order from where its last prune left it to its signed head."""

    chain: str
    seq: int = 0
    hash: str = GENESIS
    events: int = 0
    erased: int = 0
    problem: str | None = None

    def check(self, event: Mapping[Any, Any]) -> None:
        if self.problem:
            return
        seq, described = event["chain_seq"], f"event {event['id']} (#{event['chain_seq']})"
        if seq <= self.seq:
            self.problem = f"{described} does not belong: inserted, duplicated, or left by an unfinished prune"
        elif seq > self.seq + 1:
            self.problem = f"{self.missing(seq - 1)} removed, before {described}"
        elif not self.personal_data_fits(event):
            self.problem = f"{described} altered: its personal data (context or metadata)"
        elif event_hash(event, self.hash) != event["hash"]:
            self.problem = f"{described} altered, or moved from elsewhere in the chain"
        else:
            self.seq, self.hash, self.events = seq, event["hash"], self.events + 1

    def personal_data_fits(self, event: Mapping[Any, Any]) -> bool:
        if event["personal_salt"] is None:  # erased: the data must be gone, and the digest is taken on trust
            self.erased += 1
            return bool(event["context"] == ERASED and event["details"] == ERASED)
        return bool(personal_digest(event["personal_salt"], event) == event["personal_digest"])

    def missing(self, last: int) -> str:
        return f"event #{last}" if last == self.seq + 1 else f"events #{self.seq + 1} to #{last}"

    def end(self, head: Mapping[Any, Any] | None, key: str) -> None:
        if self.problem:
            return
        if head is None:
            self.problem = "the chain's head is missing"
        elif head["signature"] != head_signature(key, self.chain, head["seq"], head["hash"]):
            self.problem = "the head's signature does not match: the head was altered, or AUDIT_SIGNING_KEY differs"
        elif head["seq"] > self.seq:
            self.problem = f"{self.missing(head['seq'])} removed, the newest of the chain"
        elif head["seq"] < self.seq:
            self.problem = f"events after the head (#{head['seq']}) were inserted"
        elif (head["seq"], head["hash"]) != (self.seq, self.hash):
            self.problem = f"the head (#{head['seq']}) does not match the last event: the head was altered"


@dataclass
class Verification:
    chains: list[ChainWalk] = field(default_factory=list)
    unchained: int = 0  # delivered before chaining began: counted, not verifiable
    problems: list[str] = field(default_factory=list)  # about the records of prunes

    @property
    def ok(self) -> bool:
        return not self.problems and not any(walk.problem for walk in self.chains)


def prune_anchors(audit: Connection, key: str, verification: Verification) -> dict[str, tuple[int, str]]:
    """Where each chain begins after every prune so far, from the prunes' signed records."""
    anchors: dict[str, tuple[int, str]] = {}
    for prune in audit.execute(select(PRUNES).order_by(PRUNES.c.id)).mappings():
        if prune["signature"] != prune_signature(key, prune["before"], prune["anchors"]):
            verification.problems.append(
                f"the record of prune #{prune['id']} was altered: its signature does not match"
            )
            continue
        anchors |= {chain: (seq, hash_) for chain, (seq, hash_) in prune["anchors"].items()}
    return anchors


def verify(audit: Connection, *, key: str, workspace_id: uuid.UUID | None = None) -> Verification:
    """Walk every chain (or one workspace's) in the order the relay linked it, and report each chain's first
    event that was altered, removed or inserted. Reads each event once, a batch at a time."""
    verification = Verification()
    anchors = prune_anchors(audit, key, verification)
    heads_query = select(HEADS)
    events_query = select(AUDIT_EVENTS).where(AUDIT_EVENTS.c.chain_seq.is_not(None))
    unchained_query = select(func.count()).where(AUDIT_EVENTS.c.chain_seq.is_(None))
    if workspace_id is not None:
        heads_query = heads_query.where(HEADS.c.chain == chain_of(workspace_id))
        events_query = events_query.where(AUDIT_EVENTS.c.workspace_id == workspace_id)
        unchained_query = unchained_query.where(AUDIT_EVENTS.c.workspace_id == workspace_id)
    heads = {row["chain"]: row for row in audit.execute(heads_query).mappings()}
    walks: dict[str, ChainWalk] = {}
    events = audit.execution_options(yield_per=2000).execute(
        events_query.order_by(AUDIT_EVENTS.c.workspace_id, AUDIT_EVENTS.c.chain_seq, AUDIT_EVENTS.c.id)
    )
    for event in events.mappings():
        chain = chain_of(event["workspace_id"])
        if chain not in walks:
            seq, hash_ = anchors.get(chain, (0, GENESIS))
            walks[chain] = ChainWalk(chain, seq=seq, hash=hash_)
        walks[chain].check(event)
    for chain in heads.keys() - walks.keys():
        seq, hash_ = anchors.get(chain, (0, GENESIS))
        walks[chain] = ChainWalk(chain, seq=seq, hash=hash_)
    for chain, walk in walks.items():
        walk.end(heads.get(chain), key)
    verification.chains = sorted(walks.values(), key=lambda walk: walk.chain)
    verification.unchained = audit.scalar(unchained_query) or 0
    return verification
