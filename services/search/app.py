"""The search service's HTTP API (DESIGN.md "Search service HTTP API"); every route needs a Bearer key.

Each request runs its queries in one transaction with the key's tenant set, as the services'
non-owner role, under row-level security (shared/db.py).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from services.search import queries, store
from services.search.embedding import KeyCache, QueryEmbedder
from services.search.erasure import erase_party
from services.search.metrics import REQUEST_SECONDS, RESULTS
from services.search.models import (
    ActionRequest,
    ActionResponse,
    ClusterDetail,
    ClustersResponse,
    Conversation,
    ErasureRequest,
    ErasureResponse,
    Problem,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from services.search.settings import SearchSettings
from shared import clusters, topics
from shared.db import tenant_transaction
from shared.embedding import ProviderError, create_provider
from shared.service import Resources, answer_unavailable, service_app

PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "A parameter is invalid; `detail` names it."},
    401: {"model": Problem, "description": "No valid API key."},
}
bearer = HTTPBearer(auto_error=False, description="An API key from `chorus keys create TENANT`.")


async def authenticated_tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> UUID:
    """The tenant of the request's API key; 401 without a valid one."""
    tenant_id = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        keys: KeyCache = request.app.state.keys
        tenant_id = await keys.tenant(credentials.credentials)
    if tenant_id is None:
        raise HTTPException(401, "an Authorization: Bearer <API key> header with a valid key is required",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return tenant_id


Tenant = Annotated[UUID, Depends(authenticated_tenant)]
router = APIRouter(prefix="/v1", responses=PROBLEMS)


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
) -> Response:
    try:
        search = SearchRequest.model_validate(
            {"q": q, "mode": mode, "limit": limit, "source": source, "content_type": content_type,
             "creator_id": creator_id, "since": since, "until": until, "tag": tag or [], "threshold": threshold}
        )  # fmt: skip
    except ValidationError as error:
        raise HTTPException(400, _describe(error.errors())) from None
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
    except HTTPException as error:
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
    pool = _resources(request).pool
    # One transaction answers the request. With a query text the lists rank ids only, and one
    # more query fetches the results' columns with their highlighted snippets.
    columns = queries.ID_ONLY if query else queries.RESULT_COLUMNS
    local_settings = {} if vector is None else queries.semantic_settings(settings.ef_search)
    async with tenant_transaction(pool, tenant_id, local_settings) as db:
        if search.mode == "semantic":
            assert vector is not None
            hits = await queries.semantic(db, vector, model, filters, search.limit, search.threshold, columns)
        elif search.mode == "keyword":
            hits = await queries.keyword(db, query, filters, search.limit, columns)
        else:
            assert vector is not None
            hits = await _hybrid(db, search, query, vector, model, filters, settings, columns)
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
                snippet=(hit.row["snippet"] if query else None) or hit.row["text"][: queries.SNIPPET_CHARS],
                score=hit.score,
                semantic_score=hit.semantic_score,
                keyword_score=hit.keyword_score,
            )
            for hit in hits
        ],
    )


async def _hybrid(
    db: asyncpg.Connection,
    search: SearchRequest,
    query: str,
    vector: np.ndarray,
    model: str,
    filters: queries.Filters,
    settings: SearchSettings,
    columns: str,
) -> list[queries.Hit]:
    """Both lists, `hybrid_candidates` long, fused by reciprocal rank.

    One after the other on the request's connection: run at once on two connections they took
    longer on this 2-core machine (docs/search.md), and cost a second transaction."""
    candidates = max(search.limit, settings.hybrid_candidates)
    semantic_hits = await queries.semantic(db, vector, model, filters, candidates, search.threshold, columns)
    keyword_hits = await queries.keyword(db, query, filters, candidates, columns)
    return queries.fuse(semantic_hits, keyword_hits, settings.rrf_k, search.limit)


def _result_fields(hit: queries.Hit) -> dict[str, Any]:
    names = ("id", "source", "content_type", "content_ref", "external_id", "text", "tags", "metadata", "created_at")
    return {name: hit.row[name] for name in names}


async def _query_vector(search: SearchRequest, embedder: QueryEmbedder, settings: SearchSettings) -> np.ndarray:
    if search.vector is not None:
        vector = np.asarray(search.vector, dtype=np.float32)
        if vector.shape != (settings.embedding_dimensions,) or not np.all(np.isfinite(vector)):
            raise HTTPException(
                400, f"vector: must be {settings.embedding_dimensions} finite numbers, got {len(search.vector)}"
            )
        return vector
    try:
        return await embedder.vector((search.q or "").strip())
    except ProviderError as error:
        raise HTTPException(503, f"the embedding provider failed: {error}") from None


