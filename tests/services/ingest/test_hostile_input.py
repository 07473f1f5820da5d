"""Hostile input: no 5xx, the service stays ready, and the valid events sent in between all land."""

import copy
import gzip
import json
import random
from collections.abc import Callable
from typing import Any

import httpx

from tests.services.conftest import APP_KEY, Ingest, sample, sign

LIMIT = 65536  # CHORUS_INGEST_MAX_BODY_BYTES in these tests

Case = tuple[str, bytes, dict[str, Any]]


def _json_cases() -> list[tuple[str, bytes]]:
    deep_ok = b'{"a":' * 50 + b"1" + b"}" * 50
    return [
        ("empty", b""),
        ("truncated", b'{"type": "message.new", '),
        ("null", b"null"),
        ("array", b"[]"),
        ("number", b"123"),
        ("string", b'"message.new"'),
        ("invalid utf-8", b'{"type": "\xff\xfe"}'),
        ("nan", b'{"type": NaN}'),
        ("infinity", b'{"x": -Infinity}'),
        ("nul escape", b'{"type": "a\\u0000b"}'),
        ("lone surrogate", b'{"type": "\\ud800"}'),
        ("deep nesting", b"[" * 100_000 + b"]" * 100_000),
        ("deep object", b'{"a":' * 70 + b"1" + b"}" * 70),
        ("deep but allowed", deep_ok),
        ("over the size limit", b'{"x": "' + b"a" * (LIMIT + 10) + b'"}'),
        ("just under the limit", b'{"x": "' + b"a" * (LIMIT - 100) + b'"}'),
        ("duplicate keys", b'{"type": "a", "type": "message.new"}'),
        ("type is a number", b'{"type": 5}'),
        ("bare control chars", b'{"type": "a\x01b"}'),
        ("huge key", json.dumps({"k" * 10_000: 1}).encode()),
        ("many keys", json.dumps({str(i): i for i in range(3000)}).encode()),
        ("bom", b"\xef\xbb\xbf{}"),
        ("whitespace", b"   \n\t  "),
        ("xml", b"<?xml version='1.0'?><a/>"),
    ]


def _message_cases() -> list[tuple[str, bytes]]:
    event = sample("streamchat_events")[0]

    def variant(change: Callable[[dict[str, Any]], Any]) -> bytes:
        copy = json.loads(json.dumps(event))
        change(copy)
        return json.dumps(copy).encode()

    return [
        ("no message", variant(lambda e: e.pop("message"))),
        ("message null", variant(lambda e: e.update(message=None))),
        ("user is a list", variant(lambda e: e["message"].update(user=[1]))),
        ("members is a string", variant(lambda e: e.update(members="all"))),
        ("members of numbers", variant(lambda e: e.update(members=[1, 2]))),
        ("created_at garbage", variant(lambda e: e["message"].update(created_at="yesterday"))),
        ("created_at number", variant(lambda e: e["message"].update(created_at=12))),
        ("text is an object", variant(lambda e: e["message"].update(text={"a": 1}))),
        ("no members no channel", variant(lambda e: (e.pop("members"), e["message"].update(user={"id": "x"})))),
        ("id empty", variant(lambda e: e["message"].update(id=""))),
        ("unknown event type", variant(lambda e: e.update(type="reaction.new"))),
        ("a million char text", variant(lambda e: e["message"].update(text="é" * 20_000))),
    ]


def _signed(body: bytes, webhook_id: str) -> dict[str, str]:
    return {"X-Api-Key": APP_KEY, "X-Signature": sign(body), "X-Webhook-Id": webhook_id,
            "Content-Type": "application/json"}  # fmt: skip


