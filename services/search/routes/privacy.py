"""POST /v1/privacy/erasure: erase everything stored of one party (a fan, a creator), with a receipt."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request

from services.search.erasure import erase_party
from services.search.models import ErasureRequest, ErasureResponse, KafkaRemainder
from services.search.routes.common import resources
from shared import topics
from shared.db import tenant_transaction
from shared.http.keys import Tenant
from shared.http.problems import problems
from shared.records import utcnow

router = APIRouter(prefix="/v1", responses=problems(400, 401, 503))


@router.post("/privacy/erasure", response_model=ErasureResponse, summary="Erase everything stored of one party")
async def privacy_erasure(request: Request, tenant_id: Tenant, body: ErasureRequest) -> ErasureResponse:
    """Deletes the party's rows in one transaction and writes tombstones that make ingest drop them
    if they are delivered again. Kafka keeps its copies until each topic's retention ends: the
    receipt says which topics and until when (docs/security.md "Erasure")."""
    settings = resources(request).settings
    async with tenant_transaction(resources(request).pool, tenant_id) as db:
        request_id, erasure = await erase_party(db, tenant_id, body.party)
    now = utcnow()
    prefix = settings.topic_prefix
    remains = [
        KafkaRemainder(
            topics=[f"{prefix}chorus.raw.*"],
            retention_hours=settings.raw_topic_retention_hours,
            until=now + timedelta(hours=settings.raw_topic_retention_hours),
            holds="the deliveries as producers sent them (CHORUS_RAW_TOPIC_RETENTION_HOURS); "
            "ingest drops them if they are replayed",
        ),
        KafkaRemainder(
            topics=[topic.full_name(prefix) for topic in topics.SHARED_TOPICS if not topic.raw],
            retention_hours=settings.topic_retention_hours,
            until=now + timedelta(hours=settings.topic_retention_hours),
            holds="documents' text, replies and dead letters derived from them (CHORUS_TOPIC_RETENTION_HOURS)",
        ),
    ]
    return ErasureResponse(
        id=request_id,
        party=body.party,
        counts={table: count for table, count in erasure.counts.items() if table != "erasure_tombstones"},
        tombstones=erasure.counts.get("erasure_tombstones", 0),
        remains_in_kafka=remains,
        horizon=max(remainder.until for remainder in remains),
    )
