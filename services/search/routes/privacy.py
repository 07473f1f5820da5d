"""POST /v1/privacy/erasure: erase everything stored of one party (a fan, a creator)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.search.erasure import erase_party
from services.search.models import ErasureRequest, ErasureResponse
from services.search.routes.common import resources
from shared.db import tenant_transaction
from shared.http.keys import Tenant
from shared.http.problems import problems

router = APIRouter(prefix="/v1", responses=problems(400, 401, 503))


@router.post("/privacy/erasure", response_model=ErasureResponse, summary="Erase everything stored of one party")
async def privacy_erasure(request: Request, tenant_id: Tenant, body: ErasureRequest) -> ErasureResponse:
    async with tenant_transaction(resources(request).pool, tenant_id) as db:
        request_id, counts = await erase_party(db, tenant_id, body.party)
    return ErasureResponse(id=request_id, party=body.party, counts=counts)
