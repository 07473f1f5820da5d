"""/v1/clusters: a creator's clusters of similar fan messages, and answering one with a single reply."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request

from services.search import store
from services.search.cursors import CURSOR, MAX_CURSOR_CHARS
from services.search.models import ActionRequest, ActionResponse, ClusterDetail, ClustersResponse, StorableText
from services.search.routes.common import resources
from shared import clusters
from shared.db import tenant_transaction
from shared.http.keys import Tenant
from shared.http.problems import HTTPProblem, problems

router = APIRouter(prefix="/v1", responses=problems(400, 401, 503))


@router.get("/clusters", response_model=ClustersResponse, summary="A creator's clusters, largest first")
async def list_clusters(
    request: Request,
    tenant_id: Tenant,
    creator_id: Annotated[StorableText | None, Query(max_length=256)] = None,
    status: Literal["open", "actioned"] | None = None,
    min_size: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    sort: Annotated[store.ClusterSort, Query(description="size: largest first; newest: created last first")] = "size",
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description=CURSOR)] = None,
) -> ClustersResponse:
    async with tenant_transaction(resources(request).read_only_pool, tenant_id) as db:
        return await store.list_clusters(db, creator_id, status, min_size, limit, sort, cursor)


@router.get("/clusters/{cluster_id}", response_model=ClusterDetail, summary="A cluster and its messages",
            responses=problems((404, "No such cluster.")))  # fmt: skip
async def get_cluster(
    request: Request,
    tenant_id: Tenant,
    cluster_id: UUID,
    limit: Annotated[int, Query(ge=1, le=200, description="Messages in the page.")] = 50,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description=CURSOR)] = None,
) -> ClusterDetail:
    async with tenant_transaction(resources(request).read_only_pool, tenant_id) as db:
        summary = await store.cluster_summary(db, cluster_id)
        if summary is None:
            raise HTTPProblem(404, f"no cluster {cluster_id}")
        messages, next_cursor = await store.cluster_messages(db, cluster_id, limit, cursor)
        replies = await store.reply_deliveries(db, cluster_id)
        return ClusterDetail(**summary.model_dump(), messages=messages, next_cursor=next_cursor, replies=replies)


@router.post(
    "/clusters/{cluster_id}/action",
    response_model=ActionResponse,
    summary="Answer every channel of a cluster with one reply",
    responses=problems((404, "No such cluster."), (409, "The cluster was actioned before.")),
)  # fmt: skip
async def action_cluster(request: Request, tenant_id: Tenant, cluster_id: UUID, body: ActionRequest) -> ActionResponse:
    try:
        async with tenant_transaction(resources(request).pool, tenant_id) as db:
            actioned = await clusters.action_cluster(db, cluster_id, body.response_text)
    except clusters.ClusterNotFound:
        raise HTTPProblem(404, f"no cluster {cluster_id}") from None
    except clusters.ClusterAlreadyActioned:
        raise HTTPProblem(409, f"cluster {cluster_id} was actioned before") from None
    return ActionResponse(id=cluster_id, status="actioned", response_text=body.response_text,
                          actioned_at=actioned.actioned_at, replies=actioned.replies)  # fmt: skip
