"""make audit-stream's sink: each chained event written once, in chain order, resumed from the saved position."""

import io
import json
import uuid
from pathlib import Path
from typing import Any

from src.core.engines import get_engine
from src.services.audit_relay import relay_pending
from src.services.audit_stream import read_position, stream_once
from tests.factories import record

WORKSPACE = uuid.UUID("00000000-0000-4000-8000-000000000002")


def streamed(position: Path, batch_size: int = 1000) -> list[dict[str, Any]]:
    out = io.StringIO()
    with get_engine("audit").connect() as audit:
        count = stream_once(audit, out, position, batch_size=batch_size)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(lines)
    return lines


def test_the_stream_writes_each_event_once_and_resumes_where_it_stopped(migrated_databases, tmp_path: Path) -> None:
    position = tmp_path / "stream.position"
    first = record(3, workspace_id=WORKSPACE) + record(2)
    relay_pending(batch_size=10)

    lines = streamed(position, batch_size=2)

    assert sorted(line["id"] for line in lines) == sorted(map(str, first))
    ours = [line for line in lines if line["workspace_id"] == str(WORKSPACE)]
    assert [line["chain_seq"] for line in ours] == [1, 2, 3] and all(len(line["hash"]) == 64 for line in ours)
    assert {line["chain"] for line in lines} == {str(WORKSPACE), "service"}
    assert read_position(position) == {str(WORKSPACE): 3, "service": 2}
    assert streamed(position) == []

    later = record(2, workspace_id=WORKSPACE)
    relay_pending(batch_size=10)

    assert [line["id"] for line in streamed(position)] == [str(event_id) for event_id in later]
