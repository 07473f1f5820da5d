"""Kafka clients set up the one way Chorus uses them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.settings import CommonSettings
from shared.topics import Topic

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


@dataclass(frozen=True)
class TopicConfig:
    """How topics are created: settings, so that one broker and a cluster differ only in the environment."""

    partitions: int = 6
    replication_factor: int = 1
    retention_hours: float = 168
    raw_retention_hours: float = 168

    @classmethod
    def of(cls, settings: CommonSettings) -> TopicConfig:
        return cls(
            settings.topic_partitions,
            settings.topic_replication_factor,
            settings.topic_retention_hours,
            settings.raw_topic_retention_hours,
        )

    def new_topic(self, topic: Topic[Any], prefix: str) -> NewTopic:
        hours = self.raw_retention_hours if topic.raw else self.retention_hours
        return NewTopic(
            topic.full_name(prefix),
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
            topic_configs={"retention.ms": str(int(hours * 3_600_000))},
        )


async def ensure_topics(
    bootstrap: str, topics: Sequence[Topic[Any]], prefix: str = "", config: TopicConfig | None = None
) -> list[str]:
    """Create any of `topics` that is missing; returns the full names of all of them."""
    config = config or TopicConfig()
    names = [topic.full_name(prefix) for topic in topics]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in topics if topic.full_name(prefix) not in existing]
        if missing:
            # Another process may create them between our listing and our request.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([config.new_topic(topic, prefix) for topic in missing])
            log.info("created topics", extra={"topics": [topic.full_name(prefix) for topic in missing]})
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
