"""Keyset pagination on (created_at, id), newest first, with opaque base64url cursors."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from api.errors import InvalidRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
CursorQuery = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]


class Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> uuid.UUID: ...


T = TypeVar("T")
R = TypeVar("R", bound="Keyed")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(row: Keyed) -> str:
    """The opaque cursor that continues after this row."""
    raw = f"{row.created_at.isoformat()}|{row.id.hex}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor points after; a malformed cursor is invalid_request."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, row_id = raw.split("|")
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None:
            raise ValueError(created_at)
        return when, uuid.UUID(hex=row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not one this API issued") from exc


def keyset_page(
    stmt: Select[Any],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    *,
    cursor: str | None,
    limit: int,
) -> Select[Any]:
    """Newest first, after the cursor; one extra row tells whether a next page exists."""
    if cursor is not None:
        when, after_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(created_at, row_id) < tuple_(when, after_id))
    return stmt.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)


def split_page(rows: Sequence[R], limit: int) -> tuple[Sequence[R], str | None]:
    """The rows of this page and the cursor of the next (None when this is the last)."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(page[-1])
