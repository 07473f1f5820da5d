"""A streaming replica of the embedded Postgres: it replays what the primary writes and refuses writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.replica import StreamingPair, caught_up, streaming_pair


@pytest.fixture
def pair(tmp_path: Path, process_watchdog: None) -> Iterator[StreamingPair]:
    with streaming_pair(tmp_path) as started:
        yield started


async def test_the_replica_streams_what_the_primary_writes(pair: StreamingPair) -> None:
    primary = await asyncpg.connect(pair.primary.admin_url())
    replica = await asyncpg.connect(pair.replica.admin_url())
    try:
        assert await replica.fetchval("SELECT pg_is_in_recovery()") is True
        # Written after the base backup: only streaming brings it over.
        await primary.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        await primary.executemany("INSERT INTO notes VALUES ($1, $2)", [(n, f"note {n}") for n in range(100)])
        await caught_up(pair.primary.admin_url(), pair.replica.admin_url())
        assert await primary.fetchval("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1
        assert await replica.fetch("SELECT * FROM notes ORDER BY id") == await primary.fetch(
            "SELECT * FROM notes ORDER BY id"
        )
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await replica.execute("INSERT INTO notes VALUES (100, 'refused')")
    finally:
        await primary.close()
        await replica.close()
