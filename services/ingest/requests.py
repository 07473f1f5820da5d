"""Reading webhook requests safely: size limits, gzip, JSON that Postgres and Kafka can carry."""

from __future__ import annotations

import json
import zlib
from typing import Any

from starlette.requests import Request

from shared.http.problems import HTTPProblem

MAX_DEPTH = 64


class RequestProblem(HTTPProblem):
    """A body Chorus cannot read or store (answered with problem details; `chorus publish` reports it by line)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when sent so; 413 past `limit` bytes either way."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestProblem(413, f"the body is larger than the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestProblem(413, f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        return _gunzip(body, limit)
    if encoding not in ("", "identity"):
        raise RequestProblem(415, f"Content-Encoding {encoding[:40]!r} is not supported; send gzip or nothing")
    return body


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise RequestProblem(400, "the body is not valid gzip") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise RequestProblem(413, f"the uncompressed body is larger than the limit of {limit} bytes")
    if not inflater.eof:
        raise RequestProblem(400, "the gzip body is truncated")
    return data


def parse_json(data: bytes | str, what: str = "the body") -> Any:
    """Parse JSON that can be stored: UTF-8, finite numbers, no NUL, nesting at most MAX_DEPTH."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as error:
        raise RequestProblem(400, f"{what} is not valid UTF-8 (byte {error.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise RequestProblem(400, f"{what} is not valid JSON: {error.msg} at {where}") from None
    except RecursionError:
        raise RequestProblem(400, f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:
        raise RequestProblem(400, f"{what} is not valid JSON: {error}") from None
    _check_storable(value, what)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_storable(value: Any, what: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RequestProblem(400, f"{what} nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            _check_string(item, what)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key, what)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _check_string(text: str, what: str) -> None:
    if "\x00" in text:
        raise RequestProblem(400, f"{what} contains a NUL character (\\u0000), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestProblem(400, f"{what} contains an unpaired UTF-16 surrogate escape") from None
