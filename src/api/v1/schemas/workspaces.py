"""Workspaces and members: what creating and changing them accepts, and how they are shown."""

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict
from sqlmodel import Field

from src.api.v1.models.user import User
from src.api.v1.models.workspace import WorkspaceBase
from src.api.v1.models.workspace_member import Role, WorkspaceMember
from src.api.v1.schemas.fields import DocumentedAs, Email, WorkspaceName


class WorkspaceCreate(WorkspaceBase):
    model_config = ConfigDict(  # type: ignore[assignment]  # SQLModel types it as its own dict
        extra="forbid", json_schema_extra={"examples": [{"name": "Difference Engine"}]}
    )

    name: WorkspaceName


class WorkspaceUpdate(WorkspaceCreate):
    """A new name."""


class WorkspaceColumns(Protocol):
    """A workspace's columns, as an entity or a row of them has them."""

    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime | None


# A plain pydantic model, as the others here: SQLModel's would add to each instance a list page makes.
class WorkspacePublic(BaseModel):
    """A workspace and the caller's role in it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "97915d76-0e0a-4c53-8f64-3a1c2b9d8e7f",
                    "name": "Difference Engine",
                    "created_at": "2026-11-26T10:57:36.926552Z",
                    "updated_at": "2026-11-26T10:57:36.926552Z",
                    "role": "owner",
                }
            ]
        }
    )

    name: str
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime = Field(description="the last change; created_at until the first")
    role: Role

    @classmethod
    def of(cls, workspace: WorkspaceColumns, role: Role) -> "WorkspacePublic":
        updated_at = workspace.updated_at or workspace.created_at
        return cls(
            id=workspace.id, name=workspace.name, created_at=workspace.created_at, updated_at=updated_at, role=role
        )


class MemberByEmail(BaseModel):
    """A user to add, named by their email."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "charles@example.com", "role": "admin"}]}
    )

    email: Email
    role: Role = Role.MEMBER
    user_id: ClassVar[None] = None


class MemberByUserId(BaseModel):
    """A user to add, named by their id."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"user_id": "12add8fb-5b7a-4e21-a0c9-6f8e7d6c5b4a"}]}
    )

    user_id: uuid.UUID
    role: Role = Role.MEMBER
    email: ClassVar[None] = None


def _exactly_one_user_reference(data: Any) -> Any:
    # Before the union is tried: one clear message instead of each alternative's complaints.
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    given = [name for name in ("email", "user_id") if name in data]
    if len(given) != 1:
        raise ValueError("give exactly one of email and user_id")
    if data[given[0]] is None:
        raise ValueError(f"{given[0]} must not be null")
    return data


MemberCreate = Annotated[
    MemberByEmail | MemberByUserId, BeforeValidator(_exactly_one_user_reference), DocumentedAs("oneOf")
]


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "admin"}]})

    role: Role


class MemberPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "12add8fb-5b7a-4e21-a0c9-6f8e7d6c5b4a",
                    "email": "charles@example.com",
                    "username": "charles",
                    "first_name": "Charles",
                    "last_name": "Babbage",
                    "full_name": "Charles Babbage",
                    "role": "admin",
                    "joined_at": "2026-11-26T10:57:36.926552Z",
                    "updated_at": "2026-11-26T10:57:36.926552Z",
                }
            ]
        }
    )

    user_id: uuid.UUID
    email: str
    username: str
    first_name: str
    last_name: str
    full_name: str
    role: Role
    joined_at: datetime
    updated_at: datetime = Field(description="the last change of the role; joined_at until the first")

    @classmethod
    def of(cls, membership: WorkspaceMember, user: User) -> "MemberPublic":
        return cls(
            user_id=user.id,
            email=user.email,
            username=user.username,
            first_name=user.first_name,
            last_name=user.last_name,
            full_name=user.full_name,
            role=membership.role,
            joined_at=membership.created_at,
            updated_at=membership.updated_at or membership.created_at,
        )


class InvitationCreate(BaseModel):
    """Whom to invite, and as what."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "charles@example.com", "role": "admin"}]}
    )

    email: Email
    role: Role = Role.MEMBER


class InvitationPublic(BaseModel):
    """A pending invitation, as the workspace's admins see it."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "7c2e4a1b-9d3f-4e5a-8b6c-0d1e2f3a4b5c",
                    "email": "charles@example.com",
                    "role": "admin",
                    "invited_by": "d71ec893-6c2e-4a57-9c1d-2b3f4a5e6d7c",
                    "created_at": "2026-12-01T09:00:00Z",
                    "expires_at": "2026-12-08T09:00:00Z",
                }
            ]
        },
    )

    id: uuid.UUID
    email: str
    role: Role
    invited_by: uuid.UUID
    created_at: datetime
    expires_at: datetime
