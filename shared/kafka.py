"""Kafka clients set up the one way Chorus uses them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.topics import ALL_TOPICS, Topic

log = logging.getLogger(__name__)


def create_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer whose send is acknowledged only once every in-sync replica has the record."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )


def create_consumer(bootstrap: str, group_id: str, *topics: str) -> AIOKafkaConsumer:
    """A consumer that commits only when told to, after its work is durable."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


async def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    partitions: int = 6,
    topics: tuple[Topic, ...] = ALL_TOPICS,
) -> list[str]:
    """Create any missing topic; returns the full names of all of them."""
    names = [topic.full_name(prefix) for topic in topics]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            # Another process may create them between our listing and our request.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in missing]
                )
            log.info("created topics", extra={"topics": missing})
    finally:
        await admin.close()
    return names


async def broker_answers(bootstrap: str, within: float = 3.0) -> bool:
    """True when a broker at `bootstrap` answers a metadata request within `within` seconds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(within * 1000))
    try:
        async with asyncio.timeout(within):
            await admin.start()
            await admin.list_topics()
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


# The ingest correlation id of what a record carries, on every record from ingest to chorus.embedded.
CORRELATION_HEADER = "chorus-correlation-id"
Headers = list[tuple[str, bytes]]


def correlation_headers(correlation_id: str | None) -> Headers:
    return [] if not correlation_id else [(CORRELATION_HEADER, correlation_id.encode())]


def correlation_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    for name, value in headers or ():
        if name == CORRELATION_HEADER:
            return value.decode("utf-8", "replace")
    return None
