"""The vector segments' steps (migration 0013) as the benchmarks' loaders run them."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

# A loader gives up after this many tries, 0.2 s apart.
TRIES = 600


async def retry_while_locked(db: asyncpg.Connection, statement: str, *arguments: Any) -> Any:
    """The value of a seal or swap, tried again while a lock it needs is busy. Each waits a moment
    for its locks (its lock_timeout) and gives up, as the embed service's keeper expects: it tries
    again at its next step. A loader has no next step, and right after it loads documents
    autovacuum holds them for a while."""
    for _ in range(TRIES):
        try:
            return await db.fetchval(statement, *arguments)
        except asyncpg.LockNotAvailableError:
            await asyncio.sleep(0.2)
    raise SystemExit(f"{statement} did not get its locks in {TRIES * 0.2:.0f} s")


async def finish_swap(db: asyncpg.Connection, done: str) -> None:
    """Swap in the partition a keeper's build or collapse returned (`done`) if the keeper left its
    swap pending (readers held the table past its lock_timeout): the keeper would swap it at its
    next step, which a loader does not have."""
    if done.endswith("(swap pending)"):
        await retry_while_locked(db, "SELECT chorus_vector_swap($1)", done.split()[1])
