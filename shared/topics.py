"""The Kafka topics that more than one service uses: each name, record type and key defined once.

A topic that only one service reads and writes is defined by that service (ingest's raw
StreamChat and Tavus topics); `launcher.topics` lists them all for creating them.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer

from shared.records import DeadLetter, Document, DocumentFields, EmbeddedDocument, EventEnvelope, Record, Reply

R = TypeVar("R", bound=Record)

# The ingest correlation id of what a record carries, on every record from ingest to chorus.embedded.
CORRELATION_HEADER = "chorus-correlation-id"
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Topic(Generic[R]):
    """A topic of the pipeline: its unprefixed name (the design contract's), the one record type it
    carries and how a record's key is chosen. `raw` topics hold what producers sent, personal data
    included: their retention is the erasure horizon (CHORUS_RAW_TOPIC_RETENTION_HOURS)."""

    name: str
    record_type: type[R]
    key_of: Callable[[R], bytes | None]
    raw: bool = False

    def full_name(self, prefix: str = "") -> str:
        """The name on the broker, after the deployment's topic prefix."""
        return f"{prefix}{self.name}"

    def decode(self, data: bytes | None) -> R:
        """The record of a message's value; pydantic's ValidationError when it is not one."""
        return self.record_type.model_validate_json(data or b"")

    async def send(
        self, producer: AIOKafkaProducer, prefix: str, record: R, correlation_id: str | None = None
    ) -> asyncio.Future[Any]:
        """Hand `record` to the producer, keyed by the topic's rule; await the result for the broker's ack."""
        future: asyncio.Future[Any] = await producer.send(
            self.full_name(prefix),
            record.to_bytes(),
            key=self.key_of(record),
            headers=correlation_headers(correlation_id),
        )
        return future


def correlation_headers(correlation_id: str | None) -> Headers:
    return [] if not correlation_id else [(CORRELATION_HEADER, correlation_id.encode())]


def correlation_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    for name, value in headers or ():
        if name == CORRELATION_HEADER:
            return value.decode("utf-8", "replace")
    return None


def document_key(document: DocumentFields) -> bytes:
    """tenant:creator, or tenant:conversation: what must stay in order shares a partition."""
    subject = document.creator_id or document.conversation_id or document.external_id or str(document.document_id)
    return f"{document.tenant_id}:{subject}".encode()


def _dead_letter_key(letter: DeadLetter) -> bytes | None:
    return None if letter.key_b64 is None else base64.b64decode(letter.key_b64)


RAW_EVENTS = Topic(
    "chorus.raw.events",
    EventEnvelope,
    key_of=lambda envelope: f"{envelope.tenant_id or ''}:{envelope.external_id}".encode(),
    raw=True,
)
DOCS = Topic("chorus.docs", Document, key_of=document_key)
EMBEDDED = Topic("chorus.embedded", EmbeddedDocument, key_of=document_key)
REPLIES = Topic("chorus.replies", Reply, key_of=lambda reply: reply.creator_id.encode())
DLQ = Topic("chorus.dlq", DeadLetter, key_of=_dead_letter_key)

SHARED_TOPICS: tuple[Topic[Any], ...] = (RAW_EVENTS, DOCS, EMBEDDED, REPLIES, DLQ)
