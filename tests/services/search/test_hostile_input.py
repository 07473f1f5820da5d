"""Hostile input to every search route: a 4xx naming the field, never a 5xx; snippets carry no live markup."""

from __future__ import annotations

import copy
import json
import random
from typing import Any
from urllib.parse import quote

from services.search.settings import SearchSettings
from tests.services.conftest import sample
from tests.services.search.conftest import Search

LIMIT = SearchSettings.max_body_bytes  # CHORUS_SEARCH_MAX_BODY_BYTES, its default in these tests
NOT_A_CLUSTER = "00000000-0000-4000-8000-000000000000"
EARLIEST = "0001-01-01T00:00:00+05:00"  # before 0001-01-01 in UTC
LATEST = "9999-12-31T23:59:59-05:00"  # after 9999-12-31 in UTC

Case = tuple[str, str, str, bytes | None]  # name, method, path with its query, body


def _body(**fields: Any) -> bytes:
    return json.dumps({"q": "refund", **fields}).encode()


def _raw(text: str) -> bytes:
    """A body written by hand: JSON that json.dumps would not write (1e999, a lone surrogate escape)."""
    return text.encode()


def _cases() -> list[Case]:
    deep: Any = 1
    for _ in range(50):
        deep = {"a": deep}
    gets = [
        ("creator_id NUL", "/v1/search?q=refund&creator_id=a%00b"),
        ("source NUL", "/v1/search?q=refund&source=%00"),
        ("content_type NUL", "/v1/search?q=refund&content_type=%00"),
        ("tag NUL", "/v1/search?q=refund&tag=k:%00"),
        ("tag key NUL", "/v1/search?q=refund&tag=%00:v"),
        ("q NUL", "/v1/search?q=a%00"),
        ("cursor NUL", "/v1/search?q=refund&cursor=%00"),
        ("q not UTF-8", "/v1/search?q=%ED%A0%80"),
        ("creator_id not UTF-8", "/v1/search?q=refund&creator_id=%FF%FE"),
        ("since year 1 east", f"/v1/search?q=refund&since={quote(EARLIEST)}"),
        ("until year 9999 west", f"/v1/search?q=refund&until={quote(LATEST)}"),
        ("both ends", f"/v1/search?q=refund&since={quote(EARLIEST)}&until={quote(LATEST)}"),
        ("since year 10000", "/v1/search?q=refund&since=10000-01-01T00:00:00Z"),
        ("keyword since year 1", f"/v1/search?q=refund&mode=keyword&since={quote(EARLIEST)}"),
        ("clusters creator_id NUL", "/v1/clusters?creator_id=%00"),
        ("clusters cursor NUL", "/v1/clusters?cursor=%00"),
        ("cluster cursor NUL", f"/v1/clusters/{NOT_A_CLUSTER}?cursor=%00"),
        ("cluster id NUL", "/v1/clusters/%00"),
        ("conversation id NUL", "/v1/conversations/c%00"),
        ("conversation id not UTF-8", "/v1/conversations/%ED%A0%80"),
        ("conversation cursor NUL", "/v1/conversations/c?cursor=%00"),
    ]
    posts = [
        ("metadata value NUL", "/v1/search", _body(metadata={"a": "\x00"})),
        ("metadata key NUL", "/v1/search", _body(metadata={"\x00": 1})),
        ("metadata nested NUL", "/v1/search", _body(metadata={"a": [{"b": "\x00"}]})),
        ("metadata lone surrogate", "/v1/search", _raw('{"q": "refund", "metadata": {"a": "\\ud800"}}')),
        ("metadata key lone surrogate", "/v1/search", _raw('{"q": "refund", "metadata": {"\\udfff": 1}}')),
        ("metadata 1e999", "/v1/search", _raw('{"q": "refund", "metadata": {"a": 1e999}}')),
        ("metadata -Infinity", "/v1/search", _raw('{"q": "refund", "metadata": {"a": [-Infinity]}}')),
        ("metadata NaN", "/v1/search", _raw('{"q": "refund", "metadata": {"a": NaN}}')),
        ("metadata deep", "/v1/search", _body(metadata=deep)),
        ("metadata many keys", "/v1/search", _body(metadata={str(i): i for i in range(2000)})),
        ("creator_id NUL", "/v1/search", _body(creator_id="\x00")),
        ("source lone surrogate", "/v1/search", _raw('{"q": "refund", "source": "\\ud800"}')),
        ("q lone surrogate", "/v1/search", _raw('{"q": "refund \\ud800"}')),
        ("tag lone surrogate", "/v1/search", _raw('{"q": "refund", "tag": ["k:\\udc00"]}')),
        ("since year 1", "/v1/search", _body(since=EARLIEST)),
        ("until year 9999", "/v1/search", _body(until=LATEST)),
        ("vector too short", "/v1/search", _body(mode="semantic", vector=[0.1, 0.2])),
        ("vector 1e999", "/v1/search", _raw('{"mode": "semantic", "vector": [1e999]}')),
        ("vector of strings", "/v1/search", _body(mode="semantic", vector=["a"])),
        ("over the limit", "/v1/search", _body(q="x", metadata={"a": "b" * LIMIT})),
        ("vector over the limit", "/v1/search", _body(mode="semantic", vector=[0.123456789] * 20_000)),
        ("not JSON", "/v1/search", b"{nope"),
        ("action lone surrogate", f"/v1/clusters/{NOT_A_CLUSTER}/action", _raw('{"response_text": "\\ud800"}')),
        ("action NUL", f"/v1/clusters/{NOT_A_CLUSTER}/action", _body(response_text="a\x00")),
        ("action over the limit", f"/v1/clusters/{NOT_A_CLUSTER}/action", _body(response_text="a" * LIMIT)),
        ("erasure lone surrogate", "/v1/privacy/erasure", _raw('{"party": "\\ud800"}')),
        ("erasure NUL", "/v1/privacy/erasure", _body(party="\x00")),
        ("erasure over the limit", "/v1/privacy/erasure", _body(party="p" * LIMIT)),
    ]
    return [(name, "GET", path, None) for name, path in gets] + [(n, "POST", p, b) for n, p, b in posts]


