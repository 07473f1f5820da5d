"""Metrics of the search service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_SECONDS = Histogram(
    "chorus_search_request_seconds",
    "Search request latency by mode and HTTP status.",
    ["mode", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RESULTS = Histogram(
    "chorus_search_results", "Results returned per search.", ["mode"], buckets=(0, 1, 5, 10, 25, 50, 100)
)
QUERY_EMBEDDING_SECONDS = Histogram(
    "chorus_search_query_embedding_seconds",
    "Time to embed a query text (cache misses only).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
QUERY_CACHE_HITS = Counter("chorus_search_query_cache_hits_total", "Query texts whose vector came from the cache.")
