"""Taking audit events out again: the retention prune, and erasing a person's data from their events.

Both keep the hash chains verifiable (src/services/audit_chain.py). A prune deletes the events recorded before a
time; as recording times never decrease along a chain, that removes the start of each chain, and the prune's
signed record says where each one now begins. On PostgreSQL whole months go by dropping their partitions
(src/services/audit_partitions.py), and only the rest of the cutoff's month is deleted row by row. Erasure empties
an event's personal part (``context``, ``details``) and its salt, which the chain covers only through a digest.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlmodel import Session

from src.core.engines import get_unpooled_engine
from src.core.timestamps import utcnow
from src.services.audit_chain import AUDIT_EVENTS, PRUNES, chain_of, prune_signature
from src.services.audit_log import record_event
from src.services.audit_partitions import drop_months_recorded_before, prepare_months_ahead


@dataclass(frozen=True)
class Pruned:
    deleted: int
    dropped_partitions: list[str]
    created_partitions: list[str]


def last_pruned(audit: Connection, cutoff: datetime) -> dict[str, list[int | str]]:
    """Per chain, the place and hash of the last event the prune removes."""
    last = (
        select(AUDIT_EVENTS.c.workspace_id, func.max(AUDIT_EVENTS.c.chain_seq).label("seq"))
        .where(AUDIT_EVENTS.c.recorded_at < cutoff)
        .group_by(AUDIT_EVENTS.c.workspace_id)
        .subquery()
    )
    rows = audit.execute(
        select(AUDIT_EVENTS.c.workspace_id, AUDIT_EVENTS.c.chain_seq, AUDIT_EVENTS.c.hash).join(
            last,
            and_(
                AUDIT_EVENTS.c.workspace_id.is_not_distinct_from(last.c.workspace_id),
                AUDIT_EVENTS.c.chain_seq == last.c.seq,
            ),
        )
    )
    return {chain_of(workspace_id): [seq, hash_] for workspace_id, seq, hash_ in rows}


def prune_audit_events(*, older_than_days: int, signing_key: str, batch_size: int = 5000) -> Pruned:
    """Delete audit events recorded more than ``older_than_days`` days ago, and on PostgreSQL create the month
    partitions ahead. First a signed record of the prune (the cutoff, and where each chain will begin) is written;
    then whole months are dropped, and the rest deleted a batch per transaction. Once done, the prune is itself an
    audit event (``audit.pruned``: before when, how many, which partitions)."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    engine = get_unpooled_engine("audit")
    with engine.begin() as audit:
        created = prepare_months_ahead(audit)
    with engine.begin() as audit:
        anchors = last_pruned(audit, cutoff)
        record = {"before": cutoff, "pruned_at": utcnow(), "deleted": 0, "anchors": anchors}
        record["signature"] = prune_signature(signing_key, cutoff, anchors)
        prune_id = audit.execute(insert(PRUNES).values(record).returning(PRUNES.c.id)).scalar_one()
    with engine.begin() as audit:
        dropped, deleted = drop_months_recorded_before(audit, cutoff)
    before_cutoff = AUDIT_EVENTS.c.recorded_at < cutoff
    oldest = select(AUDIT_EVENTS.c.id).where(before_cutoff).limit(batch_size)
    while True:
        with engine.begin() as audit:
            # before_cutoff again: PostgreSQL then looks for the ids only in the partitions that can hold them.
            batch = delete(AUDIT_EVENTS).where(before_cutoff, AUDIT_EVENTS.c.id.in_(oldest.scalar_subquery()))
            count = audit.execute(batch).rowcount
        deleted += count
        if count < batch_size:
            break
    with engine.begin() as audit:
        audit.execute(update(PRUNES).where(PRUNES.c.id == prune_id).values(deleted=deleted))
    with Session(get_unpooled_engine("core")) as core:
        details = {
            "before": cutoff.isoformat(),
            "older_than_days": older_than_days,
            "deleted": deleted,
            "dropped_partitions": dropped,
        }
        record_event(core, action="audit.pruned", actor_id=None, actor_type="system", details=details)
        core.commit()
    return Pruned(deleted, dropped, created)
