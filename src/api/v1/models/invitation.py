import uuid
from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field

from src.api.v1.models.workspace_member import Role
from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime, utcnow


class Invitation(CoreModel, table=True):
    """A pending invitation to a workspace (src/services/invitations.py), sent to an email; only a digest of its
    link's token is kept. Deleted once accepted, declined or revoked."""

    __tablename__ = "invitations"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", ondelete="CASCADE", index=True)
    email: str = Field(max_length=320)  # as stored for users: NFC, case-folded
    role: Role = Field(sa_type=String(16))
    invited_by: uuid.UUID  # no foreign key: an invitation outlives its sender's account
    digest: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
