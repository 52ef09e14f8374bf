from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger
from sqlmodel import Field

from src.core.databases import AuditModel
from src.core.timestamps import UTCDateTime


class AuditChainHead(AuditModel, table=True):
    """The last event of one hash chain, signed (src/services/audit_chain.py); the relay moves it on."""

    __tablename__ = "audit_chain_heads"

    chain: str = Field(primary_key=True, max_length=36)  # the workspace id, or "service" for events of no workspace
    seq: int = Field(sa_type=BigInteger)
    hash: str = Field(max_length=64)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    signature: str = Field(max_length=64)


class AuditPrune(AuditModel, table=True):
    """One prune: events recorded before ``before`` were deleted; ``anchors`` are, per chain, the place and hash of
    the last event removed, where verification of what remains begins. Signed, as the heads are."""

    __tablename__ = "audit_prunes"

    id: int | None = Field(default=None, primary_key=True)
    before: datetime = Field(sa_type=UTCDateTime)
    pruned_at: datetime = Field(sa_type=UTCDateTime)
    deleted: int = Field(sa_type=BigInteger)
    anchors: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    signature: str = Field(max_length=64)
