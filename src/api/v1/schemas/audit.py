"""Audit events and activity counts as the API shows them."""

import logging
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, create_model

from src.api.v1.models.audit_event import AuditEvent
from src.api.v1.models.workspace_member import Role
from src.api.v1.schemas.fields import DocumentedAs
from src.core.pagination import Page

logger = logging.getLogger(__name__)


class Actor(BaseModel):
    type: Literal["user", "api_key", "anonymous", "system"]
    id: uuid.UUID | None
    username: str | None = Field(description="the actor's current username; null once the account is gone")


class EventTarget(BaseModel):
    type: Literal["user", "workspace", "api_key", "invitation"] | None
    id: uuid.UUID | None


class _Payload(BaseModel):
    # Fields a newer version adds to an action's metadata are shown too.
    model_config = ConfigDict(extra="allow")


class Empty(_Payload):
    """Nothing: none was recorded, or it was erased with the person it was about."""

    model_config = ConfigDict(extra="forbid")


class RequestContext(_Payload):
    """The request that caused the event."""

    request_id: str = Field(description="the caller's X-Request-ID, or the one the service gave the request")
    ip: str | None
    user_agent: str | None


class Login(_Payload):
    """What a failed log-in gave as the login: kept as typed when it names a user, as a digest when not (it may be
    a password typed in the wrong field)."""

    login: str | None = None
    login_digest: str | None = None


class Lockout(Login):
    limit: str = Field(description="the counter that locked out: account, address, or account from new addresses")
    failures: int
    lockout_seconds: int


class Names(_Payload):
    first_name: str
    last_name: str


class NamesChanged(_Payload):
    before: Names
    after: Names


class NewEmail(_Payload):
    new_email: str


class EmailChanged(_Payload):
    before: str
    after: str


class SessionRef(_Payload):
    session_id: uuid.UUID


class WorkspaceName(_Payload):
    name: str


class WorkspaceRenamed(_Payload):
    before: WorkspaceName
    after: WorkspaceName


class RoleGiven(_Payload):
    role: Role


class Invited(RoleGiven):
    email: str


class InvitationAnswered(RoleGiven):
    invitation_id: uuid.UUID
    workspace_id: uuid.UUID | None = Field(default=None, description="in the invitee's own trail")


_INVITATION = "7c2e4a1b-9d3f-4e5a-8b6c-0d1e2f3a4b5c"


class KeyNamed(RoleGiven):
    name: str
    prefix: str


class MemberRemoved(RoleGiven):
    left: bool = Field(description="true when the member left, false when removed by an admin or owner")


class RoleChanged(_Payload):
    before: RoleGiven
    after: RoleGiven


class Read(_Payload):
    asked: str = Field(description="the path and query read")


class Pruned(_Payload):
    before: datetime = Field(description="events delivered before this were deleted")
    older_than_days: int
    deleted: int
    dropped_partitions: list[str] = Field(default_factory=list)


