"""How far search's read replica lags behind the primary, as metrics."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import Gauge

from shared.errors import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

LAG_BYTES = Gauge(
    "chorus_search_replica_lag_bytes",
    "WAL the primary has written that search's read replica has not replayed yet (0: caught up).",
)
LAG_SECONDS = Gauge(
    "chorus_search_replica_lag_seconds",
    "Age of the last transaction search's read replica replayed, while it has WAL left to replay "
    "(0: caught up; an upper bound after the primary sat idle).",
)

# The primary's position is read first, then compared on the replica: a lag of 0 means every
# transaction committed before the check is visible to search.
REPLAY_POSITION = """
SELECT pg_is_in_recovery() AS standby,
       greatest(pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn()), 0)::float8 AS behind,
       coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 AS age
"""


async def replica_lag(primary: asyncpg.Pool, replica: asyncpg.Pool) -> tuple[float, float]:
    """(bytes, seconds) the replica is behind the primary; (0, 0) when caught up.

    pg_last_xact_replay_timestamp() alone stays old while the primary is idle, so the seconds count
    only while the replica has WAL left to replay, by LSN comparison.
    """
    written = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
    row = await replica.fetchrow(REPLAY_POSITION, written)
    assert row is not None
    if not row["standby"] or row["behind"] == 0:
        # Not a standby (the URL names the primary, or a promoted replica): nothing to lag behind.
        return 0.0, 0.0
    return float(row["behind"]), max(float(row["age"]), 0.0)


async def export_replica_lag(primary: asyncpg.Pool, replica: asyncpg.Pool, every_seconds: float = 5.0) -> None:
    """Keep the replica-lag gauges current for the life of the service."""
    while True:
        try:
            behind, age = await replica_lag(primary, replica)
            LAG_BYTES.set(behind)
            LAG_SECONDS.set(age)
        except TRANSIENT_ERRORS as error:
            log.warning("could not measure the replica's lag", extra={"error": repr(error)})
        await asyncio.sleep(every_seconds)
