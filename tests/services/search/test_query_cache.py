"""The query-vector cache: a repeated query is not embedded again; the least recently used one goes first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.search.embedding import QueryEmbedder
from shared.embedding import Embedding
from tests.metrics import MetricDelta


class CountingProvider:
    """Gives each text a vector of its own and notes every text it was asked for."""

    model = "counting"
    dimensions = 2
    max_batch = 8

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        self.asked.append(list(texts))
        return [Embedding(np.array([len(text), len(self.asked)], dtype=np.float32)) for text in texts]

    async def close(self) -> None:
        pass


async def test_a_repeated_query_comes_from_the_cache() -> None:
    provider = CountingProvider()
    embedder = QueryEmbedder(provider, cache_size=4)
    hits = MetricDelta("chorus_search_query_cache_hits_total")
    first = await embedder.vector("tour dates")
    again = await embedder.vector("tour dates")
    assert provider.asked == [["tour dates"]]
    assert np.array_equal(first, again) and first.tolist() == [10.0, 1.0]
    assert hits.delta() == 1


async def test_past_its_size_the_least_recently_used_query_is_dropped() -> None:
    provider = CountingProvider()
    embedder = QueryEmbedder(provider, cache_size=2)
    for query in ("a", "b", "c"):
        await embedder.vector(query)
    await embedder.vector("c")
    await embedder.vector("b")
    assert provider.asked == [["a"], ["b"], ["c"]]
    await embedder.vector("a")
    assert provider.asked[-1] == ["a"] and len(provider.asked) == 4


async def test_a_hit_makes_a_query_recent_again() -> None:
    provider = CountingProvider()
    embedder = QueryEmbedder(provider, cache_size=2)
    await embedder.vector("a")
    await embedder.vector("b")
    await embedder.vector("a")  # now "b" is the least recently used
    await embedder.vector("c")
    await embedder.vector("a")
    assert provider.asked == [["a"], ["b"], ["c"]]
    await embedder.vector("b")
    assert provider.asked[-1] == ["b"]


async def test_queries_that_differ_are_embedded_each() -> None:
    provider = CountingProvider()
    embedder = QueryEmbedder(provider, cache_size=8)
    vectors = [await embedder.vector(query) for query in ("tour", "vinyl", "refund")]
    assert provider.asked == [["tour"], ["vinyl"], ["refund"]]
    assert [vector.tolist()[1] for vector in vectors] == [1.0, 2.0, 3.0]