# Each action, what its metadata holds, and an example of it: the one place they are named for the API.
METADATA: dict[str, tuple[type[_Payload], dict[str, Any]]] = {
    "user.signed_up": (Empty, {}),
    "user.logged_in": (Empty, {}),
    "user.login_failed": (Login, {"login": "ada"}),
    "user.password_check_failed": (Login, {"login": "ada"}),
    "user.login_throttled": (Lockout, {"login": "ada", "limit": "account", "failures": 5, "lockout_seconds": 60}),
    "user.profile_updated": (
        NamesChanged,
        {"before": {"first_name": "Ada", "last_name": "Byron"}, "after": {"first_name": "Ada", "last_name": "King"}},
    ),
    "user.password_changed": (Empty, {}),
    "user.password_reset_requested": (Login, {}),
    "user.password_reset": (Empty, {}),
    "user.email_confirmation_requested": (Login, {}),
    "user.email_confirmed": (Empty, {}),
    "user.email_change_requested": (NewEmail, {"new_email": "ada.lovelace@example.com"}),
    "user.email_changed": (EmailChanged, {"before": "ada@example.com", "after": "ada.lovelace@example.com"}),
    "user.deactivated": (Empty, {}),
    "user.reactivated": (Empty, {}),
    "user.admin_granted": (Empty, {}),
    "user.deleted": (Empty, {}),
    "user.logged_out": (SessionRef, {"session_id": "5b1f0c2e-8a3d-4e6f-9b7c-1d2e3f4a5b6c"}),
    "user.session_ended": (SessionRef, {"session_id": "5b1f0c2e-8a3d-4e6f-9b7c-1d2e3f4a5b6c"}),
    "user.refresh_token_reused": (SessionRef, {"session_id": "5b1f0c2e-8a3d-4e6f-9b7c-1d2e3f4a5b6c"}),
    "workspace.created": (WorkspaceName, {"name": "Difference Engine"}),
    "workspace.updated": (WorkspaceRenamed, {"before": {"name": "Difference Engine"}, "after": {"name": "Engines"}}),
    "workspace.deleted": (WorkspaceName, {"name": "Difference Engine"}),
    "workspace.member_added": (RoleGiven, {"role": "admin"}),
    "workspace.invitation_created": (Invited, {"email": "charles@example.com", "role": "admin"}),
    "workspace.invitation_revoked": (Invited, {"email": "charles@example.com", "role": "admin"}),
    "workspace.invitation_accepted": (InvitationAnswered, {"invitation_id": _INVITATION, "role": "admin"}),
    "workspace.invitation_declined": (InvitationAnswered, {"invitation_id": _INVITATION, "role": "admin"}),
    "user.invitation_accepted": (
        InvitationAnswered,
        {"invitation_id": _INVITATION, "role": "admin", "workspace_id": "97915d76-0e0a-4c53-8f64-3a1c2b9d8e7f"},
    ),
    "user.invitation_declined": (
        InvitationAnswered,
        {"invitation_id": _INVITATION, "role": "admin", "workspace_id": "97915d76-0e0a-4c53-8f64-3a1c2b9d8e7f"},
    ),
    "workspace.api_key_created": (KeyNamed, {"name": "CI deploys", "role": "member", "prefix": "fsk_Q2hhcmxl"}),
    "workspace.api_key_revoked": (KeyNamed, {"name": "CI deploys", "role": "member", "prefix": "fsk_Q2hhcmxl"}),
    "workspace.member_removed": (MemberRemoved, {"role": "member", "left": True}),
    "workspace.member_role_changed": (RoleChanged, {"before": {"role": "member"}, "after": {"role": "admin"}}),
    "audit.read": (Read, {"asked": "/api/v1/workspaces/97915d76-0e0a-4c53-8f64-3a1c2b9d8e7f/audit-events"}),
    "audit.pruned": (
        Pruned,
        {"before": "2026-08-28T00:00:00Z", "older_than_days": 90, "deleted": 1200, "dropped_partitions": []},
    ),
}
_EXAMPLE: dict[str, Any] = {
    "id": "0b6f3c1e-2d4a-4f5b-9c8d-7e6f5a4b3c2d",
    "occurred_at": "2026-11-26T10:57:36.926552Z",
    "outcome": "success",
    "actor": {"type": "user", "id": "d71ec893-6c2e-4a57-9c1d-2b3f4a5e6d7c", "username": "ada"},
    "workspace_id": "97915d76-0e0a-4c53-8f64-3a1c2b9d8e7f",
    "target": {"type": "user", "id": "12add8fb-5b7a-4e21-a0c9-6f8e7d6c5b4a"},
    "context": {"request_id": "5f0c9e1d2b3a4c5d", "ip": "198.51.100.7", "user_agent": "curl/8.5.0"},
}


class AuditEventView(BaseModel):
    """What every audit event shows; each action's own model (``WorkspaceMemberAddedEvent``) adds its metadata."""

    id: uuid.UUID
    occurred_at: datetime
    action: str
    outcome: Literal["success", "failure"]
    actor: Actor
    workspace_id: uuid.UUID | None
    target: EventTarget
    context: RequestContext | Empty = Field(description="empty for the service's own jobs, and once erased")
    metadata: _Payload


