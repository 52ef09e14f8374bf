"""Users and tokens: what sign-up and profile changes accept, and what a user looks like to clients."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from src.api.v1.models.user import UserBase
from src.api.v1.schemas.fields import Email, Password, PersonName, Username


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
                    "created_at": "2026-11-26T10:57:36.926552Z",
                    "updated_at": "2026-11-26T10:57:36.926552Z",
                }
            ]
        }
    )

    id: uuid.UUID
    full_name: str
    is_active: bool
    created_at: datetime
    updated_at: datetime = Field(description="the last change; created_at until the first")

    @field_validator("updated_at", mode="before")
    @classmethod
    def _created_until_changed(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return value if value is not None else info.data.get("created_at")


class Token(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"access_token": "eyJhbGciOiJIUzI1NiIs…", "token_type": "bearer", "expires_in": 3600}]
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the token expires")
