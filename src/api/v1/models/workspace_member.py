import enum
import uuid
from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field

from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime, utcnow


class Role(enum.StrEnum):
    """Workspace roles, strongest first."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class WorkspaceMember(CoreModel, table=True):
    __tablename__ = "workspace_members"

    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", primary_key=True, ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE", index=True)
    role: Role = Field(sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set by each change of the role; NULL until the first. Part of the membership's version (ETag), with the role.
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
