"""Postgres connections: one pool per service, every query inside a tenant's transaction."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
from pgvector.asyncpg import register_vector

TENANT_SETTING = "chorus.tenant_id"


async def _init_connection(connection: asyncpg.Connection) -> None:
    await register_vector(connection)
    await connection.set_type_codec("jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_loads(text: str) -> Any:
    return json.loads(text)


# A statement or an open transaction of a service never holds locks and a connection for long: a
# stuck query or a client that died mid-transaction is ended by Postgres.
SESSION_LIMITS = {"statement_timeout": "60s", "idle_in_transaction_session_timeout": "120s"}


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections know the vector and jsonb types, under SESSION_LIMITS."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, server_settings=SESSION_LIMITS
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def tenant_transaction(
    pool: asyncpg.Pool, tenant_id: UUID | str, local_settings: Mapping[str, str | int] | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in which row-level security shows only `tenant_id`'s rows.

    BEGIN, the tenant and any `local_settings` (SET LOCAL name = value, for this transaction only)
    leave in one round trip: a search request's fixed cost is mostly round trips.
    """
    begin = f"BEGIN; {_set_tenant_statement(tenant_id)}"
    for name, value in (local_settings or {}).items():
        if not _SETTING_NAME.fullmatch(name) or not _SETTING_VALUE.fullmatch(str(value)):
            raise ValueError(f"not a setting this function may set: {name} = {value!r}")
        begin += f" SET LOCAL {name} = {value};"
    async with pool.acquire() as connection:
        await connection.execute(begin)
        try:
            yield connection
        except BaseException:
            try:
                await connection.execute("ROLLBACK")
            except Exception:
                # A broken connection: closed now, the pool drops it instead of resetting it,
                # which would fail too and hide the error that broke it.
                connection.terminate()
            raise
        await connection.execute("COMMIT")


# What tenant_transaction's local settings may be: names and plain words or numbers, never SQL.
_SETTING_NAME = re.compile(r"[a-z_]+(\.[a-z_]+)?")
_SETTING_VALUE = re.compile(r"[A-Za-z0-9_.]+")


async def set_tenant(connection: asyncpg.Connection, tenant_id: UUID | str) -> None:
    """Scope the current transaction to `tenant_id`; it ends with the transaction."""
    await connection.execute(_set_tenant_statement(tenant_id))


def _set_tenant_statement(tenant_id: UUID | str) -> str:
    """SQL text that sets the tenant for the transaction; the id is parsed as a UUID first, so
    nothing but a UUID can reach the statement."""
    return f"SELECT set_config('{TENANT_SETTING}', '{UUID(str(tenant_id))}', true);"


async def database_answers(pool: asyncpg.Pool, within: float = 3.0) -> bool:
    """True when Postgres answers a trivial query within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            return await pool.fetchval("SELECT true") is True
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
