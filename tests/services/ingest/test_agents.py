import asyncio
import dataclasses
import json
import uuid
from typing import Any

import asyncpg

from services.ingest.agents import Normalizer
from services.ingest.records import RawStreamChatDelivery
from services.ingest.topics import RAW_STREAMCHAT, RAW_TAVUS
from shared import topics
from shared.kafka import create_consumer, create_producer
from shared.records import DeadLetter, utcnow
from shared.stream import run_agent
from tests.conftest import Database
from tests.metrics import MetricDelta
from tests.services.conftest import Ingest, sample

TABLES = (
    "raw_events", "documents", "document_references", "streamchat_messages", "streamchat_deliveries",
    "tavus_conversations", "tavus_messages", "tavus_webhook_events",
)  # fmt: skip


async def _snapshot(admin_url: str) -> dict[str, list[Any]]:
    connection = await asyncpg.connect(admin_url)
    try:
        return {table: [tuple(row) for row in await connection.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3")]
                for table in TABLES}  # fmt: skip
    finally:
        await connection.close()


def _feed_every_sample(ingest: Ingest) -> int:
    sent = 0
    for number, event in enumerate(sample("streamchat_events")):
        assert ingest.streamchat(event, webhook_id=f"replay-{number}").status_code == 200
        sent += 1
    for callback in sample("tavus_callbacks"):
        assert ingest.tavus(callback).status_code == 200
        sent += 1
    events = sample("raw_events") + [
        {"source": "vcon", "event_type": "vcon", "external_id": v["uuid"], "payload": v} for v in sample("vcons")
    ]
    assert ingest.events(events).status_code == 202
    return sent + len(events)


async def test_replaying_every_raw_topic_from_the_start_changes_no_row(ingest: Ingest, database: Database) -> None:
    records = _feed_every_sample(ingest)
    assert await ingest.wait_for("SELECT count(*) FROM raw_events", 30) == 30
    assert await ingest.wait_for("SELECT count(*) FROM tavus_webhook_events", 10) == 10
    assert await ingest.wait_for("SELECT count(*) FROM streamchat_deliveries", 10) == 10
    before = await _snapshot(database.admin_url)
    assert len(before["documents"]) == 8 + 17 + 26 + 10

    processed = MetricDelta("chorus_records_processed_total", service="ingest")
    producer = create_producer(ingest.env["CHORUS_KAFKA_BOOTSTRAP"])
    await producer.start()
    normalizer = Normalizer(ingest.pool, producer, ingest.env["CHORUS_TOPIC_PREFIX"])
    replay = f"replay-{uuid.uuid4().hex[:8]}"
    tasks = [
        asyncio.create_task(run_agent(dataclasses.replace(agent, group=f"{agent.group}-{replay}"),
                                      ingest.env["CHORUS_KAFKA_BOOTSTRAP"], producer,
                                      ingest.env["CHORUS_TOPIC_PREFIX"]))
        for agent in normalizer.agents()
    ]  # fmt: skip
    try:
        async with asyncio.timeout(90):
            while processed.delta() < records:
                await asyncio.sleep(0.2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
    assert processed.delta() == records
    assert await _snapshot(database.admin_url) == before


async def test_poison_records_are_dead_lettered_and_the_good_ones_land(ingest: Ingest) -> None:
    prefix = ingest.env["CHORUS_TOPIC_PREFIX"]
    good = sample("raw_events")[:3]
    streamchat = RawStreamChatDelivery(
        tenant_id=ingest.tenant.id, webhook_id="poison-neighbour", received_at=utcnow(), correlation_id="c",
        body=sample("streamchat_events")[0],
    )  # fmt: skip
    broken_message = streamchat.model_copy(update={"webhook_id": "broken", "body": {"type": "message.new"}})
    poison = [
        (topics.RAW_EVENTS, b"\xff\xfe not json at all"),
        (topics.RAW_EVENTS, json.dumps(dict(good[0], tenant_id="no-such-tenant")).encode()),
        (topics.RAW_EVENTS, json.dumps({"source": "slack"}).encode()),
        (RAW_STREAMCHAT, broken_message.to_bytes()),
        (RAW_TAVUS, b'{"tenant_id": "x"}'),
    ]
    records = [
        (topics.RAW_EVENTS, json.dumps(dict(good[0], tenant_id=str(ingest.tenant.id))).encode()),
        poison[0], poison[1],
        (topics.RAW_EVENTS, json.dumps(dict(good[1], tenant_id="acme")).encode()),
        poison[2], poison[3], poison[4],
        (RAW_STREAMCHAT, streamchat.to_bytes()),
        (topics.RAW_EVENTS, json.dumps(dict(good[2], tenant_id="acme")).encode()),
    ]  # fmt: skip
    producer = create_producer(ingest.env["CHORUS_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        for topic, value in records:
            await producer.send_and_wait(topic.full_name(prefix), value, key=b"same-key")
    finally:
        await producer.stop()

    assert await ingest.wait_for("SELECT count(*) FROM raw_events", 3) == 3
    assert await ingest.wait_for("SELECT count(*) FROM streamchat_messages", 1) == 1

    consumer = create_consumer(
        ingest.env["CHORUS_KAFKA_BOOTSTRAP"], f"dlq-{uuid.uuid4()}", topics.DLQ.full_name(prefix)
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        async with asyncio.timeout(30):
            while len(letters) < len(poison):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    letters += [DeadLetter.from_bytes(record.value) for record in batch]
    finally:
        await consumer.stop()
    by_value = {letter.value: letter for letter in letters}
    assert set(by_value) == {value for _, value in poison}
    assert all(letter.service == "ingest" and letter.reason for letter in letters)
    assert by_value[poison[0][1]].error_class == "ValidationError"
    assert "no tenant is named or has the id 'no-such-tenant'" in by_value[poison[1][1]].reason
    assert by_value[poison[1][1]].error_class == "InvalidRecord"
    assert "'message' must be an object" in by_value[poison[3][1]].reason
    assert by_value[poison[3][1]].topic == RAW_STREAMCHAT.full_name(prefix)
    assert all(letter.offset >= 0 and letter.key_b64 for letter in letters)
