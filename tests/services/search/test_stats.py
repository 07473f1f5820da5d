"""GET /v1/stats over HTTP: a tenant's documents, vectors, clusters and dead letters, and no one else's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import asyncpg
from fastapi.testclient import TestClient

from services.cluster.app import create_app as create_cluster_app
from services.cluster.settings import ClusterSettings
from services.embed.app import create_app as create_embed_app
from services.embed.settings import EmbedSettings
from services.search.app import create_app as create_search_app
from services.search.settings import SearchSettings
from shared.db import tenant_transaction
from shared.kafka import create_producer
from shared.settings import load
from shared.topics import RAW_EVENTS
from tests.services.conftest import Ingest, Tenant, make_tenant, sample

HASH = {"CHORUS_EMBEDDING_PROVIDER": "hash", "CHORUS_EMBED_BATCH_WAIT_MS": "10"}
RAW_EVENTS_SENT = 6
LIVE = "SELECT count(*) FROM documents WHERE deleted_at IS NULL"


@contextmanager
def running_search(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_search_app(load(SearchSettings, {**env, **HASH}))) as client:
        yield client


def stats(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    response = client.get("/v1/stats", headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until(read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll `read` until `done` holds (a minute at most); its last answer."""
    body = read()
    for _ in range(300):
        if done(body):
            break
        await asyncio.sleep(0.2)
        body = read()
    return body


async def _dead_letter(ingest: Ingest, tenant_id: str) -> None:
    """A record on chorus.raw.events that ingest's agent cannot read: dead-lettered under `tenant_id`."""
    producer = create_producer(ingest.env["CHORUS_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        value = {"tenant_id": tenant_id, "source": "Not A Source!", "event_type": "e", "external_id": "x"}
        await producer.send_and_wait(
            RAW_EVENTS.full_name(ingest.env["CHORUS_TOPIC_PREFIX"]), json.dumps(value).encode()
        )
    finally:
        await producer.stop()


async def test_stats_count_what_the_tenant_stored_and_what_failed(ingest: Ingest, pool: asyncpg.Pool) -> None:
    acme = ingest.tenant
    beta = await make_tenant(pool, "beta", "beta-app", "beta-secret-0123456789abcdef0123456789abcdef")
    for number, event in enumerate(sample("streamchat_events")):
        assert ingest.streamchat(event, f"stats-{number}").status_code == 200
    assert ingest.events(sample("raw_events")[:RAW_EVENTS_SENT]).status_code == 202
    documents = await until_stored(ingest)

    with running_search(ingest.env) as search:
        before = await until(lambda: stats(search, acme), lambda body: body["dead_letters_last_hour"] is not None)
        assert (before["documents"], before["embedded"], before["pending"]) == (documents, 0, documents)
        assert before["by_source"] == await _grouped(ingest, "source")
        assert before["by_content_type"] == await _grouped(ingest, "content_type")
        assert sum(before["by_source"].values()) == documents and before["by_source"]["streamchat"] > 0
        # The later of the StreamChat deliveries and the raw events (agents store them side by side).
        async with tenant_transaction(ingest.pool, acme.id) as db:
            newest = await db.fetchval("SELECT max(received_at) FROM raw_events")
            delivered = await db.fetchval("SELECT max(received_at) FROM streamchat_deliveries")
        assert datetime.fromisoformat(before["last_event_at"]) == max(newest, delivered)
        assert before["open_clusters"] == 0
        assert before["dead_letters_last_hour"] == 0
        assert search.get("/v1/stats").status_code == 401

        # Embed and cluster catch up: nothing pending, the clusters the cluster service opened.
        env = {**ingest.env, **HASH}
        with (
            TestClient(create_embed_app(load(EmbedSettings, env))),
            TestClient(create_cluster_app(load(ClusterSettings, env))),
        ):
            after = await until(
                lambda: stats(search, acme), lambda body: body["pending"] == 0 and body["open_clusters"] > 0
            )
            opened = await ingest.count("SELECT count(*) FROM clusters WHERE status = 'open'")
        assert (after["documents"], after["embedded"], after["pending"]) == (documents, documents, 0)
        assert after["open_clusters"] == opened > 0

        # Dead letters of acme, by its name and by its id, and one of beta's.
        await _dead_letter(ingest, "acme")
        await _dead_letter(ingest, str(acme.id))
        await _dead_letter(ingest, str(beta.id))
        counted = await until(lambda: stats(search, acme), lambda body: body["dead_letters_last_hour"] == 2)
        assert counted["dead_letters_last_hour"] == 2
        assert await until(lambda: stats(search, beta), lambda body: body["dead_letters_last_hour"] == 1) == {
            "documents": 0, "embedded": 0, "pending": 0, "by_source": {}, "by_content_type": {},
            "last_event_at": None, "open_clusters": 0, "dead_letters_last_hour": 1,
        }  # fmt: skip

        schema = search.get("/openapi.json").json()
        operation = schema["paths"]["/v1/stats"]["get"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Stats")
        assert "dead_letters_last_hour" in schema["components"]["schemas"]["Stats"]["properties"]

    # A search started later reads the last hour back before it answers a count.
    with running_search(ingest.env) as later:
        recounted = await until(lambda: stats(later, acme), lambda body: body["dead_letters_last_hour"] is not None)
        assert recounted["dead_letters_last_hour"] == 2


async def until_stored(ingest: Ingest) -> int:
    """Wait until ingest stored every event and document (the count stays put for a second); the count."""
    last = -1
    for _ in range(150):
        count = await ingest.count(LIVE)
        if count and count == last and await ingest.count("SELECT count(*) FROM raw_events") == RAW_EVENTS_SENT:
            return count
        last = count
        await asyncio.sleep(1.0)
    raise AssertionError(f"{last} documents and still changing")


async def _grouped(ingest: Ingest, column: str) -> dict[str, int]:
    async with tenant_transaction(ingest.pool, ingest.tenant.id) as db:
        rows = await db.fetch(
            f"SELECT {column}, count(*) FROM documents WHERE deleted_at IS NULL GROUP BY 1 ORDER BY 1"
        )
    return {row[0]: row[1] for row in rows}
