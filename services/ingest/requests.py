"""Reading webhook requests safely: size limits, gzip, JSON that Postgres and Kafka can carry."""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

from starlette.requests import Request

from shared.http.problems import MAX_FIELD_PROBLEMS, FieldProblem, HTTPProblem

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
    """Parse JSON that can be stored: UTF-8, finite numbers, no NUL, nesting at most MAX_DEPTH.

    The 400 names the field at fault in `errors` (dotted: `message.text`, `payload.items.0`).
    """
    value = load_json(data, what)
    problems = unstorable(value)
    if problems:
        first = problems[0]
        raise RequestProblem(400, f"{what} {first.problem} (field {first.field})", problems)
    return value


def load_json(data: bytes | str, what: str = "the body") -> Any:
    """Parse JSON text (UTF-8 when bytes), without checking what its values are; see `unstorable`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as error:
        raise RequestProblem(400, f"{what} is not valid UTF-8 (byte {error.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise RequestProblem(400, f"{what} is not valid JSON: {error.msg} at {where}") from None
    except RecursionError:
        raise RequestProblem(400, f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:
        raise RequestProblem(400, f"{what} is not valid JSON: {error}") from None


def unstorable(value: Any, event: int | None = None) -> list[FieldProblem]:
    """What of a parsed JSON value Postgres would refuse (jsonb and text hold no NUL and no lone
    surrogate; jsonb no infinity, which `1e999` reads as) or nests past MAX_DEPTH; one problem a
    field, at most MAX_FIELD_PROBLEMS."""
    problems: list[FieldProblem] = []
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack and len(problems) < MAX_FIELD_PROBLEMS:
        item, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            # One problem for the whole value: its deepest paths are not worth listing one by one.
            return [FieldProblem(field=_field(path), problem=f"nests deeper than {MAX_DEPTH} levels", event=event)]
        problem = None
        if isinstance(item, str):
            problem = _string_problem(item)
        elif isinstance(item, float) and not math.isfinite(item):
            problem = "contains a number too large to store (it reads as infinity)"
        elif isinstance(item, dict):
            for key, child in item.items():
                key_problem = _string_problem(key)
                if key_problem:
                    problems.append(FieldProblem(field=_field((*path, key)), problem=f"has a key that {key_problem}",
                                                 event=event))  # fmt: skip
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, str(index))) for index, child in enumerate(item))
        if problem:
            problems.append(FieldProblem(field=_field(path), problem=problem, event=event))
    return problems


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired UTF-16 surrogate escape, which cannot be stored"
    return None


def _field(path: tuple[str, ...]) -> str:
    """The dotted name of a field, printable and short whatever the keys hold: it is answered as JSON."""
    if not path:
        return "body"
    name = ".".join(part if part.isprintable() and _encodes(part) else ascii(part)[1:-1] for part in path)
    return name if len(name) <= 200 else name[:197] + "..."


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