def _send(search: Search, method: str, path: str, body: bytes | None, auth: bool = True) -> Any:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {search.ingest.tenant.api_key}"
    return search.client.request(method, path, content=body, headers=headers)


def _server_errors(search: Search, cases: list[Case]) -> list[str]:
    """Send every case; returns those answered 5xx. Every 4xx must be problem details."""
    failures = []
    for name, method, path, body in cases:
        response = _send(search, method, path, body)
        if response.status_code >= 500:
            failures.append(f"{name}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json", name
            assert response.json()["status"] == response.status_code, name
    return failures


def _field(response: Any) -> set[str]:
    return {error["field"] for error in response.json()["errors"]}


async def test_hostile_input_to_every_route_gets_no_server_error(search: Search) -> None:
    cases = _cases()
    assert _server_errors(search, cases) == []
    assert search.client.get("/readyz").status_code == 200
    assert search.search(q="refund"), "search still answers"


async def test_each_refusal_names_the_field(search: Search) -> None:
    named = {case[0]: case for case in _cases()}
    expected = {
        "creator_id NUL": "creator_id", "tag NUL": "tag", "since year 1 east": "since",
        "until year 9999 west": "until", "clusters creator_id NUL": "creator_id",
        "conversation id NUL": "conversation_id", "metadata lone surrogate": "metadata",
        "metadata 1e999": "metadata", "metadata deep": "metadata", "metadata many keys": "metadata",
        "metadata value NUL": "metadata", "vector too short": "vector", "action lone surrogate": "response_text",
    }  # fmt: skip
    for name, field in expected.items():
        _, method, path, body = named[name]
        response = _send(search, method, path, body)
        assert response.status_code == 400, (name, response.text)
        assert field in _field(response), (name, response.json())
    for name in ("over the limit", "vector over the limit", "action over the limit", "erasure over the limit"):
        _, method, path, body = named[name]
        assert _send(search, method, path, body).status_code == 413, name
    # A year-1 time in UTC itself, and the latest one, are in range: only their UTC value decides.
    assert search.get("/v1/search", q="refund", since="0001-01-01T00:00:00Z").status_code == 200
    assert search.get("/v1/search", q="refund", until="9999-12-31T23:59:59Z").status_code == 200


async def test_an_oversized_body_is_refused_before_authentication(search: Search) -> None:
    body = _body(metadata={"a": "b" * (LIMIT * 4)})
    for auth in (False, True):
        response = _send(search, "POST", "/v1/search", body, auth=auth)
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert str(LIMIT) in response.json()["detail"]
    # Sent in chunks without a Content-Length: counted as it is read.
    chunks = iter([body[: LIMIT // 2], body[LIMIT // 2 : LIMIT * 2], body[LIMIT * 2 :]])
    streamed = search.client.post("/v1/search", content=chunks, headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "content-length" not in streamed.request.headers
    just_under = _body(metadata={"a": "b" * (LIMIT - 200)})
    assert len(just_under) <= LIMIT
    assert _send(search, "POST", "/v1/search", just_under).status_code == 200


# Values a mutation puts in place of a field, and values it adds.
ODD_VALUES: list[Any] = [None, True, -1, 2**70, 1e308, float("inf"), float("nan"), "", "x" * 3000, "\x00",
                         "\ud800", "a\udfffb", "💥\u202e", EARLIEST, LATEST, "10000-01-01T00:00:00Z", "2026-13-45",
                         [], {}, [None], {"": None}, [[[[]]]], {"\x00": "\x00"}, ["k:\x00"], [1e308] * 384]  # fmt: skip
FIELDS = ["q", "mode", "limit", "source", "content_type", "creator_id", "since", "until", "tag", "threshold",
          "metadata", "vector", "cursor", "explain"]  # fmt: skip
MUTATIONS = 150


def _mutations(seed: int) -> list[Case]:
    """POST /v1/search bodies with one to three fields replaced or added, written as Python's json
    writes them (Infinity, NaN and lone surrogates included); seeded, so a failure repeats."""
    rng = random.Random(seed)
    base: dict[str, Any] = {"q": "refund policy", "mode": "hybrid", "limit": 5, "tag": ["kind:question"],
                            "metadata": {"a": {"b": [1, "c"]}}, "since": "2020-01-01T00:00:00Z"}  # fmt: skip
    cases: list[Case] = []
    for number in range(MUTATIONS):
        body = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            body[rng.choice(FIELDS)] = rng.choice(ODD_VALUES)
        if rng.random() < 0.3:
            body["metadata"] = {rng.choice(["k", "\x00", "\ud800"]): rng.choice(ODD_VALUES)}
        cases.append((f"mutation {number} (seed {seed})", "POST", "/v1/search", json.dumps(body).encode()))
        params = "&".join(f"{name}={_query_value(value)}" for name, value in body.items()
                          if name not in ("metadata", "vector") and not isinstance(value, dict | list))  # fmt: skip
        cases.append((f"mutation {number} as GET (seed {seed})", "GET", f"/v1/search?{params}", None))
    return cases


def _query_value(value: Any) -> str:
    """`value` percent-encoded as UTF-8, a lone surrogate included (as the invalid bytes it would be)."""
    return quote(str(value).encode(errors="surrogatepass"), safe="")


async def test_generated_mutations_get_no_server_error(search: Search) -> None:
    assert _server_errors(search, _mutations(seed=16)) == []
    assert search.client.get("/readyz").status_code == 200


async def test_snippets_escape_the_documents_markup(search: Search) -> None:
    hostile = "Refund please <img src=x onerror=alert(1)> and <b>bold</b> \ue000 marker & more"
    event = dict(sample("raw_events")[0], external_id="xss-1", text=hostile)
    assert search.ingest.events(event).status_code == 202
    await search.ingest.wait_for("SELECT count(*) FROM documents WHERE external_id = 'xss-1'", 1)
    results = [r for r in search.search(q="onerror refund", mode="keyword") if r["external_id"] == "xss-1"]
    assert results
    snippet = results[0]["snippet"]
    # ts_headline drops what its parser reads as a tag (<b>); whatever is left of markup is escaped.
    assert "&lt;img src=x <mark>onerror</mark>=alert(1)&gt;" in snippet and "&amp; more" in snippet, snippet
    assert snippet.replace("<mark>", "").replace("</mark>", "").count("<") == 0, snippet
    assert "<mark>" in snippet and "\ue000" not in snippet, snippet
    assert results[0]["text"] == hostile  # the text itself stays as sent: JSON, not HTML
