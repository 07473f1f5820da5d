"""The records Chorus's topics carry, each schema defined once (see shared/topics.py for the topics)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any, Literal, Self
from uuid import UUID

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

_SOURCE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_TEXT_CHARS = 200_000
# Base64 makes 4 bytes of 3: a cut value of 512 KiB stays well under Kafka's 1 MiB default.
MAX_DEAD_LETTER_BYTES = 512 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


def has_utc_time(moment: datetime) -> datetime:
    """`moment`, if it has a time in UTC: Postgres stores a timestamptz in UTC, and a year-9999 time
    west of UTC (or a year-1 time east of it) has none. ValueError when it does not."""
    if moment.tzinfo is not None:
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC (years 1 to 9999)") from None
    return moment


class Record(BaseModel):
    """A topic record: JSON on the wire, strict about what it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.model_validate_json(data)


class EventEnvelope(Record):
    """The generic event of `POST /v1/events` and chorus.raw.events.

    Over HTTP the tenant comes from the API key; on Kafka from `tenant_id` (a tenant's id or
    name), the record's `tenant_id` header, or a vCon's tenant attachment.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=MAX_TEXT_CHARS)

    source: str = Field(min_length=1, max_length=64)
    event_type: str = Field(min_length=1, max_length=128)
    external_id: str = Field(min_length=1, max_length=512)
    occurred_at: datetime | None = None
    text: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tenant_id: str | None = Field(default=None, max_length=128)
    received_at: datetime | None = None
    correlation_id: str | None = Field(default=None, max_length=128)

    @field_validator("source")
    @classmethod
    def _source_is_a_name(cls, value: str) -> str:
        if not _SOURCE.match(value):
            raise ValueError("must be a lowercase name: letters, digits, '_', '-' or '.', starting with a letter")
        return value

    @field_validator("occurred_at", "received_at")
    @classmethod
    def _storable_time(cls, value: datetime | None) -> datetime | None:
        return None if value is None else has_utc_time(value)

    @field_validator("tags")
    @classmethod
    def _tags_are_short(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 64 or any(len(key) > 128 or len(tag) > 512 for key, tag in value.items()):
            raise ValueError("at most 64 tags, keys up to 128 and values up to 512 characters")
        return value


class DocumentFields(Record):
    """What chorus.docs and chorus.embedded both say of a document."""

    document_id: UUID
    tenant_id: UUID
    action: Literal["upsert", "delete"] = "upsert"
    source: str
    content_type: str
    content_hash: str
    creator_id: str | None = None
    conversation_id: str | None = None
    external_id: str | None = None
    channel_cid: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime
    correlation_id: str | None = None
    # StreamChat messages only: what the cluster service needs.
    message_row_id: UUID | None = None
    message_id: str | None = None
    visitor_id: str | None = None
    direction: Literal["inbound", "outgoing"] | None = None
    is_paid: bool | None = None


class Document(DocumentFields):
    """A normalized document to embed (chorus.docs); its row already exists in `documents`."""

    text: str
    content_ref: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class DeadLetter(Record):
    """A record that could not be processed (chorus.dlq), with its original bytes and the reason.

    Bytes past MAX_DEAD_LETTER_BYTES are cut off, so that a dead letter always fits in Kafka;
    `value_size` and `value_sha256` still name the whole original.
    """

    service: str
    topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str
    value_size: int | None = None
    value_sha256: str | None = None
    value_truncated: bool = False
    # The original headers (name, base64 value), so that a replay sends the record as it came.
    headers_b64: list[tuple[str, str]] = Field(default_factory=list)
    error_class: str
    reason: str
    failed_at: datetime

    @property
    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)

    @staticmethod
    def encode(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()


class EmbeddedDocument(DocumentFields):
    """A document whose vector is stored (chorus.embedded), with what the cluster service needs."""

    model: str | None = None
    # float32 little-endian, base64: a quarter of the bytes of a JSON list, and no float parsing.
    vector_b64: str | None = None

    @property
    def vector(self) -> np.ndarray | None:
        if self.vector_b64 is None:
            return None
        return np.frombuffer(base64.b64decode(self.vector_b64), dtype="<f4")

    @staticmethod
    def encode_vector(vector: np.ndarray) -> str:
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


class Reply(Record):
    """One channel's share of a creator's bulk reply (chorus.replies), sent when a cluster is actioned.

    `reply_id` is the same every time the same cluster's reply to the same channel is published,
    so whoever delivers replies can drop a repeat.
    """

    reply_id: str
    tenant_id: UUID
    cluster_id: UUID
    creator_id: str
    channel_cid: str
    visitor_id: str | None
    response_text: str
    actioned_at: datetime
