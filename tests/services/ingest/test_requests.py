"""Reading a webhook body: JSON that Postgres and Kafka can carry, or a 400 that says what is wrong."""

from __future__ import annotations

import gzip
import json

import pytest
from starlette.requests import Request

from services.ingest.requests import MAX_DEPTH, RequestProblem, parse_json, read_body


def refusal(data: bytes | str) -> RequestProblem:
    with pytest.raises(RequestProblem) as caught:
        parse_json(data, "the body")
    return caught.value


def test_json_that_can_be_stored_is_parsed() -> None:
    body = {"text": "caf\u00e9 \U0001f600", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}}
    assert parse_json(json.dumps(body).encode()) == body
    assert parse_json(json.dumps(body, ensure_ascii=False)) == body


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"text": "a\\u0000b"}', "NUL character"),
        (b'{"a\\u0000": 1}', "NUL character"),
        (b'{"text": "\\ud83d"}', "unpaired UTF-16 surrogate"),
        (b'["\\udc00 alone"]', "unpaired UTF-16 surrogate"),
        (b'{"score": NaN}', "NaN is not a JSON number"),
        (b'{"score": Infinity}', "Infinity is not a JSON number"),
        (b"[-Infinity]", "-Infinity is not a JSON number"),
        (b'{"text": "\xff"}', "not valid UTF-8 (byte 10)"),
        (b'{"text": }', "not valid JSON: Expecting value at line 1 column 10"),
        (b'{"score": 1e999}', "number too large to store"),
    ],
    ids=[
        "nul",
        "nul-in-key",
        "high-surrogate",
        "low-surrogate",
        "nan",
        "infinity",
        "minus-infinity",
        "utf8",
        "syntax",
        "overflow",
    ],
)
def test_what_cannot_be_stored_is_a_400_naming_the_problem(data: bytes, reason: str) -> None:
    problem = refusal(data)
    assert problem.status_code == 400
    assert reason in str(problem)
    assert str(problem).startswith("the body ")


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (b'{"message": {"user": {"name": "a\\u0000"}}}', ["message.user.name"]),
        # The key with a lone surrogate and its value with a NUL: two problems of one field.
        (b'{"items": [1, {"x": -1e400}], "tags": {"\\ud800": "a\\u0000"}}',
         ["items.1.x", "tags.\\ud800", "tags.\\ud800"]),
        (b'"\\u0000"', ["body"]),
    ],
    ids=["nested", "several", "root"],
)  # fmt: skip
def test_each_field_that_cannot_be_stored_is_named(data: bytes, fields: list[str]) -> None:
    problem = refusal(data)
    assert sorted(error.field for error in problem.errors) == sorted(fields)
    assert f"(field {problem.errors[0].field})" in str(problem)


def test_nesting_is_allowed_up_to_the_limit_and_refused_past_it() -> None:
    deepest: list[object] = []
    for _ in range(MAX_DEPTH - 1):
        deepest = [deepest]
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) == deepest
    too_deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert f"nests deeper than {MAX_DEPTH} levels" in str(refusal(too_deep))
    objects = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    assert f"nests deeper than {MAX_DEPTH} levels" in str(refusal(objects))


def test_nesting_far_past_the_recursion_limit_is_a_400_not_a_crash() -> None:
    assert f"nests deeper than {MAX_DEPTH} levels" in str(refusal("[" * 100_000 + "]" * 100_000))


def test_the_problem_names_what_was_read() -> None:
    with pytest.raises(RequestProblem, match=r"^line 3 contains a NUL character"):
        parse_json('"\\u0000"', "line 3")


def request(body: bytes, **headers: str) -> Request:
    """A request as the ASGI server hands it over, its body in two chunks."""
    chunks = [body[: len(body) // 2], body[len(body) // 2 :]]

    async def receive() -> dict[str, object]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    raw = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw}, receive)


async def body_refusal(body: bytes, limit: int, **headers: str) -> tuple[int, str]:
    with pytest.raises(RequestProblem) as caught:
        await read_body(request(body, **headers), limit)
    return caught.value.status_code, str(caught.value)


DATA = b'{"text": "' + b"a" * 1000 + b'"}'


async def test_a_body_is_read_whole_and_gzip_is_inflated() -> None:
    assert await read_body(request(DATA), limit=len(DATA)) == DATA
    assert await read_body(request(gzip.compress(DATA), content_encoding="gzip"), limit=len(DATA)) == DATA
    assert await read_body(request(DATA, content_encoding="Identity"), limit=len(DATA)) == DATA


async def test_a_body_past_the_limit_is_a_413_compressed_or_not() -> None:
    assert await body_refusal(DATA, len(DATA) - 1) == (
        413,
        f"the body is larger than the limit of {len(DATA) - 1} bytes",
    )
    declared = await body_refusal(b"", 10, content_length="11")
    assert declared[0] == 413
    bomb = gzip.compress(b"0" * 1_000_000)
    assert await body_refusal(bomb, 10_000, content_encoding="gzip") == (
        413, "the uncompressed body is larger than the limit of 10000 bytes"
    )  # fmt: skip


async def test_a_broken_or_unknown_encoding_is_refused() -> None:
    assert await body_refusal(gzip.compress(DATA)[:-12], 10_000, content_encoding="gzip") == (
        400, "the gzip body is truncated"
    )  # fmt: skip
    assert await body_refusal(b"not gzip at all", 10_000, content_encoding="gzip") == (
        400,
        "the body is not valid gzip",
    )
    status, detail = await body_refusal(DATA, 10_000, content_encoding="br")
    assert status == 415 and "'br' is not supported" in detail
