import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import InvalidReplicationFactorError

from launcher.topics import ALL_TOPICS
from shared.kafka import TopicConfig, create_consumer, create_producer, ensure_topics
from shared.topics import DOCS


def test_every_topic_of_the_design_is_defined_once() -> None:
    names = [topic.name for topic in ALL_TOPICS]
    assert names == [
        "chorus.raw.streamchat",
        "chorus.raw.tavus",
        "chorus.raw.events",
        "chorus.docs",
        "chorus.embedded",
        "chorus.replies",
        "chorus.dlq",
    ]
    assert ALL_TOPICS[0].full_name("t.") == "t.chorus.raw.streamchat"


async def test_records_round_trip_through_every_topic(kafka_bootstrap: str, topic_prefix: str) -> None:
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    sent = {}
    try:
        for topic in ALL_TOPICS:
            key = f"key-{topic.name}".encode()
            value = f"value-{uuid.uuid4()}".encode()
            metadata = await producer.send_and_wait(topic.full_name(topic_prefix), value, key=key)
            assert metadata.offset >= 0
            sent[topic.full_name(topic_prefix)] = (key, value)
    finally:
        await producer.stop()

    consumer = create_consumer(kafka_bootstrap, f"group-{uuid.uuid4()}", *sent)
    await consumer.start()
    received = {}
    try:
        async with asyncio.timeout(60):
            while len(received) < len(sent):
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        received[record.topic] = (record.key, record.value)
    finally:
        await consumer.stop()
    assert received == sent


async def test_a_topic_the_broker_refuses_is_an_error_once_waiting_cannot_help(kafka_bootstrap: str) -> None:
    # One broker cannot hold three replicas; a cluster still assembling answers the same, so it is
    # retried for `within` seconds and then raised, never logged as created.
    prefix = f"t{uuid.uuid4().hex[:8]}."
    with pytest.raises(InvalidReplicationFactorError, match=f"{prefix}chorus.docs"):
        await ensure_topics(kafka_bootstrap, [DOCS], prefix, TopicConfig(replication_factor=3), within=1.0)
    assert DOCS.full_name(prefix) not in await _topics_on(kafka_bootstrap)


async def test_ensure_topics_creates_what_is_missing_and_keeps_what_exists(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    first = await ensure_topics(kafka_bootstrap, [DOCS], prefix, TopicConfig(partitions=2))
    again = await ensure_topics(kafka_bootstrap, ALL_TOPICS, prefix, TopicConfig(partitions=2))
    assert first == [DOCS.full_name(prefix)]
    assert again == [topic.full_name(prefix) for topic in ALL_TOPICS]
    assert set(again) <= await _topics_on(kafka_bootstrap)


async def _topics_on(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