def _event_of(action: str, metadata: type[_Payload], example: dict[str, Any]) -> type[AuditEventView]:
    """The event model of ``action``: its metadata typed, or empty once the person it names was erased."""
    name = "".join(part.title() for part in action.replace(".", "_").split("_")) + "Event"
    fields: dict[str, Any] = {
        "action": (Literal[action], ...),
        "metadata": (metadata | Empty if metadata is not Empty else Empty, ...),
    }
    examples = [_EXAMPLE | {"action": action, "metadata": example}]
    config = ConfigDict(json_schema_extra={"examples": examples})  # type: ignore[dict-item]  # a list of examples
    return create_model(name, __base__=AuditEventView, __config__=config, **fields)


class OtherEvent(AuditEventView):
    """An event recorded otherwise than this version records its action: an action of a newer version, or
    metadata this version does not read. Clients read it after the typed events, which it also matches."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [_EXAMPLE | {"action": "workspace.archived", "metadata": {"reason": "done"}}]}
    )

    action: str
    context: dict[str, Any]  # type: ignore[assignment]  # as recorded
    metadata: dict[str, Any]  # type: ignore[assignment]  # as recorded


def _known_action(event: Any) -> str:
    if isinstance(event, OtherEvent):
        return "other"
    action = event.get("action") if isinstance(event, dict) else getattr(event, "action", None)
    return action if action in METADATA else "other"


EVENTS = [_event_of(action, metadata, example) for action, (metadata, example) in METADATA.items()]
if TYPE_CHECKING:
    AuditEventPublic = AuditEventView
else:
    # Each action's own model, chosen by the action; the actions this version does not know, as OtherEvent.
    AuditEventPublic = Annotated[
        Union[
            (
                *(Annotated[event, Tag(action)] for event, action in zip(EVENTS, METADATA, strict=True)),
                Annotated[OtherEvent, Tag("other")],
            )
        ],
        Discriminator(_known_action),
        DocumentedAs("anyOf"),
    ]
AUDIT_EVENT: TypeAdapter[AuditEventView] = TypeAdapter(AuditEventPublic)


class AuditEventPage(Page[AuditEventPublic]):
    """A page of audit events, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [_EXAMPLE | {"action": "workspace.member_added", "metadata": {"role": "admin"}}],
                    "next_cursor": None,
                }
            ]
        }
    )


def public_event(event: AuditEvent, usernames: Mapping[uuid.UUID, str], *, with_context: bool = True) -> AuditEventView:
    """The event as the API shows it, its actor with their current username; its request context left out unless
    ``with_context``."""
    shown = {
        "id": event.id,
        "occurred_at": event.occurred_at,
        "action": event.action,
        "outcome": event.outcome,
        "actor": {
            "type": event.actor_type,
            "id": event.actor_id,
            "username": usernames.get(event.actor_id) if event.actor_id else None,
        },
        "workspace_id": event.workspace_id,
        "target": {"type": event.target_type, "id": event.target_id},
        "context": event.context if with_context else {},
        "metadata": event.details,
    }
    try:
        return AUDIT_EVENT.validate_python(shown)
    except ValidationError as error:
        # Recorded otherwise than this version records the action: shown as it is rather than not at all.
        logger.warning("audit event %s (%s) shown untyped: %s", event.id, event.action, error.errors()[0]["msg"])
        return OtherEvent.model_validate(shown)


class ActivityCountPublic(BaseModel):
    day: date
    action: str
    count: int


class ActivityPublic(BaseModel):
    """Events per UTC day and action, from ``since`` to today; days without events are left out."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "since": "2026-11-27",
                    "days": 30,
                    "counts": [{"day": "2026-11-26", "action": "workspace.member_added", "count": 3}],
                }
            ]
        }
    )

    since: date
    days: int
    counts: list[ActivityCountPublic]
