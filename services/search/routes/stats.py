"""GET /v1/stats: what the key's tenant has stored, what still waits for a vector, what failed lately."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from uuid import UUID

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field

from services.search.dead_letters import RecentDeadLetters, follow_dead_letters
from services.search.routes.common import resources
from shared.db import tenant_transaction
from shared.http.keys import Tenant
from shared.http.problems import problems
from shared.service import Resources
from shared.topics import DLQ

router = APIRouter(prefix="/v1", responses=problems(401, 503))


class Stats(BaseModel):
    """One tenant's store at a glance."""

    documents: int = Field(description="Documents stored (deleted ones not counted).")
    embedded: int = Field(description="Documents with a vector of their current text.")
    pending: int = Field(description="Documents still waiting for a vector of their current text.")
    by_source: dict[str, int] = Field(description="Documents per source.")
    by_content_type: dict[str, int] = Field(description="Documents per content type.")
    last_event_at: datetime | None = Field(
        description="When ingest last accepted a StreamChat delivery, Tavus callback or raw event of the tenant."
    )
    open_clusters: int = Field(description="Clusters still open to new messages.")
    dead_letters_last_hour: int | None = Field(
        description="Records of the tenant dead-lettered in the last hour (to the minute), as `chorus dlq list` "
        "shows them; null while the service is still reading the dead-letter topic after it started."
    )


def count_dead_letters(app: FastAPI, resources: Resources) -> None:
    """Follow the dead-letter topic for the life of the service (called once it started).

    Not one of the service's agents: should it stop, the count becomes null and search stays
    ready, since searching does not depend on it."""
    recent = app.state.dead_letters = RecentDeadLetters()
    settings = resources.settings
    task = asyncio.ensure_future(
        follow_dead_letters(recent, settings.kafka_bootstrap, DLQ.full_name(settings.topic_prefix))
    )

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    resources.closers.append(stop)


@router.get("/stats", response_model=Stats, summary="The tenant's documents, vectors, clusters and recent failures")
async def get_stats(request: Request, tenant_id: Tenant) -> Stats:
    async with tenant_transaction(resources(request).read_only_pool, tenant_id) as db:
        stats, name = await tenant_stats(db, tenant_id)
    recent: RecentDeadLetters | None = getattr(request.app.state, "dead_letters", None)
    # A dead letter names its tenant as the record did: by id, or (a raw event) by name.
    return stats.model_copy(
        update={"dead_letters_last_hour": None if recent is None else recent.count([str(tenant_id), *name])}
    )


async def tenant_stats(db: asyncpg.Connection, tenant_id: UUID) -> tuple[Stats, list[str]]:
    """The tenant's counts from Postgres (dead letters left out), and the tenant's name."""
    # One pass over the documents; a vector counts only when it is of the document's current text
    # (EXISTS, not a join: a document may come to have several vectors, one per chunk).
    groups = await db.fetch(
        "SELECT d.source, d.content_type, count(*) AS documents, count(*) FILTER (WHERE EXISTS ("
        "SELECT FROM document_embeddings e WHERE e.document_id = d.id AND e.content_hash = d.content_hash)) "
        "AS embedded FROM documents d WHERE d.tenant_id = $1 AND d.deleted_at IS NULL "
        "GROUP BY d.source, d.content_type",
        tenant_id,
    )
    rest = await db.fetchrow(
        "SELECT (SELECT count(*) FROM clusters WHERE tenant_id = $1 AND status = 'open') AS open_clusters, "
        "greatest((SELECT max(received_at) FROM raw_events WHERE tenant_id = $1), "
        "(SELECT max(received_at) FROM streamchat_deliveries WHERE tenant_id = $1), "
        "(SELECT max(received_at) FROM tavus_webhook_events WHERE tenant_id = $1)) AS last_event_at, "
        "(SELECT name FROM tenants WHERE id = $1) AS name",
        tenant_id,
    )
    by_source: dict[str, int] = {}
    by_content_type: dict[str, int] = {}
    for row in groups:
        by_source[row["source"]] = by_source.get(row["source"], 0) + row["documents"]
        by_content_type[row["content_type"]] = by_content_type.get(row["content_type"], 0) + row["documents"]
    documents = sum(row["documents"] for row in groups)
    embedded = sum(row["embedded"] for row in groups)
    stats = Stats(
        documents=documents, embedded=embedded, pending=documents - embedded,
        by_source=dict(sorted(by_source.items())), by_content_type=dict(sorted(by_content_type.items())),
        last_event_at=rest["last_event_at"], open_clusters=rest["open_clusters"], dead_letters_last_hour=None,
    )  # fmt: skip
    return stats, [rest["name"]] if rest["name"] else []
