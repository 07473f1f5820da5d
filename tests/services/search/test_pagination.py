"""Keyset pages of clusters, a cluster's messages, a conversation's events and transcript, and search results."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.search.app import create_app
from services.search.settings import SearchSettings
from shared.db import tenant_transaction
from shared.settings import load
from tests.services.conftest import Tenant

pytestmark = pytest.mark.integration

CREATOR = "creator-jay"
START = datetime(2026, 11, 20, 19, 0, tzinfo=UTC)


class Api:
    def __init__(self, client: TestClient, tenant: Tenant, pool: asyncpg.Pool) -> None:
        self.client, self.tenant, self.pool = client, tenant, pool
        self.numbers = itertools.count()

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers={"Authorization": f"Bearer {self.tenant.api_key}"})

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.tenant.api_key}"})

    def pages(self, path: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Each page of `path` (200 each), following `next_cursor` to its end."""
        cursor = None
        for _ in range(200):
            response = self.get(path, **params, **({"cursor": cursor} if cursor else {}))
            assert response.status_code == 200, response.text
            page: dict[str, Any] = response.json()
            yield page
            cursor = page["next_cursor"]
            if cursor is None:
                return
            assert page[key], "a page before the last is not empty"
        raise AssertionError("more than 200 pages")

    async def execute(self, sql: str, *args: Any) -> Any:
        async with tenant_transaction(self.pool, self.tenant.id) as db:
            return await db.fetchval(sql, *args)

    async def clusters(self, sizes: list[int], status: str = "open") -> list[UUID]:
        """Clusters of these sizes (no members: the list reads the totals); pairs share a creation time."""
        ids = []
        for size in sizes:
            number = next(self.numbers)
            ids.append(await self.execute(
                "INSERT INTO clusters (tenant_id, creator_id, status, size, channel_count, preview_text, created_at) "
                "VALUES ($1, $2, $3, $4, $4, $5, $6) RETURNING id",
                self.tenant.id, CREATOR, status, size, f"question {number}", START + timedelta(seconds=number // 2),
            ))  # fmt: skip
        return ids

    async def member(self, cluster_id: UUID, second: int) -> str:
        """A message `second`s after START joins the cluster; returns its StreamChat id."""
        number = next(self.numbers)
        message_id = f"m-{number:03d}"
        async with tenant_transaction(self.pool, self.tenant.id) as db:
            row_id = await db.fetchval(
                "INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, visitor_id, "
                "direction, text, message_created_at) VALUES ($1, $2, $3, $4, $5, 'inbound', $6, $7) RETURNING id",
                self.tenant.id, message_id, CREATOR, f"messaging:fan-{number}", f"fan-{number}",
                f"when is the tour {number}", START + timedelta(seconds=second),
            )  # fmt: skip
            await db.execute(
                "INSERT INTO cluster_members (tenant_id, cluster_id, message_id, channel_cid, embedding, content_hash, "
                "message_created_at) VALUES ($1, $2, $3, $4, $5, '\\x00', $6)",
                self.tenant.id, cluster_id, row_id, f"messaging:fan-{number}", np.ones(384, dtype=np.float32),
                START + timedelta(seconds=second),
            )  # fmt: skip
            await db.execute("UPDATE clusters SET size = size + 1 WHERE id = $1", cluster_id)
        return message_id

    async def documents(self, vectors: np.ndarray, text: str = "pagination widget") -> list[UUID]:
        model = self.client.app.state.embedder.provider.model  # type: ignore[attr-defined]
        ids = []
        async with tenant_transaction(self.pool, self.tenant.id) as db:
            for vector in vectors:
                number = next(self.numbers)
                body = f"{text} number {number}"
                digest = hashlib.sha256(body.encode()).digest()
                document_id = await db.fetchval(
                    "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
                    "VALUES ($1, 'events', 'text', $2, $3, $4) RETURNING id",
                    self.tenant.id, f"doc-{number}", body, digest,
                )  # fmt: skip
                await db.execute(
                    "INSERT INTO document_embeddings (document_id, tenant_id, model, dimensions, content_hash, "
                    "embedding) VALUES ($1, $2, $3, 384, $4, $5)",
                    document_id, self.tenant.id, model, digest, vector,
                )  # fmt: skip
                ids.append(document_id)
        return ids


@pytest.fixture
def api(
    service_env: dict[str, str], tenant: Tenant, pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    env = {**service_env, "CHORUS_MODEL_CACHE": str(tmp_path_factory.getbasetemp() / "models")}
    with TestClient(create_app(load(SearchSettings, env))) as client:
        yield Api(client, tenant, pool)


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


async def test_paging_the_clusters_shows_each_once_while_new_ones_arrive(api: Api) -> None:
    originals = await api.clusters([1 + number % 6 for number in range(104)])
    await api.clusters([3, 9], status="actioned")
    for sort, key in (("size", lambda c: (-c["size"], c["id"])), ("newest", lambda c: (_negated(c), c["id"]))):
        seen: list[dict[str, Any]] = []
        for page in api.pages("/v1/clusters", "clusters", creator_id=CREATOR, status="open", limit=7, sort=sort):
            assert len(page["clusters"]) <= 7
            seen += page["clusters"]
            # Between pages, clusters land before the page reached (large, or created first)
            # and after it: those before are not shown, none is shown twice.
            await api.clusters([50, 1])
        ids = [cluster["id"] for cluster in seen]
        assert len(ids) == len(set(ids)), f"{sort}: a cluster came twice"
        assert {str(cluster_id) for cluster_id in originals} <= set(ids), f"{sort}: a cluster was skipped"
        assert [key(cluster) for cluster in seen] == sorted(key(cluster) for cluster in seen)
        assert all(cluster["status"] == "open" for cluster in seen)

    default = api.get("/v1/clusters").json()
    assert [c["size"] for c in default["clusters"]] == sorted((c["size"] for c in default["clusters"]), reverse=True)
    assert len(default["clusters"]) == 50 and default["next_cursor"]


def _negated(cluster: dict[str, Any]) -> float:
    return -datetime.fromisoformat(cluster["created_at"]).timestamp()


async def test_a_clusters_messages_come_in_pages_of_two(api: Api) -> None:
    (cluster_id,) = await api.clusters([0])
    # Seconds with ties: the message id orders messages of one timestamp.
    expected = [await api.member(cluster_id, second) for second in (5, 1, 3, 3, 3, 8, 2)]
    order = [message for _, message in sorted(zip((5, 1, 3, 3, 3, 8, 2), expected, strict=True))]
    seen: list[str] = []
    added = False
    for page in api.pages(f"/v1/clusters/{cluster_id}", "messages", limit=2):
        assert len(page["messages"]) <= 2 and page["size"] == 7 + added
        seen += [message["message_id"] for message in page["messages"]]
        if not added:  # a message that joins later comes on a later page
            order.append(await api.member(cluster_id, 60))
            added = True
    assert seen == order
    whole = api.get(f"/v1/clusters/{cluster_id}").json()
    assert [m["message_id"] for m in whole["messages"]] == order and whole["next_cursor"] is None
    assert whole["preview_text"] is None or isinstance(whole["preview_text"], str)
    assert "label" in whole


async def test_a_conversations_events_and_transcript_come_in_pages(api: Api) -> None:
    conversation = "c-paged"
    async with tenant_transaction(api.pool, api.tenant.id) as db:
        await db.execute(
            "INSERT INTO tavus_conversations (tenant_id, conversation_id, status) VALUES ($1, $2, 'ended')",
            api.tenant.id, conversation,
        )  # fmt: skip
        for number, (event_type, second) in enumerate(
            [("system.replica_joined", 0), ("application.transcription_ready", 9), ("system.shutdown", 9),
             ("application.perception_analysis", 12), ("application.recording_ready", 15)]
        ):  # fmt: skip
            await db.execute(
                "INSERT INTO tavus_webhook_events (tenant_id, event_hash, conversation_id, event_type, payload, "
                "received_at) VALUES ($1, $2, $3, $4, '{}', $5)",
                api.tenant.id, bytes([number]), conversation, event_type, START + timedelta(seconds=second),
            )  # fmt: skip
        for turn in range(7):
            await db.execute(
                "INSERT INTO tavus_messages (tenant_id, conversation_id, turn_index, role, content) "
                "VALUES ($1, $2, $3, $4, $5)",
                api.tenant.id, conversation, turn, "user" if turn % 2 else "replica", f"turn {turn}",
            )  # fmt: skip
    pages = list(api.pages(f"/v1/conversations/{conversation}", "transcript", limit=2))
    assert [len(page["events"]) for page in pages] == [2, 2, 1, 0]
    assert [turn["turn_index"] for page in pages for turn in page["transcript"]] == list(range(7))
    assert [event["event_type"] for page in pages for event in page["events"]] == [
        "system.replica_joined", "application.transcription_ready", "system.shutdown",
        "application.perception_analysis", "application.recording_ready",
    ]  # fmt: skip
    assert all(page["status"] == "ended" for page in pages)


async def test_search_pages_repeat_no_result(api: Api) -> None:
    rng = np.random.default_rng(3)
    query = unit(rng.normal(size=(1, 384)))[0]
    originals = {str(document) for document in await api.documents(unit(rng.normal(size=(30, 384))))}

    # Semantic pages continue after the last result shown: documents added between pages, above
    # it or below, never make a result come twice.
    seen: list[str] = []
    cursor = None
    for _ in range(30):
        paged = {"cursor": cursor} if cursor else {}
        body = {"mode": "semantic", "vector": query.tolist(), "threshold": -1.0, "limit": 4, **paged}
        response = api.post("/v1/search", body)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [result["id"] for result in page["results"]]
        await api.documents(unit(np.stack([query, rng.normal(size=384)])))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "semantic: a result came twice"
    assert originals <= set(seen), "semantic: a document was skipped"

    # Keyword pages (BM25 weighs a word by how many documents have it) start at an offset.
    seen = []
    for page in api.pages("/v1/search", "results", q="pagination widget", mode="keyword", limit=6):
        seen += [result["id"] for result in page["results"]]
    assert len(seen) == len(set(seen)), "keyword: a result came twice"
    assert originals <= set(seen), "keyword: a document was skipped"

    # Hybrid pages walk one fused list, of lists as long as the first page's (at least
    # CHORUS_SEARCH_HYBRID_CANDIDATES): pages of 7 and pages of 3 walk the same list.
    walks = []
    for limit in (7, 3):
        pages = api.pages("/v1/search", "results", q="pagination widget", mode="hybrid", limit=limit)
        walks.append([result["id"] for page in pages for result in page["results"]])
    assert len(walks[0]) == len(set(walks[0])), "hybrid: a result came twice"
    assert walks[0] == walks[1] and len(walks[0]) > 3 * 7


async def test_a_bad_cursor_is_a_400_naming_it(api: Api) -> None:
    (cluster_id,) = await api.clusters([1])
    await api.clusters([1, 1])
    cursor = api.get("/v1/clusters", limit=1).json()["next_cursor"]
    assert api.get("/v1/clusters", limit=1, cursor=cursor).status_code == 200
    forged = "eyJwIjpbMSwieCJdLCJxIjoieCJ9"  # {"p":[1,"x"],"q":"x"}
    for path, params in (
        ("/v1/clusters", {"cursor": "not-a-cursor"}),
        ("/v1/clusters", {"cursor": forged}),
        ("/v1/clusters", {"cursor": cursor, "sort": "newest"}),  # the cursor of another order
        ("/v1/clusters", {"cursor": cursor, "status": "open"}),  # and of other filters
        (f"/v1/clusters/{cluster_id}", {"cursor": "%%%"}),
        (f"/v1/clusters/{cluster_id}", {"cursor": cursor}),
        ("/v1/conversations/c7a3e91f", {"cursor": "e30"}),
        ("/v1/search", {"q": "tour", "cursor": "W10"}),
        ("/v1/search", {"q": "tour", "cursor": "x" * 600}),
    ):
        response = api.get(path, **params)
        assert response.status_code == 400, (path, params, response.text)
        assert "cursor" in json.dumps(response.json()), response.text
    post = api.post("/v1/search", {"q": "tour", "mode": "keyword", "cursor": cursor})
    assert post.status_code == 400 and "cursor" in post.text
