"""Kafka clients set up the one way Chorus uses them."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import InvalidReplicationFactorError, KafkaError, TopicAlreadyExistsError, for_code

from shared.retry import Backoff
from shared.settings import CommonSettings
from shared.topics import Topic

log = logging.getLogger(__name__)

# The most a producer puts in one request to a partition. aiokafka's default (16 KiB) holds about
# six embedded documents (a vector is 2 KiB of base64), and aiokafka sends a broker one request at
# a time: a fetch's announcements went out in about a hundred. Below the broker's 1 MiB limit.
PRODUCER_BATCH_BYTES = 512 * 1024

# How long the broker may hold a fetch that finds no new records. aiokafka keeps one fetch in
# flight per broker and leaves out of it the partitions whose records it still holds, so once an
# agent takes those records, new records of the same partitions wait for the fetch in flight (the
# other partitions', idle) to come back: with the default 500 ms, up to half a second per stage.
# The cost is an idle consumer's fetch every 100 ms.
FETCH_MAX_WAIT_MS = 100


def create_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer whose send is acknowledged only once every in-sync replica has the record."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=PRODUCER_BATCH_BYTES,
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
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
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
    bootstrap: str,
    topics: Sequence[Topic[Any]],
    prefix: str = "",
    config: TopicConfig | None = None,
    within: float = 30.0,
) -> list[str]:
    """Create any of `topics` that is missing; returns the full names of all of them.

    A broker that has just started listens before it has joined its cluster: until then it knows
    no brokers, or too few for the replication factor. Such errors are retried for `within` seconds.
    """
    config = config or TopicConfig()
    deadline = time.monotonic() + within
    backoff = Backoff(first=0.2, cap=2.0)
    for attempt in itertools.count(1):
        try:
            await _create_missing(bootstrap, topics, prefix, config)
            break
        except (KafkaError, TimeoutError) as error:
            if not _fixed_by_waiting(error) or time.monotonic() > deadline:
                raise
            log.info("Kafka is not ready to create topics yet", extra={"error": repr(error)})
            await asyncio.sleep(backoff.delay(attempt))
    return [topic.full_name(prefix) for topic in topics]


def _fixed_by_waiting(error: Exception) -> bool:
    if isinstance(error, TimeoutError | InvalidReplicationFactorError):
        return True
    return isinstance(error, KafkaError) and error.retriable


async def _create_missing(bootstrap: str, topics: Sequence[Topic[Any]], prefix: str, config: TopicConfig) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [topic for topic in topics if topic.full_name(prefix) not in existing]
        if not missing:
            return
        response = await admin.create_topics([config.new_topic(topic, prefix) for topic in missing])
        for name, code, *message in response.topic_errors:
            # Another process may have created it between our listing and our request.
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"creating topic {name}: {message[0] if message else ''}")
        log.info("created topics", extra={"topics": [topic.full_name(prefix) for topic in missing]})
    finally:
        await admin.close()


async def broker_answers(bootstrap: str, within: float = 3.0) -> bool:
    """True when a broker at `bootstrap` answers a metadata request in time: each of the check's
    requests (connecting, the versions, the metadata) may take a quarter of `within`.

    aiokafka bounds those requests itself, so the check is not cancelled on the way: a start()
    cancelled while it bootstraps leaves the bootstrap connection open (aiokafka 0.14 catches
    only its own errors there), which a busy machine turned into unclosed-socket warnings. Twice
    `within` is the outer bound, for a broker slow at every step."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(within * 250))
    try:
        async with asyncio.timeout(2 * within):
            await admin.start()
            await admin.list_topics()
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()
