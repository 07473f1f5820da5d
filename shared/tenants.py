"""Tenants and their API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
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
    """The tenant of `key`; None for an unknown or revoked key. Records the key's last use (at most
    once a minute), so call it when a cache misses rather than on every request."""
    tenant_id: UUID | None = await pool.fetchval("SELECT chorus_tenant_for_api_key($1)", hash_secret(key))
    return tenant_id


@dataclass(frozen=True)
class Tenant:
    id: UUID
    name: str
    created_at: datetime


async def list_tenants(pool: asyncpg.Pool) -> list[Tenant]:
    """Every tenant, by name."""
    rows = await pool.fetch("SELECT id, name, created_at FROM chorus_tenants()")
    return [Tenant(row["id"], row["name"], row["created_at"]) for row in rows]


@dataclass(frozen=True)
class ApiKey:
    """What may be shown of an API key: its id and first characters, never the key."""

    id: UUID
    tenant_id: UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_API_KEY_COLUMNS = "id, tenant_id, name, key_prefix, created_at, last_used_at, revoked_at"


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        row["id"], row["tenant_id"], row["name"], row["key_prefix"], row["created_at"], row["last_used_at"],
        row["revoked_at"],
    )  # fmt: skip


async def list_api_keys(pool: asyncpg.Pool, tenant_id: UUID) -> list[ApiKey]:
    """The tenant's keys, revoked ones included, oldest first."""
    async with tenant_transaction(pool, tenant_id) as connection:
        rows = await connection.fetch(
            f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id", tenant_id
        )
    return [_api_key(row) for row in rows]


async def revoke_api_key(pool: asyncpg.Pool, key_or_id: str) -> tuple[ApiKey, bool] | None:
    """Revoke the key named by its id or by the whole key; None when neither names one. The flag
    is False when the key was revoked before. Services stop accepting it once their key cache
    forgets it (CHORUS_KEY_CACHE_SECONDS)."""
    try:
        key_id: UUID | None = UUID(key_or_id)
    except ValueError:
        key_id = None
    owner = await pool.fetchrow(
        "SELECT id, tenant_id FROM chorus_api_key_owner($1, $2)", key_id, hash_secret(key_or_id)
    )
    if owner is None:
        return None
    async with tenant_transaction(pool, owner["tenant_id"]) as connection:
        revoked_now = await connection.fetchval(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING true", owner["id"]
        )
        row = await connection.fetchrow(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE id = $1", owner["id"])
    return _api_key(row), bool(revoked_now)


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
