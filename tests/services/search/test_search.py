"""/v1/search in every mode and with every filter, over the demo data."""

from __future__ import annotations

from typing import Any

import pytest

from services.search.queries import Hit, fuse
from shared.db import tenant_transaction
from tests.problems import assert_problem
from tests.services.search.conftest import Search

BOOKINGS = "BKG-412/created"  # the Jira issue about idempotency keys for POST /v1/bookings


def _external_ids(results: list[dict[str, object]]) -> list[object]:
    return [result["external_id"] for result in results]


async def test_a_request_without_a_valid_key_is_refused(search: Search) -> None:
    assert search.client.get("/v1/search", params={"q": "refund"}).status_code == 401
    assert search.get("/v1/search", key="chorus_not-a-key", q="refund").status_code == 401


async def test_keyword_search_ranks_and_highlights_the_match(search: Search) -> None:
    results = search.search(q="idempotency keys", mode="keyword")
    assert results[0]["external_id"] == BOOKINGS
    assert "<mark>" in results[0]["snippet"].lower()
    assert results[0]["keyword_score"] > 0 and results[0]["semantic_score"] is None


async def test_a_typo_falls_back_to_trigrams(search: Search) -> None:
    assert search.search(q="idempotancy", mode="keyword", limit=3)[0]["external_id"] == BOOKINGS


async def test_semantic_search_finds_meaning_without_the_words(search: Search) -> None:
    results = search.search(q="mobile apps retrying requests create double reservations", mode="semantic")
    assert BOOKINGS in _external_ids(results[:3])
    assert all(result["semantic_score"] is not None for result in results)
    assert search.search(q="double reservations", mode="semantic", threshold=0.99) == []


async def test_hybrid_returns_both_component_scores(search: Search) -> None:
    results = search.search(q="duplicate bookings idempotency")
    assert results[0]["external_id"] == BOOKINGS
    assert results[0]["semantic_score"] is not None and results[0]["keyword_score"] is not None


def test_reciprocal_rank_fusion_puts_a_document_both_lists_found_first() -> None:
    def hit(name: str) -> Hit:
        return Hit(row={"id": name}, semantic_score=0.5, keyword_score=0.5)

    semantic_hits = [hit("only-semantic"), hit("both")]
    keyword_hits = [hit("only-keyword"), hit("both")]
    fused = fuse(semantic_hits, keyword_hits, k=60, limit=3)
    assert fused[0].row["id"] == "both"
    assert fused[0].score == pytest.approx(2 / 62)


async def test_filters_narrow_the_results(search: Search) -> None:
    assert {r["source"] for r in search.search(q="customer", source="vcon", limit=50)} == {"vcon"}
    assert {r["content_type"] for r in search.search(q="customer", content_type="subject", limit=50)} == {"subject"}
    tagged = search.search(q="deployed", mode="keyword", tag=["channel:deploys", "env:prod-eu"], limit=50)
    assert tagged and all(r["tags"]["channel"] == "deploys" and r["tags"]["env"] == "prod-eu" for r in tagged)
    assert search.search(q="deployed", tag=["channel:deploys", "env:nowhere"]) == []
    assert search.search(q="customer", until="2000-01-01T00:00:00Z") == []
    assert search.search(q="customer", since="2000-01-01T00:00:00Z", limit=5)
    creator = search.search(q="stream tonight", creator_id="creator-jay", limit=50)
    assert creator and {r["source"] for r in creator} == {"streamchat"}
    body = {"q": "stream", "metadata": {"direction": "inbound"}, "limit": 50}
    response = search.post("/v1/search", body)
    assert response.status_code == 200
    assert response.json()["results"] and all(
        r["metadata"]["direction"] == "inbound" for r in response.json()["results"]
    )


async def test_a_precomputed_vector_can_be_posted(search: Search) -> None:
    embedder = search.client.app.state.embedder  # type: ignore[attr-defined]
    vector = (await embedder.vector("double reservations when the app retries")).tolist()
    response = search.post("/v1/search", {"mode": "semantic", "vector": vector, "limit": 3})
    assert response.status_code == 200 and BOOKINGS in _external_ids(response.json()["results"])
    wrong = search.post("/v1/search", {"mode": "semantic", "vector": [0.1, 0.2]})
    assert_problem(wrong, 400, "vector")


async def test_deleted_messages_never_appear(search: Search) -> None:
    deleted = await search.ingest.count("SELECT count(*) FROM documents WHERE deleted_at IS NOT NULL")
    assert deleted >= 1
    async with tenant_transaction(search.ingest.pool, search.ingest.tenant.id) as db:
        text = await db.fetchval("SELECT text FROM documents WHERE deleted_at IS NOT NULL LIMIT 1")
    for mode in ("keyword", "semantic", "hybrid"):
        assert text not in [r["text"] for r in search.search(q=text, mode=mode, limit=100)]


QUERIES = ["'); DROP TABLE documents; --", "a & b | !c <-> d", "(((", "\\", "%_*", ":*", '"unclosed', "x" * 1000, "é🙂"]
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"q": "x", "limit": 0}, "limit"), ({"q": "x", "limit": 101}, "limit"), ({"q": "x", "mode": "fuzzy"}, "mode"),
    ({"q": "x", "tag": "nocolon"}, "tag"), ({"q": "x", "since": "yesterday"}, "since"), ({"mode": "keyword"}, "q"),
    ({"q": "x", "threshold": 2}, "threshold"),
]  # fmt: skip


async def test_any_query_text_is_data(search: Search) -> None:
    for query in QUERIES:
        for mode in ("keyword", "hybrid"):
            assert search.get("/v1/search", q=query, mode=mode).status_code == 200, (query, mode)


async def test_an_invalid_parameter_is_a_400_that_names_it(search: Search) -> None:
    for params, named in INVALID:
        problem = assert_problem(search.get("/v1/search", **params), 400, named)
        assert named in problem["detail"], problem
