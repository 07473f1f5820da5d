"""The agent loop against a consumer and producer held in memory: commits, dead letters, stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from shared.errors import InvalidRecord
from shared.metrics import AGENT_UP, CONSUMER_LAG
from shared.records import DeadLetter, EventEnvelope
from shared.retry import Backoff
from shared.stream import Agent, AgentStopped, BatchResult, Incoming, KafkaRecord, Sent, run_agent
from shared.topics import DLQ, RAW_EVENTS

TOPIC = RAW_EVENTS.full_name()


def event(external_id: str) -> bytes:
    return EventEnvelope(source="slack", event_type="message", external_id=external_id, text="hi").to_bytes()


def record(partition: int, offset: int, value: bytes) -> KafkaRecord:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, b"key", value, None, 3, len(value), [])


class FakeConsumer:
    """Hands out the given fetches one by one, then nothing; notes every commit in `log`."""

    def __init__(self, fetches: list[list[KafkaRecord]], log: list[str]) -> None:
        self.fetches = fetches
        self.log = log
        self.commits: list[dict[TopicPartition, int]] = []
        self.ends: dict[TopicPartition, int] = {}  # the partitions' high watermarks, where known
        self.held: set[TopicPartition] = set()  # what the group gave this consumer

    async def start(self) -> None:
        self.log.append("start")

    async def stop(self) -> None:
        self.log.append("stop")

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        if not self.fetches:
            await asyncio.sleep(0.01)
            return {}
        batch: dict[TopicPartition, list[KafkaRecord]] = {}
        for taken in self.fetches.pop(0):
            batch.setdefault(TopicPartition(taken.topic, taken.partition), []).append(taken)
        return batch

    async def commit(self, offsets: Any = None) -> None:
        self.commits.append(dict(offsets))
        self.log.append("commit " + ",".join(f"{p.partition}:{o}" for p, o in sorted(offsets.items())))

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.ends.get(partition)

    def assignment(self) -> set[TopicPartition]:
        return self.held


class FakeProducer:
    """Keeps what was sent to the dead-letter topic."""

    def __init__(self) -> None:
        self.dead_letters: list[DeadLetter] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        assert topic == DLQ.full_name()
        self.dead_letters.append(DeadLetter.from_bytes(value))


Handle = Callable[[Incoming[EventEnvelope]], Awaitable[Sent | None]]
FAST = Backoff(first=0.001, cap=0.001)


async def run(
    fetches: list[list[KafkaRecord]],
    log: list[str],
    producer: FakeProducer,
    *,
    handle: Handle | None = None,
    handle_batch: Callable[[list[Incoming[EventEnvelope]]], Awaitable[BatchResult]] | None = None,
    until: Callable[[FakeConsumer], bool],
) -> FakeConsumer:
    """Run an agent over `fetches` until `until(consumer)` holds, then cancel it."""
    consumer = FakeConsumer(fetches, log)
    agent = Agent("test_agent", "test", "group", RAW_EVENTS, handle=handle, handle_batch=handle_batch, backoff=FAST)
    task = asyncio.ensure_future(run_agent(agent, "unused", producer, consumer_factory=lambda *_: consumer))  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while not until(consumer):
            assert not task.done(), task.exception()
            await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return consumer


async def test_offsets_are_committed_only_after_the_work_and_its_sends_are_done() -> None:
    log: list[str] = []
    sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(incoming: Incoming[EventEnvelope]) -> Sent:
        log.append(f"handled {incoming.value.external_id}")
        if incoming.message.offset == 1:
            # The broker acknowledges the handler's own output a little later.
            asyncio.get_running_loop().call_later(0.05, lambda: (log.append("acknowledged"), sent.set_result(None)))
            return [sent]
        return []

    consumer = await run(
        [[record(0, 0, event("a")), record(0, 1, event("b"))]], log, FakeProducer(), handle=handle,
        until=lambda consumer: bool(consumer.commits),
    )  # fmt: skip
    assert log == ["start", "handled a", "handled b", "acknowledged", "commit 0:2", "stop"]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 2}]


async def test_a_record_that_does_not_decode_is_dead_lettered_and_the_rest_handled() -> None:
    log: list[str] = []
    producer = FakeProducer()

    async def handle(incoming: Incoming[EventEnvelope]) -> None:
        log.append(f"handled {incoming.value.external_id}")

    await run(
        [[record(0, 0, event("a")), record(0, 1, b"\xff not json"), record(0, 2, event("c"))]], log, producer,
        handle=handle, until=lambda consumer: bool(consumer.commits),
    )  # fmt: skip
    assert [letter.offset for letter in producer.dead_letters] == [1]
    assert producer.dead_letters[0].error_class == "ValidationError"
    assert producer.dead_letters[0].value == b"\xff not json"
    assert log[1:4] == ["handled a", "handled c", "commit 0:3"]


async def test_a_record_the_handler_refuses_is_dead_lettered_with_the_reason() -> None:
    producer = FakeProducer()

    async def handle(incoming: Incoming[EventEnvelope]) -> None:
        if incoming.value.external_id == "bad":
            raise InvalidRecord("names no tenant")

    consumer = await run(
        [[record(0, 0, event("bad")), record(0, 1, event("good"))]], [], producer, handle=handle,
        until=lambda consumer: bool(consumer.commits),
    )  # fmt: skip
    assert [(letter.offset, letter.reason) for letter in producer.dead_letters] == [(0, "names no tenant")]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 2}]


async def test_a_failing_dependency_is_waited_out_and_nothing_is_dead_lettered() -> None:
    producer = FakeProducer()
    attempts: list[int] = []

    async def handle(incoming: Incoming[EventEnvelope]) -> None:
        attempts.append(incoming.message.offset)
        if len(attempts) < 3:
            raise asyncpg.CannotConnectNowError("the database system is starting up")

    consumer = await run([[record(0, 0, event("a"))]], [], producer, handle=handle, until=lambda c: bool(c.commits))
    assert attempts == [0, 0, 0]
    assert producer.dead_letters == []
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 1}]


async def test_a_bug_stops_the_agent_without_committing_or_dead_lettering() -> None:
    log: list[str] = []
    producer = FakeProducer()

    async def handle(incoming: Incoming[EventEnvelope]) -> None:
        if incoming.message.offset == 1:
            raise KeyError("a field the code forgot")
        log.append(f"handled {incoming.value.external_id}")

    consumer = FakeConsumer([[record(0, 0, event("a")), record(0, 1, event("b"))]], log)
    agent = Agent("buggy_agent", "test", "group", RAW_EVENTS, handle=handle, backoff=FAST)
    with pytest.raises(AgentStopped, match=r"buggy_agent stopped at chorus.raw.events\[0\]@1"):
        async with asyncio.timeout(5):
            await run_agent(agent, "unused", producer, consumer_factory=lambda *_: consumer)  # type: ignore[arg-type]
    assert consumer.commits == []
    assert producer.dead_letters == []
    assert log == ["start", "handled a", "stop"]
    assert AGENT_UP.labels("test", "buggy_agent")._value.get() == 0


async def test_partitions_are_handled_side_by_side_each_in_order() -> None:
    log: list[str] = []
    first_partition_waits = asyncio.Event()

    async def handle(incoming: Incoming[EventEnvelope]) -> None:
        if incoming.value.external_id == "p0-a":
            # Partition 1 goes on while partition 0 waits; partition 0's next record waits its turn.
            await first_partition_waits.wait()
        if incoming.value.external_id == "p1-b":
            first_partition_waits.set()
        log.append(incoming.value.external_id)

    fetch = [record(0, 0, event("p0-a")), record(0, 1, event("p0-b")), record(1, 0, event("p1-a")),
             record(1, 1, event("p1-b"))]  # fmt: skip
    consumer = await run([fetch], log, FakeProducer(), handle=handle, until=lambda c: bool(c.commits))
    assert log[1:5] == ["p1-a", "p1-b", "p0-a", "p0-b"]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 2, TopicPartition(TOPIC, 1): 2}]


async def test_a_batch_handler_dead_letters_only_what_it_refuses() -> None:
    producer = FakeProducer()
    seen: list[list[str]] = []

    async def handle_batch(batch: list[Incoming[EventEnvelope]]) -> BatchResult:
        seen.append([incoming.value.external_id for incoming in batch])
        refused = [
            (incoming.message, ValueError("too long")) for incoming in batch if incoming.value.external_id == "b"
        ]
        return BatchResult(refused=refused)  # type: ignore[arg-type]

    consumer = await run(
        [[record(0, 0, event("a")), record(0, 1, event("b")), record(0, 2, b"{}"), record(0, 3, event("d"))]], [],
        producer, handle_batch=handle_batch, until=lambda c: bool(c.commits),
    )  # fmt: skip
    assert seen == [["a", "b", "d"]]
    assert sorted((letter.offset, letter.error_class) for letter in producer.dead_letters) == [
        (1, "ValueError"),
        (2, "ValidationError"),
    ]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 4}]


async def test_a_broker_failure_restarts_the_consumer_and_the_records_come_again() -> None:
    log: list[str] = []
    consumers: list[FakeConsumer] = []

    def factory(*_: str) -> FakeConsumer:
        # The first consumer dies on its first fetch; the second one gets the record.
        consumer = FakeConsumer([[record(0, 0, event("a"))]], log)
        if not consumers:
            consumer.getmany = _broken  # type: ignore[method-assign]
        consumers.append(consumer)
        return consumer

    async def handle(incoming: Incoming[EventEnvelope]) -> None:
        log.append(f"handled {incoming.value.external_id}")

    agent = Agent("restarting_agent", "test", "group", RAW_EVENTS, handle=handle, backoff=FAST)
    task = asyncio.ensure_future(run_agent(agent, "unused", FakeProducer(), consumer_factory=factory))  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while len(consumers) < 2 or not consumers[1].commits:
            await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert log[:4] == ["start", "stop", "start", "handled a"]


async def _broken(*_: Any, **__: Any) -> Any:
    raise ConnectionResetError("the broker went away")


def test_records_decode_to_their_topic_type() -> None:
    incoming = RAW_EVENTS.decode(event("x"))
    assert isinstance(incoming, EventEnvelope)
    assert incoming.external_id == "x"
    assert RAW_EVENTS.key_of(incoming) == b":x"


async def test_a_dead_letter_of_a_huge_record_is_cut_and_keeps_the_size_and_hash() -> None:
    import hashlib

    from shared.records import MAX_DEAD_LETTER_BYTES

    producer = FakeProducer()
    huge = b"x" * (3 * MAX_DEAD_LETTER_BYTES)
    await run([[record(0, 0, huge)]], [], producer, handle=_ignore, until=lambda c: bool(c.commits))
    [letter] = producer.dead_letters
    assert letter.value == huge[:MAX_DEAD_LETTER_BYTES]
    assert (letter.value_size, letter.value_truncated) == (len(huge), True)
    assert letter.value_sha256 == hashlib.sha256(huge).hexdigest()
    assert len(letter.to_bytes()) < 1_000_000


async def test_a_record_kafka_refuses_as_too_large_is_dead_lettered_not_retried_forever() -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    producer = FakeProducer()
    attempts: list[int] = []

    async def handle(incoming: Incoming[EventEnvelope]) -> None:
        attempts.append(incoming.message.offset)
        raise MessageSizeTooLargeError("the document is larger than the broker takes")

    consumer = await run([[record(0, 0, event("a"))]], [], producer, handle=handle, until=lambda c: bool(c.commits))
    assert attempts == [0]
    assert [letter.error_class for letter in producer.dead_letters] == ["MessageSizeTooLargeError"]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 1}]


async def _ignore(incoming: Incoming[EventEnvelope]) -> None:
    return None


async def test_a_batch_that_fails_for_one_bad_record_dead_letters_only_that_record() -> None:
    producer = FakeProducer()
    handled: list[str] = []

    async def handle_batch(batch: list[Incoming[EventEnvelope]]) -> BatchResult:
        # As a database refuses a whole transaction for one row's value.
        if any(incoming.value.external_id == "poison" for incoming in batch):
            raise asyncpg.DataError("date/time field value out of range")
        handled.extend(incoming.value.external_id for incoming in batch)
        return BatchResult()

    fetch = [record(0, offset, event(name)) for offset, name in enumerate(["a", "b", "poison", "d", "e"])]
    consumer = await run([fetch], [], producer, handle_batch=handle_batch, until=lambda c: bool(c.commits))
    assert sorted(handled) == ["a", "b", "d", "e"]
    assert [(letter.offset, letter.error_class) for letter in producer.dead_letters] == [(2, "DataError")]
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 5}]


async def test_the_lag_of_a_partition_moved_to_another_worker_is_no_longer_exported() -> None:
    log: list[str] = []
    consumer = FakeConsumer([[record(0, 0, event("a")), record(1, 0, event("b"))]], log)
    first, second = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    consumer.ends = {first: 4, second: 9}
    consumer.held = {first, second}

    async def handle(incoming: Incoming[EventEnvelope]) -> Sent:
        return []

    def lags() -> dict[str, float]:
        return {
            sample.labels["partition"]: sample.value
            for sample in CONSUMER_LAG.collect()[0].samples
            if sample.labels["service"] == "lagging" and sample.labels["topic"] == TOPIC
        }

    agent = Agent("lagging_agent", "lagging", "group", RAW_EVENTS, handle=handle, backoff=FAST)
    task = asyncio.ensure_future(run_agent(agent, "unused", FakeProducer(), consumer_factory=lambda *_: consumer))  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while lags() != {"0": 3, "1": 8}:
            await asyncio.sleep(0.005)
        consumer.held = {second}  # a rebalance gave partition 0 to another worker
        while lags() != {"1": 8}:
            await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert lags() == {}  # a stopped agent exports no lag


class RebalancedDuringTheWork(FakeConsumer):
    """A consumer whose group moves partition 0 to another worker while the fetch is worked on;
    like aiokafka's, it knows the high watermark only of partitions it holds."""

    async def commit(self, offsets: Any = None) -> None:
        await super().commit(offsets)
        self.held = {partition for partition in self.held if partition.partition != 0}

    def highwater(self, partition: TopicPartition) -> int | None:
        assert partition in self.held, "Partition is not assigned"
        return super().highwater(partition)


async def test_a_partition_moved_away_during_the_work_does_not_stop_the_agent() -> None:
    log: list[str] = []
    consumer = RebalancedDuringTheWork([[record(0, 0, event("a")), record(1, 0, event("b"))],
                                        [record(1, 1, event("c"))]], log)  # fmt: skip
    first, second = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    consumer.ends, consumer.held = {first: 4, second: 9}, {first, second}

    async def handle(incoming: Incoming[EventEnvelope]) -> Sent:
        return []

    agent = Agent("moved_agent", "moved", "group", RAW_EVENTS, handle=handle, backoff=FAST)
    task = asyncio.ensure_future(run_agent(agent, "unused", FakeProducer(), consumer_factory=lambda *_: consumer))  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while len(consumer.commits) < 2:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert consumer.commits == [{first: 1, second: 1}, {second: 2}]
    assert log.count("start") == 1  # worked on without a restart
