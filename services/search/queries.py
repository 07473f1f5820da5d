"""The SQL of search: semantic (HNSW), keyword (full text, trigram fallback) and their fusion.

Every value a caller gives is a bind parameter; nothing from a request becomes SQL text. The
queries run in the request's tenant transaction, where row-level security already hides other
tenants' rows: the tenant is never a filter here, so no WHERE clause can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

# Columns every result carries.
RESULT_COLUMNS = (
    "d.id, d.source, d.content_type, d.content_ref, d.external_id, d.text, d.tags, d.metadata, d.created_at"
)
# A snippet without a match is the text's start, this long.
SNIPPET_CHARS = 200
# What a list needs when `with_snippets` fetches the results' columns afterwards.
ID_ONLY = "d.id"
# Below this many characters a query is matched by trigrams: full text has too little to go on.
SHORT_QUERY_CHARS = 3
# Trigrams stand in for full text only for short queries (a typo in a word or two); a long query
# that full text cannot match would make trigram matching read most of the index.
TRIGRAM_MAX_WORDS = 3


@dataclass(frozen=True)
class Filters:
    source: str | None = None
    content_type: str | None = None
    creator_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def where(self, first_parameter: int) -> tuple[str, list[Any]]:
        """SQL conditions on `d` (documents), numbered from `first_parameter`, and their values."""
        conditions = ["d.deleted_at IS NULL"]
        values: list[Any] = []

        def add(condition: str, value: Any) -> None:
            values.append(value)
            conditions.append(condition.format(f"${first_parameter + len(values) - 1}"))

        if self.source is not None:
            add("d.source = {}", self.source)
        if self.content_type is not None:
            add("d.content_type = {}", self.content_type)
        if self.creator_id is not None:
            add("d.creator_id = {}", self.creator_id)
        if self.since is not None:
            add("coalesce(d.occurred_at, d.created_at) >= {}", self.since)
        if self.until is not None:
            add("coalesce(d.occurred_at, d.created_at) < {}", self.until)
        if self.tags:
            add("d.tags @> {}::jsonb", self.tags)
        if self.metadata:
            add("d.metadata @> {}::jsonb", self.metadata)
        return " AND ".join(conditions), values


@dataclass
class Hit:
    row: asyncpg.Record
    semantic_score: float | None = None
    keyword_score: float | None = None
    score: float = 0.0


def semantic_settings(ef_search: int) -> dict[str, str | int]:
    """The settings of the transaction `semantic` runs in (tenant_transaction's local_settings).

    Iterative index scans keep reading the HNSW index until enough rows pass the filters, so a
    selective filter does not starve the result; `ef_search` trades latency for recall.
    """
    return {"hnsw.ef_search": int(ef_search), "hnsw.iterative_scan": "relaxed_order"}


async def semantic(
    db: asyncpg.Connection,
    vector: np.ndarray,
    model: str,
    filters: Filters,
    limit: int,
    threshold: float | None,
    columns: str = RESULT_COLUMNS,
) -> list[Hit]:
    """Top `limit` documents by cosine similarity of their vector from `model`, in a transaction
    opened with `semantic_settings`.

    The join asks only for the document's id (an index lookup per candidate); a vector of an
    older text of its document (an edit the embed service has not reached yet) is dropped after
    the scan.
    """
    where, values = filters.where(4)
    rows = await db.fetch(
        f"""
        WITH nearest AS MATERIALIZED (
            SELECT {columns}, e.embedding <=> $1 AS distance, e.content_hash = d.content_hash AS current
            FROM document_embeddings e JOIN documents d ON d.id = e.document_id
            WHERE e.model = $2 AND {where}
            ORDER BY e.embedding <=> $1
            LIMIT $3
        )
        SELECT * FROM nearest WHERE current ORDER BY distance, id
        """,
        vector,
        model,
        limit,
        *values,
    )
    hits = [Hit(row, semantic_score=1.0 - float(row["distance"])) for row in rows]
    if threshold is not None:
        hits = [hit for hit in hits if (hit.semantic_score or 0.0) >= threshold]
    for hit in hits:
        hit.score = hit.semantic_score or 0.0
    return hits


async def keyword(
    db: asyncpg.Connection, query: str, filters: Filters, limit: int, columns: str = RESULT_COLUMNS
) -> list[Hit]:
    """Full-text matches ranked by ts_rank_cd; trigram similarity when the query is very short or
    full text finds nothing (a typo, a word cut short). Matches come from the index functions of
    migration 0004 and are joined back to `documents` under row-level security."""
    where, values = filters.where(3)
    rows: list[asyncpg.Record] = []
    if len(query.strip()) >= SHORT_QUERY_CHARS:
        rows = await db.fetch(
            f"""
            SELECT {columns}, m.rank
            FROM chorus_fulltext_matches(websearch_to_tsquery('english', $1)) m JOIN documents d ON d.id = m.document_id
            WHERE {where}
            ORDER BY m.rank DESC, d.id
            LIMIT $2
            """,
            query,
            limit,
            *values,
        )
    if not rows and len(query.split()) <= TRIGRAM_MAX_WORDS:
        rows = await db.fetch(
            f"""
            SELECT {columns}, m.similarity AS rank
            FROM chorus_trigram_matches($1) m JOIN documents d ON d.id = m.document_id
            WHERE {where}
            ORDER BY rank DESC, d.id
            LIMIT $2
            """,
            query,
            limit,
            *values,
        )
    return [Hit(row, keyword_score=float(row["rank"]), score=float(row["rank"])) for row in rows]


def fuse(semantic_hits: list[Hit], keyword_hits: list[Hit], k: int, limit: int) -> list[Hit]:
    """Reciprocal rank fusion: each list adds 1 / (k + rank); a document both lists found ranks higher."""
    fused: dict[UUID, Hit] = {}
    for hits, attribute in ((semantic_hits, "semantic_score"), (keyword_hits, "keyword_score")):
        for rank, hit in enumerate(hits, start=1):
            entry = fused.setdefault(hit.row["id"], Hit(hit.row))
            setattr(entry, attribute, getattr(hit, attribute))
            entry.score += 1.0 / (k + rank)
    return sorted(fused.values(), key=lambda hit: (-hit.score, str(hit.row["id"])))[:limit]


async def with_snippets(db: asyncpg.Connection, hits: list[Hit], query: str) -> list[Hit]:
    """`hits` (found with any columns) carrying the result columns and a `snippet`: a passage of
    the text for `query` with <mark> around the matches, or the text's start. One query for all:
    lists that only need ids for ranking leave the rest to this."""
    rows = await db.fetch(
        f"""
        SELECT {RESULT_COLUMNS},
               CASE WHEN numnode(q.query) = 0 THEN left(d.text, $3)
               ELSE ts_headline('english', d.text, q.query,
                                'StartSel=<mark>, StopSel=</mark>, MaxWords=30, MinWords=10, MaxFragments=2')
               END AS snippet
        FROM documents d, websearch_to_tsquery('english', $2) AS q(query)
        WHERE d.id = ANY($1::uuid[])
        """,
        [hit.row["id"] for hit in hits],
        query,
        SNIPPET_CHARS,
    )
    by_id = {row["id"]: row for row in rows}
    return [Hit(by_id[hit.row["id"]], hit.semantic_score, hit.keyword_score, hit.score)
            for hit in hits if hit.row["id"] in by_id]  # fmt: skip
