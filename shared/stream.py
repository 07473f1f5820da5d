"""Consumer loops ("agents"): decode each record, hand it to the agent, commit after the work.

What happens on failure is decided here, by shared/errors.py's taxonomy: a failing dependency is
waited out and the same records are tried again; a record that does not decode or validate is
dead-lettered; any other exception is a bug, and the agent stops with its offsets uncommitted
(`chorus_agent_up` 0, readiness failing) instead of quietly dead-lettering good records.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.errors import Failure, classify
from shared.kafka import create_consumer
from shared.logging import bound
from shared.metrics import AGENT_UP, CONSUMER_LAG, DEAD_LETTERS, PROCESSING_ERRORS, RECORDS_PROCESSED
from shared.records import MAX_DEAD_LETTER_BYTES, DeadLetter, Record, utcnow
from shared.retry import Backoff
from shared.topics import DLQ, Topic, correlation_of

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)
T = TypeVar("T")
KafkaRecord: TypeAlias = ConsumerRecord[bytes, bytes]
# Acknowledgements of the records a handler sent: awaited before the offsets are committed, so a
# batch's output is produced in parallel but never lost.
Sent = list[asyncio.Future[Any]]


@dataclass(frozen=True)
class Incoming(Generic[R]):
    """A decoded record with where it came from."""

    value: R
    message: KafkaRecord

    @property
    def headers(self) -> dict[str, bytes]:
        return dict(self.message.headers or ())


@dataclass
class BatchResult:
    """What a batch handler did: the acknowledgements of what it sent, and the records it refuses
    (each with the error that says why), which go to the dead-letter topic."""

    sent: Sent = field(default_factory=list)
    refused: list[tuple[KafkaRecord, Exception]] = field(default_factory=list)


Handler = Callable[[Incoming[R]], Awaitable[Sent | None]]
BatchHandler = Callable[[list[Incoming[R]]], Awaitable[BatchResult]]


class Consumer(Protocol):
    """The part of AIOKafkaConsumer an agent uses (a fake in the unit tests)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Any: ...
    async def commit(self, offsets: Any = None) -> None: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    def assignment(self) -> set[TopicPartition]: ...


# How long an agent waits before it tries a record again after a dependency failed.
RETRY_BACKOFF = Backoff(first=0.2, cap=5.0)


class AgentStopped(RuntimeError):
    """An agent met an error that is neither a dependency's nor a record's: a bug, which stops it."""


@dataclass(frozen=True)
class Agent(Generic[R]):
    """A consumer group that runs `handle` on every record of `topic`, in order per partition.

    With `handle_batch` instead, the agent hands over up to `max_batch` records at once, waiting
    at most `batch_wait_ms` after the first for more. `group` is the consumer group, before the
    deployment's topic prefix.
    """

    name: str
    service: str
    group: str
    topic: Topic[R]
    handle: Handler[R] | None = None
    handle_batch: BatchHandler[R] | None = None
    max_batch: int = 200
    batch_wait_ms: int = 0
    backoff: Backoff = RETRY_BACKOFF


ConsumerFactory = Callable[[str, str, str], Consumer]


def _kafka_consumer(bootstrap: str, group_id: str, topic: str) -> Consumer:
    consumer: Consumer = create_consumer(bootstrap, group_id, topic)
    return consumer


async def run_agent(
    agent: Agent[Any],
    bootstrap: str,
    producer: AIOKafkaProducer,
    prefix: str = "",
    consumer_factory: ConsumerFactory = _kafka_consumer,
) -> None:
    """Run `agent` until cancelled, restarting its consumer after broker failures; raises
    AgentStopped on a bug, with the failing records' offsets uncommitted."""
    AGENT_UP.labels(agent.service, agent.name).set(1)
    restarts = 0
    try:
        while True:
            consumer = consumer_factory(bootstrap, f"{prefix}{agent.group}", agent.topic.full_name(prefix))
            try:
                await _consume(agent, consumer, producer, prefix)
            except AgentStopped:
                raise
            except Exception as error:
                if classify(error) is not Failure.TRANSIENT:
                    raise AgentStopped(f"{agent.name} stopped: {error!r}") from error
                restarts += 1
                log.warning("consumer failed; restarting", extra={"agent": agent.name, "error": repr(error)})
                await asyncio.sleep(agent.backoff.delay(restarts))
    except asyncio.CancelledError:
        raise
    except BaseException as error:
        AGENT_UP.labels(agent.service, agent.name).set(0)
        log.error("agent stopped", extra={"agent": agent.name, "error": repr(error)})
        raise


