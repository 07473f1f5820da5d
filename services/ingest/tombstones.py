"""The ingest agents' check against erasure tombstones: erased data that comes again is dropped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg
from prometheus_client import Counter

from shared import tombstones
from shared.tombstones import Kind

ERASED_DROPPED = Counter(
    "chorus_ingest_erased_dropped_total",
    "Deliveries dropped because an erasure deleted what they carry, by agent and tombstone kind.",
    ["agent", "kind"],
)

Agent = Literal["streamchat", "tavus", "events"]
# A party is at most this long (the erasure request's bound): longer strings cannot name one.
MAX_PARTY_CHARS = 320
# Bounds the walk of a payload; ingest's body limit keeps real payloads far below it.
MAX_VALUES = 20_000


async def erased(
    db: asyncpg.Connection,
    tenant_id: UUID,
    agent: Agent,
    ids: Iterable[tuple[Kind, str | None]],
    payload: object,
    received_at: datetime,
) -> bool:
    """Whether the delivery carries erased data, counting it when it does.

    Its ids (message, webhook, conversation, event) match a tombstone whenever they come; a party
    tombstone matches a string anywhere in the payload only for what was received before that
    erasure (a replay from Kafka), so a fan who writes again after being erased is heard.
    """
    key = await tombstones.key_for_checking(db, tenant_id)
    if key is None:
        return False
    digests = [tombstones.digest(key, kind, value) for kind, value in ids if value]
    parties = [tombstones.digest(key, "party", value) for value in strings_of(payload)]
    kind: str | None = await db.fetchval(
        """
        SELECT kind FROM erasure_tombstones
        WHERE tenant_id = $1
          AND ((kind <> 'party' AND digest = ANY($2::bytea[]))
               OR (kind = 'party' AND digest = ANY($3::bytea[]) AND created_at >= $4))
        LIMIT 1
        """,
        tenant_id,
        digests,
        parties,
        received_at,
    )
    if kind is None:
        return False
    ERASED_DROPPED.labels(agent, kind).inc()
    return True


def strings_of(payload: object) -> set[str]:
    """Every string value in `payload`, nested objects and arrays included, that could be a party
    (the same values the erasure's SQL compares with the party)."""
    found: set[str] = set()
    stack = [payload]
    seen = 0
    while stack and seen < MAX_VALUES:
        value = stack.pop()
        seen += 1
        if isinstance(value, str):
            if len(value) <= MAX_PARTY_CHARS:
                found.add(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return found


@dataclass(frozen=True)
class Delivery:
    """What `erased_each` checks of one delivery: its ids, its payload and when it was received."""

    ids: Sequence[tuple[Kind, str | None]]
    payload: object
    received_at: datetime


async def erased_each(
    db: asyncpg.Connection, tenant_id: UUID, agent: Agent, deliveries: Sequence[Delivery]
) -> list[bool]:
    """`erased` for a fetch of deliveries with one query: whether each carries erased data."""
    key = await tombstones.key_for_checking(db, tenant_id)
    if key is None:
        return [False] * len(deliveries)
    wanted = [
        ({tombstones.digest(key, kind, value) for kind, value in delivery.ids if value},
         {tombstones.digest(key, "party", value) for value in strings_of(delivery.payload)})
        for delivery in deliveries
    ]  # fmt: skip
    rows = await db.fetch(
        "SELECT kind, digest, created_at FROM erasure_tombstones WHERE tenant_id = $1 AND digest = ANY($2::bytea[])",
        tenant_id,
        sorted(set().union(*(ids | parties for ids, parties in wanted))),
    )
    found = []
    for delivery, (ids, parties) in zip(deliveries, wanted, strict=True):
        kind = next((row["kind"] for row in rows if _matches(row, ids, parties, delivery.received_at)), None)
        if kind is not None:
            ERASED_DROPPED.labels(agent, kind).inc()
        found.append(kind is not None)
    return found


def _matches(row: asyncpg.Record, ids: set[bytes], parties: set[bytes], received_at: datetime) -> bool:
    """The rule of `erased`: an id whenever it comes, a party only in what came before its erasure."""
    if row["kind"] != "party":
        return bytes(row["digest"]) in ids
    return bytes(row["digest"]) in parties and row["created_at"] >= received_at
