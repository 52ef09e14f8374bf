"""Keyset pagination: rows in a stable (created_at, id) order and an opaque cursor past the last one.

A keyset stays correct while rows are added or removed between pages, where an
offset would skip or repeat them.
"""

import base64
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Mapped

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 200

Row = TypeVar("Row")
Statement = TypeVar("Statement", bound=Select[*tuple[Any, ...]])
Item = TypeVar("Item")


# Microseconds since 0001-01-01 UTC, a dot, the id's 32 hex digits: every string of this pattern, which the OpenAPI
# document publishes, is a cursor (17 digits reach the year 3169).
_CURSOR = r"[0-9]{1,17}\.[0-9a-f]{32}"
CURSOR_PATTERN = rf"^{_CURSOR}$"
# The query parameter: a cursor, or empty for the first page (httpx sends a parameter set to None so).
CURSOR_PARAMETER_PATTERN = rf"^({_CURSOR})?$"
_FIRST_MOMENT = datetime(1, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Cursor:
    """The sort key of the last row of a page."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        return f"{(self.created_at - _FIRST_MOMENT) // _MICROSECOND}.{self.id.hex}"

    @classmethod
    def decode(cls, token: str) -> "Cursor":
        """The cursor ``encode`` made; ``ValueError`` for anything else."""
        if re.fullmatch(CURSOR_PATTERN, token):
            microseconds, id_ = token.split(".")
            return cls(_FIRST_MOMENT + int(microseconds) * _MICROSECOND, uuid.UUID(hex=id_))
        # The format before, base64 JSON: instances of the previous version hand it out during a rolling deploy.
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, id_ = json.loads(raw)
            cursor = cls(datetime.fromisoformat(created_at), uuid.UUID(id_))
            if cursor.created_at.tzinfo is None:
                raise ValueError("naive timestamp")
            return cls(cursor.created_at.astimezone(UTC), cursor.id)
        except (ValueError, TypeError, AttributeError, OverflowError):
            raise ValueError("the cursor is malformed; pass back a next_cursor from a previous page") from None


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """A page's example is its item's first example, and a cursor to the next page."""
        document = handler.resolve_ref_schema(handler(schema))
        item = cls.__pydantic_generic_metadata__["args"]
        examples = TypeAdapter(item[0]).json_schema().get("examples") if item else None
        if examples:
            document["examples"] = [
                {"items": examples[:1], "next_cursor": "63931287456926552.0b6f3c1e2d4a4f5b9c8d7e6f5a4b3c2d"}
            ]
        return document


def keyset_statement(
    statement: Statement,
    page: PageRequest,
    *,
    created_at: Mapped[datetime],
    id_: Mapped[uuid.UUID],
    newest_first: bool = False,
) -> Statement:
    """Order by (created_at, id), oldest or newest first, start after the cursor, fetch one row more than a page.

    The cursor is compared as a row value, ``(created_at, id) < (at, id)``: an index on the two columns then finds
    where the page starts, however deep it is. Spelled ``a < x OR (a = x AND b < y)``, PostgreSQL reads every row
    before it as a filter.
    """
    if page.cursor is not None:
        key, after = tuple_(created_at, id_), (page.cursor.created_at, page.cursor.id)
        statement = statement.where(key < after if newest_first else key > after)
    order = (created_at.desc(), id_.desc()) if newest_first else (created_at.asc(), id_.asc())
    return statement.order_by(*order).limit(page.limit + 1)


def split_page(
    rows: Sequence[Row], page: PageRequest, cursor_of: Callable[[Row], Cursor]
) -> tuple[list[Row], str | None]:
    """The page's rows and the cursor of the next page, None on the last one."""
    items = list(rows[: page.limit])
    has_more = len(rows) > page.limit
    return items, cursor_of(items[-1]).encode() if has_more and items else None