def _post_all(ingest: Ingest, path: str, cases: list[Case], good: Callable[[int], httpx.Response]) -> list[str]:
    """Send every case, a valid event after every fifth; returns the cases that got a 5xx."""
    failures = []
    for number, (name, body, headers) in enumerate(cases):
        response = ingest.client.post(path, content=body, headers=headers)
        if response.status_code >= 500:
            failures.append(f"{name}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json", name
            problem = response.json()
            assert problem["status"] == response.status_code and problem["detail"], name
        if number % 5 == 4:
            assert good(number).status_code in (200, 202)
    assert ingest.client.get("/readyz").status_code == 200
    return failures


async def test_streamchat_survives_hostile_bodies(ingest: Ingest) -> None:
    cases: list[Case] = [(name, body, _signed(body, f"bad-{i}")) for i, (name, body) in
                         enumerate(_json_cases() + _message_cases())]  # fmt: skip
    plain = b'{"type": "message.new"}'
    bomb = b" " * (LIMIT * 20)
    cases += [
        ("gzip header, plain body", plain, {**_signed(plain, "gz"), "Content-Encoding": "gzip"}),
        ("gzip bomb", gzip.compress(bomb), {**_signed(bomb, "bomb"), "Content-Encoding": "gzip"}),
        ("truncated gzip", gzip.compress(plain)[:-6], {**_signed(plain, "tr"), "Content-Encoding": "gzip"}),
        ("brotli", plain, {**_signed(plain, "br"), "Content-Encoding": "br"}),
        ("signature not hex", plain, {**_signed(plain, "nh"), "X-Signature": "zz" * 40}),
        ("signature non-ascii", plain, {**_signed(plain, "na"), "X-Signature": "é".encode()}),
        ("attempt not a number", plain, {**_signed(plain, "at"), "X-Webhook-Attempt": "-1e9"}),
        ("very long webhook id", plain, _signed(plain, "w" * 5000)),
        ("text/plain", plain, {**_signed(plain, "tp"), "Content-Type": "text/plain"}),
    ]  # fmt: skip
    good_event = sample("streamchat_events")[0]

    def good(number: int) -> httpx.Response:
        body = json.dumps(dict(good_event, message=dict(good_event["message"], id=f"good-{number}"))).encode()
        return ingest.client.post("/webhooks/streamchat", content=body, headers=_signed(body, f"good-{number}"))

    assert len(cases) >= 30
    assert _post_all(ingest, "/webhooks/streamchat", cases, good) == []
    expected = len(cases) // 5
    assert (
        await ingest.wait_for("SELECT count(*) FROM streamchat_messages WHERE message_id LIKE 'good-%'", expected)
        == expected
    )


async def test_tavus_survives_hostile_bodies(ingest: Ingest) -> None:
    headers = {"X-Chorus-Token": ingest.tenant.tavus_token, "Content-Type": "application/json"}
    callback = sample("tavus_callbacks")[2]

    def variant(**changes: Any) -> bytes:
        return json.dumps(dict(callback, **changes)).encode()

    analysis = {"analysis": {"a": [1]}}
    cases: list[Case] = [(name, body, headers) for name, body in _json_cases()]
    cases += [
        (name, body, headers) for name, body in [
            ("conversation id number", variant(conversation_id=5)),
            ("conversation id huge", variant(conversation_id="c" * 1000)),
            ("properties a list", variant(properties=[1])),
            ("transcript a string", variant(properties={"transcript": "hello"})),
            ("transcript of numbers", variant(properties={"transcript": [1, 2]})),
            ("turn without role", variant(properties={"transcript": [{"content": "hi"}]})),
            ("timestamp garbage", variant(timestamp="soon")),
            ("event type missing", json.dumps({"conversation_id": "c"}).encode()),
            ("analysis an object", variant(event_type="application.perception_analysis", properties=analysis)),
            ("unknown event type", variant(event_type="system.unknown")),
        ]
    ]  # fmt: skip
    cases.append(("token in query only, wrong", b"{}", {"Content-Type": "application/json", "X-Chorus-Token": "nope"}))

    def good(number: int) -> httpx.Response:
        return ingest.tavus(dict(sample("tavus_callbacks")[0], conversation_id=f"good-{number}"))

    assert len(cases) >= 30
    assert _post_all(ingest, "/webhooks/tavus", cases, good) == []
    expected = len(cases) // 5
    assert (
        await ingest.wait_for("SELECT count(*) FROM tavus_conversations WHERE conversation_id LIKE 'good-%'", expected)
        == expected
    )


async def test_events_survive_hostile_bodies(ingest: Ingest) -> None:
    auth = {"Authorization": f"Bearer {ingest.tenant.api_key}", "Content-Type": "application/json"}
    event = sample("raw_events")[0]

    def variant(**changes: Any) -> bytes:
        return json.dumps(dict(event, **changes)).encode()

    bad_tags = {"type": "tags", "body": "{"}
    cases: list[Case] = [(name, body, auth) for name, body in _json_cases()]
    cases += [
        (name, body, auth) for name, body in [
            ("source upper case", variant(source="Slack")),
            ("source empty", variant(source="")),
            ("external id huge", variant(external_id="x" * 600)),
            ("occurred_at garbage", variant(occurred_at="last tuesday")),
            ("tags not strings", variant(tags={"a": [1]})),
            ("payload a list", variant(payload=[1, 2])),
            ("unknown field", variant(colour="blue")),
            ("text a number", variant(text=5)),
            ("vcon without version", variant(source="vcon", payload={"subject": "x"})),
            ("vcon tags not json", variant(source="vcon", payload={"vcon": "0.3.0", "attachments": [bad_tags]})),
            ("too many events", json.dumps([event] * 1001).encode()),
            ("array of junk", b"[1, null, \"x\"]"),
        ]
    ]  # fmt: skip
    cases += [
        ("ndjson with a broken line", b'{"a": 1}\n{nope\n', {**auth, "Content-Type": "application/x-ndjson"}),
        ("no auth", variant(), {"Content-Type": "application/json"}),
        ("basic auth", variant(), {"Authorization": "Basic dXNlcjpwYXNz"}),
    ]

    def good(number: int) -> httpx.Response:
        return ingest.events(dict(event, external_id=f"good-{number}", text=f"good event {number}"))

    assert len(cases) >= 30
    assert _post_all(ingest, "/v1/events", cases, good) == []
    expected = len(cases) // 5
    assert (
        await ingest.wait_for("SELECT count(*) FROM raw_events WHERE external_id LIKE 'good-%'", expected) == expected
    )
    assert await ingest.count("SELECT count(*) FROM raw_events") == expected


# Values a mutation puts where a field was: other types, extremes, characters parsers trip on.
ODD_VALUES: list[Any] = [None, True, -1, 2**70, 1e308, -0.0, "", "x" * 5000, "\u0000", "💥\u202e", "2026-13-45",
                         [], {}, [None], {"": None}, [[[]]], {"id": {"id": "x"}}]  # fmt: skip
MUTATIONS = 150  # per endpoint: bounded in count, a few seconds each


def _mutate(record: dict[str, Any], rng: random.Random) -> None:
    """Replace, drop or add one field somewhere inside `record`."""
    container: Any = record
    while True:
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        if not keys:
            break
        key = rng.choice(keys)
        child = container[key]
        if isinstance(child, dict | list) and child and rng.random() < 0.6:
            container = child
            continue
        action = rng.choice(["replace", "drop", "add"])
        if action == "replace":
            container[key] = rng.choice(ODD_VALUES)
        elif action == "drop":
            del container[key]
        elif isinstance(container, dict):
            container[rng.choice(["id", "type", "text", "user", "extra", "ñ"])] = rng.choice(ODD_VALUES)
        else:
            container.append(rng.choice(ODD_VALUES))
        return
    if isinstance(container, dict):
        container["added"] = rng.choice(ODD_VALUES)


def _mutations(samples: list[dict[str, Any]], seed: int) -> list[tuple[str, bytes]]:
    """MUTATIONS sample records, each changed in one to three places (seeded, so a failure repeats)."""
    rng = random.Random(seed)
    cases = []
    for number in range(MUTATIONS):
        record = copy.deepcopy(rng.choice(samples))
        for _ in range(rng.randint(1, 3)):
            _mutate(record, rng)
        cases.append((f"mutation {number} (seed {seed})", json.dumps(record).encode()))
    return cases


async def test_generated_mutations_of_every_sample_get_no_server_error(ingest: Ingest) -> None:
    """Signed and authenticated, so every mutation reaches the parsers and the normalizers."""
    streamchat = [(name, body, _signed(body, f"mutation-{i}"))
                  for i, (name, body) in enumerate(_mutations(sample("streamchat_events"), seed=1))]  # fmt: skip
    tavus_headers = {"X-Chorus-Token": ingest.tenant.tavus_token, "Content-Type": "application/json"}
    tavus = [(name, body, tavus_headers) for name, body in _mutations(sample("tavus_callbacks"), seed=2)]
    events_headers = {"Authorization": f"Bearer {ingest.tenant.api_key}", "Content-Type": "application/json"}
    events = [(name, body, events_headers) for name, body in _mutations(sample("raw_events"), seed=3)]
    message = sample("streamchat_events")[0]

    def good_message(number: int) -> httpx.Response:
        body = dict(message, message=dict(message["message"], id=f"fuzz-good-{number}"))
        return ingest.streamchat(body, f"fuzz-good-{number}")

    def good_callback(number: int) -> httpx.Response:
        return ingest.tavus(dict(sample("tavus_callbacks")[0], conversation_id=f"fuzz-good-{number}"))

    def good_event(number: int) -> httpx.Response:
        return ingest.events(dict(sample("raw_events")[0], external_id=f"fuzz-good-{number}", text=f"event {number}"))

    assert _post_all(ingest, "/webhooks/streamchat", streamchat, good_message) == []
    assert _post_all(ingest, "/webhooks/tavus", tavus, good_callback) == []
    assert _post_all(ingest, "/v1/events", events, good_event) == []
    expected = MUTATIONS // 5
    for table, column in [("streamchat_messages", "message_id"), ("tavus_conversations", "conversation_id"),
                          ("raw_events", "external_id")]:  # fmt: skip
        sql = f"SELECT count(*) FROM {table} WHERE {column} LIKE 'fuzz-good-%'"
        assert await ingest.wait_for(sql, expected) == expected, table
