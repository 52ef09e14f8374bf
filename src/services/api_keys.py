"""API keys: a workspace's credentials for programs.

A workspace admin makes a key with a name, a role no higher than their own and an optional expiry. Its secret is
shown once and kept only as a digest; it starts with API_KEY_PREFIX, so that secret scanners can find leaked ones.
Sent as a bearer token, a key acts inside its workspace only, with its role, and every action it takes is an audit
event whose actor is the key. It is checked by one indexed lookup, no password hash; keys cannot manage keys, nor
reach anything outside their workspace (the caller's account, other workspaces, creating one).
"""

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import NoReturn

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from src.api.v1.models.api_key import ApiKey
from src.api.v1.models.workspace_member import Role
from src.core.errors import Forbidden, InvalidToken, NotFound
from src.core.security import API_KEY_PREFIX, ApiKeyCredentials, new_secret, secret_digest
from src.core.timestamps import utcnow
from src.services.audit_log import Target
from src.services.workspaces import RANK, WorkspaceAccess, WorkspaceNotFound, get_access, record, require_role

SHOWN_PREFIX_LENGTH = 12
LAST_USED_PRECISION = timedelta(minutes=1)


class ApiKeyNotAllowed(Forbidden):
    code = "api_key_not_allowed"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


def refuse_keys(actor: WorkspaceAccess) -> None:
    """``ApiKeyNotAllowed`` when a key acts: keys and invitations are for people to manage."""
    if actor.actor_type == "api_key":
        raise ApiKeyNotAllowed("this is for the workspace's admins themselves, not for API keys")


def require_admin_in_person(actor: WorkspaceAccess) -> None:
    """Managing keys and invitations: an admin (or the owner) acting in person, not through a key."""
    refuse_keys(actor)
    require_role(actor, Role.ADMIN)


def create_key(
    session: Session, actor: WorkspaceAccess, *, name: str, role: Role, expires_in_days: int | None
) -> tuple[ApiKey, str]:
    """A new key for the actor's workspace, and its secret (shown once); admins, for the member or admin role (never
    owner: deleting the workspace and handing out ownership stay with people)."""
    require_admin_in_person(actor)
    if role == Role.OWNER:
        raise Forbidden("an API key's role is member or admin")
    secret = API_KEY_PREFIX + new_secret()
    key = ApiKey(
        workspace_id=actor.workspace.id,
        name=name,
        role=role,
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        digest=secret_digest(secret),
        created_by=actor.user_id,
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(key)
    details = {"name": name, "role": role, "prefix": key.prefix}
    record(session, actor, "workspace.api_key_created", Target("api_key", key.id), details)
    return key, secret


def list_keys(session: Session, actor: WorkspaceAccess) -> list[ApiKey]:
    """The workspace's keys, oldest first; admins."""
    require_admin_in_person(actor)
    statement = select(ApiKey).where(ApiKey.workspace_id == actor.workspace.id)
    return list(session.exec(statement.order_by(col(ApiKey.created_at), col(ApiKey.id))))


def revoke_key(session: Session, actor: WorkspaceAccess, key_id: uuid.UUID) -> None:
    """Delete a key of the workspace: it stops working at once; admins."""
    require_admin_in_person(actor)
    key = session.get(ApiKey, key_id)
    if key is None or key.workspace_id != actor.workspace.id:
        raise ApiKeyNotFound(f"API key {key_id} not found")
    session.delete(key)
    details = {"name": key.name, "role": key.role, "prefix": key.prefix}
    record(session, actor, "workspace.api_key_revoked", Target("api_key", key.id), details)


def _valid_key(session: Session, credentials: ApiKeyCredentials) -> ApiKey:
    key = session.exec(select(ApiKey).where(ApiKey.digest == credentials.digest)).first()
    if key is None or (key.expires_at is not None and key.expires_at <= utcnow()):
        raise InvalidToken("the API key is unknown, revoked or expired")
    credentials.key_id = key.id
    return key


def refuse_outside_workspace(session: Session, credentials: ApiKeyCredentials) -> NoReturn:
    """What a valid key gets where only a person may act: ``ApiKeyNotAllowed``; ``InvalidToken`` for a bad key."""
    _valid_key(session, credentials)
    raise ApiKeyNotAllowed("an API key acts only inside its workspace: this needs a person's log-in")


def key_access(
    session: Session, credentials: ApiKeyCredentials, workspace_id: uuid.UUID, *, locking: bool = False
) -> WorkspaceAccess:
    """The workspace as the key may act on it, with the key's role; ``WorkspaceNotFound`` for any other workspace,
    as for a user who is not a member. A key works only while its maker is a member with at least its role: one
    removed or demoted takes their keys' power with them. ``locking`` as ``workspaces.get_access``."""
    key = _valid_key(session, credentials)
    if key.workspace_id != workspace_id:
        raise WorkspaceNotFound(f"workspace {workspace_id} not found")
    try:
        maker = get_access(session, workspace_id=workspace_id, user_id=key.created_by, locking=locking)
    except WorkspaceNotFound:
        maker = None
    if maker is None or RANK[maker.role] < RANK[Role(key.role)]:
        raise InvalidToken("the API key's maker is no longer an admin of the workspace; ask an admin for a new key")
    return replace(maker, user_id=key.id, role=Role(key.role), actor_type="api_key")


def note_use(session: Session, key_id: uuid.UUID) -> None:
    """Set the key's last use to now, unless it was set less than LAST_USED_PRECISION ago."""
    now = utcnow()
    session.exec(
        update(ApiKey)
        .where(col(ApiKey.id) == key_id)
        .where(or_(col(ApiKey.last_used_at).is_(None), col(ApiKey.last_used_at) < now - LAST_USED_PRECISION))
        .values(last_used_at=now)
    )
