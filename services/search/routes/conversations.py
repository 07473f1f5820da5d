"""GET /v1/conversations/{id}: one Tavus conversation, its transcript and analysis."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.search import store
from services.search.cursors import CURSOR, MAX_CURSOR_CHARS
from services.search.models import Conversation, StorableText
from services.search.routes.common import resources
from shared.db import tenant_transaction
from shared.http.keys import Tenant
from shared.http.problems import HTTPProblem, problems

router = APIRouter(prefix="/v1", responses=problems(400, 401, 503))


@router.get("/conversations/{conversation_id}", response_model=Conversation, summary="A Tavus conversation",
            responses=problems((404, "No such conversation.")))  # fmt: skip
async def get_conversation(
    request: Request,
    tenant_id: Tenant,
    conversation_id: StorableText,
    limit: Annotated[int, Query(ge=1, le=500, description="Events and transcript turns in the page, each.")] = 100,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description=CURSOR)] = None,
) -> Conversation:
    async with tenant_transaction(resources(request).read_only_pool, tenant_id) as db:
        found = await store.conversation(db, conversation_id, limit, cursor)
    if found is None:
        raise HTTPProblem(404, f"no conversation {conversation_id!r}")
    return found
