"""deliver_replies: post each reply of chorus.replies into its StreamChat channel, once (docs/replies.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from services.ingest import credentials
from services.ingest.metrics import REPLIES_FAILED, REPLIES_SENT, REPLY_POSTS
from services.ingest.outbox import ReplyRelay
from services.ingest.posting import Poster
from services.ingest.settings import IngestSettings
from shared import topics
from shared.db import tenant_transaction
from shared.logging import bound
from shared.records import Reply
from shared.retry import Backoff
from shared.service import Resources
from shared.stream import Agent, BatchResult, Incoming

log = logging.getLogger(__name__)

NO_APP = "the tenant has no connected StreamChat app (connect one with `chorus streamchat connect`)"


@dataclass(frozen=True)
class Pending:
    """A reply's delivery row, while it is still to be sent."""

    message_id: str
    attempts: int


class ReplyDelivery:
    """Posts replies with the tenant's connected app, as the creator, retrying what may pass later.

    A reply is sent at most once per channel: its StreamChat message id is fixed by the cluster
    and the channel, and StreamChat refuses a second message with the same id, which counts as
    sent. After `reply_max_attempts` failed posts the delivery is marked failed and the stream
    moves on.
    """

    def __init__(self, pool: asyncpg.Pool, settings: IngestSettings, poster: Poster | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.poster = poster or Poster(settings.streamchat_base_url, settings.reply_timeout_seconds)
        self.backoff = Backoff(first=settings.reply_backoff_seconds, cap=settings.reply_backoff_cap_seconds)

    def agent(self) -> Agent[Reply]:
        """deliver_replies: its own consumer group, so it can run in another ingest process or none."""
        return Agent(
            "deliver_replies", "ingest", "chorus-ingest-replies", topics.REPLIES,
            handle_batch=self.deliver_batch, max_batch=100,
        )  # fmt: skip

    async def deliver_batch(self, batch: list[Incoming[Reply]]) -> BatchResult:
        await self.deliver_all([incoming.value for incoming in batch])
        return BatchResult()

    async def deliver_all(self, replies: Sequence[Reply]) -> None:
        """Deliver `replies` side by side, at most `reply_concurrency` at once; a repeat is delivered once."""
        unique = list({(reply.cluster_id, reply.channel_cid): reply for reply in replies}.values())
        slots = asyncio.Semaphore(max(self.settings.reply_concurrency, 1))

        async def one(reply: Reply) -> None:
            async with slots:
                await self.deliver(reply)

        tasks = [asyncio.ensure_future(one(reply)) for reply in unique]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # One failed (a database outage): the others stop too, and the batch is tried again.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def deliver(self, reply: Reply) -> None:
        """Post `reply` unless it was sent or given up before; record what happened."""
        with bound(cluster_id=str(reply.cluster_id), channel_cid=reply.channel_cid):
            pending = await self._pending(reply)
            if pending is None:
                return
            app = await credentials.connected_app(self.pool, reply.tenant_id)
            if app is None:
                await self._record(reply, "failed", NO_APP, pending.attempts)
                REPLIES_FAILED.labels("no_app").inc()
                return
            attempts = pending.attempts
            while True:
                answer = await self.poster.post(
                    app, reply.channel_cid, pending.message_id, reply.response_text, reply.creator_id
                )
                attempts += 1
                REPLY_POSTS.labels(answer.kind).inc()
                if answer.outcome == "sent":
                    await self._record(reply, "sent", None, attempts)
                    REPLIES_SENT.inc()
                    return
                if answer.outcome == "refused":
                    await self._give_up(reply, "refused", answer.reason, attempts)
                    return
                if attempts >= self.settings.reply_max_attempts:
                    reason = f"gave up after {attempts} attempts: {answer.reason}"
                    await self._give_up(reply, "exhausted", reason, attempts)
                    return
                await self._record(reply, "pending", answer.reason, attempts)
                # Retry-After when StreamChat sent one, within the cap: a hostile or mistaken header
                # cannot hold the stream for long.
                await asyncio.sleep(self.backoff.delay(attempts, answer.wait_seconds))

    async def _give_up(self, reply: Reply, kind: str, reason: str | None, attempts: int) -> None:
        await self._record(reply, "failed", reason, attempts)
        REPLIES_FAILED.labels(kind).inc()
        log.warning("a reply could not be delivered", extra={"reason": reason, "attempts": attempts})

    async def _pending(self, reply: Reply) -> Pending | None:
        async with tenant_transaction(self.pool, reply.tenant_id) as db:
            row = await db.fetchrow(
                "SELECT status, attempts, message_id FROM reply_deliveries WHERE cluster_id = $1 AND channel_cid = $2",
                reply.cluster_id,
                reply.channel_cid,
            )
        if row is None:
            # The cluster was erased, or the record was never written by an action: nothing to send.
            log.warning("a reply names no recorded delivery; skipped")
            return None
        if row["status"] != "pending":
            return None
        return Pending(row["message_id"], row["attempts"])

    async def _record(self, reply: Reply, status: str, reason: str | None, attempts: int) -> None:
        await update_delivery(self.pool, reply.tenant_id, reply.cluster_id, reply.channel_cid, status, reason, attempts)

    async def close(self) -> None:
        await self.poster.close()


async def update_delivery(
    pool: asyncpg.Pool, tenant_id: UUID, cluster_id: UUID, channel_cid: str, status: str, reason: str | None,
    attempts: int,
) -> None:  # fmt: skip
    """Record a delivery's state; a delivery already sent or failed is left as it is."""
    async with tenant_transaction(pool, tenant_id) as db:
        await db.execute(
            """
            UPDATE reply_deliveries
            SET status = $3, reason = $4, attempts = $5, updated_at = now(),
                sent_at = CASE WHEN $3 = 'sent' THEN now() END
            WHERE cluster_id = $1 AND channel_cid = $2 AND status = 'pending'
            """,
            cluster_id,
            channel_cid,
            status,
            reason,
            attempts,
        )


def start_reply_delivery(resources: Resources, settings: IngestSettings) -> None:
    """Run the relay and deliver_replies for the life of the service."""
    delivery = ReplyDelivery(resources.pool, settings)
    resources.closers.append(delivery.close)
    relay = ReplyRelay(resources.pool, resources.producer, settings.topic_prefix, settings.reply_sweep_seconds)
    resources.run_in_background(relay.run(), "relay_replies")
    resources.start_agent(delivery.agent())
