"""cluster_messages: chorus.embedded -> per-creator online clusters of inbound fan messages."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from uuid import UUID

import asyncpg
import numpy as np
from aiokafka import AIOKafkaProducer
from prometheus_client import Gauge

from services.cluster import assignment, store
from services.cluster.leadership import TenantGaugesLock, open_clusters_by_tenant
from services.cluster.metrics import ASSIGNMENTS, CLUSTER_SIZE, OPEN_CLUSTERS, export_open_clusters
from services.cluster.settings import ClusterSettings
from shared import topics
from shared.db import tenant_transaction
from shared.errors import TRANSIENT_ERRORS
from shared.records import EmbeddedDocument
from shared.stream import Agent, BatchResult, Incoming

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


# Records handed over at once: one creator's share of them is assigned with one read and one write.
# Each batch reads the clusters near its messages, with their members, afresh: a backlog's records
# gathered for up to `batch_wait_ms` read them less often than fetches of 375 (1 MiB) each would
# (docs/cluster.md, "Throughput").
MAX_BATCH = 2000


class Clusterer:
    """Assigns each clusterable message to its creator's most similar open cluster, or a new one."""

    def __init__(self, settings: ClusterSettings, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer
        self.rules = assignment.Rules(settings.threshold, settings.rehome_clusters, settings.rehome_most_members)

    def agent(self) -> Agent[EmbeddedDocument]:
        return Agent(
            "cluster_messages", "cluster", "chorus-cluster", topics.EMBEDDED,
            handle_batch=self.cluster_messages, max_batch=MAX_BATCH, batch_wait_ms=self.settings.batch_wait_ms,
        )  # fmt: skip

    async def cluster_messages(self, batch: list[Incoming[EmbeddedDocument]]) -> BatchResult:
        """Assign a batch, one transaction per creator; a creator's records keep their order."""
        creators: dict[tuple[UUID, str], list[EmbeddedDocument]] = defaultdict(list)
        for incoming in batch:
            document = incoming.value
            if is_clusterable(document):
                assert document.creator_id is not None
                creators[document.tenant_id, document.creator_id].append(document)
            else:
                ASSIGNMENTS.labels("skipped").inc()
        for (tenant_id, creator_id), documents in creators.items():
            outcomes, sizes, superseded = await self._assign(tenant_id, creator_id, documents)
            # Counted after the commit: a retried transaction is counted once.
            for outcome, count in outcomes.items():
                ASSIGNMENTS.labels(outcome).inc(count)
            ASSIGNMENTS.labels("superseded").inc(superseded)
            for size in sizes:
                CLUSTER_SIZE.observe(size)
        return BatchResult()

    async def _assign(
        self, tenant_id: UUID, creator_id: str, documents: list[EmbeddedDocument]
    ) -> tuple[Counter[str], list[int], int]:
        """One creator's records in one transaction: lock, read what they may change, play the
        rules in memory, write the result."""
        row_ids = list(dict.fromkeys(document.message_row_id for document in documents if document.message_row_id))
        vectors = [
            vector / max(float(np.linalg.norm(vector)), 1e-12)
            for document in documents
            if document.action == "upsert" and (vector := document.vector) is not None
        ]
        # A filtered HNSW scan stops at ef_search rows; iterating finds the creator's clusters
        # among other creators' too.
        async with tenant_transaction(self.pool, tenant_id, {"hnsw.iterative_scan": "relaxed_order"}) as db:
            await store.lock_creator(db, tenant_id, creator_id)
            messages = await store.find_messages(db, row_ids)
            channels = sorted({message.channel_cid for message in messages.values()})
            found = await store.lock_clusters(
                db, creator_id, vectors, 2 * self.rules.rehome_clusters, list(messages), channels
            )
            whole = [
                cluster.id for cluster in found
                if cluster.status == "open" and cluster.size <= self.rules.rehome_most_members
            ]  # fmt: skip
            members = await store.members_of(db, [cluster.id for cluster in found], whole, list(messages), channels)
            batch = assignment.Batch(self.rules, found, members, set(whole))
            outcomes: Counter[str] = Counter()
            for document in documents:
                message = messages.get(document.message_row_id)  # type: ignore[arg-type]
                if message is None:
                    outcomes["skipped"] += 1
                    continue
                outcomes[
                    batch.apply(message, document.vector, bytes.fromhex(document.content_hash),
                                document.action == "delete")
                ] += 1  # fmt: skip
            await store.write_changes(db, tenant_id, creator_id, batch.changes())
        return outcomes, batch.sizes_seen, batch.superseded_count

    async def count_open_clusters(self, every_seconds: float = 15.0, gauge: Gauge = OPEN_CLUSTERS) -> None:
        """Keep the open-clusters gauge current, per tenant, in the one replica holding the tenant
        gauges' lock: exported by every replica, a dashboard's sum would count each cluster N times."""
        lock = TenantGaugesLock(self.settings.database_url)
        try:
            while True:
                if await lock.held():
                    try:
                        counts = await open_clusters_by_tenant(self.pool)
                        export_open_clusters(gauge, counts, self.settings.gauge_tenants)
                    except TRANSIENT_ERRORS as error:
                        log.warning("could not count open clusters", extra={"error": repr(error)})
                else:
                    gauge.clear()
                await asyncio.sleep(every_seconds)
        finally:
            lock.release()
            gauge.clear()
