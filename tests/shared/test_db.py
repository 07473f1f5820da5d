"""tenant_transaction: its settings last one transaction, and a dropped connection fails as one."""

import asyncio

import asyncpg
import pytest

from shared import tenants
from shared.db import tenant_transaction
from shared.errors import TRANSIENT_ERRORS
from tests.conftest import Database


async def test_local_settings_last_one_transaction(pool: asyncpg.Pool) -> None:
    tenant_id = await tenants.create_tenant(pool, "acme")
    settings = {"hnsw.ef_search": 77, "hnsw.iterative_scan": "relaxed_order"}
    async with tenant_transaction(pool, tenant_id, settings) as db:
        assert await db.fetchval("SELECT current_setting('chorus.tenant_id')") == str(tenant_id)
        assert await db.fetchval("SHOW hnsw.ef_search") == "77"
        assert await db.fetchval("SHOW hnsw.iterative_scan") == "relaxed_order"
    async with tenant_transaction(pool, tenant_id) as db:
        assert await db.fetchval("SELECT current_setting('hnsw.ef_search', true)") != "77"


@pytest.mark.parametrize("settings", [{"hnsw.ef_search": "1; DROP TABLE documents"}, {"x = 1; RESET ALL; y": 1},
                                      {"search_path": "'public'"}])  # fmt: skip
async def test_a_setting_that_is_not_a_plain_name_and_value_is_refused(pool: asyncpg.Pool, settings: dict) -> None:
    tenant_id = await tenants.create_tenant(pool, "acme")
    with pytest.raises(ValueError, match="not a setting"):
        async with tenant_transaction(pool, tenant_id, settings):
            pass
    async with tenant_transaction(pool, tenant_id) as db:
        assert await db.fetchval("SELECT count(*) FROM documents") == 0


async def test_a_connection_postgres_drops_fails_with_a_transient_error(pool: asyncpg.Pool, database: Database) -> None:
    """The agents wait out transient errors and dead-letter others: a dropped connection must not
    surface as asyncpg's InternalClientError from resetting it (seen while Postgres restarted)."""
    tenant_id = await tenants.create_tenant(pool, "acme")
    admin = await asyncpg.connect(database.admin_url)
    try:
        for pause in (0.0, 0.05, 0.1, 0.2):  # between statements, and in the middle of one
            with pytest.raises(TRANSIENT_ERRORS):
                async with tenant_transaction(pool, tenant_id) as db:
                    pid = await db.fetchval("SELECT pg_backend_pid()")
                    terminate = asyncio.ensure_future(_terminate_after(admin, pid, pause))
                    await db.fetchval("SELECT pg_sleep(1)")
            await terminate
        async with tenant_transaction(pool, tenant_id) as db:
            assert await db.fetchval("SELECT current_setting('chorus.tenant_id')") == str(tenant_id)
    finally:
        await admin.close()


async def _terminate_after(admin: asyncpg.Connection, pid: int, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await admin.execute("SELECT pg_terminate_backend($1)", pid)


async def test_service_connections_end_stuck_statements_and_idle_transactions(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        assert await connection.fetchval("SHOW statement_timeout") == "1min"
        assert await connection.fetchval("SHOW idle_in_transaction_session_timeout") == "2min"
