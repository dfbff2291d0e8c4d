"""Keyset pagination, the one way every list of the API pages: a page of items and an opaque cursor
naming the last id returned (the next page starts after it, so rows added meanwhile never shift it)."""

from __future__ import annotations

import base64
import binascii
from typing import Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field

from bookwarden.core.errors import InvalidInput

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


def encode_cursor(last_id: UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise InvalidInput("cursor: not a cursor this API returned") from None
