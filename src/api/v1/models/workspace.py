import uuid
from datetime import datetime

from sqlmodel import Field

from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime, utcnow


class WorkspaceBase(CoreModel):
    name: str = Field(min_length=1, max_length=100)


class Workspace(WorkspaceBase, table=True):
    __tablename__ = "workspaces"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set by each change; NULL until the first. Part of the workspace's version (ETag), with the name.
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
