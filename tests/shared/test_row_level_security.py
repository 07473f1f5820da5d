import json
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from services.ingest import credentials
from shared import tenants
from shared.db import tenant_transaction
from tests.conftest import Database

TENANT_TABLES = """
SELECT c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""


async def _seed(pool: asyncpg.Pool, tenant_id: UUID, label: str) -> None:
    """One row in every tenant table, so that each can be checked for leaks."""
    await tenants.create_api_key(pool, tenant_id, label)
    await credentials.add_streamchat_app(pool, tenant_id, f"app-{label}", "secret")
    await credentials.create_tavus_token(pool, tenant_id)
    async with tenant_transaction(pool, tenant_id) as db:
        document = await db.fetchval(
            "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
            "VALUES ($1, 'slack', 'event', $2, $3, '\\x01') RETURNING id",
            tenant_id,
            f"doc-{label}",
            f"shared words about the launch from {label}",
        )
        await db.execute(
            "INSERT INTO document_embeddings (document_id, tenant_id, model, dimensions, content_hash, embedding) "
            "VALUES ($1, $2, 'm', 384, '\\x01', $3)",
            document,
            tenant_id,
            [0.1] * 384,
        )
        raw_event = await db.fetchval(
            "INSERT INTO raw_events (tenant_id, source, event_type, external_id, content_hash) "
            "VALUES ($1, 'slack', 'message', $2, '\\x01') RETURNING id",
            tenant_id,
            f"event-{label}",
        )
        await db.execute(
            "INSERT INTO document_references (tenant_id, document_id, raw_event_id) VALUES ($1, $2, $3)",
            tenant_id,
            document,
            raw_event,
        )
        message = await db.fetchval(
            "INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, direction, "
            "message_created_at) VALUES ($1, $2, 'creator', 'messaging:dm', 'inbound', now()) RETURNING id",
            tenant_id,
            f"message-{label}",
        )
        await db.execute(
            "INSERT INTO streamchat_deliveries (tenant_id, webhook_id) VALUES ($1, $2)",
            tenant_id,
            f"hook-{label}",
        )
        cluster = await db.fetchval(
            "INSERT INTO clusters (tenant_id, creator_id, size) VALUES ($1, 'creator', 1) RETURNING id",
            tenant_id,
        )
        await db.execute(
            # Its words make the rows of cluster_terms, creator_terms and cluster_labels (their triggers).
            "INSERT INTO cluster_members (tenant_id, cluster_id, message_id, channel_cid, embedding, content_hash, "
            "message_created_at, words) "
            "VALUES ($1, $2, $3, 'messaging:dm', array_fill(0.1, ARRAY[384])::vector, '\\x00', now(), '{launch}')",
            tenant_id,
            cluster,
            message,
        )
        await db.execute(
            "INSERT INTO reply_deliveries (tenant_id, cluster_id, channel_cid, message_id) "
            "VALUES ($1, $2, 'messaging:dm', $3)",
            tenant_id,
            cluster,
            f"reply-{label}",
        )
        await db.execute(
            "INSERT INTO tavus_conversations (tenant_id, conversation_id) VALUES ($1, 'c1')",
            tenant_id,
        )
        await db.execute(
            "INSERT INTO tavus_messages (tenant_id, conversation_id, turn_index, role, content) "
            "VALUES ($1, 'c1', 0, 'user', 'hello')",
            tenant_id,
        )
        await db.execute(
            "INSERT INTO tavus_webhook_events (tenant_id, event_hash, conversation_id, event_type, payload) "
            "VALUES ($1, '\\x02', 'c1', 'system.shutdown', '{}')",
            tenant_id,
        )
        await db.execute("INSERT INTO privacy_requests (tenant_id, party) VALUES ($1, 'fan')", tenant_id)
        await db.execute("INSERT INTO erasure_keys (tenant_id, key) VALUES ($1, $2)", tenant_id, bytes(32))
        await db.execute(
            "INSERT INTO erasure_tombstones (tenant_id, kind, digest) VALUES ($1, 'party', '\\x03')", tenant_id
        )


@pytest.fixture
async def two_tenants(pool: asyncpg.Pool) -> tuple[UUID, UUID]:
    tenant_a = await tenants.create_tenant(pool, "tenant-a")
    tenant_b = await tenants.create_tenant(pool, "tenant-b")
    await _seed(pool, tenant_a, "a")
    await _seed(pool, tenant_b, "b")
    return tenant_a, tenant_b


async def test_every_table_is_tenant_scoped(database: Database) -> None:
    connection = await asyncpg.connect(database.admin_url)
    try:
        rows = await connection.fetch(
            "SELECT c.relname, c.relrowsecurity, "
            "EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id') "
            "OR c.relname = 'tenants' AS has_tenant, "
            "EXISTS (SELECT FROM pg_policies p WHERE p.tablename = c.relname) AS has_policy "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    finally:
        await connection.close()
    assert rows
    unscoped = [
        row["relname"] for row in rows if not (row["relrowsecurity"] and row["has_tenant"] and row["has_policy"])
    ]
    assert unscoped == []


async def test_every_policy_reads_the_tenant_once_per_query(database: Database) -> None:
    """The form of migration 0017, which also keeps the planner from estimating a tenant it has no
    statistics of at one row (the test below)."""
    connection = await asyncpg.connect(database.admin_url)
    try:
        tables = [row["relname"] for row in await connection.fetch(TENANT_TABLES)]
        policies = await connection.fetch(
            "SELECT tablename, qual, with_check FROM pg_policies WHERE tablename = ANY($1::text[])", tables
        )
    finally:
        await connection.close()
    assert {row["tablename"] for row in policies} == set(tables)
    once = "( SELECT chorus_current_tenant() AS chorus_current_tenant)"
    assert [row["tablename"] for row in policies if once not in row["qual"] or once not in row["with_check"]] == []


async def test_a_tenant_reads_none_of_another_tenants_rows(pool: asyncpg.Pool, two_tenants: tuple[UUID, UUID]) -> None:
    tenant_a, tenant_b = two_tenants
    async with pool.acquire() as connection:
        tables = [row["relname"] for row in await connection.fetch(TENANT_TABLES)]
    for table in tables:
        column = "id" if table == "tenants" else "tenant_id"
        async with tenant_transaction(pool, tenant_a) as db:
            own = await db.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", tenant_a)
            other = await db.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", tenant_b)
            everything = await db.fetchval(f"SELECT count(*) FROM {table}")
        assert (table, own > 0, other, everything) == (table, True, 0, own)


async def test_without_a_tenant_nothing_is_visible(pool: asyncpg.Pool, two_tenants: tuple[UUID, UUID]) -> None:
    async with pool.acquire() as connection:
        tables = [row["relname"] for row in await connection.fetch(TENANT_TABLES)]
        counts = {table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in tables}
    assert counts == dict.fromkeys(tables, 0)


async def test_a_tenant_cannot_write_another_tenants_rows(pool: asyncpg.Pool, two_tenants: tuple[UUID, UUID]) -> None:
    tenant_a, tenant_b = two_tenants
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(pool, tenant_a) as db:
            await db.execute(
                "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
                "VALUES ($1, 'slack', 'event', 'forged', 'forged', '\\x03')",
                tenant_b,
            )
    async with tenant_transaction(pool, tenant_a) as db:
        changed = await db.execute("UPDATE documents SET text = 'overwritten' WHERE tenant_id = $1", tenant_b)
        deleted = await db.execute("DELETE FROM clusters WHERE tenant_id = $1", tenant_b)
    assert (changed, deleted) == ("UPDATE 0", "DELETE 0")


async def test_the_services_role_cannot_bypass_row_level_security(
    pool: asyncpg.Pool, database: Database, two_tenants: tuple[UUID, UUID]
) -> None:
    async with pool.acquire() as connection:
        role = await connection.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert (role["rolsuper"], role["rolbypassrls"]) == (False, False)
        owns = await connection.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_has_role(current_user, c.relowner, 'USAGE')"
        )
        assert owns == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("ALTER TABLE documents DISABLE ROW LEVEL SECURITY")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DROP POLICY tenant_isolation ON documents")
        owner = await connection.fetchval("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'documents'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute(f'SET ROLE "{owner}"')
        await connection.execute("SET row_security = off")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await connection.fetchval("SELECT count(*) FROM documents")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.fetchval("SELECT count(*) FROM chorus_meta.schema_migrations")


async def _add_documents(pool: asyncpg.Pool, tenant_id: UUID, count: int) -> list[UUID]:
    async with tenant_transaction(pool, tenant_id) as db:
        rows = await db.fetch(
            "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
            "SELECT $1, 'slack', 'event', 'doc-' || n, 'text ' || n, '\\x01' FROM generate_series(1, $2) AS n "
            "RETURNING id",
            tenant_id,
            count,
        )
    return [row["id"] for row in rows]


async def test_a_tenant_the_statistics_do_not_know_is_read_by_primary_key(
    database: Database, pool: asyncpg.Pool
) -> None:
    """A tenant's first import happens before autovacuum analyzes its rows: its lookups by id must
    not be planned as if the tenant had no documents (migration 0017)."""
    known = await tenants.create_tenant(pool, "known")
    await _add_documents(pool, known, 3000)
    admin = await asyncpg.connect(database.admin_url)
    try:
        await admin.execute("ANALYZE documents")
    finally:
        await admin.close()
    newcomer = await tenants.create_tenant(pool, "newcomer")
    ids = await _add_documents(pool, newcomer, 3000)
    async with tenant_transaction(pool, newcomer) as db:
        plan = await db.fetchval("EXPLAIN (FORMAT JSON) SELECT id FROM documents WHERE id = ANY($1::uuid[])", ids[:128])
        found = await db.fetchval("SELECT count(*) FROM documents WHERE id = ANY($1::uuid[])", ids[:128])
    indexes = {node["Index Name"] for node in _plan_nodes(json.loads(plan)[0]["Plan"]) if "Index Name" in node}
    assert indexes == {"documents_pkey"}
    assert found == 128


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(child for plan in node.get("Plans", []) for child in _plan_nodes(plan))]
