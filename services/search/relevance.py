"""One search by mode, as the route and the relevance benchmark run it: the lists, their fusion, the floor.

Hybrid (docs/search.md "Relevance") scores each candidate of the two lists by its cosine similarity
plus `keyword_weight` times its keyword score over the best keyword score of the query: BM25
scores have no fixed scale, and a plain cosine already is one. Then pseudo-relevance feedback: the
query vector moves towards the mean vector of the `feedback` best candidates, and every candidate
is scored again with its similarity to the moved vector. Measured on the labelled DMs, reciprocal
rank fusion stayed below semantic search alone whatever its k, candidates or list weights.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
import numpy as np

from services.search import queries
from services.search.settings import SearchSettings


def weighted(
    semantic_hits: list[queries.Hit],
    keyword_hits: list[queries.Hit],
    keyword_weight: float,
    similarities: dict[UUID, float] | None = None,
) -> list[queries.Hit]:
    """Every candidate scored by similarity + keyword_weight x keyword score / the best keyword
    score, best first. `similarities` (by id) replace the semantic list's; a candidate with no
    similarity (a keyword hit the semantic list missed) counts the least similarity of the rest."""
    fused: dict[UUID, queries.Hit] = {}
    for name, hits in (("semantic", semantic_hits), ("keyword", keyword_hits)):
        for rank, hit in enumerate(hits, start=1):
            entry = fused.setdefault(hit.row["id"], queries.Hit(hit.row))
            setattr(entry, f"{name}_score", getattr(hit, f"{name}_score"))
            setattr(entry, f"{name}_rank", rank)
    if similarities is None:
        similarities = {hit.row["id"]: hit.semantic_score or 0.0 for hit in semantic_hits}
    least = min(similarities.values(), default=0.0)
    best_keyword = max((hit.keyword_score or 0.0 for hit in keyword_hits), default=0.0) or 1.0
    for document, entry in fused.items():
        entry.score = similarities.get(document, least) + keyword_weight * (entry.keyword_score or 0.0) / best_keyword
    return sorted(fused.values(), key=lambda hit: hit.rank_key)


async def hybrid(
    db: asyncpg.Connection,
    query: str,
    vector: np.ndarray,
    model: str,
    filters: queries.Filters,
    candidates: int,
    limit: int,
    settings: SearchSettings,
    threshold: float | None = None,
    columns: str = queries.RESULT_COLUMNS,
) -> list[queries.Hit]:
    """Both lists, `candidates` long, fused (`settings.fusion`); the `limit` best.

    One after the other on the request's connection: run at once on two connections they took
    longer on a 2-core machine (docs/search.md), and cost a second transaction."""
    semantic_hits = await queries.semantic(db, vector, model, filters, candidates, threshold, columns)
    keyword_hits = await queries.keyword(db, query, filters, candidates, columns)
    if settings.fusion == "rrf":
        return queries.fuse(semantic_hits, keyword_hits, settings.rrf_k, limit)
    fused = weighted(semantic_hits, keyword_hits, settings.keyword_weight)
    if settings.feedback > 0 and fused:
        feedback = [hit.row["id"] for hit in fused[: settings.feedback]]
        similarities = await queries.feedback_similarities(
            db, vector, model, feedback, [hit.row["id"] for hit in fused]
        )
        if similarities:
            # The best result of the first scoring stays first (with the best score): feedback
            # reorders what follows it. Moved towards near-duplicates of each other, the vector
            # could pass over the one document with every word (on the DMs, MRR 0.88 with the
            # first kept, 0.86 without).
            rescored = weighted(semantic_hits, keyword_hits, settings.keyword_weight, similarities)
            first = next(hit for hit in rescored if hit.row["id"] == fused[0].row["id"])
            first.score = max(first.score, rescored[0].score)
            fused = [first, *(hit for hit in rescored if hit is not first)]
    return fused[:limit]


async def search(
    db: asyncpg.Connection,
    mode: str,
    query: str,
    vector: np.ndarray,
    model: str,
    filters: queries.Filters,
    limit: int,
    settings: SearchSettings,
) -> list[queries.Hit]:
    """The first `limit` results of `mode` for a query text and its vector (the benchmark's entry)."""
    if mode == "semantic":
        return await queries.semantic(db, vector, model, filters, limit, settings.semantic_floor, queries.ID_ONLY)
    if mode == "keyword":
        return await queries.keyword(db, query, filters, limit, queries.ID_ONLY)
    candidates = max(limit, settings.hybrid_candidates)
    return await hybrid(db, query, vector, model, filters, candidates, limit, settings, columns=queries.ID_ONLY)
