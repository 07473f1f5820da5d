"""Tenants and their API keys."""

from __future__ import annotations

import hashlib
import secrets
from uuid import UUID

import asyncpg

from shared.db import tenant_transaction

API_KEY_PREFIX = "chorus_"


def hash_secret(secret: str) -> bytes:
    """The stored form of a key or token; a random secret of 256 bits needs no slow hash."""
    return hashlib.sha256(secret.encode()).digest()


async def create_tenant(pool: asyncpg.Pool, name: str) -> UUID:
    """Create the tenant `name`; fails with UniqueViolationError when it exists."""
    tenant_id: UUID = await pool.fetchval("SELECT chorus_create_tenant($1)", name)
    return tenant_id


async def find_tenant(pool: asyncpg.Pool, name: str) -> UUID | None:
    tenant_id: UUID | None = await pool.fetchval("SELECT chorus_find_tenant($1)", name)
    return tenant_id


async def create_api_key(pool: asyncpg.Pool, tenant_id: UUID, name: str = "") -> str:
    """A new API key for `tenant_id`; only its hash is stored, so this is the one time it is seen."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    async with tenant_transaction(pool, tenant_id) as connection:
        await connection.execute(
            "INSERT INTO api_keys (tenant_id, name, key_prefix, key_hash) VALUES ($1, $2, $3, $4)",
            tenant_id,
            name,
            key[: len(API_KEY_PREFIX) + 6],
            hash_secret(key),
        )
    return key


async def tenant_for_api_key(pool: asyncpg.Pool, key: str) -> UUID | None:
    tenant_id: UUID | None = await pool.fetchval("SELECT chorus_tenant_for_api_key($1)", hash_secret(key))
    return tenant_id


async def resolve_tenant(pool: asyncpg.Pool, name_or_id: str) -> UUID | None:
    """The id of the tenant named `name_or_id`, or with that id; None when there is none."""
    try:
        tenant_id = UUID(name_or_id)
    except ValueError:
        return await find_tenant(pool, name_or_id)
    async with tenant_transaction(pool, tenant_id) as connection:
        exists = await connection.fetchval("SELECT true FROM tenants WHERE id = $1", tenant_id)
    return tenant_id if exists else None


async def all_tenant_ids(pool: asyncpg.Pool) -> list[UUID]:
    return [row[0] for row in await pool.fetch("SELECT chorus_tenant_ids()")]
