"""Upkeep of the vector segments (migration 0013): seal the growing one, index sealed ones in bulk, merge tiers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

from shared.errors import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

# Any fixed number, the same in every embed replica: one of them keeps the segments.
SEGMENTS_LOCK = 0x73656773


@dataclass(frozen=True)
class SegmentPolicy:
    """When the growing segment is sealed and when indexed partitions are merged."""

    seal_rows: int = 2_000
    # This many indexed partitions of one tier are merged into one of the next tier: a search
    # visits at most (merge_factor - 1) per tier, and there are log(rows / seal_rows) tiers.
    merge_factor: int = 4


class SegmentKeeper:
    """The maintenance of one database's vector partitions, done by whichever replica holds the lock.

    Every step is one transaction in Postgres (the SECURITY DEFINER functions of migration 0013),
    so a process killed at any point leaves a state the next holder goes on from: a sealed
    partition not indexed yet is indexed, a built partition not swapped in yet is swapped in.
    """

    def __init__(self, url: str, policy: SegmentPolicy) -> None:
        self.url = url
        self.policy = policy
        self._connection: asyncpg.Connection | None = None
        self._leader = False

    async def run(self, interval: float) -> None:
        """Keep the segments every `interval` seconds while this replica leads, until cancelled."""
        try:
            while True:
                try:
                    if await self._lead():
                        while (done := await self.step()) and "pending" not in done:
                            pass
                except TRANSIENT_ERRORS as error:
                    log.warning("vector segment upkeep failed; retrying", extra={"error": str(error)})
                    self.release()
                except asyncpg.PostgresError as error:
                    # A build that met a concurrent change (a document deleted while its rows were
                    # checked, a lock not granted in time) is simply tried again later.
                    log.warning("vector segment step gave up; retrying", extra={"error": str(error)})
                await asyncio.sleep(interval)
        finally:
            self.release()

    async def _lead(self) -> bool:
        if self._connection is None or self._connection.is_closed():
            self._leader = False
            self._connection = await asyncpg.connect(self.url, timeout=10)
        if not self._leader:
            self._leader = bool(await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", SEGMENTS_LOCK))
        return self._leader

    def release(self) -> None:
        """End the session, which frees the lock for another replica."""
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None
        self._leader = False

    async def step(self, db: asyncpg.Connection | None = None) -> str | None:
        """Do the first piece of work there is; returns what it did, None when there was none (or a
        swap has to wait for its lock: busy readers and writers come first)."""
        db = db or self._connection
        assert db is not None, "step runs on the leader's connection"
        built = await db.fetchval("SELECT name FROM chorus_meta.vector_builds ORDER BY built_at LIMIT 1")
        if built is not None:
            return f"swapped in {built}" if await self._swap(db, built) else None
        sealed = await db.fetchval("SELECT chorus_vector_seal($1)", self.policy.seal_rows)
        if sealed is not None:
            return f"sealed {sealed}"
        partitions = await db.fetch(
            "SELECT name, state, tier FROM chorus_meta.vector_partitions WHERE state <> 'growing'"
        )
        waiting = sorted(row["name"] for row in partitions if row["state"] == "sealed")
        if waiting:
            # Everything sealed meanwhile is indexed together: one bulk build beats several.
            return await self._build(db, waiting, 0)
        tiers: dict[int, list[str]] = {}
        for row in partitions:
            tiers.setdefault(row["tier"], []).append(row["name"])
        for tier in sorted(tiers):
            if len(tiers[tier]) >= self.policy.merge_factor:
                return await self._build(db, sorted(tiers[tier])[: self.policy.merge_factor], tier + 1)
        return None

    async def _build(self, db: asyncpg.Connection, sources: list[str], tier: int) -> str:
        built = await db.fetchval("SELECT chorus_vector_build($1::text[], $2::smallint)", sources, tier)
        log.info("vector partitions indexed", extra={"sources": sources, "built": built, "tier": tier})
        swapped = await self._swap(db, built)
        return f"built {built} from {', '.join(sources)}" + ("" if swapped else " (swap pending)")

    async def _swap(self, db: asyncpg.Connection, built: str) -> bool:
        """Swap a built partition in; False when the lock did not come soon enough (try again later)."""
        try:
            await db.execute("SELECT chorus_vector_swap($1)", built)
        except asyncpg.LockNotAvailableError:
            return False
        return True
