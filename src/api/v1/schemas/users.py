"""Users and tokens: what sign-up and profile changes accept, and what a user looks like to clients."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.config import JsonDict

from src.api.v1.models.user import UserBase
from src.api.v1.models.workspace_member import Role
from src.api.v1.schemas.audit import AuditEventView
from src.api.v1.schemas.fields import Email, LinkToken, Password, PersonName, Username
from src.services import login_sessions


class UserCreate(UserBase):
    """The fields every user has, as a client may give them, and the password."""

    model_config = ConfigDict(  # type: ignore[assignment]  # SQLModel types it as its own dict
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "username": "ada",
                    "password": "analytical-engine-1843",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                }
            ]
        },
    )

    email: Email
    username: Username = Field(
        description="3-32 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit; stored lowercased"
    )
    first_name: PersonName
    last_name: PersonName
    password: Password


class UserUpdate(BaseModel):
    """Names to change; one left out, or null, stays as it is."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"first_name": "Augusta Ada"}]})

    first_name: PersonName | None = None
    last_name: PersonName | None = None


class PasswordChange(BaseModel):
    """A new password, and the current one again."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"current_password": "analytical-engine-1843", "new_password": "difference-engine-1822"}]
        },
    )

    current_password: str = Field(max_length=128)
    new_password: Password


class UserPublic(UserBase):
    """A user as clients see them: the fields every user has, and what the service adds."""

    model_config = ConfigDict(  # type: ignore[assignment]  # SQLModel types it as its own dict
        json_schema_extra={
            "examples": [
                {
                    "id": "d71ec893-6c2e-4a57-9c1d-2b3f4a5e6d7c",
                    "email": "ada@example.com",
                    "username": "ada",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "full_name": "Ada Lovelace",
                    "is_active": True,
                    "is_admin": False,
                    "email_verified_at": "2026-11-26T11:02:10.114402Z",
                    "created_at": "2026-11-26T10:57:36.926552Z",
                    "updated_at": "2026-11-26T10:57:36.926552Z",
                }
            ]
        }
    )

    id: uuid.UUID
    full_name: str
    is_active: bool
    is_admin: bool = Field(description="an admin of the service: may deactivate and reactivate accounts")
    email_verified_at: datetime | None = Field(description="when the email was confirmed; null until it is")
    created_at: datetime
    updated_at: datetime = Field(description="the last change; created_at until the first")

    @field_validator("updated_at", mode="before")
    @classmethod
    def _created_until_changed(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return value if value is not None else info.data.get("created_at")


class Token(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIs…",
                    "token_type": "bearer",
                    "expires_in": 3600,
                    "refresh_token": "h2V0xQ8m1rVt0s5kzJ9cW3bYpD7nF4aL6eU2iO8gR1w",
                    "refresh_expires_in": 2592000,
                }
            ]
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str = Field(description="for POST /auth/refresh: new tokens, once; then use the new one")
    refresh_expires_in: int = Field(description="seconds until the session ends, however often it is refreshed")

    @classmethod
    def of(cls, tokens: login_sessions.Tokens) -> "Token":
        return cls(
            access_token=tokens.access.token,
            expires_in=tokens.access.expires_in,
            refresh_token=tokens.refresh_token,
            refresh_expires_in=tokens.refresh_expires_in,
        )


class Refresh(BaseModel):
    """The refresh token of the last log-in or refresh."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refresh_token": "h2V0xQ8m1rVt0s5kzJ9cW3bYpD7nF4aL6eU2iO8gR1w"}]},
    )

    refresh_token: LinkToken


class SessionPublic(BaseModel):
    """A log-in session: where and when it began, and when its tokens were last renewed."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "5b1f0c2e-8a3d-4e6f-9b7c-1d2e3f4a5b6c",
                    "created_at": "2026-12-01T09:00:00Z",
                    "last_used_at": "2026-12-01T17:45:12Z",
                    "expires_at": "2026-12-31T09:00:00Z",
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                    "ip": "198.51.100.7",
                    "current": True,
                }
            ]
        },
    )

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime = Field(description="the last log-in or refresh")
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool = Field(default=False, description="the session of the token that asked")


def _example(example: JsonDict) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class EmailAddress(BaseModel):
    """An email: the one whose password is forgotten, or whose confirmation link should be sent again."""

    model_config = _example({"email": "ada@example.com"})

    email: Email


class ResetPassword(BaseModel):
    """The token of a password-reset link, and the new password."""

    model_config = _example({"token": "q3Zb0mS0c1Jx8kYp2VvE6nR4tW9aL7hD5fG1jK3uQ0s", "new_password": "analytical-1843"})

    token: LinkToken
    new_password: Password


class EmailConfirmation(BaseModel):
    """The token of a confirmation link."""

    model_config = _example({"token": "q3Zb0mS0c1Jx8kYp2VvE6nR4tW9aL7hD5fG1jK3uQ0s"})

    token: LinkToken


class EmailChange(BaseModel):
    """The new email, and the current password again."""

    model_config = _example({"email": "ada.lovelace@example.com", "current_password": "analytical-engine-1843"})

    email: Email
    current_password: str = Field(max_length=128)


class AccountDeletion(BaseModel):
    """The current password again."""

    model_config = _example({"current_password": "analytical-engine-1843"})

    current_password: str = Field(max_length=128)


class Membership(BaseModel):
    workspace_id: uuid.UUID
    workspace_name: str
    role: Role
    joined_at: datetime


class AccountExport(BaseModel):
    """Everything the service holds about the caller: the account, their memberships, and the audit events they did
    or that were done to their account, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "exported_at": "2026-12-01T09:00:00Z",
                    "account": UserPublic.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                    "memberships": [
                        {
                            "workspace_id": "97915d76-0e0a-4c53-8f64-3a1c2b9d8e7f",
                            "workspace_name": "Difference Engine",
                            "role": "owner",
                            "joined_at": "2026-11-26T11:00:00Z",
                        }
                    ],
                    "audit_events": [
                        {
                            "id": "0b6f3c1e-2d4a-4f5b-9c8d-7e6f5a4b3c2d",
                            "occurred_at": "2026-11-26T10:57:36.926552Z",
                            "action": "user.logged_in",
                            "outcome": "success",
                            "actor": {"type": "user", "id": "d71ec893-6c2e-4a57-9c1d-2b3f4a5e6d7c", "username": "ada"},
                            "workspace_id": None,
                            "target": {"type": "user", "id": "d71ec893-6c2e-4a57-9c1d-2b3f4a5e6d7c"},
                            "context": {"request_id": "5f0c9e1d2b3a4c5d", "ip": "198.51.100.7", "user_agent": "curl"},
                            "metadata": {},
                        }
                    ],
                }
            ]
        }
    )

    exported_at: datetime
    account: UserPublic
    memberships: list[Membership]
    audit_events: list[AuditEventView]
