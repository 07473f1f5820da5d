"""Which cluster replica exports the gauges of whole tenants: the one holding an advisory lock."""

from __future__ import annotations

import asyncpg

from services.cluster import store
from shared.db import tenant_transaction
from shared.errors import TRANSIENT_ERRORS
from shared.tenants import Tenant, list_tenants

# Any fixed number, the same in every replica; advisory locks are per database.
TENANT_GAUGES_LOCK = 0x636C7573


class TenantGaugesLock:
    """A session-level advisory lock on a connection of its own, held by at most one replica.

    Postgres releases it when the holder's session ends (shutdown, crash, lost network), and the
    next replica to ask takes it over: the gauge is neither multiplied nor gone for long.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: asyncpg.Connection | None = None
        self._holding = False

    async def held(self) -> bool:
        """Whether this replica holds the lock, taking it when it is free; False while Postgres is away."""
        try:
            if self._connection is None or self._connection.is_closed():
                self._holding = False
                self._connection = await asyncpg.connect(self.url, timeout=10)
            if self._holding:
                # A query on the session proves the session, and so the lock, still lives.
                await self._connection.fetchval("SELECT 1", timeout=10)
            else:
                # Asked only while not held: the lock counts each time its holder takes it again.
                self._holding = bool(
                    await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", TENANT_GAUGES_LOCK, timeout=10)
                )
        except TRANSIENT_ERRORS:
            self.release()
        return self._holding

    def release(self) -> None:
        """End the lock's session, which releases the lock at once."""
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None
        self._holding = False


async def open_clusters_by_tenant(pool: asyncpg.Pool) -> dict[Tenant, int]:
    """Each tenant's open clusters, counted in its own transaction (row-level security shows one tenant at a time)."""
    counts = {}
    for tenant in await list_tenants(pool):
        async with tenant_transaction(pool, tenant.id) as db:
            counts[tenant] = await store.open_cluster_count(db)
    return counts
