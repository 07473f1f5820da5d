"""Upkeep of the vector segments (migration 0013): seal the growing one, index sealed ones in bulk, merge tiers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from shared.errors import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

# Any fixed number, the same in every embed replica: one of them keeps the segments.
SEGMENTS_LOCK = 0x73656773
# Migration 0013 made the table of 0001, with its index, partition 1 of this tier: it is never
# rebuilt, so that an existing database is not re-indexed.
KEPT_TIER = 100
# A seal waits at most 200 ms for its locks; this bounds a connection that stopped answering, which
# would otherwise hold up every swap.
SEAL_TIMEOUT_SECONDS = 30.0
# The most memory one build may take (Postgres's maintenance_work_mem; migration 0019 gives a build
# what its graph needs, up to this): a collapse of 1,400,000 vectors of 384 dimensions fits.
BUILD_MEMORY_MB = 3072

# The indexed partitions a collapse may take, with their tiers and rows (as of their last build or
# ANALYZE: near enough to weigh them); none while a build waits for its swap.
COLLAPSIBLE = """
SELECT p.name, p.tier, greatest(c.reltuples, 0)::bigint AS rows
FROM chorus_meta.vector_partitions p JOIN pg_class c ON c.oid = to_regclass(quote_ident(p.name))
WHERE p.state = 'indexed' AND p.tier < $1 AND NOT EXISTS (SELECT FROM chorus_meta.vector_builds)
"""


@dataclass(frozen=True)
class SegmentPolicy:
    """When the growing segment is sealed and when indexed partitions are merged."""

    seal_rows: int = 500
    # This many indexed partitions of one tier are merged into one of the next tier: a search
    # visits at most (merge_factor - 1) per tier, and there are log(rows / seal_rows) tiers.
    merge_factor: int = 4
    # Once the upkeep has had nothing to do for `collapse_after` seconds (the writes have slowed
    # down), every indexed partition is built into one if those beside the largest hold at least
    # `collapse_share` of its rows: a search then visits one index and the growing segment
    # instead of the four to eight of a burst's tiers (docs/embed.md, "A quiet store collapses to
    # one index"). A collapse rebuilds every row, so the share bounds how often: about
    # (1 + share) / share builds per vector.
    collapse_share: float = 0.25
    collapse_after: float = 30.0

    def tier_of(self, rows: int) -> int:
        """The tier whose partitions hold about `rows`: seal_rows x merge_factor ** tier <= rows."""
        tier = 0
        while self.seal_rows * self.merge_factor ** (tier + 1) <= rows:
            tier += 1
        return tier

    def to_collapse(self, rows: Mapping[str, int]) -> list[str]:
        """The partitions (name -> rows) to build into one now: all of them or none."""
        if len(rows) < 2:
            return []
        largest = max(rows.values())
        beside = sum(rows.values()) - largest
        return sorted(rows) if beside >= self.collapse_share * largest else []


class SegmentKeeper:
    """The maintenance of one database's vector partitions, done by whichever replica holds the lock.

    Every step is one transaction in Postgres (the SECURITY DEFINER functions of migration 0013),
    so a process killed at any point leaves a state the next holder goes on from: a sealed
    partition not indexed yet is indexed, a built partition not swapped in yet is swapped in.
    """

    def __init__(self, url: str, policy: SegmentPolicy, build_memory_mb: int = BUILD_MEMORY_MB) -> None:
        self.url = url
        self.policy = policy
        self.build_memory_mb = build_memory_mb
        self._connection: asyncpg.Connection | None = None
        self._leader = False
        # Seals and swaps, which lock the table and documents in opposite orders, never overlap;
        # a seal may overlap a build, which is what the sealer's own connection is for.
        self._seal_or_swap = asyncio.Lock()
        self._sealed = asyncio.Event()

    async def run(self, interval: float) -> None:
        """Keep the segments every `interval` seconds while this replica leads, until cancelled.
        Seals run on a connection of their own, so that the growing segment is sealed on time
        while a long build or collapse runs on the leader's."""
        sealing = asyncio.create_task(self._seal_while_leading(interval))
        quiet_since = time.monotonic()
        try:
            while True:
                if sealing.done():
                    sealing.result()  # the sealer's bug ends the upkeep, where it is seen
                try:
                    if await self._lead():
                        if await self._keep():
                            quiet_since = time.monotonic()
                        elif time.monotonic() - quiet_since >= self.policy.collapse_after:
                            quiet_since = time.monotonic()  # a collapse that fails waits as long again
                            await self._collapse_until_sealed()
                except TRANSIENT_ERRORS as error:
                    log.warning("vector segment upkeep failed; retrying", extra={"error": str(error)})
                    self.release()
                except asyncpg.PostgresError as error:
                    # A build that met a concurrent change (a document deleted while its rows were
                    # checked, a lock not granted in time) is simply tried again later.
                    log.warning("vector segment step gave up; retrying", extra={"error": str(error)})
                await asyncio.sleep(interval)
        finally:
            sealing.cancel()
            await asyncio.gather(sealing, return_exceptions=True)
            self.release()

    async def _collapse_until_sealed(self) -> None:
        """Collapse, and give it up if the growing segment is sealed meanwhile: writes are back, and
        the cores are theirs (the build's transaction is cancelled; a later quiet spell tries again)."""
        assert self._connection is not None, "a collapse runs on the leader's connection"
        backend = self._connection.get_server_pid()
        self._sealed.clear()
        collapsing = asyncio.create_task(self.collapse())
        sealed = asyncio.create_task(self._sealed.wait())
        try:
            await asyncio.wait({collapsing, sealed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sealed.cancel()
            given_up = not collapsing.done()
            if given_up:
                # Ended in Postgres, where a build would go on to its end whatever the client did,
                # holding the leader's advisory lock: nothing would seal meanwhile.
                await self._end_backend(backend)
                collapsing.cancel()
                await asyncio.gather(collapsing, return_exceptions=True)
                self.release()
        if given_up:
            log.info("vector segment collapse given up: writes came back")
        elif not collapsing.cancelled():
            collapsing.result()  # its error, if it failed

    async def _end_backend(self, backend: int) -> None:
        """End a session of the keeper's (its transaction rolls back, its advisory lock goes)."""
        connection = await asyncpg.connect(self.url, timeout=10)
        try:
            await connection.fetchval("SELECT pg_terminate_backend($1, 10000)", backend)
        finally:
            await connection.close()

    async def _seal_while_leading(self, interval: float) -> None:
        connection: asyncpg.Connection | None = None
        try:
            while True:
                await asyncio.sleep(interval)
                if not self._leader:
                    continue
                try:
                    if connection is None or connection.is_closed():
                        connection = await asyncpg.connect(self.url, timeout=10)
                    await self._seal(connection)
                except asyncpg.LockNotAvailableError:
                    pass  # writers and readers come first: sealed at a later check
                except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as error:
                    log.warning("sealing the growing vector segment failed; retrying", extra={"error": str(error)})
                    if connection is not None:
                        connection.terminate()
                        connection = None
        finally:
            if connection is not None:
                connection.terminate()

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

    async def _keep(self) -> bool:
        """Every step there is to do now; False when there was none."""
        did = False
        while (done := await self.step(seal=False)) is not None:
            did = True
            if "pending" in done:
                break
        return did

    async def step(self, db: asyncpg.Connection | None = None, seal: bool = True) -> str | None:
        """Do the first piece of work there is; returns what it did, None when there was none (or a
        swap has to wait for its lock: busy readers and writers come first). Sealing is left out
        when `seal` is false (`run` seals on a connection of its own)."""
        db = db or self._connection
        assert db is not None, "step runs on the leader's connection"
        built = await db.fetchval("SELECT name FROM chorus_meta.vector_builds ORDER BY built_at LIMIT 1")
        if built is not None:
            return f"swapped in {built}" if await self._swap(db, built) else None
        sealed = await self._seal(db) if seal else None
        if sealed is not None:
            return f"sealed {sealed}"
        partitions = await db.fetch(
            "SELECT name, state, tier FROM chorus_meta.vector_partitions WHERE state <> 'growing'"
        )
        waiting = sorted(row["name"] for row in partitions if row["state"] == "sealed")
        if waiting:
            # Everything sealed meanwhile is indexed together: one bulk build beats several.
            return await self.build(db, waiting, 0)
        tiers: dict[int, list[str]] = {}
        for row in partitions:
            tiers.setdefault(row["tier"], []).append(row["name"])
        for tier in sorted(tiers):
            if len(tiers[tier]) >= self.policy.merge_factor:
                return await self.build(db, sorted(tiers[tier])[: self.policy.merge_factor], tier + 1)
        return None

    async def collapse(self, db: asyncpg.Connection | None = None) -> str | None:
        """Build every indexed partition into one when the policy's share says so (the tier of the
        largest source); returns what it did, None when it did nothing."""
        db = db or self._connection
        assert db is not None, "a collapse runs on the leader's connection"
        partitions = await db.fetch(COLLAPSIBLE, KEPT_TIER)
        sources = self.policy.to_collapse({row["name"]: row["rows"] for row in partitions})
        if not sources:
            return None
        # A tier by its size, so that a burst's small partitions are not merged into a large one.
        tier = max(self.policy.tier_of(sum(row["rows"] for row in partitions)), *(row["tier"] for row in partitions))
        return await self.build(db, sources, tier)

    async def build(self, db: asyncpg.Connection, sources: list[str], tier: int) -> str:
        """Build `sources` into one partition of `tier` and swap it in; returns what it did."""
        async with db.transaction():
            await db.execute(f"SET LOCAL maintenance_work_mem = '{int(self.build_memory_mb)}MB'")
            built = await db.fetchval("SELECT chorus_vector_build($1::text[], $2::smallint)", sources, tier)
        log.info("vector partitions indexed", extra={"sources": sources, "built": built, "tier": tier})
        swapped = await self._swap(db, built)
        return f"built {built} from {', '.join(sources)}" + ("" if swapped else " (swap pending)")

    async def _seal(self, db: asyncpg.Connection) -> str | None:
        """Seal the growing segment if it is full; returns its name, None when it was not."""
        async with self._seal_or_swap:
            sealed: str | None = await db.fetchval(
                "SELECT chorus_vector_seal($1)", self.policy.seal_rows, timeout=SEAL_TIMEOUT_SECONDS
            )
        if sealed is not None:
            self._sealed.set()
        return sealed

    async def _swap(self, db: asyncpg.Connection, built: str) -> bool:
        """Swap a built partition in; False when the lock did not come soon enough (try again later)."""
        try:
            async with self._seal_or_swap:
                await db.execute("SELECT chorus_vector_swap($1)", built)
        except asyncpg.LockNotAvailableError:
            return False
        return True
