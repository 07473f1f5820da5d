"""What the tests of ingest's normalizer handlers share: a started Kafka producer, and waiting
for what a handler sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from shared.kafka import create_producer
from shared.stream import BatchResult


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    started = create_producer(kafka_bootstrap)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def acknowledged(result: BatchResult) -> int:
    """How many records the handler sent, once Kafka has acknowledged every one."""
    for acknowledgement in result.sent:
        await acknowledgement
    return len(result.sent)
