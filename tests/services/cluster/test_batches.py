"""A batch of one creator's messages is assigned in one pass, with the same rules as one at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import numpy as np
import pytest
from aiokafka import ConsumerRecord

from services.cluster.agents import MAX_BATCH, Clusterer
from services.cluster.settings import ClusterSettings
from shared import topics
from shared.db import tenant_transaction
from shared.kafka import create_producer
from shared.records import EmbeddedDocument, utcnow
from shared.settings import load
from shared.stream import BatchResult, Incoming, run_agent
from tests.services.conftest import Tenant

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 19, 0, tzinfo=UTC)
DIMENSIONS = 384


@dataclass
class Creator:
    """Messages of one creator stored the way ingest stores them, and their chorus.embedded records."""

    pool: asyncpg.Pool
    tenant_id: UUID
    name: str
    numbers: itertools.count[int] = field(default_factory=itertools.count)

    async def message(
        self, channel: str, minute: float, vector: np.ndarray, message_id: str | None = None
    ) -> Incoming[EmbeddedDocument]:
        number = next(self.numbers)
        message_id = message_id or f"{self.name}-m{number}"
        content_hash = vector.astype(np.float32).tobytes()[:32]
        async with tenant_transaction(self.pool, self.tenant_id) as db:
            row_id = await db.fetchval(
                "INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, direction, text, "
                "content_hash, message_created_at) VALUES ($1, $2, $3, $4, 'inbound', $5, $6, $7) RETURNING id",
                self.tenant_id, message_id, self.name, f"messaging:{channel}", f"words of {message_id}",
                content_hash, START + timedelta(minutes=minute),
            )  # fmt: skip
        document = EmbeddedDocument(
            document_id=uuid4(), tenant_id=self.tenant_id, source="streamchat", content_type="message",
            content_hash=content_hash.hex(), creator_id=self.name, channel_cid=f"messaging:{channel}",
            received_at=utcnow(), message_row_id=row_id, message_id=message_id, direction="inbound", is_paid=False,
            model="test", vector_b64=EmbeddedDocument.encode_vector(vector),
        )  # fmt: skip
        record = ConsumerRecord("chorus.embedded", 0, number, 0, 0, None, b"", None, 0, 0, ())
        return Incoming(document, record)

    async def memberships(self) -> dict[str, UUID]:
        """Message id -> cluster id, of every clustered message of this creator."""
        async with tenant_transaction(self.pool, self.tenant_id) as db:
            rows = await db.fetch(
                "SELECT s.message_id, m.cluster_id FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
                "JOIN streamchat_messages s ON s.id = m.message_id WHERE c.creator_id = $1",
                self.name,
            )
        return {row["message_id"]: row["cluster_id"] for row in rows}

    async def superseded_by(self, message_id: str) -> str | None:
        async with tenant_transaction(self.pool, self.tenant_id) as db:
            by: str | None = await db.fetchval(
                "SELECT n.message_id FROM streamchat_messages s JOIN streamchat_messages n ON n.id = s.superseded_by "
                "WHERE s.message_id = $1",
                message_id,
            )
        return by


def _partition(memberships: dict[str, UUID], prefix: str) -> set[frozenset[str]]:
    """The clusters as sets of message numbers, whatever the creator and the cluster ids."""
    groups: dict[UUID, set[str]] = defaultdict(set)
    for message_id, cluster_id in memberships.items():
        groups[cluster_id].add(message_id.removeprefix(prefix))
    return {frozenset(group) for group in groups.values()}


@pytest.fixture
def clusterer(service_env: dict[str, str], pool: asyncpg.Pool) -> Clusterer:
    return Clusterer(load(ClusterSettings, service_env), pool, None)


def _topic_vectors(seed: int, count: int, topics: int = 5) -> list[np.ndarray]:
    """Noisy vectors around a few topic directions: the shape of fan DMs about a few questions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, DIMENSIONS))
    return [centres[rng.integers(topics)] + rng.normal(scale=1.1, size=DIMENSIONS) for _ in range(count)]


