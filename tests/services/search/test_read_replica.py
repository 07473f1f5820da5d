"""Search on a streaming replica (CHORUS_SEARCH_DATABASE_URL): reads there, writes on the primary."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.search.app import create_app as create_search_app
from services.search.replica import replica_lag
from services.search.settings import SearchSettings
from shared.db import create_pool
from shared.migrate import migrate
from shared.settings import load
from tests.conftest import SERVICE_PASSWORD, SERVICE_USER, Database, url_for
from tests.replica import StreamingPair, caught_up, streaming_pair
from tests.services.conftest import make_tenant
from tests.services.search.conftest import Search

LAG_METRIC = "chorus_search_replica_lag"
QUERIES = [
    {"q": "refund", "mode": "hybrid"},
    {"q": "idempotency keys", "mode": "keyword"},
    {"q": "mobile apps retrying requests create double reservations", "mode": "semantic"},
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, process_watchdog: None) -> Iterator[StreamingPair]:
    with streaming_pair(tmp_path_factory.mktemp("replicated")) as started:
        yield started


@pytest.fixture
async def database(pair: StreamingPair) -> AsyncIterator[Database]:
    """The test's database on the primary (so on the replica too), in place of the shared server's."""
    name = f"chorus_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pair.primary.admin_url())
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = url_for(pair.primary.admin_url(), name, SERVICE_USER, SERVICE_PASSWORD)
    await migrate(url_for(pair.primary.admin_url(), name), url)
    try:
        yield Database(admin_url=url_for(pair.primary.admin_url(), name), url=url, name=name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def replica_url(pair: StreamingPair, database: Database) -> str:
    return database.url.replace(f":{pair.primary.port}/", f":{pair.replica.port}/")


def answers(search: Search, cluster_id: str) -> list[Any]:
    """What the read-only routes answer, less the timings."""
    found: list[Any] = []
    for params in QUERIES:
        response = search.get("/v1/search", **params, limit=10).json()
        found.append({**response, "took_ms": None})
    found.append(search.get("/v1/clusters").json())
    found.append(search.get(f"/v1/clusters/{cluster_id}").json())
    found.append(search.get("/v1/conversations/c7a3e91f").json())
    return found


async def exported_lag_above_zero(client: TestClient, within: float = 15.0) -> None:
    """Wait until search's /metrics shows the replica behind (the gauge is refreshed every 5 s)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        metrics = text_string_to_metric_families(client.get("/metrics").text)
        lag = {s.name: s.value for family in metrics for s in family.samples if s.name.startswith(LAG_METRIC)}
        if lag.get(f"{LAG_METRIC}_bytes", 0) > 0 and lag.get(f"{LAG_METRIC}_seconds", 0) > 0:
            return
        assert asyncio.get_running_loop().time() < deadline, f"search exports no lag: {lag}"
        await asyncio.sleep(0.5)


async def answer_alike(primary: Search, replica: Search, cluster_id: str, urls: tuple[str, str]) -> None:
    """Once the replica has replayed what the primary had, both answer alike. Compared only while the
    primary stays still: the pipeline's agents (labels, reply delivery) may still be writing."""
    for _ in range(40):
        expected = answers(primary, cluster_id)
        await caught_up(*urls)
        found = answers(replica, cluster_id)
        if answers(primary, cluster_id) == expected:
            assert found == expected
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the primary's answers never stayed the same long enough to compare")


async def test_search_on_the_replica_answers_as_the_primary_and_writes_go_to_the_primary(
    pair: StreamingPair, database: Database, search: Search, services: dict[str, str]
) -> None:
    replica = replica_url(pair, database)
    settings = load(SearchSettings, {**services, "CHORUS_SEARCH_DATABASE_URL": replica})
    replica_admin_url = url_for(pair.replica.admin_url(), database.name)
    replica_admin = await asyncpg.connect(replica_admin_url)
    primary_pool = await create_pool(database.url, max_size=1)
    replica_pool = await create_pool(replica, max_size=1)
    try:
        with TestClient(create_search_app(settings)) as client:
            on_replica = Search(client, search.ingest)
            assert client.get("/readyz").json()["checks"]["postgres_replica"] is True
            urls = (database.admin_url, replica_admin_url)
            await caught_up(*urls)
            assert await replica_lag(primary_pool, replica_pool) == (0.0, 0.0)
            cluster_id = search.get("/v1/clusters").json()["clusters"][0]["id"]
            assert all(answer["results"] for answer in answers(search, cluster_id)[:3]), "the demo data answers"
            await answer_alike(search, on_replica, cluster_id, urls)
            # Row-level security holds on the replica: another tenant's key sees none of it.
            other = await make_tenant(search.ingest.pool, "other", app_key="other-app")
            await caught_up(*urls)
            assert on_replica.get("/v1/clusters", key=other.api_key).json()["clusters"] == []
            assert on_replica.search(key=other.api_key, q="idempotency keys", mode="keyword") == []

            # Replay paused: a write through the replica's search lands on the primary (the
            # replica would refuse it), and the replica's reads do not see it until replay resumes.
            await replica_admin.execute("SELECT pg_wal_replay_pause()")
            action = on_replica.post(f"/v1/clusters/{cluster_id}/action", {"response_text": "See you at 9pm!"})
            assert action.status_code == 200, action.text
            assert search.get(f"/v1/clusters/{cluster_id}").json()["status"] == "actioned"
            assert on_replica.get(f"/v1/clusters/{cluster_id}").json()["status"] == "open"
            behind, age = await replica_lag(primary_pool, replica_pool)
            assert behind > 0 and age > 0
            await exported_lag_above_zero(client)
            await replica_admin.execute("SELECT pg_wal_replay_resume()")
            await caught_up(*urls)
            assert on_replica.get(f"/v1/clusters/{cluster_id}").json()["status"] == "actioned"
            await answer_alike(search, on_replica, cluster_id, urls)
    finally:
        await replica_admin.close()
        await primary_pool.close()
        await replica_pool.close()