async def _consume(agent: Agent[Any], consumer: Consumer, producer: AIOKafkaProducer, prefix: str) -> None:
    try:
        # Started inside the try: a shutdown that comes while it joins the group still closes it.
        await consumer.start()
        while True:
            batches = await _take(agent, consumer)
            _forget_lag(agent, consumer.assignment())
            if not any(batches.values()):
                continue
            if agent.handle_batch is not None:
                records = [record for taken in batches.values() for record in taken]
                sent = await _handle_batch(agent, producer, prefix, records)
            else:
                # Partitions are worked on side by side, each in order: records that must be
                # ordered share a key, and so a partition.
                sent = []
                for partition_sent in await _side_by_side(
                    _handle_in_order(agent, producer, prefix, taken) for taken in batches.values()
                ):
                    sent += partition_sent
            await asyncio.gather(*sent)
            # Committed only now: every record up to here is durably processed or dead-lettered.
            await consumer.commit({partition: taken[-1].offset + 1 for partition, taken in batches.items() if taken})
            # A rebalance may have moved a partition away during the work: its new holder exports its lag.
            held = consumer.assignment()
            for partition, taken in batches.items():
                if taken:
                    RECORDS_PROCESSED.labels(agent.service, partition.topic).inc(len(taken))
                    if partition in held:
                        _record_lag(agent, consumer.highwater(partition), taken[-1].offset + 1, partition)
    finally:
        _forget_lag(agent, set())
        await consumer.stop()


async def _side_by_side(works: Iterable[Awaitable[T]]) -> list[T]:
    """Run `works` at once; when one fails, the others are cancelled before the failure is raised,
    so that no work goes on behind a consumer that is being restarted or stopped."""
    tasks = [asyncio.ensure_future(work) for work in works]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _handle_in_order(
    agent: Agent[Any], producer: AIOKafkaProducer, prefix: str, records: list[KafkaRecord]
) -> Sent:
    assert agent.handle is not None
    handle = agent.handle
    sent: Sent = []
    for record in records:
        with bound(correlation_id=correlation_of(record.headers), topic=record.topic, offset=record.offset):
            incoming = await _decoded(agent, producer, prefix, record)
            if incoming is not None:
                result: Sent | None = await _attempt(agent, producer, prefix, [record], partial(handle, incoming))
                sent += result or []
    return sent


async def _handle_batch(agent: Agent[Any], producer: AIOKafkaProducer, prefix: str, records: list[KafkaRecord]) -> Sent:
    decoded = [await _decoded(agent, producer, prefix, record) for record in records]
    return await _handle_part(agent, producer, prefix, [incoming for incoming in decoded if incoming is not None])


async def _handle_part(agent: Agent[Any], producer: AIOKafkaProducer, prefix: str, batch: list[Incoming[Any]]) -> Sent:
    """Hand `batch` over; when the batch as a whole fails for a bad record, its halves are tried
    apart, so that only the bad records end on the dead-letter topic."""
    assert agent.handle_batch is not None
    if not batch:
        return []
    handle_batch = agent.handle_batch
    messages = [incoming.message for incoming in batch]
    try:
        result = await _attempt(agent, producer, prefix, messages, partial(handle_batch, batch), len(batch) == 1)
    except _BatchRefused:
        middle = len(batch) // 2
        return [
            *await _handle_part(agent, producer, prefix, batch[:middle]),
            *await _handle_part(agent, producer, prefix, batch[middle:]),
        ]
    result = result or BatchResult()
    for record, error in result.refused:
        await send_dead_letter(producer, DLQ.full_name(prefix), agent.service, record, error)
    return result.sent


class _BatchRefused(Exception):
    """A batch of several records failed for a bad record: which one is found by splitting it."""


async def _decoded(agent: Agent[R], producer: AIOKafkaProducer, prefix: str, record: KafkaRecord) -> Incoming[R] | None:
    """The record decoded as its topic's type; a record that is not one is dead-lettered (None)."""
    try:
        return Incoming(agent.topic.decode(record.value), record)
    except Exception as error:
        if classify(error) is not Failure.BAD_RECORD:
            raise
        PROCESSING_ERRORS.labels(agent.service, record.topic, type(error).__name__).inc()
        await send_dead_letter(producer, DLQ.full_name(prefix), agent.service, record, error)
        return None


