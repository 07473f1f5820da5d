"""Poison records: what a misbehaving producer puts straight onto the raw topics, past ingest's door.

Each is dead-lettered with its reason, except a text that normalization makes longer than
MAX_DOCUMENT_CHARS, which is stored cut to it (shared/hashing.py); the valid records around them,
in every partition of every raw topic, must not notice.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from aiokafka.errors import KafkaError

from bench.webhooks import direct_message
from services.ingest.topics import RAW_STREAMCHAT, RAW_TAVUS
from shared import topics
from shared.db import create_pool, tenant_transaction
from shared.kafka import create_producer
from shared.records import DeadLetter

# A moment Python holds but UTC does not: in UTC it is in the year 10000.
PAST_9999 = "9999-12-31T23:00:00-05:00"
# Near the 1 MiB a Kafka record may be (whole, its dead letter in base64 would be far past it),
# and five times the text an event may carry.
OVERSIZED_CHARS = 990_000
# NFC writes U+FB2C as three characters: 100,000 of them normalize past MAX_DOCUMENT_CHARS.
EXPANDING = "\ufb2c"
OUT_OF_RANGE = "out of range once converted to UTC"
NOT_UTF8 = "invalid unicode code point"


@dataclass(frozen=True)
class Poison:
    """One record for a raw topic: `reason` is what its dead letter must say; None: it is stored, cut."""

    kind: str
    topic: str
    key: bytes
    value: bytes
    marker: str
    reason: str | None


class Progress(Protocol):
    accepted: int


def make_poison(tenant_id: UUID) -> list[Poison]:
    """Poison of each kind (oversized, out-of-range date, non-UTF-8) for each raw topic."""
    tenant, now = str(tenant_id), datetime.now(UTC).isoformat()

    def event(marker: str, **fields: Any) -> bytes:
        # The marker first: a dead letter keeps only the start of an oversized record.
        body = {"external_id": marker, "tenant_id": tenant, "source": "slack", "event_type": "message", **fields}
        return json.dumps(body, ensure_ascii=False).encode()

    def delivery(marker: str, change: Callable[[dict[str, Any]], object]) -> bytes:
        body = direct_message("creator-1", "fan-poison", marker, "poison", datetime(2026, 11, 20, tzinfo=UTC))
        change(body)
        record = {"tenant_id": tenant, "webhook_id": marker, "received_at": now, "correlation_id": marker, "body": body}
        return json.dumps(record, ensure_ascii=False).encode()

    def callback(marker: str, timestamp: str, text: str = "hello") -> bytes:
        body = {
            "conversation_id": marker,
            "event_type": "application.transcription_ready",
            "timestamp": timestamp,
            "properties": {"transcript": [{"role": "user", "content": text}]},
        }
        record = {"tenant_id": tenant, "received_at": now, "correlation_id": marker, "body": body}
        return json.dumps(record, ensure_ascii=False).encode()

    def invalid_utf8(value: bytes) -> bytes:
        return value.replace("\ufffd".encode(), b"\xe9")

    def anonymous(body: dict[str, Any]) -> None:
        del body["message"]["user"]
        body["padding"] = "p" * OVERSIZED_CHARS

    events, streamchat, tavus = topics.RAW_EVENTS.name, RAW_STREAMCHAT.name, RAW_TAVUS.name
    table = [
        ("oversized", events, f"{tenant}:p-big", event("p-big", text="x" * OVERSIZED_CHARS),
         "at most 200000 characters"),
        ("out-of-range date", events, f"{tenant}:p-date", event("p-date", text="when?", occurred_at=PAST_9999),
         OUT_OF_RANGE),
        ("non-UTF-8", events, f"{tenant}:p-utf8", invalid_utf8(event("p-utf8", text="caf\ufffd")), NOT_UTF8),
        ("normalizes past MAX_DOCUMENT_CHARS", events, f"{tenant}:p-nfc", event("p-nfc", text=EXPANDING * 100_000),
         None),
        ("oversized", streamchat, "creator-1", delivery("p-sc-big", anonymous), "'message.user' must be an object"),
        ("out-of-range date", streamchat, "creator-1",
         delivery("p-sc-date", lambda body: body["message"].update(created_at=PAST_9999)), OUT_OF_RANGE),
        ("non-UTF-8", streamchat, "creator-1",
         invalid_utf8(delivery("p-sc-utf8", lambda body: body["message"].update(text="caf\ufffd"))), NOT_UTF8),
        ("out-of-range date", tavus, "p-tv-date", callback("p-tv-date", PAST_9999), OUT_OF_RANGE),
        ("non-UTF-8", tavus, "p-tv-utf8", invalid_utf8(callback("p-tv-utf8", now, "caf\ufffd")), NOT_UTF8),
    ]  # fmt: skip
    return [Poison(kind, topic, key.encode(), value, _marker(value), reason) for kind, topic, key, value, reason in
            table]  # fmt: skip


def _marker(value: bytes) -> str:
    """The poison's name: the first id its record carries (external_id, webhook_id or correlation_id)."""
    return "p-" + value.split(b'"p-', 1)[1].split(b'"', 1)[0].decode()


