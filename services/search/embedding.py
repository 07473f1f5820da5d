"""The query's vector, behind a small cache: a repeated search does not embed its text again."""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from services.search.metrics import QUERY_CACHE_HITS, QUERY_EMBEDDING_SECONDS
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
