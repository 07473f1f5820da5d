"""Settings of the search service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.embedding.settings import EmbeddingSettings
from shared.settings import setting


@dataclass(frozen=True)
class SearchSettings(EmbeddingSettings):
    port: int = setting("CHORUS_SEARCH_PORT", 8080, "Port of the search service's HTTP server.")
    search_database_url: str = setting(
        "CHORUS_SEARCH_DATABASE_URL",
        "",
        "Postgres URL search's read-only routes query, a streaming replica say (empty: CHORUS_DATABASE_URL); "
        "writes stay on CHORUS_DATABASE_URL.",
        secret=True,
    )
    max_body_bytes: int = setting(
        "CHORUS_SEARCH_MAX_BODY_BYTES",
        65_536,
        "Largest request body search reads; larger is 413, before authentication.",
        minimum=1024,
    )
    ef_search: int = setting(
        "CHORUS_SEARCH_EF_SEARCH", 64, "HNSW candidate list per semantic query (higher: better recall, slower)."
    )
    rrf_k: int = setting("CHORUS_SEARCH_RRF_K", 60, "The k of reciprocal rank fusion in hybrid search.")
    hybrid_candidates: int = setting(
        "CHORUS_SEARCH_HYBRID_CANDIDATES",
        50,
        "Results taken from each of the semantic and keyword lists before fusion.",
    )
    fusion: Literal["weighted", "rrf"] = setting(
        "CHORUS_SEARCH_FUSION",
        "weighted",
        "How hybrid search fuses its lists: weighted (similarity plus weighted keyword score, then "
        "pseudo-relevance feedback) or rrf (reciprocal rank fusion).",
    )
    keyword_weight: float = setting(
        "CHORUS_SEARCH_KEYWORD_WEIGHT",
        0.08,
        "Weight of the keyword score (over the query's best) added to the cosine similarity in weighted fusion.",
    )
    feedback: int = setting(
        "CHORUS_SEARCH_FEEDBACK",
        4,
        "Best fused results whose similarity to each candidate is added to the query's before rescoring (0: none).",
    )
    semantic_floor: float | None = setting(
        "CHORUS_SEARCH_SEMANTIC_FLOOR",
        0.2,
        "Least cosine similarity of a semantic-only result when the request gives no threshold (docs/search.md).",
    )
    query_cache_size: int = setting(
        "CHORUS_SEARCH_QUERY_CACHE_SIZE", 2048, "Query texts whose vectors are kept in memory for repeated searches."
    )
