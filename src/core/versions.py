"""Versions of a resource as entity tags (RFC 9110 8.8.3), and the If-Match condition a change is made under."""

import hashlib
from collections.abc import Collection

from src.core.errors import PreconditionFailed


def entity_tag(*state: object) -> str:
    """A strong entity tag, quoted, that changes whenever any part of ``state`` does."""
    return '"' + hashlib.sha256(repr(state).encode()).hexdigest()[:32] + '"'


def require_match(if_match: Collection[str] | None, current: str) -> None:
    """``PreconditionFailed`` unless ``if_match`` (the If-Match header's tags; None without one) names ``current`` or
    is ``*``. A weak tag never matches: If-Match compares strongly."""
    if if_match is not None and "*" not in if_match and current not in if_match:
        raise PreconditionFailed(f"the resource changed since that version was read; it is now {current}")
