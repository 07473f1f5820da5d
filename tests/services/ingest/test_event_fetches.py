"""A fetch of raw events is stored in one transaction, with the rules of one at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import uuid
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.ingest.agents import Normalizer
from shared import topics
from shared.db import tenant_transaction
from shared.kafka import create_consumer
from shared.records import DeadLetter, EventEnvelope
from shared.stream import BatchResult, Incoming, run_agent
from tests.services.conftest import Tenant, make_tenant, sample
from tests.services.ingest.conftest import acknowledged

pytestmark = pytest.mark.integration

OFFSETS = itertools.count()


def _incoming(event: dict[str, Any]) -> Incoming[EventEnvelope]:
    envelope = EventEnvelope.model_validate(event)
    record = ConsumerRecord("chorus.raw.events", 0, next(OFFSETS), 0, 0, None, envelope.to_bytes(), None, 0, 0, ())
    return Incoming(envelope, record)


def _fetch(tenant: str) -> list[dict[str, Any]]:
    """Events with every case a fetch can hold, in an order where order matters."""
    events = [dict(event, tenant_id=tenant) for event in sample("raw_events")[:6]]
    vcon = sample("vcons")[0]
    return [
        *events[:3],
        dict(events[0]),  # a redelivery of the first
        dict(events[1], text="the second event, edited"),  # the same id with new content
        dict(events[3], external_id="copy-of-4"),  # another event with the same text
        *events[3:],
        {"source": "vcon", "event_type": "vcon", "external_id": vcon["uuid"], "payload": vcon, "tenant_id": tenant},
        dict(events[4], external_id="no-text", text=None),
        dict(events[1]),  # the edit undone: its old document comes back
    ]


async def _rows(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, Any]:
    async with tenant_transaction(pool, tenant.id) as db:
        events = await db.fetch(
            "SELECT r.source, r.external_id, r.payload, array_agg(d.text ORDER BY d.text) "
            "FILTER (WHERE d.id IS NOT NULL) AS documents FROM raw_events r "
            "LEFT JOIN document_references x ON x.raw_event_id = r.id LEFT JOIN documents d ON d.id = x.document_id "
            "GROUP BY r.id"
        )
        documents = await db.fetch(
            "SELECT source, content_type, content_ref, external_id, text, tags, metadata, deleted_at IS NOT NULL "
            "FROM documents"
        )
    return {
        "events": sorted((row["source"], row["external_id"], row["documents"]) for row in events),
        "documents": sorted(tuple(json.dumps(value, default=str) for value in row) for row in documents),
    }


async def test_a_fetch_stores_what_one_record_at_a_time_stores_and_refuses_only_the_bad_records(
    pool: asyncpg.Pool, tenant: Tenant, producer: AIOKafkaProducer, topic_prefix: str
) -> None:
    normalizer = Normalizer(pool, producer, topic_prefix)
    other = await make_tenant(pool, "globex", "globex-app", "globex-secret")
    unknown = _incoming(dict(sample("raw_events")[0], tenant_id="no-such-tenant"))
    broken_vcon = _incoming({"source": "vcon", "event_type": "vcon", "external_id": "v", "tenant_id": "acme",
                             "payload": {"vcon": "0.0.2", "dialog": "not a list"}})  # fmt: skip
    # Both tenants' events interleaved in one fetch, with the two bad records among them.
    acme, globex = [_incoming(event) for event in _fetch("acme")], [_incoming(event) for event in _fetch("globex")]
    fetch = [record for pair in zip(acme, globex, strict=True) for record in pair]
    fetch[5:5] = [unknown]
    fetch[12:12] = [broken_vcon]

    result = await normalizer.normalize_events(fetch)

    assert [(record, str(error)) for record, error in result.refused] == [
        (unknown.message, "no tenant is named or has the id 'no-such-tenant'"),
        (broken_vcon.message, "vCon 'dialog' must be a list"),
    ]
    sent = await acknowledged(result)
    # The same events for a third tenant, one record at a time as before fetches.
    alone = await make_tenant(pool, "initech", "initech-app", "initech-secret")
    sent_alone = 0
    for event in _fetch("initech"):
        single = await normalizer.normalize_events([_incoming(event)])
        assert single.refused == []
        sent_alone += await acknowledged(single)
    stored = await _rows(pool, tenant)
    assert stored == await _rows(pool, other) == await _rows(pool, alone)
    assert len(stored["events"]) == 9
    assert sent == 2 * sent_alone > 0

    again = await normalizer.normalize_events(fetch)
    assert [record for record, _ in again.refused] == [unknown.message, broken_vcon.message]
    assert await _rows(pool, tenant) == stored, "a replay of the fetch changes nothing"
    sent_alone_again = 0
    for event in _fetch("initech"):
        sent_alone_again += await acknowledged(await normalizer.normalize_events([_incoming(event)]))
    assert await _rows(pool, alone) == stored
    assert await acknowledged(again) == 2 * sent_alone_again > 0


async def test_a_published_fetch_lands_once_and_its_poison_records_are_dead_lettered_with_their_reason(
    pool: asyncpg.Pool, tenant: Tenant, producer: AIOKafkaProducer, kafka_bootstrap: str, topic_prefix: str
) -> None:
    good = [dict(event, tenant_id="acme") for event in sample("raw_events")]
    refused_by_postgres = dict(good[0], external_id="nul", payload={"note": "a \u0000 in jsonb"})
    unknown_tenant = dict(good[1], external_id="stranger", tenant_id="no-such-tenant")
    records = [*good[:10], good[3], refused_by_postgres, *good[10:20], unknown_tenant, *good[20:]]
    for event in records:
        await producer.send(topics.RAW_EVENTS.full_name(topic_prefix), json.dumps(event).encode(), key=b"one")
    await producer.flush()

    normalizer = Normalizer(pool, producer, topic_prefix)
    agent = next(agent for agent in normalizer.agents() if agent.name == "normalize_events")
    assert agent.handle_batch is not None
    handle_batch, fetches = agent.handle_batch, []

    async def recorded(batch: list[Incoming[EventEnvelope]]) -> BatchResult:
        fetches.append(len(batch))
        return await handle_batch(batch)

    running = asyncio.create_task(
        run_agent(dataclasses.replace(agent, handle_batch=recorded, batch_wait_ms=5000), kafka_bootstrap, producer,
                  topic_prefix)
    )  # fmt: skip
    consumer = create_consumer(kafka_bootstrap, f"dlq-{uuid.uuid4()}", topics.DLQ.full_name(topic_prefix))
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        async with asyncio.timeout(60):
            while len(letters) < 2:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    letters += [DeadLetter.from_bytes(record.value) for record in batch]
    finally:
        await consumer.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    assert fetches[0] == len(records), "the whole fetch is handed over at once"
    by_id = {json.loads(letter.value or "")["external_id"]: letter for letter in letters}
    assert set(by_id) == {"nul", "stranger"}
    assert by_id["nul"].error_class == "UntranslatableCharacterError", by_id["nul"].reason
    assert "\\u0000 cannot be converted to text" in by_id["nul"].reason
    assert by_id["stranger"].reason == "no tenant is named or has the id 'no-such-tenant'"
    async with tenant_transaction(pool, tenant.id) as db:
        stored = await db.fetch("SELECT external_id FROM raw_events")
        documents = await db.fetchval("SELECT count(*) FROM documents")
    assert sorted(row["external_id"] for row in stored) == sorted({event["external_id"] for event in good})
    assert documents == 26, "the sample's texts, the one two events share stored once"