async def _attempt(
    agent: Agent[Any],
    producer: AIOKafkaProducer,
    prefix: str,
    records: list[KafkaRecord],
    work: Callable[[], Awaitable[T]],
    dead_letter: bool = True,
) -> T | None:
    """Run `work` on `records` until it succeeds: a failing dependency is waited out, a bad record
    is dead-lettered (None; or _BatchRefused raised, without `dead_letter`), and anything else
    stops the agent."""
    attempt = 0
    while True:
        try:
            return await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            PROCESSING_ERRORS.labels(agent.service, records[0].topic, type(error).__name__).inc()
            failure = classify(error)
            if failure is Failure.BUG:
                raise AgentStopped(
                    f"{agent.name} stopped at {records[0].topic}[{records[0].partition}]@{records[0].offset}: {error!r}"
                ) from error
            if failure is Failure.BAD_RECORD:
                if not dead_letter:
                    raise _BatchRefused() from error
                for record in records:
                    await send_dead_letter(producer, DLQ.full_name(prefix), agent.service, record, error)
                return None
            attempt += 1
            log.warning(
                "a dependency failed; retrying",
                extra={"agent": agent.name, "offset": records[0].offset, "error": repr(error)},
            )
            await asyncio.sleep(agent.backoff.delay(attempt))


async def send_dead_letter(
    producer: AIOKafkaProducer,
    dead_letter_topic: str,
    service: str,
    record: KafkaRecord,
    error: BaseException,
) -> None:
    """Publish `record` with why it failed to the dead-letter topic, keyed by its original key."""
    value = record.value or b""
    letter = DeadLetter(
        service=service,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key_b64=DeadLetter.encode((record.key or b"")[:1024] if record.key is not None else None),
        value_b64=DeadLetter.encode(value[:MAX_DEAD_LETTER_BYTES]) or "",
        value_size=len(value),
        value_sha256=hashlib.sha256(value).hexdigest(),
        value_truncated=len(value) > MAX_DEAD_LETTER_BYTES,
        headers_b64=_kept_headers(record),
        error_class=type(error).__name__,
        reason=str(error)[:2000] or type(error).__name__,
        failed_at=utcnow(),
    )
    await producer.send_and_wait(dead_letter_topic, letter.to_bytes(), key=(record.key or b"")[:1024] or None)
    DEAD_LETTERS.labels(service, record.topic, letter.error_class).inc()
    log.warning(
        "dead-lettered a record",
        extra={"topic": record.topic, "offset": record.offset, "error_class": letter.error_class},
    )


def _kept_headers(record: KafkaRecord) -> list[tuple[str, str]]:
    """The record's headers for its dead letter (base64), for a replay: at most 32, of at most 1 KiB
    each, so that a dead letter stays bounded."""
    headers = (record.headers or ())[:32]
    return [(name, DeadLetter.encode(data or b"") or "") for name, data in headers if len(data or b"") <= 1024]


async def _take(agent: Agent[Any], consumer: Consumer) -> Mapping[TopicPartition, list[KafkaRecord]]:
    """Up to `max_batch` records, waiting at most `batch_wait_ms` after the first for more."""
    batches: dict[TopicPartition, list[KafkaRecord]] = dict(
        await consumer.getmany(timeout_ms=500, max_records=agent.max_batch)
    )
    count = sum(len(records) for records in batches.values())
    deadline = asyncio.get_running_loop().time() + agent.batch_wait_ms / 1000
    while count and count < agent.max_batch and (left := deadline - asyncio.get_running_loop().time()) > 0:
        more = await consumer.getmany(timeout_ms=max(int(left * 1000), 1), max_records=agent.max_batch - count)
        for partition, records in more.items():
            batches.setdefault(partition, []).extend(records)
            count += len(records)
    return batches


# The partitions each agent (by name) exported a lag for, in this process.
_LAGGED: dict[str, set[TopicPartition]] = {}


def _record_lag(agent: Agent[Any], highwater: int | None, position: int, partition: TopicPartition) -> None:
    if highwater is not None:
        CONSUMER_LAG.labels(agent.service, partition.topic, str(partition.partition)).set(max(highwater - position, 0))
        _LAGGED.setdefault(agent.name, set()).add(partition)


def _forget_lag(agent: Agent[Any], held: set[TopicPartition]) -> None:
    """Drop the lag of partitions a rebalance moved to another worker (or of all, once stopped):
    the worker that holds a partition now exports it, and a stale copy here would count it twice."""
    lagged = _LAGGED.get(agent.name, set())
    for partition in lagged - held:
        CONSUMER_LAG.remove(agent.service, partition.topic, str(partition.partition))
    lagged &= held
