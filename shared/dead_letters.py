"""Reading the dead-letter topic back: each dead letter with its place, its time and its tenant.

`chorus dlq` lists and replays dead letters, and search counts a tenant's recent ones, from the
topic itself: what one shows, the other counts.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from shared.records import DeadLetter

# How long one read waits for records before it checks whether the end is reached.
_POLL_MS = 500


@dataclass(frozen=True)
class DeadLetterEntry:
    """A record of the dead-letter topic: `letter` is None when it is not a DeadLetter at all."""

    partition: int
    offset: int
    timestamp: datetime
    letter: DeadLetter | None

    @property
    def id(self) -> str:
        """partition:offset, which `chorus dlq show` and `replay` take."""
        return f"{self.partition}:{self.offset}"

    @property
    def tenant(self) -> str | None:
        return None if self.letter is None else tenant_named_by(self.letter)


def entry_of(record: ConsumerRecord[bytes, bytes]) -> DeadLetterEntry:
    try:
        letter: DeadLetter | None = DeadLetter.from_bytes(record.value or b"")
    except ValidationError:
        letter = None
    moment = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return DeadLetterEntry(record.partition, record.offset, moment, letter)


def parse_id(text: str) -> tuple[int, int]:
    """(partition, offset) of a dead letter's id; ValueError when `text` is not one."""
    partition, separator, offset = text.partition(":")
    if not separator or not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"{text!r} is not a dead letter id (partition:offset)")
    return int(partition), int(offset)


def tenant_named_by(letter: DeadLetter) -> str | None:
    """The tenant (id or name, as the record named it) a dead letter belongs to, when it says.

    Every topic's record carries `tenant_id`; a raw event may name its tenant only in a header,
    and every key of a tenant's record starts with `tenant:`. A vCon that names its tenant only
    in an attachment, or a record that is not JSON, belongs to no tenant here.
    """
    named = _value_tenant(letter) or _header_tenant(letter)
    if named:
        return named
    key = _decoded(letter.key_b64)
    if key is not None and b":" in key:
        prefix = key.split(b":", 1)[0].decode(errors="replace")
        try:
            return str(UUID(prefix))
        except ValueError:
            return None
    return None


def headers_of(letter: DeadLetter) -> list[tuple[str, bytes]]:
    return [(name, _decoded(value) or b"") for name, value in letter.headers_b64]


def _value_tenant(letter: DeadLetter) -> str | None:
    if letter.value_truncated:
        return None
    try:
        value: Any = json.loads(letter.value)
    except (ValueError, binascii.Error):
        return None
    named = value.get("tenant_id") if isinstance(value, dict) else None
    return named[:128] if isinstance(named, str) and named else None


def _header_tenant(letter: DeadLetter) -> str | None:
    for name, value in headers_of(letter):
        if name == "tenant_id" and value:
            return value.decode(errors="replace")[:128]
    return None


def _decoded(data: str | None) -> bytes | None:
    if data is None:
        return None
    try:
        return base64.b64decode(data)
    except (ValueError, binascii.Error):
        return None


async def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The partitions of `topic`; LookupError when the broker has no such topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(
        part["partition"] for found in described if not found["error_code"] for part in found["partitions"]
    )
    if not numbers:
        raise LookupError(f"the broker has no topic {topic}")
    return [TopicPartition(topic, number) for number in numbers]


async def start_reader(
    consumer: AIOKafkaConsumer, bootstrap: str, topic: str, since: datetime | None
) -> list[TopicPartition]:
    """Assign every partition of `topic` to `consumer` (no group: nothing is committed) and place
    it at the first record at or after `since`, or at the beginning."""
    partitions = await partitions_of(bootstrap, topic)
    consumer.assign(partitions)
    if since is None:
        await consumer.seek_to_beginning(*partitions)
        return partitions
    found = await consumer.offsets_for_times({partition: int(since.timestamp() * 1000) for partition in partitions})
    ends = await consumer.end_offsets(partitions)
    for partition in partitions:
        place = found.get(partition)
        consumer.seek(partition, place.offset if place is not None else ends[partition])
    return partitions


def reader(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer of no group, for reading a topic without committing anything."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )


async def read_dead_letters(
    bootstrap: str, topic: str, since: datetime | None = None
) -> AsyncIterator[DeadLetterEntry]:
    """Every record of the dead-letter topic `topic` (from `since`), up to its end as it was when
    the read began; records that come later are left for the next read."""
    async for record in read_to_end(bootstrap, topic, since):
        yield entry_of(record)


async def read_to_end(
    bootstrap: str, topic: str, since: datetime | None = None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """The records of `topic` (from `since`) up to the end it had when the read began, each
    partition's in offset order; nothing is committed."""
    consumer = reader(bootstrap)
    await consumer.start()
    try:
        partitions = await start_reader(consumer, bootstrap, topic, since)
        ends = await consumer.end_offsets(partitions)
        waiting = {partition for partition in partitions if await consumer.position(partition) < ends[partition]}
        while waiting:
            batches = await consumer.getmany(*waiting, timeout_ms=_POLL_MS)
            for partition, records in batches.items():
                for record in records:
                    if record.offset < ends[partition]:
                        yield record
            for partition in list(waiting):
                if await consumer.position(partition) >= ends[partition]:
                    waiting.discard(partition)
    finally:
        await consumer.stop()
