"""Each tenant's connected StreamChat apps and Tavus callback tokens: what ingest checks deliveries with."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from shared.db import tenant_transaction
from shared.tenants import hash_secret


@dataclass(frozen=True)
class StreamChatApp:
    """A StreamChat app whose webhooks belong to `tenant_id`."""

    tenant_id: UUID
    api_secret: str
    paid_channel_types: tuple[str, ...]


async def add_streamchat_app(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    api_key: str,
    api_secret: str,
    paid_channel_types: tuple[str, ...] = (),
) -> None:
    """Route the webhooks of the StreamChat app `api_key` to `tenant_id`."""
    async with tenant_transaction(pool, tenant_id) as connection:
        await connection.execute(
            """
            INSERT INTO streamchat_apps (tenant_id, api_key, api_secret, paid_channel_types)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (api_key) DO UPDATE
                SET api_secret = excluded.api_secret, paid_channel_types = excluded.paid_channel_types
            """,
            tenant_id,
            api_key,
            api_secret,
            list(paid_channel_types),
        )


async def streamchat_app(pool: asyncpg.Pool, api_key: str) -> StreamChatApp | None:
    row = await pool.fetchrow("SELECT * FROM chorus_streamchat_app($1)", api_key)
    if row is None:
        return None
    return StreamChatApp(row["tenant_id"], row["api_secret"], tuple(row["paid_channel_types"]))


async def disconnect_streamchat_apps(pool: asyncpg.Pool, tenant_id: UUID, api_key: str | None = None) -> list[str]:
    """Stop routing the webhooks of the tenant's StreamChat app `api_key` (all its apps without
    it) and stop posting replies with it; returns the keys of the apps disconnected."""
    async with tenant_transaction(pool, tenant_id) as connection:
        rows = await connection.fetch(
            "DELETE FROM streamchat_apps WHERE tenant_id = $1 AND ($2::text IS NULL OR api_key = $2) RETURNING api_key",
            tenant_id,
            api_key,
        )
    return sorted(row["api_key"] for row in rows)


@dataclass(frozen=True)
class ConnectedApp:
    """The StreamChat app Chorus posts a tenant's replies with. Its secret signs the server token;
    the repr leaves it out, so a logged app shows no secret."""

    api_key: str
    api_secret: str = field(repr=False)


async def connected_app(pool: asyncpg.Pool, tenant_id: UUID) -> ConnectedApp | None:
    """The tenant's StreamChat app; of several, the one connected last."""
    async with tenant_transaction(pool, tenant_id) as connection:
        row = await connection.fetchrow(
            "SELECT api_key, api_secret FROM streamchat_apps WHERE tenant_id = $1 ORDER BY created_at DESC, api_key "
            "LIMIT 1",
            tenant_id,
        )
    return None if row is None else ConnectedApp(row["api_key"], row["api_secret"])


async def create_tavus_token(pool: asyncpg.Pool, tenant_id: UUID) -> str:
    """A new secret for `tenant_id`'s Tavus callback URL; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    async with tenant_transaction(pool, tenant_id) as connection:
        await connection.execute(
            "INSERT INTO tavus_tokens (tenant_id, token_hash) VALUES ($1, $2)",
            tenant_id,
            hash_secret(token),
        )
    return token


async def tenant_for_tavus_token(pool: asyncpg.Pool, token: str) -> UUID | None:
    tenant_id: UUID | None = await pool.fetchval("SELECT chorus_tenant_for_tavus_token($1)", hash_secret(token))
    return tenant_id


async def revoke_tavus_tokens(pool: asyncpg.Pool, tenant_id: UUID) -> int:
    """Forget every Tavus token of the tenant: callbacks with them are refused from now on; returns
    how many there were."""
    async with tenant_transaction(pool, tenant_id) as connection:
        rows = await connection.fetch("DELETE FROM tavus_tokens WHERE tenant_id = $1 RETURNING true", tenant_id)
    return len(rows)
