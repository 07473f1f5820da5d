"""A fetch of Tavus callbacks is stored in one transaction, with the rules of one at a time."""

from __future__ import annotations

import itertools
import json
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.ingest.agents import Normalizer
from services.ingest.records import RawTavusDelivery
from shared.db import tenant_transaction
from shared.errors import InvalidRecord
from shared.records import utcnow
from shared.stream import Incoming
from tests.services.conftest import Tenant, make_tenant, sample
from tests.services.ingest.conftest import acknowledged

pytestmark = pytest.mark.integration

OFFSETS = itertools.count()


def _incoming(tenant: Tenant, body: dict[str, Any]) -> Incoming[RawTavusDelivery]:
    delivery = RawTavusDelivery(tenant_id=tenant.id, received_at=utcnow(), correlation_id="c", body=body)
    record = ConsumerRecord("chorus.raw.tavus", 0, next(OFFSETS), 0, 0, None, delivery.to_bytes(), None, 0, 0, ())
    return Incoming(delivery, record)


def _callbacks() -> list[dict[str, Any]]:
    callbacks = sample("tavus_callbacks")
    edited = json.loads(json.dumps(callbacks[2]))
    edited["properties"]["transcript"][-1]["content"] = "A transcript sent again, its last turn changed."
    return [*callbacks[:5], callbacks[2], edited, *callbacks[5:]]


async def _rows(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, Any]:
    async with tenant_transaction(pool, tenant.id) as db:
        return {
            "conversations": [tuple(row) for row in await db.fetch(
                "SELECT conversation_id, status, shutdown_reason, replica_id, recording_uri, perception_analysis, "
                "started_at, ended_at FROM tavus_conversations ORDER BY conversation_id")],
            "turns": [tuple(row) for row in await db.fetch(
                "SELECT m.conversation_id, m.turn_index, m.role, m.content, d.text FROM tavus_messages m "
                "LEFT JOIN documents d ON d.id = m.document_id ORDER BY 1, 2")],
            "callbacks": [tuple(row) for row in await db.fetch(
                "SELECT event_hash, event_type FROM tavus_webhook_events ORDER BY 1")],
            "documents": [tuple(row) for row in await db.fetch(
                "SELECT content_type, content_ref, text, deleted_at IS NOT NULL FROM documents ORDER BY 1, 2, 3")],
        }  # fmt: skip


async def test_a_fetch_stores_what_one_callback_at_a_time_stores_and_refuses_only_the_bad_one(
    pool: asyncpg.Pool, tenant: Tenant, producer: AIOKafkaProducer, topic_prefix: str
) -> None:
    normalizer = Normalizer(pool, producer, topic_prefix)
    other = await make_tenant(pool, "globex", "globex-app", "globex-secret")
    bad = _incoming(tenant, {"conversation_id": "c1", "event_type": None})
    # Both tenants' callbacks interleaved in one fetch, with the bad one among them.
    fetch = [
        record
        for pair in zip([_incoming(tenant, body) for body in _callbacks()],
                        [_incoming(other, body) for body in _callbacks()], strict=True)
        for record in pair
    ]  # fmt: skip
    fetch[7:7] = [bad]

    result = await normalizer.normalize_tavus(fetch)

    assert [(record, str(error)) for record, error in result.refused] == [
        (bad.message, "'event_type' must be a non-empty string")
    ]
    sent = await acknowledged(result)
    alone = await make_tenant(pool, "initech", "initech-app", "initech-secret")
    sent_alone = 0
    for body in _callbacks():
        sent_alone += await acknowledged(await normalizer.normalize_tavus([_incoming(alone, body)]))
    stored = await _rows(pool, tenant)
    assert stored == await _rows(pool, other) == await _rows(pool, alone)
    assert len(stored["callbacks"]) == 11 and len(stored["conversations"]) == 2
    assert sent == 2 * sent_alone > 0

    again = await normalizer.normalize_tavus(fetch)
    assert [record for record, _ in again.refused] == [bad.message]
    assert await _rows(pool, tenant) == stored, "a replay of the fetch changes nothing"
    sent_alone_again = 0
    for body in _callbacks():
        sent_alone_again += await acknowledged(await normalizer.normalize_tavus([_incoming(alone, body)]))
    assert await _rows(pool, alone) == stored
    assert await acknowledged(again) == 2 * sent_alone_again > 0


async def test_a_callback_that_fails_while_stored_fails_the_whole_fetch_for_the_agent_loop_to_split(
    pool: asyncpg.Pool, tenant: Tenant, producer: AIOKafkaProducer, topic_prefix: str
) -> None:
    normalizer = Normalizer(pool, producer, topic_prefix)
    broken = dict(sample("tavus_callbacks")[2], properties={"transcript": "not a list"})
    fetch = [_incoming(tenant, body) for body in [*sample("tavus_callbacks")[:2], broken]]

    with pytest.raises(InvalidRecord, match=r"'properties\.transcript' must be a list"):
        await normalizer.normalize_tavus(fetch)

    assert await _rows(pool, tenant) == {"conversations": [], "turns": [], "callbacks": [], "documents": []}
    stored = await normalizer.normalize_tavus(fetch[:2])
    assert stored.refused == [] and len((await _rows(pool, tenant))["callbacks"]) == 2
