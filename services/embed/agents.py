"""embed_documents: batches from chorus.docs -> provider -> vectors in Postgres -> chorus.embedded."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np
from aiokafka import AIOKafkaProducer

from services.embed import store
from services.embed.metrics import (
    BATCH_SIZE,
    CACHE_HITS,
    DB_WRITE_SECONDS,
    FRESHNESS,
    PROVIDER_ERRORS,
    PROVIDER_SECONDS,
    RETRIES,
    ROWS_WRITTEN,
    TEXTS_EMBEDDED,
)
from services.embed.settings import EmbedSettings
from shared import topics
from shared.db import set_tenant, tenant_transaction
from shared.embedding import Embedding, EmbeddingProvider, ProviderError
from shared.embedding.chunks import document_vector, embed_passages, passage_spans
from shared.records import Document, DocumentFields, EmbeddedDocument, utcnow
from shared.retry import Backoff
from shared.stream import Agent, BatchResult, Incoming, KafkaRecord

log = logging.getLogger(__name__)


# A fetch holds up to this many batches: the model embeds one while the next is read and the one
# before is written. Between two fetches the model waits for the last write, the offset commit and
# the next fetch's reads (56 to 120 ms measured, docs/embed.md): eight batches make that rarer.
BATCHES_PER_FETCH = 8


class ProviderGaveUp(Exception):
    """The provider failed every allowed attempt; the batch's documents are dead-lettered with this."""


@dataclass
class _Item:
    record: KafkaRecord
    document: Document
    embeddings: list[Embedding] | None = None  # one per passage of the text (shared/embedding/chunks.py)
    already_stored: bool = False

    @property
    def vector(self) -> np.ndarray | None:
        """The whole document's vector, announced to the cluster service."""
        if self.embeddings is None:
            return None
        return document_vector([embedding.vector for embedding in self.embeddings])


