"""Relevance: keyword search that ranks any-term matches by rarity, keeps web-search syntax, reads
past a typo; hybrid's `explain`; the semantic floor. Real Postgres, the hash embedding provider."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from fastapi.testclient import TestClient

from services.search import queries
from services.search.app import create_app
from services.search.settings import SearchSettings
from shared import tenants
from shared.db import tenant_transaction
from shared.embedding.hashed import HashEmbedder
from shared.hashing import text_hash
from shared.settings import load
from tests.conftest import Database

TEXTS = {
    "schedule": "The stream schedule changed: Tuesday and Thursday at eight from now on.",
    "apart": "I missed the schedule post, was the stream cancelled?",
    "hoodie": "Is the hoodie coming back to the merch store?",
    "tour": "Any tour dates in Texas? The stream last night was great.",
    "vegan": "Can the meal plan be vegan? I do not eat meat.",
}
# Documents that make "stream" a common word of the tenant.
FILLER = [f"great stream number {number} tonight" for number in range(8)]


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> tuple[UUID, dict[str, UUID]]:
    tenant_id = await tenants.create_tenant(pool, "relevance")
    hasher = HashEmbedder(384)
    ids = {}
    async with tenant_transaction(pool, tenant_id) as db:
        for name, text in [*TEXTS.items(), *((f"filler-{n}", text) for n, text in enumerate(FILLER))]:
            ids[name] = await db.fetchval(
                "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
                "VALUES ($1, 'test', 'text', $2, $3, $4) RETURNING id",
                tenant_id, name, text, text_hash(text),
            )  # fmt: skip
            await db.execute(
                "INSERT INTO document_embeddings (document_id, tenant_id, model, dimensions, content_hash, embedding) "
                "VALUES ($1, $2, $3, 384, $4, $5)",
                ids[name], tenant_id, hasher.model, text_hash(text), hasher.vector(text),
            )  # fmt: skip
    return tenant_id, ids


async def keyword(pool: asyncpg.Pool, tenant_id: UUID, query: str) -> list[UUID]:
    async with tenant_transaction(pool, tenant_id) as db:
        hits = await queries.keyword(db, query, queries.Filters(), 10, queries.ID_ONLY)
    return [hit.row["id"] for hit in hits]


async def test_any_term_matches_ranked_by_rarer_and_more_words(
    pool: asyncpg.Pool, tenant: tuple[UUID, dict[str, UUID]]
) -> None:
    tenant_id, ids = tenant
    # No document has every word; before, such a question found nothing at all.
    found = await keyword(pool, tenant_id, "when is the hoodie stream schedule on tuesday")
    # schedule + tuesday + stream; then the one document with "hoodie" (the rarest word) above
    # schedule + stream: "schedule" is in two documents.
    assert found[:3] == [ids["schedule"], ids["hoodie"], ids["apart"]]
    assert len(found) == 10  # and after them the documents with "stream" alone, up to the limit
    # The rare word outranks the common one: "hoodie" is in one document, "stream" in eleven.
    assert (await keyword(pool, tenant_id, "stream hoodie"))[0] == ids["hoodie"]


async def test_phrase_and_minus_still_mean_what_they_say(
    pool: asyncpg.Pool, tenant: tuple[UUID, dict[str, UUID]]
) -> None:
    tenant_id, ids = tenant
    assert await keyword(pool, tenant_id, '"stream schedule"') == [ids["schedule"]]
    without_texas = await keyword(pool, tenant_id, "stream -texas")
    assert ids["tour"] not in without_texas and ids["schedule"] in without_texas
    assert len(without_texas) == 10  # every other "stream" document, up to the limit


async def test_a_misspelt_word_finds_the_document_of_the_right_spelling(
    pool: asyncpg.Pool, tenant: tuple[UUID, dict[str, UUID]]
) -> None:
    tenant_id, ids = tenant
    assert (await keyword(pool, tenant_id, "is the hodoie back"))[0] == ids["hoodie"]
    assert (await keyword(pool, tenant_id, "vegna meal"))[0] == ids["vegan"]


@pytest.fixture
def client(database: Database, kafka_bootstrap: str, tenant: tuple[UUID, dict[str, UUID]]) -> Iterator[TestClient]:
    environ = {"CHORUS_DATABASE_URL": database.url, "CHORUS_KAFKA_BOOTSTRAP": kafka_bootstrap,
               "CHORUS_EMBEDDING_PROVIDER": "hash"}  # fmt: skip
    settings = load(SearchSettings, environ)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


async def test_explain_gives_each_list_rank_and_score(
    client: TestClient, pool: asyncpg.Pool, tenant: tuple[UUID, dict[str, UUID]]
) -> None:
    tenant_id, ids = tenant
    headers = {"Authorization": f"Bearer {await tenants.create_api_key(pool, tenant_id)}"}
    # The hash provider gives the query the schedule document's own vector: both lists find it first.
    body = {"q": TEXTS["schedule"], "mode": "hybrid", "explain": True}
    results: list[dict[str, Any]] = client.post("/v1/search", json=body, headers=headers).json()["results"]
    first = results[0]
    assert first["id"] == str(ids["schedule"])
    assert first["explain"]["semantic_rank"] == 1 and first["explain"]["keyword_rank"] == 1
    assert first["explain"]["semantic_score"] == pytest.approx(1.0)
    assert first["explain"]["score"] == first["score"]
    semantic_only = [result for result in results if result["explain"]["keyword_rank"] is None]
    assert semantic_only and all(result["explain"]["semantic_rank"] > 1 for result in semantic_only)
    plain = client.get("/v1/search", params={"q": "hoodie", "mode": "keyword"}, headers=headers).json()
    assert plain["results"][0]["explain"] is None
    explained = client.get("/v1/search", params={"q": "hoodie", "mode": "keyword", "explain": "true"}, headers=headers)
    assert explained.json()["results"][0]["explain"]["keyword_rank"] == 1


async def test_semantic_search_has_a_floor_unless_a_threshold_is_given(
    client: TestClient, pool: asyncpg.Pool, tenant: tuple[UUID, dict[str, UUID]]
) -> None:
    tenant_id, _ = tenant
    headers = {"Authorization": f"Bearer {await tenants.create_api_key(pool, tenant_id)}"}
    # Hash vectors of different texts are near orthogonal: nothing is 0.2 similar to this query.
    unrelated = {"q": "a question about nothing stored here", "mode": "semantic"}
    assert client.get("/v1/search", params=unrelated, headers=headers).json()["results"] == []
    anything = client.get("/v1/search", params={**unrelated, "threshold": -1}, headers=headers).json()["results"]
    assert len(anything) == 10
