"""New audit events as NDJSON for a log shipper (Vector, Fluent Bit) or a SIEM: ``make audit-stream``.

The position is each chain's last place written, kept in a small JSON file: an event is written once it is in
its chain, in chain order, and a stream stopped anywhere resumes where it stopped. The position is saved after
the lines it covers are flushed, so a crash in between writes those lines again (each carries its ``id``).
"""

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from sqlalchemy import Connection, select

from src.api.v1.models.audit_event import AuditEvent
from src.api.v1.schemas.audit import public_event
from src.services.audit_chain import AUDIT_EVENTS, HEADS, SERVICE_CHAIN

Position = dict[str, int]


def read_position(path: Path) -> Position:
    return json.loads(path.read_text()) if path.exists() else {}


def save_position(path: Path, position: Position) -> None:
    """Replace the file at once: a stream killed while saving keeps the previous position."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(position, sort_keys=True))
    os.replace(partial, path)


def new_events(audit: Connection, position: Position, *, batch_size: int) -> Iterator[tuple[str, list[AuditEvent]]]:
    """Per chain whose head is past the position, its next events in chain order, a batch at a time."""
    for chain, head in audit.execute(select(HEADS.c.chain, HEADS.c.seq).order_by(HEADS.c.chain)):
        after = position.get(chain, 0)
        workspace_id = None if chain == SERVICE_CHAIN else uuid.UUID(chain)
        in_chain = AUDIT_EVENTS.c.workspace_id.is_not_distinct_from(workspace_id)
        while after < head:
            query = (
                select(AUDIT_EVENTS)
                .where(in_chain, AUDIT_EVENTS.c.chain_seq > after)
                .order_by(AUDIT_EVENTS.c.chain_seq)
                .limit(batch_size)
            )
            events = [AuditEvent.model_validate(dict(row)) for row in audit.execute(query).mappings()]
            if not events:
                break
            yield chain, events
            after = events[-1].chain_seq or after


def stream_once(audit: Connection, out: TextIO, position_file: Path, *, batch_size: int = 1000) -> int:
    """Write every event past the saved position as one JSON line each; returns how many."""
    position = read_position(position_file)
    written = 0
    for chain, events in new_events(audit, position, batch_size=batch_size):
        for event in events:
            line = public_event(event, {}).model_dump(mode="json") | {
                "chain": chain,
                "chain_seq": event.chain_seq,
                "hash": event.hash,
            }
            out.write(json.dumps(line) + "\n")
        out.flush()
        position[chain] = events[-1].chain_seq or 0
        save_position(position_file, position)
        written += len(events)
    return written
