"""GET and POST /v1/search: hybrid, semantic and keyword search over the tenant's documents."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import numpy as np
from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from services.search import paging, queries, relevance
from services.search.cursors import CURSOR, MAX_CURSOR_CHARS
from services.search.embedding import QueryEmbedder
from services.search.metrics import REQUEST_SECONDS, RESULTS
from services.search.models import EXPLAIN, Explanation, SearchRequest, SearchResponse, SearchResult
from services.search.routes.common import resources
from services.search.settings import SearchSettings
from shared.db import tenant_transaction
from shared.embedding import ProviderError
from shared.http.keys import Tenant
from shared.http.problems import RETRY_SOON, FieldProblem, HTTPProblem, invalid, problems

router = APIRouter(prefix="/v1", responses=problems(400, 401, 503))


@router.get("/search", response_model=SearchResponse, summary="Search with query parameters")
async def search_get(
    request: Request,
    tenant_id: Tenant,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    mode: Literal["hybrid", "semantic", "keyword"] = "hybrid",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    source: Annotated[str | None, Query(max_length=64)] = None,
    content_type: Annotated[str | None, Query(max_length=64)] = None,
    creator_id: Annotated[str | None, Query(max_length=256)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    tag: Annotated[list[str] | None, Query(max_length=32, description="key:value, repeatable")] = None,
    threshold: Annotated[float | None, Query(ge=-1.0, le=1.0)] = None,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description=CURSOR)] = None,
    explain: Annotated[bool, Query(description=EXPLAIN)] = False,
) -> Response:
    try:
        search = SearchRequest.model_validate(
            {"q": q, "mode": mode, "limit": limit, "source": source, "content_type": content_type,
             "creator_id": creator_id, "since": since, "until": until, "tag": tag or [], "threshold": threshold,
             "cursor": cursor, "explain": explain}
        )  # fmt: skip
    except ValidationError as error:
        raise invalid(error.errors()) from None
    return _json(await _search(request, tenant_id, search))


@router.post("/search", response_model=SearchResponse, summary="Search with a JSON body (also metadata and vector)")
async def search_post(request: Request, tenant_id: Tenant, search: SearchRequest) -> Response:
    return _json(await _search(request, tenant_id, search))


def _json(answer: SearchResponse) -> Response:
    """The answer as JSON, serialized once by pydantic: FastAPI would validate and convert it again."""
    return Response(answer.model_dump_json(), media_type="application/json")


async def _search(request: Request, tenant_id: UUID, search: SearchRequest) -> SearchResponse:
    started = time.perf_counter()
    status = 200
    try:
        return await _run_search(request, tenant_id, search, started)
    except HTTPProblem as error:
        status = error.status_code
        raise
    finally:
        REQUEST_SECONDS.labels(search.mode, str(status)).observe(time.perf_counter() - started)


async def _run_search(request: Request, tenant_id: UUID, search: SearchRequest, started: float) -> SearchResponse:
    settings: SearchSettings = request.app.state.settings
    embedder: QueryEmbedder = request.app.state.embedder
    vector = None if search.mode == "keyword" else await _query_vector(search, embedder, settings)
    filters = queries.Filters(
        source=search.source, content_type=search.content_type, creator_id=search.creator_id,
        since=search.since, until=search.until, tags=search.tags(), metadata=search.metadata,
    )  # fmt: skip
    query = (search.q or "").strip()
    model = embedder.provider.model
    pool = resources(request).read_only_pool
    # One transaction answers the request. With a query text the lists rank ids only, and one
    # more query fetches the results' columns with their highlighted snippets.
    columns = queries.ID_ONLY if query else queries.RESULT_COLUMNS
    local_settings = {} if vector is None else queries.semantic_settings(settings.ef_search)
    scope = paging.search_scope(search)
    page = paging.requested_page(search.cursor, scope)
    if search.mode == "hybrid":
        page = page.with_candidates(max(search.limit, settings.hybrid_candidates))
    depth = page.depth(search.limit, search.mode)
    async with tenant_transaction(pool, tenant_id, local_settings) as db:
        if search.mode == "semantic":
            assert vector is not None
            floor = settings.semantic_floor if search.threshold is None else search.threshold
            hits = await queries.semantic(db, vector, model, filters, depth, floor, columns, page.after)
        elif search.mode == "keyword":
            hits = await queries.keyword(db, query, filters, depth, columns, page.trigrams)
        else:
            assert vector is not None
            hits = await _hybrid(db, search, page, query, vector, model, filters, settings, columns)
        hits, following = page.cut(hits, search.limit, search.mode)
        if query and hits:
            hits = await queries.with_snippets(db, hits, query)
    RESULTS.labels(search.mode).observe(len(hits))
    return SearchResponse(
        query=search.q,
        mode=search.mode,
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        results=[
            SearchResult(
                **_result_fields(hit),
                snippet=_snippet(hit, query),
                score=hit.score,
                semantic_score=hit.semantic_score,
                keyword_score=hit.keyword_score,
                explain=_explanation(hit, search, page.offset + number) if search.explain else None,
            )
            for number, hit in enumerate(hits, start=1)
        ],
        next_cursor=paging.next_cursor(following, scope),
    )


async def _hybrid(
    db: asyncpg.Connection,
    search: SearchRequest,
    page: paging.Page,
    query: str,
    vector: np.ndarray,
    model: str,
    filters: queries.Filters,
    settings: SearchSettings,
    columns: str,
) -> list[queries.Hit]:
    """Both lists, `page.candidates` long (`hybrid_candidates` or `limit`), fused (services/search/relevance.py)."""
    candidates = page.candidates or settings.hybrid_candidates
    return await relevance.hybrid(db, query, vector, model, filters, candidates, page.depth(search.limit, search.mode),
                                  settings, search.threshold, columns)  # fmt: skip


def _explanation(hit: queries.Hit, search: SearchRequest, place: int) -> Explanation:
    """Each list's rank and score of a result; a single-mode list's rank is the result's place."""
    return Explanation(
        semantic_rank=hit.semantic_rank or (place if search.mode == "semantic" else None),
        semantic_score=hit.semantic_score,
        keyword_rank=hit.keyword_rank or (place if search.mode == "keyword" else None),
        keyword_score=hit.keyword_score,
        score=hit.score,
        chunk=hit.chunk,
    )


def _snippet(hit: queries.Hit, query: str) -> str:
    """The passage `with_snippets` chose for the query; without a query text, the start of the
    nearest passage of a long document or of the text."""
    if query and hit.snippet:
        return queries.snippet_html(hit.snippet)
    text = queries.nearest_passage(hit) or hit.row["text"]
    return queries.snippet_html(text[: queries.SNIPPET_CHARS], marked=False)


def _result_fields(hit: queries.Hit) -> dict[str, Any]:
    names = ("id", "source", "content_type", "content_ref", "external_id", "text", "tags", "metadata", "created_at")
    return {name: hit.row[name] for name in names}


async def _query_vector(search: SearchRequest, embedder: QueryEmbedder, settings: SearchSettings) -> np.ndarray:
    if search.vector is not None:
        vector = np.asarray(search.vector, dtype=np.float32)
        if vector.shape != (settings.embedding_dimensions,) or not np.all(np.isfinite(vector)):
            problem = f"must be {settings.embedding_dimensions} finite numbers, got {len(search.vector)}"
            raise HTTPProblem(400, f"vector: {problem}", [FieldProblem(field="vector", problem=problem)])
        return vector
    try:
        return await embedder.vector((search.q or "").strip())
    except ProviderError as error:
        raise HTTPProblem(503, f"the embedding provider failed: {error}", headers=RETRY_SOON) from None
