"""Consumer loops ("agents"): process each record, dead-letter the bad ones, commit after the work."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.errors import TRANSIENT_ERRORS
from shared.kafka import correlation_of, create_consumer
from shared.logging import bound
from shared.metrics import CONSUMER_LAG, DEAD_LETTERS, PROCESSING_ERRORS, RECORDS_PROCESSED
from shared.records import DeadLetter, utcnow

log = logging.getLogger(__name__)

# A handler may return the acknowledgements of records it sent; they are awaited before the
# offsets are committed, so a batch's output is produced in parallel but never lost.
KafkaRecord: TypeAlias = ConsumerRecord[bytes, bytes]
T = TypeVar("T")
Handler = Callable[[KafkaRecord], Awaitable[list[asyncio.Future[Any]] | None]]

BatchHandler = Callable[[list[KafkaRecord]], Awaitable[list[asyncio.Future[Any]]]]


@dataclass(frozen=True)
class Agent:
    """A consumer group that runs `handle` on every record of `topics`, in order per partition.

    With `handle_batch` instead, the agent hands over up to `max_batch` records at once, waiting
    at most `batch_wait_ms` after the first for more; the handler dead-letters what it cannot use.
    """

    name: str
    service: str
    group_id: str
    topics: tuple[str, ...]
    dead_letter_topic: str
    handle: Handler | None = None
    handle_batch: BatchHandler | None = None
    max_batch: int = 200
    batch_wait_ms: int = 0


async def run_agent(agent: Agent, bootstrap: str, producer: AIOKafkaProducer) -> None:
    """Run `agent` until cancelled, restarting its consumer after broker failures."""
    delay = 0.5
    while True:
        try:
            await _consume(agent, bootstrap, producer)
        except asyncio.CancelledError:
            raise
        except TRANSIENT_ERRORS as error:
            log.warning("consumer failed; restarting", extra={"agent": agent.name, "error": repr(error)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _consume(agent: Agent, bootstrap: str, producer: AIOKafkaProducer) -> None:
    consumer = create_consumer(bootstrap, agent.group_id, *agent.topics)
    try:
        # Started inside the try: a shutdown that comes while it joins the group still closes it.
        await consumer.start()
        while True:
            batches = await _take(agent, consumer)
            records = [record for partition_records in batches.values() for record in partition_records]
            if not records:
                continue
            acknowledgements: list[asyncio.Future[Any]] = []
            if agent.handle_batch is not None:
                acknowledgements = await _attempt(agent, producer, records, partial(agent.handle_batch, records))
            else:
                # Partitions are worked on side by side, each in order: records that must be
                # ordered share a key, and so a partition.
                for sent in await _side_by_side(_handle_in_order(agent, producer, taken) for taken in batches.values()):
                    acknowledgements += sent
            await asyncio.gather(*acknowledgements)
            # Committed only now: every record up to here is durably processed or dead-lettered.
            await consumer.commit({partition: taken[-1].offset + 1 for partition, taken in batches.items()})
            for partition, taken in batches.items():
                RECORDS_PROCESSED.labels(agent.service, partition.topic).inc(len(taken))
                _record_lag(agent, consumer.highwater(partition), taken[-1].offset + 1, partition)
    finally:
        await consumer.stop()


async def _side_by_side(works: Iterable[Awaitable[T]]) -> list[T]:
    """Run `works` at once; when one fails, the others are cancelled before the failure is raised,
    so that no work goes on behind a consumer that is being restarted."""
    tasks = [asyncio.ensure_future(work) for work in works]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _handle_in_order(
    agent: Agent, producer: AIOKafkaProducer, records: list[KafkaRecord]
) -> list[asyncio.Future[Any]]:
    assert agent.handle is not None
    acknowledgements: list[asyncio.Future[Any]] = []
    for record in records:
        with bound(correlation_id=correlation_of(record.headers), topic=record.topic, offset=record.offset):
            acknowledgements += await _attempt(agent, producer, [record], partial(agent.handle, record))
    return acknowledgements


async def _take(agent: Agent, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[KafkaRecord]]:
    """Up to `max_batch` records, waiting at most `batch_wait_ms` after the first for more."""
    batches: dict[TopicPartition, list[KafkaRecord]] = await consumer.getmany(
        timeout_ms=500, max_records=agent.max_batch
    )
    count = sum(len(records) for records in batches.values())
    deadline = asyncio.get_running_loop().time() + agent.batch_wait_ms / 1000
    while count and count < agent.max_batch and (left := deadline - asyncio.get_running_loop().time()) > 0:
        more = await consumer.getmany(timeout_ms=max(int(left * 1000), 1), max_records=agent.max_batch - count)
        for partition, records in more.items():
            batches.setdefault(partition, []).extend(records)
            count += len(records)
    return batches


async def _attempt(
    agent: Agent,
    producer: AIOKafkaProducer,
    records: list[KafkaRecord],
    work: Callable[[], Awaitable[list[asyncio.Future[Any]] | None]],
) -> list[asyncio.Future[Any]]:
    """Run `work` on `records` until it succeeds; a failing dependency is waited out, any other
    failure is the records' own doing, and they are parked on the dead-letter topic."""
    delay = 0.2
    while True:
        try:
            return await work() or []
        except asyncio.CancelledError:
            raise
        except TRANSIENT_ERRORS as error:
            PROCESSING_ERRORS.labels(agent.service, records[0].topic, type(error).__name__).inc()
            log.warning(
                "a dependency failed; retrying",
                extra={"agent": agent.name, "offset": records[0].offset, "error": repr(error)},
            )
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 5.0)
        except Exception as error:
            PROCESSING_ERRORS.labels(agent.service, records[0].topic, type(error).__name__).inc()
            for record in records:
                await send_dead_letter(producer, agent.dead_letter_topic, agent.service, record, error)
            return []


async def send_dead_letter(
    producer: AIOKafkaProducer,
    dead_letter_topic: str,
    service: str,
    record: KafkaRecord,
    error: BaseException,
) -> None:
    """Publish `record` with why it failed to the dead-letter topic, keyed by its original key."""
    letter = DeadLetter(
        service=service,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key_b64=DeadLetter.encode(record.key),
        value_b64=DeadLetter.encode(record.value or b"") or "",
        error_class=type(error).__name__,
        reason=str(error)[:2000] or type(error).__name__,
        failed_at=utcnow(),
    )
    await producer.send_and_wait(dead_letter_topic, letter.to_bytes(), key=record.key)
    DEAD_LETTERS.labels(service, record.topic, letter.error_class).inc()
    log.warning(
        "dead-lettered a record",
        extra={"topic": record.topic, "offset": record.offset, "error_class": letter.error_class},
    )


def _record_lag(agent: Agent, highwater: int | None, position: int, partition: TopicPartition) -> None:
    if highwater is not None:
        CONSUMER_LAG.labels(agent.service, partition.topic, str(partition.partition)).set(max(highwater - position, 0))
