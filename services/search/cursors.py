"""Page cursors: the sort key of a page's last row, opaque to clients and bound to the query it continues."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, TypeVar

from pydantic import TypeAdapter

from shared.http.problems import FieldProblem, HTTPProblem

Position = TypeVar("Position")

# Longer than any cursor this API writes: a search cursor holds an offset, a score and an id.
MAX_CURSOR_CHARS = 512
CURSOR = "`next_cursor` of the previous page, unchanged; without it, the first page."


class InvalidCursor(HTTPProblem):
    """A cursor this API did not write, or wrote for another query: a 400 that names `cursor`,
    wherever in a request's handling it is found."""

    def __init__(self, problem: str) -> None:
        super().__init__(400, f"cursor: {problem}", [FieldProblem(field="cursor", problem=problem)])


def scope(*parts: Any) -> str:
    """A short digest of what a cursor continues (a list's filters and order, a search's
    parameters): a cursor of one query is refused by another instead of paging it wrongly."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:9]).decode()


def encode(position: Any, of: str) -> str:
    """A cursor for the page after `position` (JSON-able: numbers, strings, UUIDs, datetimes) of the query `of`."""
    body = json.dumps({"p": position, "q": of}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(body.encode()).rstrip(b"=").decode()


def decode(cursor: str, of: str, shape: TypeAdapter[Position]) -> Position:
    """The position a cursor of the query `of` holds, validated by `shape` (an adapter of a tuple type)."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("longer than any cursor")
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = shape.validate_python(data["p"])
        query = data["q"]
    except (ValueError, TypeError, KeyError, binascii.Error):  # base64, UTF-8, JSON and validation errors
        raise InvalidCursor("is not a cursor this API gave; pass `next_cursor` unchanged") from None
    if query != of:
        raise InvalidCursor("belongs to another query; start again without it")
    return position
