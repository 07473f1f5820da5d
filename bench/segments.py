"""The vector segments' steps (migration 0013) as the benchmarks' loaders run them."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg


async def until_locked(db: asyncpg.Connection, statement: str, *arguments: Any) -> Any:
    """The value of a seal, build or swap, run until it gets its locks. Each waits at most 200 ms
    for a lock and gives up, as the embed service's keeper expects (it tries again at its next
    step); a loader has no next step, and right after it loads documents autovacuum holds them."""
    while True:
        try:
            return await db.fetchval(statement, *arguments)
        except asyncpg.LockNotAvailableError:
            await asyncio.sleep(0.2)
