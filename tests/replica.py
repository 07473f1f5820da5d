"""An embedded Postgres primary with a streaming replica of it, both on ports of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from launcher.stack.postgres import EmbeddedPostgres
from launcher.stack.processes import free_port

# Small: two servers share the test machine with everything else.
SHARED_BUFFERS = "64MB"


@dataclass(frozen=True)
class StreamingPair:
    primary: EmbeddedPostgres
    replica: EmbeddedPostgres


@contextmanager
def streaming_pair(folder: Path) -> Iterator[StreamingPair]:
    """Start a primary in `folder`, then a replica streaming from it; stop both on the way out."""
    primary = EmbeddedPostgres(folder / "primary" / "data", free_port(), SHARED_BUFFERS)
    replica = EmbeddedPostgres(folder / "replica" / "data", free_port(), SHARED_BUFFERS)
    primary.start()
    try:
        replica.replicate(primary)
        replica.start()
        try:
            yield StreamingPair(primary, replica)
        finally:
            replica.stop()
    finally:
        primary.stop()


async def caught_up(primary_url: str, replica_url: str, within: float = 30.0) -> None:
    """Wait until the replica has replayed all the WAL the primary had written when this was called."""
    primary = await asyncpg.connect(primary_url)
    replica = await asyncpg.connect(replica_url)
    try:
        written = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
        deadline = asyncio.get_running_loop().time() + within
        while not await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", written):
            assert asyncio.get_running_loop().time() < deadline, f"the replica did not replay up to {written}"
            await asyncio.sleep(0.05)
    finally:
        await primary.close()
        await replica.close()
