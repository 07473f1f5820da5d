"""The open-clusters gauge comes from one cluster replica at a time, and another takes over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from services.cluster import store
from services.cluster.agents import Clusterer
from services.cluster.leadership import TENANT_GAUGES_LOCK
from services.cluster.settings import ClusterSettings
from shared.db import tenant_transaction
from shared.settings import load
from shared.tenants import create_tenant
from tests.conftest import Database
from tests.services.conftest import Tenant

# The session holding the lock, seen from the owner (advisory keys below 2**32 are the lock's objid).
HOLDER = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = $1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def exported(gauge: Gauge) -> dict[str, float]:
    """The gauge's samples as a replica's /metrics would show them, by tenant label."""
    return {sample.labels["tenant"]: sample.value for metric in gauge.collect() for sample in metric.samples}


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)


async def test_one_replica_exports_the_tenant_gauge_and_another_takes_over(
    database: Database, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    async with tenant_transaction(pool, tenant.id) as db:
        await store.open_cluster(db, tenant.id, "creator-jay")
    settings = load(ClusterSettings, {"CHORUS_DATABASE_URL": database.url, "CHORUS_CLUSTER_GAUGE_TENANTS": "acme"})
    # Two replicas, each with the registry its own process would have; counting needs no Kafka.
    gauges = [Gauge("open_clusters", "", ["tenant"], registry=CollectorRegistry()) for _ in range(2)]
    loops = [asyncio.create_task(Clusterer(settings, pool, None).count_open_clusters(0.1, gauge)) for gauge in gauges]
    try:
        await until(lambda: any(exported(gauge) for gauge in gauges))
        await asyncio.sleep(0.5)  # several rounds of both loops: the other still exports nothing
        leader = next(number for number, gauge in enumerate(gauges) if exported(gauge))
        follower = 1 - leader
        assert exported(gauges[leader]) == {"acme": 1.0, "other": 0.0}
        assert exported(gauges[follower]) == {}

        # The holder's session is lost (a crash, the network): the lock goes with it, a replica
        # takes it on a new session, and still only one exports.
        admin = await asyncpg.connect(database.admin_url)
        try:
            lost = await admin.fetchval(HOLDER, TENANT_GAUGES_LOCK)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lost) is True
            deadline = asyncio.get_running_loop().time() + 20
            while await admin.fetchval(HOLDER, TENANT_GAUGES_LOCK) in (None, lost):
                assert asyncio.get_running_loop().time() < deadline, "no replica took the lock again"
                await asyncio.sleep(0.05)
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
        assert sorted(map(len, map(exported, gauges))) == [0, 2]  # acme and other, from one replica
        leader = next(number for number, gauge in enumerate(gauges) if exported(gauge))
        follower = 1 - leader

        # The leader stops (its session ends, releasing the lock): the other replica exports instead.
        loops[leader].cancel()
        await asyncio.gather(loops[leader], return_exceptions=True)
        assert exported(gauges[leader]) == {}
        await until(lambda: exported(gauges[follower]) == {"acme": 1.0, "other": 0.0})
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)


async def test_the_gauge_shows_the_tenants_it_is_told_to_and_sums_the_rest(
    database: Database, pool: asyncpg.Pool
) -> None:
    tenants = {name: await create_tenant(pool, name) for name in ("acme", "globex", "initech", "umbrella")}
    for name, opened in (("acme", 2), ("globex", 3), ("initech", 1), ("umbrella", 4)):
        async with tenant_transaction(pool, tenants[name]) as db:
            for number in range(opened):
                await store.open_cluster(db, tenants[name], f"creator-{number}")
    shown = f"acme,{tenants['globex']},nobody"
    settings = load(ClusterSettings, {"CHORUS_DATABASE_URL": database.url, "CHORUS_CLUSTER_GAUGE_TENANTS": shown})
    gauge = Gauge("open_clusters", "", ["tenant"], registry=CollectorRegistry())
    counting = asyncio.create_task(Clusterer(settings, pool, None).count_open_clusters(0.1, gauge))
    try:
        # Shown by the name or id the setting gives; initech and umbrella only in the sum; no series for "nobody".
        await until(lambda: exported(gauge) == {"acme": 2.0, str(tenants["globex"]): 3.0, "other": 5.0})
        async with tenant_transaction(pool, tenants["umbrella"]) as db:
            await store.open_cluster(db, tenants["umbrella"], "creator-new")
        await until(lambda: exported(gauge) == {"acme": 2.0, str(tenants["globex"]): 3.0, "other": 6.0})
    finally:
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
    assert exported(gauge) == {}
