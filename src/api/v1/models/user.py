import uuid
from datetime import datetime

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
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set by each change of the profile or the password; NULL until the first. Part of the ETag.
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
