"""Each tenant's connected StreamChat apps and Tavus callback tokens: what ingest checks deliveries with."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
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
