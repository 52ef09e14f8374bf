import uuid
from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field

from src.api.v1.models.workspace_member import Role
from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime, utcnow


class ApiKey(CoreModel, table=True):
    """A workspace's key for programs (src/services/api_keys.py): it acts inside that workspace only, with its role.
    Only a digest of the secret is kept, and its first characters to tell keys apart."""

    __tablename__ = "api_keys"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", ondelete="CASCADE", index=True)
    name: str = Field(max_length=100)
    role: Role = Field(sa_type=String(16))
    prefix: str = Field(max_length=16)
    digest: str = Field(max_length=64, unique=True)  # SHA-256 of the secret, hex
    created_by: uuid.UUID  # the admin who made it (no foreign key: the key outlives their account)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
