"""What each request needs before its query, behind small caches: the key's tenant and the query's vector."""

from __future__ import annotations

import time
from collections import OrderedDict
from uuid import UUID

import asyncpg
import numpy as np

from services.search.metrics import QUERY_CACHE_HITS, QUERY_EMBEDDING_SECONDS
from shared import tenants
from shared.embedding import EmbeddingProvider


class QueryEmbedder:
    def __init__(self, provider: EmbeddingProvider, cache_size: int) -> None:
        self.provider = provider
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    async def vector(self, query: str) -> np.ndarray:
        cached = self._cache.get(query)
        if cached is not None:
            self._cache.move_to_end(query)
            QUERY_CACHE_HITS.inc()
            return cached
        started = time.perf_counter()
        [embedding] = await self.provider.embed([query])
        QUERY_EMBEDDING_SECONDS.observe(time.perf_counter() - started)
        self._cache[query] = embedding.vector
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return embedding.vector


class KeyCache:
    """API key -> tenant, remembered for `seconds`: a revoked key stops working within that time."""

    def __init__(self, pool: asyncpg.Pool, seconds: float) -> None:
        self.pool = pool
        self.seconds = seconds
        # Keyed by the key's hash: the clear key is not kept in memory longer than the request.
        self._known: dict[bytes, tuple[UUID, float]] = {}

    async def tenant(self, key: str) -> UUID | None:
        digest = tenants.hash_secret(key)
        known = self._known.get(digest)
        now = time.monotonic()
        if known is not None and known[1] > now:
            return known[0]
        tenant_id = await tenants.tenant_for_api_key(self.pool, key)
        if tenant_id is None:
            self._known.pop(digest, None)
            return None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[digest] = (tenant_id, now + self.seconds)
        return tenant_id