@dataclass
class Poisoner:
    """Produces the poison while the events stream, each when its share of the events is accepted,
    into the partitions of its topic in turn, so that every partition gets some."""

    bootstrap: str
    prefix: str
    poison: list[Poison]
    sent: list[tuple[Poison, int]] = field(default_factory=list)

    def run(self, progress: Progress, total: int, sending: threading.Thread) -> None:
        for step, item in enumerate(self.poison, start=1):
            while sending.is_alive() and progress.accepted < total * step / (len(self.poison) + 1):
                time.sleep(0.05)
            self.sent.append((item, self._produce(item, step)))

    def _produce(self, item: Poison, step: int) -> int:
        """Send until the broker acknowledges (it may be restarting); returns the partition."""
        deadline = time.monotonic() + 300
        while True:
            try:
                return asyncio.run(self._send(item, step))
            except (KafkaError, OSError):
                assert time.monotonic() < deadline, f"could not produce {item.marker}"
                time.sleep(1)

    async def _send(self, item: Poison, step: int) -> int:
        producer = create_producer(self.bootstrap)
        await producer.start()
        try:
            name = f"{self.prefix}{item.topic}"
            partitions = sorted(await producer.partitions_for(name))
            partition: int = partitions[step % len(partitions)]
            await producer.send_and_wait(name, item.value, key=item.key, partition=partition)
            return partition
        finally:
            await producer.stop()


def unexplained(letters: list[DeadLetter], poison: list[Poison], prefix: str) -> list[str]:
    """What is wrong with the dead letters: poison without its dead letter or with another reason,
    an oversized one kept whole, and any dead letter that is not of poison (a valid record's)."""
    problems = []
    dead = [f'"{item.marker}"'.encode() for item in poison if item.reason is not None]
    for item in poison:
        if item.reason is None:
            continue
        mine = [letter for letter in letters if f'"{item.marker}"'.encode() in letter.value]
        if not mine:
            problems.append(f"{item.kind} on {item.topic} ({item.marker}) was not dead-lettered")
        for letter in mine:
            if item.reason not in letter.reason or letter.topic != f"{prefix}{item.topic}":
                problems.append(f"{item.marker}: dead-lettered from {letter.topic} for {letter.reason[:300]!r}")
            if item.kind == "oversized" and not (letter.value_truncated and letter.value_size == len(item.value)):
                problems.append(f"{item.marker}: its dead letter is not cut, or lost the original's size")
    for letter in letters:
        if not any(marker in letter.value for marker in dead):
            problems.append(f"a record that is not poison was dead-lettered: {letter.reason[:300]!r}")
    return problems


async def cut_documents(database_url: str, tenant_id: UUID, poison: list[Poison]) -> dict[str, list[int]]:
    """For each poison that is stored: the lengths of the documents of its raw event (one, cut)."""
    pool = await create_pool(database_url, max_size=1)
    try:
        async with tenant_transaction(pool, tenant_id) as db:
            return {
                item.marker: [
                    row[0] for row in await db.fetch(
                        "SELECT length(d.text) FROM raw_events r JOIN document_references x ON x.raw_event_id = r.id "
                        "JOIN documents d ON d.id = x.document_id WHERE r.external_id = $1", item.marker,
                    )
                ]
                for item in poison if item.reason is None
            }  # fmt: skip
    finally:
        await pool.close()
