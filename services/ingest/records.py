"""The raw deliveries ingest accepts over HTTP and normalizes from its own topics."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from shared.records import Record


class RawStreamChatDelivery(Record):
    """One StreamChat webhook delivery as ingest accepted it (chorus.raw.streamchat)."""

    tenant_id: UUID
    webhook_id: str
    attempt: int | None = None
    received_at: datetime
    paid_channel_types: tuple[str, ...] = ()
    correlation_id: str
    body: dict[str, Any]


class RawTavusDelivery(Record):
    """One Tavus callback as ingest accepted it (chorus.raw.tavus)."""

    tenant_id: UUID
    received_at: datetime
    correlation_id: str
    body: dict[str, Any]
