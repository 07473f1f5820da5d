"""Clusters, conversations, privacy erasure and tenant isolation through the search API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from tests.problems import assert_problem
from tests.services.conftest import make_tenant, sample
from tests.services.search.conftest import Search, settled

AdminCount = Callable[[str], Awaitable[Any]]
TABLES = ["documents", "document_embeddings", "document_references", "raw_events", "streamchat_messages",
          "streamchat_deliveries", "clusters", "cluster_members", "tavus_conversations", "tavus_messages",
          "tavus_webhook_events", "privacy_requests"]  # fmt: skip


async def test_clusters_list_show_and_action_once(search: Search) -> None:
    listed = search.get("/v1/clusters", creator_id="creator-jay").json()["clusters"]
    assert listed, "the demo fans' messages are clustered"
    first = listed[0]
    assert first["status"] == "open" and first["size"] >= 1 and first["preview_text"]
    assert first["representative_visitor"]["id"].startswith("fan-")
    assert len(first["visitor_avatar_urls"]) <= 3
    assert [c["size"] for c in listed] == sorted((c["size"] for c in listed), reverse=True)

    detail = search.get(f"/v1/clusters/{first['id']}").json()
    assert len(detail["messages"]) == detail["size"]
    assert len({m["channel_cid"] for m in detail["messages"]}) == detail["channel_count"]

    action = search.post(f"/v1/clusters/{first['id']}/action", {"response_text": "Thanks! Live at 9pm."})
    assert action.status_code == 200 and action.json()["replies"] == detail["channel_count"]
    again = search.post(f"/v1/clusters/{first['id']}/action", {"response_text": "again"})
    assert assert_problem(again, 409)["detail"] == f"cluster {first['id']} was actioned before"
    assert (
        search.get("/v1/clusters", status="actioned").json()["clusters"][0]["response_text"] == "Thanks! Live at 9pm."
    )
    assert search.get("/v1/clusters", min_size=1000).json()["clusters"] == []
    assert search.get("/v1/clusters/00000000-0000-0000-0000-000000000000").status_code == 404
    assert search.get("/v1/clusters/not-a-uuid").status_code == 400
    assert search.post(f"/v1/clusters/{first['id']}/action", {"response_text": "  "}).status_code == 400


async def test_a_conversation_with_its_transcript_in_order(search: Search) -> None:
    conversation = search.get("/v1/conversations/c7a3e91f").json()
    assert conversation["status"] == "ended" and conversation["shutdown_reason"] == "participant_left_timeout"
    assert conversation["recording_uri"].startswith("s3://")
    assert conversation["perception_analysis"]
    turns = [turn["turn_index"] for turn in conversation["transcript"]]
    assert turns == sorted(turns) and len(turns) > 2
    assert search.get("/v1/conversations/unknown").status_code == 404


async def test_each_key_sees_only_its_own_tenant(search: Search, pool: asyncpg.Pool) -> None:
    other = await make_tenant(pool, "globex", app_key="globex-streamchat", app_secret="globex-secret")
    own = search.ingest.tenant
    search.ingest.tenant = other  # the same demo events, posted with the other tenant's credentials
    try:
        assert search.ingest.events([{**event, "external_id": "B-" + event["external_id"]}
                                     for event in sample("raw_events")]).status_code == 202  # fmt: skip
        await settled(search.ingest, at_least=20)
    finally:
        search.ingest.tenant = own
    mine = {r["id"] for r in search.search(q="idempotency keys", limit=100)}
    theirs = {r["id"] for r in search.search(key=other.api_key, q="idempotency keys", limit=100)}
    assert mine and theirs and not mine & theirs
    assert search.get("/v1/clusters", key=other.api_key).json()["clusters"] == []
    assert search.get("/v1/conversations/c7a3e91f", key=other.api_key).status_code == 404
    cluster = search.get("/v1/clusters").json()["clusters"][0]["id"]
    assert search.get(f"/v1/clusters/{cluster}", key=other.api_key).status_code == 404
    assert search.post(f"/v1/clusters/{cluster}/action", {"response_text": "x"}, key=other.api_key).status_code == 404
    erased = search.post("/v1/privacy/erasure", {"party": "ben.okafor"}, key=other.api_key)
    assert erased.status_code == 200
    # The other tenant's erasure of a name both tenants' events carry touched none of this tenant's rows.
    assert {r["id"] for r in search.search(q="idempotency keys", limit=100)} == mine


async def test_erasure_leaves_no_row_mentioning_the_party(search: Search, admin_count: AdminCount) -> None:
    for party in ("fan-maya", "rhonda.fields@northwind-supply.example"):
        response = search.post("/v1/privacy/erasure", {"party": party})
        assert response.status_code == 200, response.text
        counts = response.json()["counts"]
        assert sum(counts.values()) > 0
    assert response.json()["counts"]["raw_events"] == 1 and response.json()["counts"]["documents"] >= 1
    for table in TABLES:
        for trace in ("fan-maya", "Maya L", "rhonda.fields", "Rhonda Fields"):
            found = await admin_count(f"SELECT count(*) FROM {table} t WHERE t::text ILIKE '%{trace}%'")
            assert found == 0, f"{table} still mentions {trace!r}"
    results = search.search(q="hey jay what time is stream tonight", limit=100)
    assert results and not [r for r in results if "maya" in r["text"].lower()]
    assert search.get("/v1/clusters").status_code == 200
