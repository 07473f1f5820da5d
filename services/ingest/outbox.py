"""The reply relay: publishes the outbox rows an action wrote (`reply_deliveries`) to chorus.replies.

Actioning a cluster writes one row per channel in its own transaction and notifies
`chorus_replies` (Postgres delivers a notification only when the transaction commits). The relay
listens for it and publishes every row not yet published, then marks the rows published. It also
looks every `reply_sweep_seconds` and at start, so rows whose notification was missed (ingest was
down, the relay crashed between Kafka's acknowledgement and the mark) are published all the same;
publishing a row twice is harmless, since delivery skips a reply already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer

from services.ingest.metrics import REPLIES_PUBLISHED
from shared import topics
from shared.clusters import REPLIES_CHANNEL
from shared.db import tenant_transaction
from shared.errors import TRANSIENT_ERRORS
from shared.records import Reply
from shared.retry import Backoff

log = logging.getLogger(__name__)

UNPUBLISHED = """
    SELECT d.tenant_id, d.cluster_id, d.channel_cid, d.visitor_id, c.creator_id, c.response_text, c.actioned_at
    FROM reply_deliveries d JOIN clusters c ON c.id = d.cluster_id
    WHERE d.published_at IS NULL
    ORDER BY d.created_at, d.cluster_id, d.channel_cid
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
"""
MARK_PUBLISHED = """
    UPDATE reply_deliveries d SET published_at = now()
    FROM unnest($1::uuid[], $2::text[]) AS published (cluster_id, channel_cid)
    WHERE d.cluster_id = published.cluster_id AND d.channel_cid = published.channel_cid
"""


class ReplyRelay:
    """Moves committed outbox rows onto chorus.replies, at most `batch` rows per transaction."""

    def __init__(
        self, pool: asyncpg.Pool, producer: AIOKafkaProducer, topic_prefix: str, sweep_seconds: float,
        batch: int = 500,
    ) -> None:  # fmt: skip
        self.pool = pool
        self.producer = producer
        self.prefix = topic_prefix
        self.sweep_seconds = sweep_seconds
        self.batch = batch
        self.backoff = Backoff(first=0.5, cap=10.0)

    async def run(self) -> None:
        """Publish until cancelled; a database or broker outage is waited out."""
        failures = 0
        while True:
            try:
                await self._listen_and_publish()
            except TRANSIENT_ERRORS as error:
                failures += 1
                log.warning("the reply relay failed; restarting", extra={"error": repr(error)})
                await asyncio.sleep(self.backoff.delay(failures))

    async def _listen_and_publish(self) -> None:
        woken = asyncio.Event()

        def wake(*_: Any) -> None:
            woken.set()

        async with self.pool.acquire() as listener:
            await listener.add_listener(REPLIES_CHANNEL, wake)
            try:
                # A listening connection that died hears nothing more: take a new one.
                while not listener.is_closed():
                    woken.clear()
                    await self.publish_pending()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.sweep_seconds):
                            await woken.wait()
            finally:
                if not listener.is_closed():
                    await listener.remove_listener(REPLIES_CHANNEL, wake)

    async def publish_pending(self) -> int:
        """Publish every reply not yet on chorus.replies, tenant by tenant; returns how many."""
        tenant_ids: list[UUID] = [
            row[0] for row in await self.pool.fetch("SELECT chorus_tenants_with_unpublished_replies()")
        ]
        published = 0
        for tenant_id in tenant_ids:
            while count := await self._publish_some(tenant_id):
                published += count
                if count < self.batch:
                    break
        return published

    async def _publish_some(self, tenant_id: UUID) -> int:
        async with tenant_transaction(self.pool, tenant_id) as db:
            rows = await db.fetch(UNPUBLISHED, self.batch)
            if not rows:
                return 0
            # The rows stay locked until the broker has every record: another relay skips them.
            sent = [await topics.REPLIES.send(self.producer, self.prefix, reply_of(row)) for row in rows]
            await asyncio.gather(*sent)
            await db.execute(MARK_PUBLISHED, [row["cluster_id"] for row in rows], [row["channel_cid"] for row in rows])
        REPLIES_PUBLISHED.inc(len(rows))
        return len(rows)


def reply_of(row: asyncpg.Record) -> Reply:
    """The chorus.replies record of an outbox row joined with its cluster."""
    return Reply(
        reply_id=f"{row['cluster_id']}:{row['channel_cid']}",
        tenant_id=row["tenant_id"],
        cluster_id=row["cluster_id"],
        creator_id=row["creator_id"],
        channel_cid=row["channel_cid"],
        visitor_id=row["visitor_id"],
        response_text=row["response_text"],
        actioned_at=row["actioned_at"],
    )
