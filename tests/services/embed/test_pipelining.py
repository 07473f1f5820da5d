"""A fetch of several batches: the model works on one while the one before is written and the next
waits for it, and every write is done before the fetch's offsets may be committed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.embed.agents import Embedder
from services.embed.settings import EmbedSettings
from shared.db import tenant_transaction
from shared.embedding import Embedding, EmbeddingProvider, create_provider
from shared.hashing import text_hash
from shared.kafka import create_producer
from shared.records import Document, utcnow
from shared.settings import load
from shared.stream import BatchResult, Incoming
from tests.services.conftest import Tenant

pytestmark = pytest.mark.integration

TEXTS = [f"fan question number {number} about the tour" for number in range(23)]


async def _fetch(pool: asyncpg.Pool, tenant: Tenant) -> list[Incoming[Document]]:
    """The records of a fetch of TEXTS, whose documents are stored."""
    async with tenant_transaction(pool, tenant.id) as db:
        rows = await db.fetch(
            "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
            "SELECT $1, 'slack', 'event', 'k' || n, t, h "
            "FROM unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS u (t, h, n) RETURNING id, text, content_hash",
            tenant.id, TEXTS, [text_hash(text) for text in TEXTS],
        )  # fmt: skip
    received = utcnow()
    return [
        Incoming(
            document := Document(document_id=row["id"], tenant_id=tenant.id, source="slack",
                                 content_type="event", text=row["text"], content_hash=row["content_hash"].hex(),
                                 received_at=received),
            ConsumerRecord("chorus.docs", 0, offset, 0, 0, None, document.to_bytes(), None, 0, 0, ()),
        )
        for offset, row in enumerate(rows)
    ]  # fmt: skip


async def _embed(
    settings: EmbedSettings, pool: asyncpg.Pool, tenant: Tenant, provider: EmbeddingProvider
) -> tuple[BatchResult, int, list[Any]]:
    """Embed a fetch of TEXTS: the result, the vectors stored when the call returned, and the
    announcements' metadata."""
    batch = await _fetch(pool, tenant)
    producer = create_producer(settings.kafka_bootstrap)
    await producer.start()
    try:
        result = await Embedder(settings, pool, producer, provider).embed_documents(batch)
        async with tenant_transaction(pool, tenant.id) as db:
            stored = await db.fetchval("SELECT count(*) FROM document_embeddings")
        announced = await asyncio.gather(*result.sent)
    finally:
        await producer.stop()
        await provider.close()
    return result, stored, announced


async def test_a_fetch_is_written_in_batches_all_done_when_it_returns(
    service_env: dict[str, str], pool: asyncpg.Pool, tenant: Tenant
) -> None:
    settings = load(EmbedSettings, {**service_env, "CHORUS_EMBEDDING_PROVIDER": "hash", "CHORUS_EMBED_BATCH_SIZE": "4"})
    result, stored, announced = await _embed(settings, pool, tenant, create_provider(settings))
    # Nothing is left in flight: every batch's vectors are committed when the call returns.
    assert stored == len(TEXTS)
    assert not result.refused
    assert len(announced) == len(TEXTS)
    # Announced in the order of the records, batch after batch: per partition, offsets rise.
    by_partition: dict[int, list[int]] = {}
    for metadata in announced:
        by_partition.setdefault(metadata.partition, []).append(metadata.offset)
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())


class _FirstWaitsForTheSecond:
    """A provider whose first call returns only once a second call has come: it fails unless the
    next batch is handed over while the model still works on the one before."""

    def __init__(self, inner: EmbeddingProvider) -> None:
        self.inner = inner
        self.model, self.dimensions, self.max_batch = inner.model, inner.dimensions, inner.max_batch
        self.calls = 0
        self.second_call = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        self.calls += 1
        if self.calls == 1:
            await asyncio.wait_for(self.second_call.wait(), timeout=10)
        else:
            self.second_call.set()
        return await self.inner.embed(texts)

    async def close(self) -> None:
        await self.inner.close()


async def test_the_next_batch_waits_for_the_model_while_it_works(
    service_env: dict[str, str], pool: asyncpg.Pool, tenant: Tenant
) -> None:
    settings = load(EmbedSettings, {**service_env, "CHORUS_EMBEDDING_PROVIDER": "hash", "CHORUS_EMBED_BATCH_SIZE": "8"})
    provider = _FirstWaitsForTheSecond(create_provider(settings))
    _, stored, _ = await _embed(settings, pool, tenant, provider)
    assert provider.calls == 3  # 23 texts in batches of 8
    assert stored == len(TEXTS)