class Embedder:
    """Holds the provider, the pool and the producer the agent works with."""

    def __init__(
        self, settings: EmbedSettings, pool: asyncpg.Pool, producer: AIOKafkaProducer, provider: EmbeddingProvider
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer
        self.provider = provider
        self.prefix = settings.topic_prefix

    def agent(self) -> Agent[Document]:
        return Agent(
            "embed_documents",
            "embed",
            "chorus-embed",
            topics.DOCS,
            handle_batch=self.embed_documents,
            max_batch=self.settings.batch_size * BATCHES_PER_FETCH,
            batch_wait_ms=self.settings.batch_wait_ms,
        )

    async def embed_documents(self, batch: list[Incoming[Document]]) -> BatchResult:
        """Embed, store and announce a fetch in batches of `batch_size`; returns the
        acknowledgements of what it sent.

        Two batches are in hand at a time: while the model works on one, the next is looked up in
        Postgres and waits for the model, which takes it the moment it is free, and the one before
        is written. Batches are written one after the other, in order, and the agent commits the
        offsets only once this returns, after the last write: a crash leaves nothing committed
        unwritten.
        """
        result = BatchResult()
        size = self.settings.batch_size
        batches = [[_Item(incoming.message, incoming.value) for incoming in batch[start : start + size]]
                   for start in range(0, len(batch), size)]  # fmt: skip
        embedding: asyncio.Task[list[_Item]] | None = None
        upcoming = asyncio.create_task(self._embedded(batches[0], result)) if batches else None
        writing: asyncio.Task[list[asyncio.Future[Any]]] | None = None
        try:
            for index, items in enumerate(batches):
                BATCH_SIZE.observe(len(items))
                embedding = upcoming
                upcoming = (
                    asyncio.create_task(self._embedded(batches[index + 1], result))
                    if index + 1 < len(batches)
                    else None
                )
                assert embedding is not None
                live = await embedding
                if writing is not None and writing.done():
                    writing.result()  # a failed write stops the fetch now, not after the model's work
                deletes = [item for item in items if item.document.action == "delete"]
                writing = asyncio.create_task(self._write_and_announce(live, [*live, *deletes], writing))
            if writing is not None:
                result.sent = await writing
        except BaseException:
            # Cancelling the last write cancels the ones it waits for.
            pending = [task for task in (embedding, upcoming, writing) if task is not None]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise
        return result

    async def _embedded(self, items: list[_Item], result: BatchResult) -> list[_Item]:
        """The items whose text is current, each with its vector; those the provider gave up on are refused."""
        upserts = [item for item in items if item.document.action == "upsert"]
        live = await self._drop_stale(upserts)
        await self._reuse_stored_vectors(live)
        try:
            await self._compute_missing(live)
        except ProviderGaveUp as error:
            for item in live:
                if item.embeddings is None:
                    result.refused.append((item.record, error))
            live = [item for item in live if item.embeddings is not None]
        return live

    async def _write_and_announce(
        self,
        live: list[_Item],
        announced: list[_Item],
        before: asyncio.Task[list[asyncio.Future[Any]]] | None,
    ) -> list[asyncio.Future[Any]]:
        """After the batch before this one: write this one's vectors, then announce its documents."""
        sent = [] if before is None else await before
        await self._write(live)
        return sent + await self._announce(announced)

    async def _drop_stale(self, items: list[_Item]) -> list[_Item]:
        """Keep the documents whose row still holds this text; a newer record follows for the others."""
        current: dict[UUID, tuple[str, str | None]] = {}
        for tenant_id, tenant_items in _by_tenant(items).items():
            async with tenant_transaction(self.pool, tenant_id) as db:
                rows = await store.current_documents(db, [item.document.document_id for item in tenant_items])
            current.update({row["id"]: (row["content_hash"].hex(), row["embedding_model"]) for row in rows})
        live = []
        for item in items:
            content_hash, model = current.get(item.document.document_id, (None, None))
            if content_hash == item.document.content_hash:
                item.already_stored = model == self.provider.model
                live.append(item)
        return live

    async def _reuse_stored_vectors(self, items: list[_Item]) -> None:
        for tenant_id, tenant_items in _by_tenant(items).items():
            passages = {bytes.fromhex(item.document.content_hash): len(passage_spans(item.document.text))
                        for item in tenant_items}  # fmt: skip
            async with tenant_transaction(self.pool, tenant_id) as db:
                stored = await store.stored_vectors(db, self.provider.model, passages)
            for item in tenant_items:
                embeddings = stored.get(bytes.fromhex(item.document.content_hash))
                if embeddings is not None:
                    item.embeddings = embeddings
                    CACHE_HITS.labels(self.provider.model).inc()

    async def _compute_missing(self, items: list[_Item]) -> None:
        """Embed each text not embedded yet once, passage by passage, for all the items that carry it."""
        missing: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            if item.embeddings is None:
                missing[item.document.content_hash].append(item)
        if not missing:
            return
        texts = [group[0].document.text for group in missing.values()]
        embedded = await embed_passages(texts, self._call_provider, self.provider.max_batch)
        for group, embeddings in zip(missing.values(), embedded, strict=True):
            for item in group:
                item.embeddings = embeddings
            CACHE_HITS.labels(self.provider.model).inc(len(group) - 1)

    async def _call_provider(self, texts: list[str]) -> list[Embedding]:
        model = self.provider.model
        backoff = Backoff(first=self.settings.backoff_seconds, cap=self.settings.backoff_cap_seconds)
        for attempt in range(1, self.settings.max_attempts + 1):
            started = time.perf_counter()
            try:
                embeddings = await self.provider.embed(texts)
                PROVIDER_SECONDS.labels(model).observe(time.perf_counter() - started)
                TEXTS_EMBEDDED.labels(model).inc(len(texts))
                return embeddings
            except ProviderError as error:
                PROVIDER_ERRORS.labels(model, type(error.__cause__ or error).__name__, str(error.retryable)).inc()
                if not error.retryable or attempt == self.settings.max_attempts:
                    raise ProviderGaveUp(f"{error} (attempt {attempt} of {self.settings.max_attempts})") from error
                wait = backoff.delay(attempt, error.retry_after)
                log.warning(
                    "the provider failed; retrying",
                    extra={"attempt": attempt, "wait_seconds": round(wait, 2), "error": str(error)},
                )
                RETRIES.labels(model).inc()
                await asyncio.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _write(self, items: list[_Item]) -> None:
        """Every vector of the batch in one transaction: a crash leaves all of them or none."""
        to_write = [item for item in items if not item.already_stored and item.embeddings is not None]
        if not to_write:
            return
        started = time.perf_counter()
        written = 0
        async with self.pool.acquire() as db, db.transaction():
            for tenant_id, tenant_items in _by_tenant(to_write).items():
                await set_tenant(db, tenant_id)
                # A document may come twice in one batch (a redelivery); its rows once.
                rows = [row for item in {item.document.document_id: item for item in tenant_items}.values()
                        for row in _rows(item)]  # fmt: skip
                await store.write_vectors(db, rows, self.provider.model, self.provider.dimensions)
                written += len(rows)
        DB_WRITE_SECONDS.observe(time.perf_counter() - started)
        ROWS_WRITTEN.labels(self.provider.model).inc(written)

    async def _announce(self, items: list[_Item]) -> list[asyncio.Future[Any]]:
        acknowledgements = []
        now = utcnow()
        for item in items:
            document, vector = item.document, item.vector
            if document.action == "upsert":
                FRESHNESS.labels(document.source).observe(max((now - document.received_at).total_seconds(), 0.0))
            embedded = EmbeddedDocument(
                **document.model_dump(include=set(DocumentFields.model_fields)),
                model=self.provider.model if vector is not None else None,
                vector_b64=EmbeddedDocument.encode_vector(vector) if vector is not None else None,
            )
            acknowledgements.append(
                await topics.EMBEDDED.send(self.producer, self.prefix, embedded, document.correlation_id)
            )
        return acknowledgements


def _rows(item: _Item) -> list[store.VectorRow]:
    assert item.embeddings is not None, "only embedded items are written"
    return store.vector_rows(item.document.document_id, bytes.fromhex(item.document.content_hash), item.embeddings)


def _by_tenant(items: list[_Item]) -> dict[UUID, list[_Item]]:
    groups: dict[UUID, list[_Item]] = defaultdict(list)
    for item in items:
        groups[item.document.tenant_id].append(item)
    return groups
