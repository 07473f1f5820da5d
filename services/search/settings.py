"""Settings of the search service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.embedding.settings import EmbeddingSettings
from shared.settings import setting


@dataclass(frozen=True)
class SearchSettings(EmbeddingSettings):
    port: int = setting("CHORUS_SEARCH_PORT", 8080, "Port of the search service's HTTP server.")
    ef_search: int = setting(
        "CHORUS_SEARCH_EF_SEARCH", 64, "HNSW candidate list per semantic query (higher: better recall, slower)."
    )
    rrf_k: int = setting("CHORUS_SEARCH_RRF_K", 60, "The k of reciprocal rank fusion in hybrid search.")
    hybrid_candidates: int = setting(
        "CHORUS_SEARCH_HYBRID_CANDIDATES",
        50,
        "Results taken from each of the semantic and keyword lists before fusion.",
    )
    key_cache_seconds: float = setting(
        "CHORUS_SEARCH_KEY_CACHE_SECONDS", 30.0, "How long a checked API key is trusted without a lookup."
    )
    query_cache_size: int = setting(
        "CHORUS_SEARCH_QUERY_CACHE_SIZE", 2048, "Query texts whose vectors are kept in memory for repeated searches."
    )
