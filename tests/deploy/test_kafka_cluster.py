"""Three KRaft brokers with replication 3 and min.insync.replicas 2 lose nothing when one is SIGKILLed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from launcher.stack.kafka_cluster import KafkaCluster
from shared.kafka import TopicConfig, create_consumer, create_producer, ensure_topics
from shared.topics import DOCS

RECORDS = 600


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory, process_watchdog: None) -> Iterator[KafkaCluster]:
    # The watchdog ends the three JVMs if this pytest is killed: their pid files lie in its folder.
    cluster = KafkaCluster.on_free_ports(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def _in_sync(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return sorted(len(partition["isr"]) for partition in described["partitions"])
    finally:
        await admin.close()


async def _wait_in_sync(bootstrap: str, topic: str, replicas: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            if set(await _in_sync(bootstrap, topic)) == {replicas}:
                return time.monotonic() - started
        except Exception:  # a metadata request may land on the node that is still starting
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"{topic} did not get {replicas} in-sync replicas within {within:.0f}s")


async def test_a_broker_killed_mid_stream_loses_and_duplicates_nothing(kafka_cluster: KafkaCluster) -> None:
    bootstrap = kafka_cluster.bootstrap
    prefix = f"t{uuid.uuid4().hex[:8]}."
    (topic,) = await ensure_topics(bootstrap, [DOCS], prefix, TopicConfig(partitions=3, replication_factor=3))
    await _wait_in_sync(bootstrap, topic, 3, within=60)

    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for index in range(RECORDS):
            if index == RECORDS // 3:
                kafka_cluster.kill_node(1)
                killed_at = time.monotonic()
            # acks=all with two of three in sync still acknowledges: min.insync.replicas is 2.
            await producer.send_and_wait(topic, str(index).encode(), key=str(index % 7).encode())
            if index == RECORDS // 3:
                print(f"\nthe first write after the SIGKILL was acknowledged in {time.monotonic() - killed_at:.1f}s")
    finally:
        await producer.stop()
    assert set(await _in_sync(bootstrap, topic)) == {2}

    kafka_cluster.start_node(1)
    recovered = await _wait_in_sync(bootstrap, topic, 3, within=120)
    print(f"the killed broker's replicas were back in sync {recovered:.1f}s after it listened again")

    consumer = create_consumer(bootstrap, f"{prefix}check", topic)
    await consumer.start()
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(seen) < RECORDS and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            seen.extend(int(record.value) for records in batches.values() for record in records if record.value)
    finally:
        await consumer.stop()
    assert sorted(seen) == list(range(RECORDS))
