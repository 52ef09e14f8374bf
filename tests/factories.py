"""Small helpers shared by tests: rows put straight into the databases, and read back."""

import re
import uuid
from datetime import timedelta

from sqlmodel import Session, col, select

from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.outbox_mail import OutboxMail
from src.api.v1.models.user import User
from src.api.v1.models.workspace_member import WorkspaceMember
from src.core.engines import get_engine
from src.core.security import hash_password
from src.core.timestamps import utcnow
from src.services import users


def record(count: int, *, start_minutes_ago: int = 60, workspace_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Put events straight into the core outbox, oldest first; returns their ids."""
    events = [
        OutboxEvent(
            occurred_at=utcnow() - timedelta(minutes=start_minutes_ago) + timedelta(milliseconds=index),
            action="workspace.created",
            outcome="success",
            actor_type="user",
            actor_id=uuid.uuid4(),
            workspace_id=workspace_id,
            context={"ip": "127.0.0.1"},
            details={"index": index},
        )
        for index in range(count)
    ]
    with Session(get_engine("core")) as session:
        session.add_all(events)
        session.commit()
        return [event.id for event in events]


RESET = "Reset your password"
CONFIRM = "Confirm your email address"
INVITED = "You are invited to a workspace"


def mailed_token(session: Session, recipient: str, subject: str = CONFIRM) -> str:
    """The token of the link in the newest message with ``subject`` queued for ``recipient``."""
    newest = (
        select(OutboxMail)
        .where(OutboxMail.recipient == recipient, OutboxMail.subject == subject)
        .order_by(col(OutboxMail.created_at).desc())
    )
    mail = session.exec(newest).first()
    assert mail is not None, f"no mail queued for {recipient}"
    found = re.search(r"token=([A-Za-z0-9_-]+)", mail.body)
    assert found is not None, f"no link in {mail.subject!r}"
    return found.group(1)


def roles_in(session: Session, workspace_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Each member's role in the workspace, as the database holds it."""
    rows = session.exec(
        select(WorkspaceMember.user_id, WorkspaceMember.role).where(WorkspaceMember.workspace_id == workspace_id)
    )
    return {user_id: role for user_id, role in rows}


USERS = User.metadata.tables[User.__tablename__]


def user_row(username: str, **overrides: object) -> dict[str, object]:
    """A users row as the migrations' table holds it, for ``insert(USERS)``; keywords override its columns."""
    return {
        "id": uuid.uuid4(),
        "email": f"{username}@example.com",
        "username": username,
        "first_name": "A",
        "last_name": "B",
        "full_name": "A B",
        "hashed_password": "x",
        "is_active": True,
        "created_at": utcnow(),
    } | overrides


def register(session: Session, name: str, password: str = "correct horse battery") -> User:
    """A user named ``name`` (email name@example.com), registered through the service."""
    return users.register_user(
        session,
        email=f"{name}@example.com",
        username=name,
        hashed_password=hash_password(password),
        first_name=name.title(),
        last_name="Tester",
    )
