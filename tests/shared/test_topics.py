import asyncio
import uuid

from launcher.topics import ALL_TOPICS
from shared.kafka import create_consumer, create_producer


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
