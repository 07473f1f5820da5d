"""Erasure tombstones: keyed hashes of what an erasure deleted, written by search and checked by ingest."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Literal
from uuid import UUID

import asyncpg

Kind = Literal["party", "message", "webhook", "conversation", "event"]

# Both sides take this lock in the transaction that erases or stores: an erasure waits for the
# deliveries being stored, and a delivery that starts during an erasure sees its tombstones.
_LOCK_KEY = "SELECT hashtextextended('chorus-erasure:' || $1::text, 0)"


def digest(key: bytes, kind: Kind, value: str) -> bytes:
    """HMAC-SHA256 of `value` under the tenant's erasure key; the kind keeps a message id from
    matching a conversation id that happens to be spelled the same."""
    message = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).digest()


def event_value(source: str, external_id: str) -> str:
    """What identifies a raw event: its external id is unique only within its source (JSON, so no
    separator inside either can make two events one)."""
    return json.dumps([source, external_id])


async def key_for_checking(db: asyncpg.Connection, tenant_id: UUID) -> bytes | None:
    """The tenant's erasure key (None: nothing was ever erased), after waiting out a running erasure."""
    await db.execute(f"SELECT pg_advisory_xact_lock_shared(({_LOCK_KEY}))", str(tenant_id))
    key: bytes | None = await db.fetchval("SELECT key FROM erasure_keys WHERE tenant_id = $1", tenant_id)
    return key


async def key_for_erasing(db: asyncpg.Connection, tenant_id: UUID) -> bytes:
    """The tenant's erasure key, made on first use, with the lock that holds deliveries back until commit."""
    await db.execute(f"SELECT pg_advisory_xact_lock(({_LOCK_KEY}))", str(tenant_id))
    await db.execute(
        "INSERT INTO erasure_keys (tenant_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        tenant_id,
        secrets.token_bytes(32),
    )
    key: bytes = await db.fetchval("SELECT key FROM erasure_keys WHERE tenant_id = $1", tenant_id)
    return key
