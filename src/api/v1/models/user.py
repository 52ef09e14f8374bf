import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field

from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime, utcnow


class UserBase(CoreModel):
    email: str = Field(max_length=320, index=True, unique=True)
    username: str = Field(max_length=32, unique=True)
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)


class User(UserBase, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    full_name: str = Field(max_length=201)
    hashed_password: str = Field(max_length=255)
    # False once an admin deactivated the account: it cannot log in, and its tokens are refused.
    is_active: bool = True
    # Set by `make create-admin`, never through the API: admins may deactivate and reactivate accounts.
    is_admin: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # When the owner followed a confirmation link sent to ``email``; NULL while it is unconfirmed.
    email_verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set when every token issued before must stop working (a deactivation); part of the tokens' stamp.
    tokens_revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set by each change of the profile or the password; NULL until the first. Part of the ETag.
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
