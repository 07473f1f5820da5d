"""One search by mode, as the route and the relevance benchmark run it: the lists, their fusion, the floor.

Hybrid (docs/search.md "Relevance") scores each candidate of the two lists by its cosine similarity
plus `keyword_weight` times its keyword score over the best keyword score of the query: BM25
scores have no fixed scale, and a plain cosine already is one. Then pseudo-relevance feedback:
every candidate scores again with its similarity to the query plus FEEDBACK_WEIGHT times its
similarity to the `feedback` best candidates, each weighed by how far ahead it scored (a softmax
of the first scores). Measured on the labelled DMs, reciprocal rank fusion stayed below semantic
search alone whatever its k, candidates or list weights.
"""

from __future__ import annotations

import math
from uuid import UUID

import asyncpg
import numpy as np

from services.search import queries
from services.search.settings import SearchSettings

# How much the feedback documents' similarity counts against the query's own (which counts 1).
FEEDBACK_WEIGHT = 2.0
# The softmax temperature that weighs the feedback documents by their first scores: at 0.1 a
# document 0.1 behind the best counts e^-1 as much; a plain mean (a large temperature) let a weak
# third or fourth document pull the query off its topic (bench/relevance.py, docs/search.md).
FEEDBACK_TEMPERATURE = 0.1
# The semantic list's rows carry their vector under this name, for feedback.
VECTOR = "feedback_vector"
VECTOR_COLUMN = f"e.embedding AS {VECTOR}"


def weighted(
    semantic_hits: list[queries.Hit],
    keyword_hits: list[queries.Hit],
    keyword_weight: float,
    similarities: dict[UUID, float] | None = None,
) -> list[queries.Hit]:
    """Every candidate scored by similarity + keyword_weight x keyword score / the best keyword
    score, best first. `similarities` (by id) replace the semantic list's; a candidate with no
    similarity (a keyword hit the semantic list missed) counts the least similarity of the rest."""
    return _scored(_candidates(semantic_hits, keyword_hits), keyword_hits, keyword_weight, similarities)


def _candidates(semantic_hits: list[queries.Hit], keyword_hits: list[queries.Hit]) -> dict[UUID, queries.Hit]:
    """Each document of the two lists once, with its rank and score in each."""
    fused: dict[UUID, queries.Hit] = {}
    for name, hits in (("semantic", semantic_hits), ("keyword", keyword_hits)):
        for rank, hit in enumerate(hits, start=1):
            queries.fused_entry(fused, hit, name, rank)
    return fused


def _scored(
    candidates: dict[UUID, queries.Hit],
    keyword_hits: list[queries.Hit],
    keyword_weight: float,
    similarities: dict[UUID, float] | None,
) -> list[queries.Hit]:
    """`candidates` scored as `weighted` says (their scores set in place), best first."""
    if similarities is None:
        similarities = {document: hit.semantic_score for document, hit in candidates.items()
                        if hit.semantic_score is not None}  # fmt: skip
    least = min(similarities.values(), default=0.0)
    best_keyword = max((hit.keyword_score or 0.0 for hit in keyword_hits), default=0.0) or 1.0
    for document, entry in candidates.items():
        entry.score = similarities.get(document, least) + keyword_weight * (entry.keyword_score or 0.0) / best_keyword
    return sorted(candidates.values(), key=lambda hit: hit.rank_key)


def feedback_weights(best: list[queries.Hit]) -> dict[UUID, float]:
    """FEEDBACK_WEIGHT shared among the `best` candidates by a softmax of their scores."""
    top = max(hit.score for hit in best)
    shares = {hit.row["id"]: math.exp((hit.score - top) / FEEDBACK_TEMPERATURE) for hit in best}
    total = sum(shares.values())
    return {document: FEEDBACK_WEIGHT * share / total for document, share in shares.items()}


def feedback_similarities(
    vector: np.ndarray, semantic_hits: list[queries.Hit], best: list[queries.Hit]
) -> dict[UUID, float]:
    """Each semantic candidate's similarity to the query plus its weighted similarities to the
    `best` candidates (`feedback_weights`), from the vectors the semantic list brought along,
    scaled to unit length so that a dot product is the cosine (a posted query vector need not be).
    A best candidate without a vector (found by keyword alone) adds nothing; a keyword-only
    candidate gets no similarity here."""
    ids = [hit.row["id"] for hit in semantic_hits]
    vectors = _unit(np.stack([np.asarray(hit.row[VECTOR].to_numpy(), dtype=np.float32) for hit in semantic_hits]))
    place = {document: number for number, document in enumerate(ids)}
    towards = _unit(np.asarray(vector, dtype=np.float32)[np.newaxis, :])[0]
    for document, weight in feedback_weights(best).items():
        if document in place:
            towards += weight * vectors[place[document]]
    return dict(zip(ids, (float(value) for value in vectors @ towards), strict=True))


def _unit(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    scaled: np.ndarray = rows / np.where(norms > 0, norms, 1.0)
    return scaled


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
    longer on a 2-core machine (docs/search.md), and cost a second transaction. The semantic list
    brings its vectors, so feedback costs no query of its own."""
    with_vectors = f"{columns}, {VECTOR_COLUMN}"
    semantic_hits = await queries.semantic(db, vector, model, filters, candidates, threshold, with_vectors)
    keyword_hits = await queries.keyword(db, query, filters, candidates, columns)
    if settings.fusion == "rrf":
        return queries.fuse(semantic_hits, keyword_hits, settings.rrf_k, limit)
    candidates_of_both = _candidates(semantic_hits, keyword_hits)
    fused = _scored(candidates_of_both, keyword_hits, settings.keyword_weight, None)
    if settings.feedback > 0 and semantic_hits:
        similarities = feedback_similarities(vector, semantic_hits, fused[: settings.feedback])
        # The best result of the first scoring stays first (with the best score): feedback
        # reorders what follows it. Moved towards near-duplicates of each other, the query could
        # pass over the one document with every word (the demo's Jira issue).
        first = fused[0]
        rescored = _scored(candidates_of_both, keyword_hits, settings.keyword_weight, similarities)
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
