"""A fetch of StreamChat webhooks is stored in one transaction, with the rules of one at a time."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from bench.webhooks import direct_message
from services.ingest.agents import Normalizer
from services.ingest.records import RawStreamChatDelivery
from shared.db import tenant_transaction
from shared.records import utcnow
from shared.stream import Incoming
from tests.services.conftest import Tenant

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 19, 0, tzinfo=UTC)
OFFSETS = itertools.count()


def _delivery(tenant: Tenant, webhook_id: str, body: dict[str, Any]) -> Incoming[RawStreamChatDelivery]:
    delivery = RawStreamChatDelivery(
        tenant_id=tenant.id, webhook_id=webhook_id, received_at=utcnow(), correlation_id=webhook_id, body=body
    )
    record = ConsumerRecord("chorus.raw.streamchat", 0, next(OFFSETS), 0, 0, None, delivery.to_bytes(), None, 0, 0, ())
    return Incoming(delivery, record)


def _dm(message_id: str, text: str, minute: float, kind: str = "message.new") -> dict[str, Any]:
    body = direct_message("creator-jay", f"fan-{message_id}", message_id, text, START + timedelta(minutes=minute),
                          kind=kind)  # fmt: skip
    if kind == "message.updated":
        body["message"]["updated_at"] = (START + timedelta(minutes=minute + 1)).isoformat()
    return body


async def _rows(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, Any]:
    async with tenant_transaction(pool, tenant.id) as db:
        messages = await db.fetch(
            "SELECT s.message_id, s.text, s.deleted_at IS NOT NULL AS deleted, d.text AS document, "
            "d.deleted_at IS NOT NULL AS document_deleted "
            "FROM streamchat_messages s LEFT JOIN documents d ON d.id = s.document_id"
        )
        return {
            "messages": {row["message_id"]: (row["text"], row["deleted"], row["document"], row["document_deleted"])
                         for row in messages},
            "deliveries": await db.fetchval("SELECT count(*) FROM streamchat_deliveries"),
            "documents": await db.fetchval("SELECT count(*) FROM documents"),
        }  # fmt: skip


async def test_a_fetch_keeps_the_order_of_its_records_and_refuses_only_the_bad_one(
    pool: asyncpg.Pool, tenant: Tenant, producer: AIOKafkaProducer, topic_prefix: str
) -> None:
    normalizer = Normalizer(pool, producer, topic_prefix)
    bad = _delivery(tenant, "hook-bad", {"type": "message.new", "cid": "messaging:x"})
    fetch = [
        _delivery(tenant, "hook-1", _dm("m1", "hello", 0)),
        _delivery(tenant, "hook-2", _dm("m2", "", 1)),
        _delivery(tenant, "hook-3", _dm("m1", "hello there", 0, kind="message.updated")),
        _delivery(tenant, "hook-1", _dm("m1", "hello", 0)),  # StreamChat's retry of the first
        bad,
        _delivery(tenant, "hook-5", _dm("m3", "where do I get tickets?", 2)),
        _delivery(tenant, "hook-6", _dm("m3", "", 2, kind="message.deleted")),
        _delivery(tenant, "hook-7", _dm("m4", "is the merch back?", 3)),
    ]

    result = await normalizer.normalize_streamchat(fetch)

    assert [record for record, _ in result.refused] == [bad.message]
    stored = await _rows(pool, tenant)
    assert stored["messages"] == {
        "m1": ("hello there", False, "hello there", False),
        "m2": ("", False, None, False),  # no text, no document
        "m3": ("where do I get tickets?", True, "where do I get tickets?", True),
        "m4": ("is the merch back?", False, "is the merch back?", False),
    }
    assert stored["deliveries"] == 6
    # m1's two texts and its retry's pending document (embed keeps the current text), m3 new and
    # deleted, m4: what one record at a time hands on.
    assert len(result.sent) == 6
    for acknowledgement in result.sent:
        await acknowledgement

    again = await normalizer.normalize_streamchat(fetch)
    assert await _rows(pool, tenant) == stored, "a replay of the fetch changes nothing"
    assert [record for record, _ in again.refused] == [bad.message]
    # Nothing is embedded here: each redelivery hands its pending document on again (m1's three,
    # m4's), the deleted one not.
    assert len(again.sent) == 4
