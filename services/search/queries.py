"""The SQL of search: semantic (HNSW), keyword (full text, trigram fallback) and their fusion.

Every value a caller gives is a bind parameter; nothing from a request becomes SQL text. The
queries run in the request's tenant transaction, where row-level security already hides other
tenants' rows: the tenant is never a filter here, so no WHERE clause can forget it.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from shared.embedding.chunks import MAX_PASSAGES, passage_spans

# Columns every result carries.
RESULT_COLUMNS = (
    "d.id, d.source, d.content_type, d.content_ref, d.external_id, d.text, d.tags, d.metadata, d.created_at"
)
# A snippet without a match is the text's start, this long.
SNIPPET_CHARS = 200
# ts_headline marks matches with these private-use characters, taken out of the text first, and
# `snippet_html` turns them into <mark> once the text is escaped: a document's own markup stays text.
_START, _STOP = "\ue000", "\ue001"
# What a list needs when `with_snippets` fetches the results' columns afterwards.
ID_ONLY = "d.id"
# Below this many characters a query is matched by trigrams: full text has too little to go on.
SHORT_QUERY_CHARS = 3
# Trigrams stand in for full text only for short queries (a typo in a word or two); a long query
# that full text cannot match would make trigram matching read most of the index.
TRIGRAM_MAX_WORDS = 3


# A query word found in this many of the tenant's documents or more weighs about nothing in the
# keyword ranking and finds no candidates of its own; it bounds the index entries a word costs.
TERM_CAP = 1000
# A word no document has is read as the most similar word the documents have, this similar at least
# (pg_trgm similarity of the stems): "schedual" finds "schedule".
TYPO_LIKENESS = 0.3
# What makes a query web-search syntax: a quote or a word with a leading minus. ("or" alone is
# not: fans write it in questions, and any-term matching already lets either side match.)
SEARCH_SYNTAX = re.compile(r'"|(?:^|\s)-\w')


def has_search_syntax(query: str) -> bool:
    return SEARCH_SYNTAX.search(query) is not None


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
    by_trigrams: bool = False  # a keyword hit found by trigram similarity, not full text
    semantic_rank: int | None = None  # places in the fused lists, from 1 (`explain`)
    keyword_rank: int | None = None
    chunk: int | None = None  # the passage the semantic list found nearest (shared/embedding/chunks.py)
    snippet: str | None = None  # with `with_snippets`: the passage shown, matches between _START and _STOP

    @property
    def rank_key(self) -> tuple[float, str]:
        """The order of every list: higher score first, then the id."""
        return -self.score, str(self.row["id"])


def semantic_settings(ef_search: int) -> dict[str, str | int]:
    """The settings of the transaction `semantic` runs in (tenant_transaction's local_settings).

    Iterative index scans keep reading the HNSW index until enough rows pass the filters, so a
    selective filter does not starve the result; `ef_search` trades latency for recall. The
    growing vector segment (migration 0013) is sorted whole under the merge of the segments'
    scans: work_mem (in kB) keeps that sort in memory when the segment runs past its size.
    """
    return {"hnsw.ef_search": int(ef_search), "hnsw.iterative_scan": "relaxed_order", "work_mem": 16384}


async def semantic(
    db: asyncpg.Connection,
    vector: np.ndarray,
    model: str,
    filters: Filters,
    limit: int,
    threshold: float | None,
    columns: str = RESULT_COLUMNS,
    after: tuple[float, UUID] | None = None,
) -> list[Hit]:
    """Top `limit` documents by cosine similarity of their vector from `model`, in a transaction
    opened with `semantic_settings`; with `after` (a distance and an id), those that follow it.

    The join asks only for the document's id (an index lookup per candidate); a vector of an
    older text of its document (an edit the embed service has not reached yet) is dropped after
    the scan. A document with several vectors (chunks) is one hit: its nearest chunk, named in
    the row's `chunk`. document_embeddings is partitioned in segments (migration 0013): Postgres
    merges the ordered scans of the indexed ones with an exact top-N of the growing one.
    """
    where, values = filters.where(4)
    if after is not None:
        values += after
        cursor = f"(${len(values) + 2}::float8, ${len(values) + 3}::uuid)"
        # A document stands where its nearest passage does: one with a passage at or before the
        # cursor was on an earlier page, whatever its farther passages.
        where += (
            f" AND (e.embedding <=> $1, d.id) > {cursor} AND NOT EXISTS (SELECT FROM document_embeddings o "
            f"WHERE o.document_id = d.id AND o.model = $2 AND o.content_hash = d.content_hash "
            f"AND (o.embedding <=> $1, d.id) <= {cursor})"
        )
    if after is None and filters == Filters():
        # Nothing to filter but the tenant (row-level security): the nearest vectors first, then
        # their documents. Postgres then bounds the growing segment's sort by the LIMIT, a top-N of
        # a few distances, where a join above the scans made it sort every row with its vector
        # (docs/embed.md); the vector itself leaves the subquery only when `columns` asks for it
        # (Postgres drops the outputs nobody reads). A deleted document and a vector of an older
        # text are dropped after the join (`current`), and more passages are read when that leaves
        # too few.
        statement = f"""
            SELECT {columns}, e.chunk, e.distance, e.content_hash = d.content_hash AND d.deleted_at IS NULL AS current
            FROM (SELECT document_id, chunk, content_hash, embedding, embedding <=> $1 AS distance
                  FROM document_embeddings WHERE model = $2 ORDER BY embedding <=> $1 LIMIT $3) e
            JOIN documents d ON d.id = e.document_id
        """
    else:
        statement = f"""
            SELECT {columns}, e.chunk, e.embedding <=> $1 AS distance, e.content_hash = d.content_hash AS current
            FROM document_embeddings e JOIN documents d ON d.id = e.document_id
            WHERE e.model = $2 AND {where}
            ORDER BY e.embedding <=> $1
            LIMIT $3
        """
    # Passages are rows: a long document may take several of the nearest, so fewer documents than
    # `limit` may come back while more exist; then more passages are read, up to every passage of
    # `limit` documents.
    passages = limit
    while True:
        read = await db.fetch(statement, vector, model, passages, *values)
        rows = _nearest_passages(read)
        if len(rows) >= limit or len(read) < passages or passages >= limit * MAX_PASSAGES:
            break
        passages *= 4
    rows = rows[:limit]
    hits = [Hit(row, semantic_score=1.0 - float(row["distance"]), chunk=row["chunk"]) for row in rows]
    if threshold is not None:
        hits = [hit for hit in hits if (hit.semantic_score or 0.0) >= threshold]
    for hit in hits:
        hit.score = hit.semantic_score or 0.0
    return hits


def _nearest_passages(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    """Each document's nearest current passage, nearest first (then by id): the scan's order is
    only nearly sorted (iterative scans), and a vector of an older text of a document is skipped."""
    nearest: dict[UUID, asyncpg.Record] = {}
    for row in sorted(rows, key=lambda row: (row["distance"], row["id"])):
        if row["current"]:
            nearest.setdefault(row["id"], row)
    return list(nearest.values())


async def keyword(
    db: asyncpg.Connection,
    query: str,
    filters: Filters,
    limit: int,
    columns: str = RESULT_COLUMNS,
    trigrams: bool | None = None,
) -> list[Hit]:
    """Full-text matches of any query word ranked by BM25 (migration 0011), or of a web-search
    query (a "phrase", a -word) ranked by ts_rank_cd; trigram similarity when the query is very
    short or full text finds nothing (a typo, a word cut short). Matches come from the index
    functions of migrations 0004 and 0011 and are joined back to `documents` under row-level
    security.

    A later page passes how the first page matched (`trigrams`): a page must not switch to
    trigrams because documents changed since the first."""
    where, values = filters.where(3)
    rows: list[asyncpg.Record] = []
    if trigrams is not True and len(query.strip()) >= SHORT_QUERY_CHARS:
        # Plain words: any of them may match, ranked by BM25 (migration 0011). Web-search syntax
        # (a "phrase", a -word) means the user said what must match: websearch_to_tsquery.
        # With no condition but the one every search has (no filter, no cursor) the function's
        # own best `limit` are the answer, and only those are joined back to `documents`.
        unfiltered = not values and where == Filters().where(3)[0]
        matches = (
            "chorus_fulltext_matches(websearch_to_tsquery('english', $1))"
            if has_search_syntax(query)
            else f"chorus_ranked_matches($1, {TERM_CAP}, {TYPO_LIKENESS}, {'$2' if unfiltered else 'NULL'})"
        )
        rows = await db.fetch(
            f"""
            SELECT {columns}, m.rank
            FROM {matches} m JOIN documents d ON d.id = m.document_id
            WHERE {where}
            ORDER BY m.rank DESC, d.id
            LIMIT $2
            """,
            query,
            limit,
            *values,
        )
    if trigrams is None:
        trigrams = not rows and len(query.split()) <= TRIGRAM_MAX_WORDS
    if trigrams:
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
    return [Hit(row, keyword_score=float(row["rank"]), score=float(row["rank"]), by_trigrams=trigrams)
            for row in rows]  # fmt: skip


def fuse(
    semantic_hits: list[Hit], keyword_hits: list[Hit], k: int, limit: int, keyword_weight: float = 1.0
) -> list[Hit]:
    """Weighted reciprocal rank fusion: the semantic list adds 1 / (k + rank), the keyword list
    `keyword_weight` / (k + rank); a document both lists found ranks higher."""
    fused: dict[UUID, Hit] = {}
    for hits, name, weight in ((semantic_hits, "semantic", 1.0), (keyword_hits, "keyword", keyword_weight)):
        for rank, hit in enumerate(hits, start=1):
            fused_entry(fused, hit, name, rank).score += weight / (k + rank)
    return sorted(fused.values(), key=lambda hit: hit.rank_key)[:limit]


def fused_entry(fused: dict[UUID, Hit], hit: Hit, name: str, rank: int) -> Hit:
    """The entry of `hit`'s document in `fused`, given list `name`'s rank and score of it (and
    the semantic list's nearest passage); made on the document's first list."""
    entry = fused.get(hit.row["id"])
    if entry is None:
        entry = fused[hit.row["id"]] = Hit(hit.row)
    setattr(entry, f"{name}_score", getattr(hit, f"{name}_score"))
    setattr(entry, f"{name}_rank", rank)
    if hit.chunk is not None:
        entry.chunk = hit.chunk
    return entry


async def with_snippets(db: asyncpg.Connection, hits: list[Hit], query: str) -> list[Hit]:
    """`hits` (found with any columns) carrying the result columns and a `snippet`: a passage of
    the text for `query` with the matches between _START and _STOP, or the text's start (see
    `snippet_html`). One query for all: lists that only need ids for ranking leave the rest to this.
    A long document the semantic list found by one of its passages shows that passage instead,
    its matches marked by one more query."""
    rows = await db.fetch(
        f"""
        SELECT {RESULT_COLUMNS},
               CASE WHEN numnode(q.query) = 0 THEN left(translate(d.text, $4, ''), $3)
               ELSE ts_headline('english', translate(d.text, $4, ''), q.query,
                                'StartSel=' || $5 || ', StopSel=' || $6 || ', MaxWords=30, MinWords=10, MaxFragments=2')
               END AS snippet
        FROM documents d, {highlighted(query)} AS q(query)
        WHERE d.id = ANY($1::uuid[])
        """,
        [hit.row["id"] for hit in hits],
        query,
        SNIPPET_CHARS,
        _START + _STOP,
        _START,
        _STOP,
    )
    by_id = {row["id"]: row for row in rows}
    found = [replace(hit, row=by_id[hit.row["id"]], snippet=by_id[hit.row["id"]]["snippet"])
             for hit in hits if hit.row["id"] in by_id]  # fmt: skip
    passages = {number: text for number, hit in enumerate(found) if (text := nearest_passage(hit)) is not None}
    if passages:
        marked = await db.fetch(
            f"SELECT ts_headline('english', translate(p.text, $3, ''), {highlighted(query)}, "
            "'StartSel=' || $4 || ', StopSel=' || $5 || ', MaxWords=30, MinWords=10, MaxFragments=2') "
            "FROM unnest($1::text[]) AS p (text)",
            list(passages.values()),
            query,
            _START + _STOP,
            _START,
            _STOP,
        )
        for number, row in zip(passages, marked, strict=True):
            found[number].snippet = row[0]
    return found


def highlighted(query: str) -> str:
    """The tsquery (of the query in $2) whose words a snippet marks. Plain words match when any of
    them does, so any of them is marked (ts_headline finds no passage for an AND of words the
    text has only some of); web-search syntax says what must match, and is marked as written."""
    if has_search_syntax(query):
        return "websearch_to_tsquery('english', $2)"
    return "to_tsquery('simple', replace(plainto_tsquery('english', $2)::text, ' & ', ' | '))"


def nearest_passage(hit: Hit) -> str | None:
    """The passage of a long document the semantic list found nearest, if it has several."""
    if hit.chunk is None:
        return None
    text: str = hit.row["text"]
    spans = passage_spans(text)
    if len(spans) == 1 or hit.chunk >= len(spans):  # a short text, or one changed since its vectors
        return None
    start, end = spans[hit.chunk]
    return text[start:end]


def snippet_html(snippet: str, marked: bool = True) -> str:
    """A snippet as HTML: the document's text escaped, Chorus's <mark> around the matches its only
    markup. A snippet not from `with_snippets` (`marked=False`) loses any marker characters it has."""
    if not marked:
        snippet = snippet.replace(_START, "").replace(_STOP, "")
    return html.escape(snippet).replace(_START, "<mark>").replace(_STOP, "</mark>")
