"""The append-only role of docs/audit.md, created by the SQL given there, on PostgreSQL: the service working
through it delivers, reads, verifies and erases, and can neither change nor delete an event."""

import re
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, delete, make_url, select, text, update
from sqlalchemy.exc import ProgrammingError

from src.core.config import PROJECT_ROOT, get_settings
from src.core.engines import dispose_engines, get_engine
from src.services.audit_chain import AUDIT_EVENTS, verify
from src.services.audit_erasure import erase_in_audit, erase_in_outbox
from src.services.audit_relay import relay_pending
from src.services.audit_retention import prune_audit_events
from tests.conftest import point_settings_at
from tests.factories import record

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)]


def documented_grants() -> str:
    """The SQL block of the section "Append-only"."""
    section = (PROJECT_ROOT / "docs" / "audit.md").read_text().split("\n## Append-only\n", 1)[1]
    return re.search(r"```sql\n(.*?)```", section, flags=re.S).group(1)  # type: ignore[union-attr]


@pytest.fixture
def writer_url(migrated_databases, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The audit database reached as the documented role (a name of this test's own), set up by its owner."""
    owner_url = make_url(migrated_databases["audit"])
    role = f"audit_writer_{uuid.uuid4().hex[:8]}"
    grants = (
        documented_grants().replace("audit_writer", role).replace("DATABASE audit", f"DATABASE {owner_url.database}")
    )
    owner = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.execute(text(grants))
    url = owner_url.set(username=role).render_as_string(hide_password=False)
    point_settings_at({"audit": url}, monkeypatch)
    dispose_engines()
    yield url
    dispose_engines()
    with owner.connect() as connection:
        connection.execute(text(f"DROP OWNED BY {role}"))
        connection.execute(text(f"DROP ROLE {role}"))
    owner.dispose()


def test_the_documented_role_delivers_reads_verifies_and_erases(writer_url) -> None:
    ids = record(3, workspace_id=uuid.uuid4())
    assert relay_pending(batch_size=2) == 3
    with get_engine("audit").connect() as audit:
        assert audit.scalar(select(text("current_user"))) == make_url(writer_url).username
        person = audit.scalar(select(AUDIT_EVENTS.c.actor_id).where(AUDIT_EVENTS.c.id == ids[0]))
    assert person is not None
    with get_engine("core").begin() as core, get_engine("audit").begin() as audit:
        erase_in_outbox(core, person)
        assert erase_in_audit(audit, person) == 1
    with get_engine("audit").connect() as audit:
        verification = verify(audit, key=get_settings().audit_signing_key)
    assert verification.ok and verification.chains[0].erased == 1


@pytest.mark.parametrize(
    "change",
    [
        update(AUDIT_EVENTS).values(action="user.deleted"),
        update(AUDIT_EVENTS).values(hash="0" * 64),
        delete(AUDIT_EVENTS),
    ],
    ids=["action", "hash", "delete"],
)
def test_the_documented_role_can_neither_change_nor_delete_an_event(writer_url, change) -> None:
    record(1)
    relay_pending(batch_size=10)

    with get_engine("audit").begin() as audit, pytest.raises(ProgrammingError, match="permission denied"):
        audit.execute(change)


def test_the_prune_needs_the_owner(writer_url) -> None:
    with pytest.raises(ProgrammingError, match="permission denied"):
        prune_audit_events(older_than_days=0, signing_key=get_settings().audit_signing_key)
