"""Nothing accepted is lost: what the agents would refuse is refused at the door with a 4xx naming
the field, so that a 2xx means the event will be stored."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.ingest.webhooks import MAX_RECORD_BYTES
from shared.settings import load
from tests.problems import assert_problem
from tests.services.conftest import APP_KEY, Ingest, Tenant, make_tenant, sample, sign

# A moment Python and Postgres both hold, but not in UTC: it is in the year 10000 there.
PAST_9999 = "9999-12-31T23:00:00-05:00"
BEFORE_YEAR_1 = "0001-01-01T00:30:00+01:00"
EVENT = sample("raw_events")[0]
AUTH = "Authorization"


def changed(record: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(record))
    change(copy)
    return copy


def post_events(ingest: Ingest, body: bytes, content_type: str = "application/json") -> Any:
    headers = {AUTH: f"Bearer {ingest.tenant.api_key}", "Content-Type": content_type}
    return ingest.client.post("/v1/events", content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (dict(EVENT, occurred_at=PAST_9999), "occurred_at"),
        (dict(EVENT, occurred_at=BEFORE_YEAR_1), "occurred_at"),
        (dict(EVENT, received_at=PAST_9999), "received_at"),
        ('{"metadata": {"score": 1e999}}', "metadata.score"),
        ('{"payload": {"items": [1, -1e400]}}', "payload.items.1"),
        ('{"payload": {"user": {"name": "a\\u0000b"}}}', "payload.user.name"),
        ('{"payload": {"a\\u0000": 1}}', "payload.a\\x00"),
        ('{"tags": {"team": "\\ud800"}}', "tags.team"),
        ('{"external_id": "BKG\\u0000412"}', "external_id"),
        (dict(EVENT, tenant_id="no-such-tenant"), "tenant_id"),
        (dict(EVENT, tenant_id="00000000-0000-4000-8000-000000000000"), "tenant_id"),
        (dict(EVENT, source="vcon", payload={"subject": "no version"}), "payload"),
        (dict(EVENT, source="vcon", payload={"vcon": "0.3.0", "dialog": {"not": "a list"}}), "payload"),
        (
            dict(EVENT, source="vcon", payload={"vcon": "0.3.0", "attachments": [{"type": "tags", "body": "{"}]}),
            "payload",
        ),
    ],
    ids=[
        "year-10000",
        "year-0",
        "received-at",
        "1e999",
        "minus-1e400",
        "nul",
        "nul-in-key",
        "surrogate",
        "nul-in-id",
        "unknown-tenant",
        "unknown-tenant-id",
        "vcon-version",
        "vcon-dialog",
        "vcon-tags",
    ],
)
async def test_an_event_the_agent_would_refuse_is_a_400_naming_its_field(
    ingest: Ingest, body: dict[str, Any] | str, field: str
) -> None:
    # Strings are spliced into the sample event as JSON text: json.dumps cannot write 1e999 or a lone surrogate.
    raw = json.dumps(body) if isinstance(body, dict) else json.dumps(EVENT)[:-1] + ", " + body[1:]
    first = post_events(ingest, json.dumps({**EVENT, "external_id": "fine"}).encode())
    refused = post_events(ingest, b"[" + json.dumps(dict(EVENT, external_id="fine-2")).encode() + b", " +
                          raw.encode() + b"]")  # fmt: skip
    assert first.status_code == 202
    problem = assert_problem(refused, 400)
    assert [(error["event"], error["field"]) for error in problem["errors"]] == [(1, field)], problem
    assert problem["detail"] == "1 of 2 events are invalid; none was accepted"
    # The valid event sent before is stored; nothing of the refused request is.
    assert await ingest.wait_for("SELECT count(*) FROM raw_events", 1) == 1
    assert await ingest.count("SELECT count(*) FROM raw_events WHERE external_id = 'fine'") == 1


async def test_ndjson_lines_are_checked_one_by_one_and_named_by_index(ingest: Ingest) -> None:
    lines = [
        json.dumps(dict(EVENT, external_id="ok-1")),
        '{"source": "jira", "event_type": "x", "external_id": "nul", "metadata": {"note": "a\\u0000"}}',
        json.dumps(dict(EVENT, occurred_at=PAST_9999)),
    ]
    refused = post_events(ingest, "\n".join(lines).encode(), "application/x-ndjson")
    problem = assert_problem(refused, 400)
    assert [(error["event"], error["field"]) for error in problem["errors"]] == [(1, "metadata.note"),
                                                                                (2, "occurred_at")]  # fmt: skip


async def test_an_event_may_name_the_keys_own_tenant_by_name_or_id(ingest: Ingest) -> None:
    by_name = ingest.events(dict(EVENT, external_id="by-name", tenant_id="acme"))
    by_id = ingest.events(dict(EVENT, external_id="by-id", tenant_id=str(ingest.tenant.id).upper()))
    assert (by_name.status_code, by_id.status_code) == (202, 202), (by_name.text, by_id.text)
    assert await ingest.wait_for("SELECT count(*) FROM raw_events WHERE external_id LIKE 'by-%'", 2) == 2


async def test_another_tenants_name_is_refused_like_an_unknown_one(ingest: Ingest, pool: asyncpg.Pool) -> None:
    await make_tenant(pool, "globex", "globex-app", "globex-secret-0123456789abcdef0123456789")
    other, unknown = (ingest.events(dict(EVENT, tenant_id=name)) for name in ("globex", "initech"))
    assert assert_problem(other, 400, "tenant_id")["errors"] == assert_problem(unknown, 400, "tenant_id")["errors"]
    assert await ingest.count("SELECT count(*) FROM raw_events") == 0


MESSAGE = sample("streamchat_events")[0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["message"].update(created_at=PAST_9999), "created_at"),
        (lambda m: m["message"].update(created_at=BEFORE_YEAR_1), "created_at"),
        (lambda m: m.update(type="message.updated") or m["message"].update(updated_at=PAST_9999), "updated_at"),
        (lambda m: m.update(type="message.deleted") or m["message"].update(deleted_at=PAST_9999), "deleted_at"),
        (lambda m: m["message"].update(id="m" * 3000), "message.id"),
        (lambda m: m.update(cid="messaging:" + "c" * 3000), "cid"),
        (lambda m: m["message"]["user"].update(id="u" * 3000), "message.user.id"),
        (lambda m: m["message"].update(text="a\u0000b"), "message.text"),
    ],
    ids=["year-10000", "year-0", "updated-at", "deleted-at", "long-message-id", "long-cid", "long-user-id", "nul"],
)
async def test_a_message_the_agent_would_refuse_is_a_400_naming_its_field(
    ingest: Ingest, change: Callable[[dict[str, Any]], object], field: str
) -> None:
    problem = assert_problem(ingest.streamchat(changed(MESSAGE, change), "bad"), 400, field)
    assert field in problem["detail"]
    fine = changed(MESSAGE, lambda m: m["message"].update(id="fine"))
    assert ingest.streamchat(fine, "fine").status_code == 200
    assert await ingest.wait_for("SELECT count(*) FROM streamchat_messages", 1) == 1


CALLBACKS = sample("tavus_callbacks")
TRANSCRIPT = next(c for c in CALLBACKS if c["event_type"] == "application.transcription_ready")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (dict(CALLBACKS[0], timestamp=PAST_9999), "timestamp"),
        (dict(TRANSCRIPT, properties={"transcript": "hello"}), "properties.transcript"),
        (dict(TRANSCRIPT, properties={"transcript": [{"content": "no role"}]}), "properties.transcript[0]"),
        (dict(CALLBACKS[0], properties={"replica_id": "r\u0000"}), "properties.replica_id"),
    ],
    ids=["year-10000", "transcript-a-string", "turn-without-role", "nul"],
)
async def test_a_callback_the_agent_would_refuse_is_a_400_naming_its_field(
    ingest: Ingest, body: dict[str, Any], field: str
) -> None:
    refused = ingest.tavus(body)
    assert refused.status_code == 400, refused.text
    assert field in refused.json()["detail"]
    assert ingest.tavus(dict(CALLBACKS[0], conversation_id="fine")).status_code == 200
    assert await ingest.wait_for("SELECT count(*) FROM tavus_conversations", 1) == 1


@pytest.fixture
def roomy_ingest(service_env: dict[str, str], tenant: Tenant, pool: asyncpg.Pool) -> Iterator[Ingest]:
    """Ingest with a body limit past what a Kafka record holds, as an operator may set it."""
    settings = load(IngestSettings, {**service_env, "CHORUS_INGEST_MAX_BODY_BYTES": str(2 * MAX_RECORD_BYTES)})
    with TestClient(create_app(settings)) as client:
        yield Ingest(client, tenant, pool, service_env)


async def test_a_body_too_large_for_a_kafka_record_is_a_413_not_a_503_to_retry(roomy_ingest: Ingest) -> None:
    big = dict(EVENT, external_id="big", payload={"blob": "x" * MAX_RECORD_BYTES})
    assert_problem(roomy_ingest.events([dict(EVENT, external_id="small"), big]), 413, "body")
    message = changed(MESSAGE, lambda m: m["message"].update(attachments=[{"blob": "x" * MAX_RECORD_BYTES}]))
    raw = json.dumps(message).encode()
    headers = {"X-Api-Key": APP_KEY, "X-Signature": sign(raw), "Content-Type": "application/json"}
    assert_problem(roomy_ingest.client.post("/webhooks/streamchat", content=raw, headers=headers), 413, "body")
    # Nothing of either request was sent; a record that fits still is.
    assert roomy_ingest.events(dict(EVENT, external_id="fits", payload={"blob": "x" * 500_000})).status_code == 202
    assert await roomy_ingest.wait_for("SELECT count(*) FROM raw_events", 1) == 1
    assert await roomy_ingest.count("SELECT count(*) FROM raw_events WHERE external_id = 'fits'") == 1
