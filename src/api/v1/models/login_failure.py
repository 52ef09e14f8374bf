from datetime import datetime

from sqlmodel import Field

from src.core.databases import CoreModel
from src.core.timestamps import UTCDateTime


class LoginFailure(CoreModel, table=True):
    """The recent failed log-ins of one account or one client address (src/services/login_throttle.py)."""

    __tablename__ = "login_failures"

    # "account:<user id>", "login:<folded login>" for a login that names no user, or "address:<client address>".
    key: str = Field(primary_key=True, max_length=400)
    failures: int
    last_failure_at: datetime = Field(sa_type=UTCDateTime, index=True)  # stale counters are deleted by it