@router.get("/clusters", response_model=ClustersResponse, summary="A creator's clusters, newest first")
async def list_clusters(
    request: Request,
    tenant_id: Tenant,
    creator_id: Annotated[str | None, Query(max_length=256)] = None,
    status: Literal["open", "actioned"] | None = None,
    min_size: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ClustersResponse:
    async with tenant_transaction(_resources(request).pool, tenant_id) as db:
        return ClustersResponse(clusters=await store.list_clusters(db, creator_id, status, min_size, limit))


def _answers(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses beyond 200, 400 and 401: `not_found="..."`, `conflict="..."`."""
    codes = {"not_found": 404, "conflict": 409}
    return {codes[name]: {"model": Problem, "description": text} for name, text in descriptions.items()}


@router.get("/clusters/{cluster_id}", response_model=ClusterDetail, summary="A cluster and its messages",
            responses=_answers(not_found="No such cluster."))  # fmt: skip
async def get_cluster(request: Request, tenant_id: Tenant, cluster_id: UUID) -> ClusterDetail:
    async with tenant_transaction(_resources(request).pool, tenant_id) as db:
        summary = await store.cluster_summary(db, cluster_id)
        if summary is None:
            raise HTTPException(404, f"no cluster {cluster_id}")
        return ClusterDetail(**summary.model_dump(), messages=await store.cluster_messages(db, cluster_id))


@router.post(
    "/clusters/{cluster_id}/action",
    response_model=ActionResponse,
    summary="Answer every channel of a cluster with one reply",
    responses=_answers(not_found="No such cluster.", conflict="The cluster was actioned before."),
)  # fmt: skip
async def action_cluster(request: Request, tenant_id: Tenant, cluster_id: UUID, body: ActionRequest) -> ActionResponse:
    resources = _resources(request)
    replies_topic = topics.REPLIES.full_name(request.app.state.settings.topic_prefix)
    try:
        async with tenant_transaction(resources.pool, tenant_id) as db:
            actioned = await clusters.action_cluster(db, resources.producer, replies_topic, cluster_id,
                                                     body.response_text)  # fmt: skip
    except clusters.ClusterNotFound:
        raise HTTPException(404, f"no cluster {cluster_id}") from None
    except clusters.ClusterAlreadyActioned:
        raise HTTPException(409, f"cluster {cluster_id} was actioned before") from None
    return ActionResponse(id=cluster_id, status="actioned", response_text=body.response_text,
                          actioned_at=actioned.actioned_at, replies=actioned.replies)  # fmt: skip


@router.get("/conversations/{conversation_id}", response_model=Conversation, summary="A Tavus conversation",
            responses=_answers(not_found="No such conversation."))  # fmt: skip
async def get_conversation(request: Request, tenant_id: Tenant, conversation_id: str) -> Conversation:
    async with tenant_transaction(_resources(request).pool, tenant_id) as db:
        found = await store.conversation(db, conversation_id)
    if found is None:
        raise HTTPException(404, f"no conversation {conversation_id!r}")
    return found


@router.post("/privacy/erasure", response_model=ErasureResponse, summary="Erase everything stored of one party")
async def privacy_erasure(request: Request, tenant_id: Tenant, body: ErasureRequest) -> ErasureResponse:
    async with tenant_transaction(_resources(request).pool, tenant_id) as db:
        request_id, counts = await erase_party(db, tenant_id, body.party)
    return ErasureResponse(id=request_id, party=body.party, counts=counts)


def create_app(settings: SearchSettings) -> FastAPI:
    async def start(resources: Resources) -> None:
        provider = await asyncio.to_thread(create_provider, settings)
        resources.closers.append(provider.close)
        app.state.embedder = QueryEmbedder(provider, settings.query_cache_size)
        app.state.keys = KeyCache(resources.pool, settings.key_cache_seconds)

    app = service_app("Chorus search", settings, start=start)
    app.state.settings = settings
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _invalid_parameter)
    answer_unavailable(app, lambda sentence: {"detail": sentence})
    return app


async def _invalid_parameter(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": _describe(list(error.errors()))}, status_code=400)


def _describe(errors: list[Any]) -> str:
    """One sentence per problem, each naming the parameter: "limit: Input should be ..."."""
    sentences = []
    for problem in errors[:5]:
        location = [str(part) for part in problem.get("loc", ()) if part not in ("query", "body", "path", "header")]
        name = ".".join(location) or "request"
        sentences.append(f"{name}: {problem.get('msg', 'is invalid')}")
    return "; ".join(sentences)


def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources
