"""cluster_messages: chorus.embedded -> per-creator online clusters of inbound fan messages."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from uuid import UUID

import asyncpg
import numpy as np
from aiokafka import AIOKafkaProducer
from prometheus_client import Gauge

from services.cluster import rehoming, store
from services.cluster.leadership import TenantGaugesLock
from services.cluster.metrics import ASSIGNMENTS, CLUSTER_SIZE, OPEN_CLUSTERS
from services.cluster.settings import ClusterSettings
from shared import clusters, topics
from shared.db import tenant_transaction
from shared.errors import TRANSIENT_ERRORS
from shared.records import EmbeddedDocument
from shared.stream import Agent, Incoming
from shared.tenants import all_tenant_ids

log = logging.getLogger(__name__)


def is_clusterable(document: EmbeddedDocument) -> bool:
    """Only inbound, non-paid StreamChat messages are clustered; creators' own messages, paid DMs,
    Tavus and raw-event documents never are."""
    return (
        document.source == "streamchat"
        and document.direction == "inbound"
        and document.is_paid is False
        and document.message_row_id is not None
        and document.creator_id is not None
    )


class Clusterer:
    """Assigns each clusterable message to its creator's most similar open cluster, or a new one."""

    def __init__(self, settings: ClusterSettings, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer

    def agent(self) -> Agent[EmbeddedDocument]:
        return Agent("cluster_messages", "cluster", "chorus-cluster", topics.EMBEDDED, handle=self.cluster_message)

    async def cluster_message(self, incoming: Incoming[EmbeddedDocument]) -> None:
        document = incoming.value
        if not is_clusterable(document):
            ASSIGNMENTS.labels("skipped").inc()
            return
        assert document.creator_id is not None and document.message_row_id is not None
        async with tenant_transaction(self.pool, document.tenant_id) as db:
            await store.lock_creator(db, document.tenant_id, document.creator_id)
            message = await store.find_message(db, document.message_row_id)
            outcome = "skipped" if message is None else await self._apply(db, document, message)
        ASSIGNMENTS.labels(outcome).inc()

    async def _apply(self, db: asyncpg.Connection, document: EmbeddedDocument, message: store.Message) -> str:
        """Bring the message's clustering up to date with `document`; returns the outcome."""
        vector = document.vector
        creator_id = document.creator_id or ""
        if document.action == "delete" or message.deleted or vector is None:
            removed = await clusters.remove_members(db, [message.id])
            # Deleted or not, a newer message replaced the older ones: the result must not depend
            # on whether it was clustered before it was deleted.
            await self._replace_older(db, creator_id, message)
            return "removed" if removed else "skipped"
        content_hash = bytes.fromhex(document.content_hash)
        if message.content_hash != content_hash:
            return "skipped"  # an older text of an edited message: the record of the new text follows
        current = await store.membership(db, message)
        if current is not None:
            if current.content_hash == content_hash or current.status == "actioned":
                return "skipped"  # a replay, or a message of an answered cluster, which keeps its members
            await clusters.remove_members(db, [message.id])  # an edit: assigned afresh below
        newer = await self._replace_older(db, creator_id, message)
        if newer is not None:
            await store.mark_superseded(db, [message.id], newer)
            return "superseded"
        await store.clear_superseded(db, message.id)
        return await self._assign(db, document, message, _unit(vector), content_hash)

    async def _replace_older(self, db: asyncpg.Connection, creator_id: str, message: store.Message) -> UUID | None:
        """The channel rule: a newer clustered message keeps this one out (its id is returned);
        otherwise this one takes the place of the channel's older messages in open clusters."""
        others = await store.channel_members(db, creator_id, message)
        newer = [other for other, _ in others if other.order > message.order]
        if newer:
            return max(newer, key=lambda other: other.order).id
        replaced = [other.id for other, status in others if status == "open"]
        if replaced:
            await clusters.remove_members(db, replaced)
            await store.mark_superseded(db, replaced, message.id)
            ASSIGNMENTS.labels("superseded").inc(len(replaced))
        return None

    async def _assign(
        self,
        db: asyncpg.Connection,
        document: EmbeddedDocument,
        message: store.Message,
        vector: np.ndarray,
        content_hash: bytes,
    ) -> str:
        creator_id = document.creator_id or ""
        nearest = await store.nearest_open_cluster(db, creator_id, vector)
        if nearest is not None and nearest[1] >= self.settings.threshold:
            cluster_id, similarity, outcome = nearest[0], nearest[1], "joined"
        else:
            cluster_id, similarity, outcome = await store.open_cluster(db, document.tenant_id, creator_id), None, "new"
        await store.add_member(db, document.tenant_id, cluster_id, message, similarity, vector, content_hash)
        await clusters.update_totals(db, cluster_id, joined=[clusters.MemberVector(vector, message.channel_cid)])
        await self._rehome(db, creator_id, cluster_id)
        CLUSTER_SIZE.observe(await store.size_of_cluster_of(db, message))
        return outcome

    async def _rehome(self, db: asyncpg.Connection, creator_id: str, cluster_id: UUID) -> None:
        """Move members of the changed cluster's neighbourhood to where they now fit best.

        Joining one message at a time, an early message may have settled in a cluster that a later
        one makes second best; each member of the changed cluster and its nearest open clusters
        moves when its average similarity to another of them is at or above the threshold and
        higher than to its own cluster's other members (docs/cluster.md has the measurements).
        Members of clusters larger than `rehome_most_members` stay (one message hardly changes
        where they belong), which bounds the work per message.
        """
        near = await store.neighbourhood(
            db, creator_id, cluster_id, self.settings.rehome_clusters, self.settings.rehome_most_members
        )
        moves = rehoming.plan_moves(
            {cluster: total for cluster, total, _ in near.clusters},
            {cluster: size for cluster, _, size in near.clusters},
            near.members,
            self.settings.threshold,
        )
        joined: dict[UUID, list[clusters.MemberVector]] = defaultdict(list)
        left: dict[UUID, list[clusters.MemberVector]] = defaultdict(list)
        for move in moves:
            member = move.member
            await store.move_member(db, member.message_id, move.target, move.similarity)
            moving = clusters.MemberVector(member.vector, member.channel_cid)
            left[member.cluster_id].append(moving)
            joined[move.target].append(moving)
            ASSIGNMENTS.labels("moved").inc()
        for changed in sorted(joined.keys() | left.keys()):
            await clusters.update_totals(db, changed, joined[changed], left[changed])

    async def count_open_clusters(self, every_seconds: float = 15.0, gauge: Gauge = OPEN_CLUSTERS) -> None:
        """Keep the open-clusters gauge current, per tenant, in the one replica holding the tenant
        gauges' lock: exported by every replica, a dashboard's sum would count each cluster N times."""
        lock = TenantGaugesLock(self.settings.database_url)
        try:
            while True:
                if await lock.held():
                    try:
                        for tenant_id in await all_tenant_ids(self.pool):
                            async with tenant_transaction(self.pool, tenant_id) as db:
                                gauge.labels(str(tenant_id)).set(await store.open_cluster_count(db))
                    except TRANSIENT_ERRORS as error:
                        log.warning("could not count open clusters", extra={"error": repr(error)})
                else:
                    gauge.clear()
                await asyncio.sleep(every_seconds)
        finally:
            lock.release()
            gauge.clear()


def _unit(vector: np.ndarray) -> np.ndarray:
    """Unit length, so that a mean of members answers average similarity (docs/cluster.md)."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