async def test_a_batch_gives_the_clusters_that_one_record_at_a_time_gives(
    clusterer: Clusterer, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    together, alone = Creator(pool, tenant.id, "together"), Creator(pool, tenant.id, "alone")
    rng = random.Random(5)
    plan = [(f"fan-{rng.randrange(12)}", step + (rng.uniform(-4, 0) if rng.random() < 0.2 else 0), vector)
            for step, vector in enumerate(_topic_vectors(3, 60))]  # fmt: skip
    batch = [await together.message(channel, minute, vector) for channel, minute, vector in plan]
    single = [await alone.message(channel, minute, vector) for channel, minute, vector in plan]

    await clusterer.cluster_messages(batch)
    for incoming in single:
        await clusterer.cluster_messages([incoming])

    joined = _partition(await together.memberships(), "together-")
    assert joined == _partition(await alone.memberships(), "alone-")
    assert 3 <= len(joined) < 40, "the topics gathered messages"
    # A replay of the whole batch changes nothing.
    await clusterer.cluster_messages(batch)
    assert _partition(await together.memberships(), "together-") == joined


async def test_within_a_batch_the_newer_message_of_a_channel_stands_whatever_the_order(
    clusterer: Clusterer, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    creator = Creator(pool, tenant.id, "jay")
    vectors = _topic_vectors(9, 4, topics=1)
    older = await creator.message("fan-a", 1, vectors[0], "older")
    newer = await creator.message("fan-a", 2, vectors[1], "newer")
    late_newer = await creator.message("fan-b", 4, vectors[2], "b-newer")
    late_older = await creator.message("fan-b", 3, vectors[3], "b-older")

    await clusterer.cluster_messages([older, newer, late_newer, late_older])

    assert set(await creator.memberships()) == {"newer", "b-newer"}
    assert await creator.superseded_by("older") == "newer"
    assert await creator.superseded_by("b-older") == "b-newer", "a late older message is stored as superseded"
    assert await creator.superseded_by("newer") is None


async def test_the_totals_follow_the_members_after_batches(
    clusterer: Clusterer, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    creator = Creator(pool, tenant.id, "jay")
    vectors = _topic_vectors(11, 90, topics=4)
    records = [await creator.message(f"fan-{number % 30}", number, vector) for number, vector in enumerate(vectors)]
    for start in range(0, len(records), 25):
        await clusterer.cluster_messages(records[start : start + 25])

    async with tenant_transaction(pool, tenant.id) as db:
        clusters = await db.fetch("SELECT id, size, channel_count, centroid, preview_text FROM clusters")
        members = await db.fetch(
            "SELECT m.cluster_id, m.channel_cid, m.embedding, s.text FROM cluster_members m "
            "JOIN streamchat_messages s ON s.id = m.message_id ORDER BY m.message_created_at, s.message_id"
        )
    assert len(members) == 30, "one standing message a channel"
    for cluster in clusters:
        own = [member for member in members if member["cluster_id"] == cluster["id"]]
        assert cluster["size"] == len(own) > 0
        assert cluster["channel_count"] == len({member["channel_cid"] for member in own})
        mean = np.mean([member["embedding"].to_numpy() for member in own], axis=0)
        assert np.allclose(cluster["centroid"].to_numpy(), mean, atol=1e-5)
        assert cluster["preview_text"] == own[0]["text"]


async def test_a_backlog_is_assigned_in_batches_larger_than_one_fetch(
    service_env: dict[str, str], pool: asyncpg.Pool, tenant: Tenant, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # 800 records of about 2.6 KiB: a fetch (1 MiB of a partition) holds fewer than 400 of them.
    creator = Creator(pool, tenant.id, "viral")
    records = [await creator.message(f"fan-{number}", number, vector)
               for number, vector in enumerate(_topic_vectors(13, 800, topics=8))]  # fmt: skip
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        for incoming in records:
            await topics.EMBEDDED.send(producer, topic_prefix, incoming.value)
        await producer.flush()
        # Waiting long for more, so that a slow machine's fetches still come within the wait.
        clusterer = Clusterer(load(ClusterSettings, {**service_env, "CHORUS_CLUSTER_BATCH_WAIT_MS": "3000"}), pool,
                              producer)  # fmt: skip
        agent = clusterer.agent()
        handed: list[int] = []

        async def recorded(batch: list[Incoming[EmbeddedDocument]]) -> BatchResult:
            result = await clusterer.cluster_messages(batch)
            handed.append(len(batch))
            return result

        running = asyncio.create_task(
            run_agent(dataclasses.replace(agent, handle_batch=recorded), kafka_bootstrap, producer, topic_prefix)
        )
        try:
            async with asyncio.timeout(90):
                while sum(handed) < len(records):
                    await asyncio.sleep(0.1)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    finally:
        await producer.stop()

    assert agent.batch_wait_ms == 3000 and len(records) <= MAX_BATCH
    assert handed == [len(records)], "the backlog is handed over at once, not fetch by fetch"
    assert len(await creator.memberships()) == len(records)
