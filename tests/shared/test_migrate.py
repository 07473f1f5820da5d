import asyncpg
import pytest

from shared.migrate import MigrationError, migrate, shipped_migrations
from tests.conftest import Database, url_for

SCHEMA_SNAPSHOT = """
SELECT c.relname, c.relkind, c.relrowsecurity,
       coalesce(string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum), '')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname IN ('public', 'chorus_meta')
GROUP BY c.relname, c.relkind, c.relrowsecurity
ORDER BY c.relname
"""


async def _snapshot(url: str) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(SCHEMA_SNAPSHOT)
        migrations = await connection.fetch("SELECT version, checksum, applied_at FROM chorus_meta.schema_migrations")
        policies = await connection.fetch("SELECT tablename, policyname, qual FROM pg_policies ORDER BY 1, 2")
        return [tuple(row) for row in [*rows, *migrations, *policies]]
    finally:
        await connection.close()


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [migration.version for migration in shipped_migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_applying_migrations_twice_changes_nothing(database: Database) -> None:
    before = await _snapshot(database.admin_url)
    assert await migrate(database.admin_url, database.url) == []
    assert await _snapshot(database.admin_url) == before


async def test_a_fresh_database_gets_every_migration(postgres_admin_url: str) -> None:
    admin = await asyncpg.connect(postgres_admin_url)
    await admin.execute('CREATE DATABASE "chorus_fresh_migrate"')
    try:
        url = url_for(postgres_admin_url, "chorus_fresh_migrate")
        service_url = url_for(postgres_admin_url, "chorus_fresh_migrate", "chorus_fresh_app", "secret")
        applied = await migrate(url, service_url)
        assert applied == [migration.version for migration in shipped_migrations()]
        connection = await asyncpg.connect(url)
        try:
            extensions = {row[0] for row in await connection.fetch("SELECT extname FROM pg_extension")}
            index_methods = {
                row[0]
                for row in await connection.fetch(
                    "SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_am am ON am.oid = c.relam JOIN pg_class t ON t.oid = i.indrelid "
                    "WHERE t.relname IN ('documents', 'document_embeddings') OR t.relname LIKE 'document_embeddings_s%'"
                )
            }
            dimension = await connection.fetchval(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'document_embeddings'::regclass AND attname = 'embedding'"
            )
        finally:
            await connection.close()
        assert {"vector", "pg_trgm"} <= extensions
        assert {"hnsw", "gin", "btree"} <= index_methods
        assert dimension == "vector(384)"
    finally:
        await admin.execute('DROP DATABASE "chorus_fresh_migrate" WITH (FORCE)')
        await admin.close()


async def test_an_edited_applied_migration_is_refused(database: Database) -> None:
    connection = await asyncpg.connect(database.admin_url)
    try:
        await connection.execute("UPDATE chorus_meta.schema_migrations SET checksum = 'edited' WHERE version = 1")
    finally:
        await connection.close()
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        await migrate(database.admin_url, database.url)


async def test_the_services_may_not_use_the_owner_role(database: Database) -> None:
    with pytest.raises(MigrationError, match="role of its own"):
        await migrate(database.admin_url, database.admin_url)
