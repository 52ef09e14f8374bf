"""API keys: what making one accepts, and how keys are shown (the secret only once)."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from src.api.v1.models.workspace_member import Role
from src.api.v1.schemas.fields import WorkspaceName

_KEY: JsonDict = {
    "id": "3c9a1f7e-5d2b-4e8a-9f6c-0b1d2e3f4a5b",
    "name": "CI deploys",
    "role": "member",
    "prefix": "fsk_Q2hhcmxl",
    "created_by": "d71ec893-6c2e-4a57-9c1d-2b3f4a5e6d7c",
    "created_at": "2026-12-01T09:00:00Z",
    "expires_at": "2027-06-01T00:00:00Z",
    "last_used_at": "2026-12-01T09:05:00Z",
}


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "CI deploys", "role": "member", "expires_in_days": 90}]},
    )

    name: WorkspaceName
    # Not owner: deleting the workspace and handing out ownership stay with people.
    role: Literal[Role.MEMBER, Role.ADMIN] = Field(
        default=Role.MEMBER, description="what the key may do in the workspace; not above your own role"
    )
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="the key stops working this many days from now; never when absent"
    )


class ApiKeyPublic(BaseModel):
    """A key as its workspace's admins see it: never its secret."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_KEY]})

    id: uuid.UUID
    name: str
    role: Role
    prefix: str = Field(description="the secret's first characters, to tell keys apart")
    created_by: uuid.UUID
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="to the minute; null until first used")


class ApiKeyCreated(ApiKeyPublic):
    """A new key, with its secret: shown this once, and never again."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [_KEY | {"last_used_at": None, "secret": "fsk_Q2hhcmxlcyBCYWJiYWdl…"}]}
    )

    secret: str = Field(description="send as Authorization: Bearer <secret>; kept by the service only as a digest")
