"""Vector segments (migration 0013): a vector is found the moment it commits, while segments are
sealed, indexed and merged; deletes reach every segment; an interrupted build is finished or gone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np
import pytest
from pgvector import Vector

from bench.segments import retry_while_locked
from services.embed import store
from services.embed.segments import SegmentKeeper, SegmentPolicy
from services.search import queries
from shared import tenants
from shared.db import tenant_transaction
from tests.conftest import Database

MODEL = "test-model"
DIMENSIONS = 384


def _vectors(count: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((count, DIMENSIONS)).astype(np.float32)
    normed: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return normed


async def _write(pool: asyncpg.Pool, tenant_id: UUID, vectors: np.ndarray, start: int) -> list[UUID]:
    """Documents numbered from `start` with these vectors, the way the embed service stores them."""
    async with tenant_transaction(pool, tenant_id) as db:
        ids = await _documents(db, tenant_id, start, len(vectors))
        hashes = [(start + n).to_bytes(4, "big") for n in range(len(vectors))]
        rows = [
            store.VectorRow(id_, 0, hash_, vector, False)
            for id_, hash_, vector in zip(ids, hashes, vectors, strict=True)
        ]
        await store.write_vectors(db, rows, MODEL, DIMENSIONS)
    return ids


async def _documents(db: asyncpg.Connection, tenant_id: UUID, start: int, count: int) -> list[UUID]:
    """Documents numbered from `start`, each text's hash its number."""
    return [
        await db.fetchval(
            "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
            "VALUES ($1, 'test', 'text', $2, $2, $3) RETURNING id",
            tenant_id,
            f"doc-{start + n}",
            (start + n).to_bytes(4, "big"),
        )
        for n in range(count)
    ]


async def _nearest(pool: asyncpg.Pool, tenant_id: UUID, vector: np.ndarray, limit: int = 5) -> list[UUID]:
    async with tenant_transaction(pool, tenant_id, queries.semantic_settings(100)) as db:
        hits = await queries.semantic(db, vector, MODEL, queries.Filters(), limit, None, queries.ID_ONLY)
    return [hit.row["id"] for hit in hits]


async def _partitions(db: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT name, state FROM chorus_meta.vector_partitions")
    return [(row["name"], row["state"]) for row in rows]


async def _settle(keeper: SegmentKeeper, db: asyncpg.Connection) -> list[str]:
    done = []
    while (action := await keeper.step(db)) is not None:
        done.append(action)
        if "pending" in action:
            break
    return done


@pytest.fixture
async def tenant_id(pool: asyncpg.Pool) -> UUID:
    return await tenants.create_tenant(pool, "segments")


@pytest.fixture
async def upkeep(database: Database) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the services' role, as the embed service's keeper has."""
    connection = await asyncpg.connect(database.url)
    yield connection
    await connection.close()


async def test_vectors_are_found_as_they_commit_while_segments_are_sealed_indexed_and_merged(
    pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection
) -> None:
    keeper = SegmentKeeper("unused", SegmentPolicy(seal_rows=150, merge_factor=2))
    vectors = _vectors(1_200, seed=1)
    stop = asyncio.Event()
    actions: list[str] = []

    async def keep() -> None:
        while not stop.is_set():
            actions.extend(await _settle(keeper, upkeep))
            await asyncio.sleep(0.01)

    keeping = asyncio.create_task(keep())
    ids: list[UUID] = []
    try:
        for start in range(0, len(vectors), 64):
            batch = vectors[start : start + 64]
            ids += await _write(pool, tenant_id, batch, start)
            if start == 128:
                # A redelivered batch: its vectors replace themselves, in whichever segment they are.
                rows = [
                    store.VectorRow(ids[start + n], 0, (start + n).to_bytes(4, "big"), batch[n], False)
                    for n in range(len(batch))
                ]
                async with tenant_transaction(pool, tenant_id) as db:
                    await store.write_vectors(db, rows, MODEL, DIMENSIONS)
                    await store.write_vectors(db, rows, MODEL, DIMENSIONS)
            # Each vector of the batch is its own nearest neighbour from the commit on.
            for offset in (0, len(batch) - 1):
                assert (await _nearest(pool, tenant_id, batch[offset]))[0] == ids[start + offset]
    finally:
        stop.set()
        await keeping
    actions += await _settle(keeper, upkeep)
    assert any(action.startswith("sealed") for action in actions)
    assert any(" from " in action and "," in action for action in actions), "no merge happened"
    async with tenant_transaction(pool, tenant_id) as db:
        assert await db.fetchval("SELECT count(*) FROM document_embeddings") == len(vectors)
        assert await db.fetchval("SELECT count(DISTINCT document_id) FROM document_embeddings") == len(vectors)
    partitions = await _partitions(upkeep)
    assert [state for _, state in partitions].count("growing") == 1
    # Merged in tiers of two: 1,200 rows in partitions of 150 leave at most one per tier.
    assert len(partitions) <= 6, partitions
    for number in range(0, len(vectors), 97):
        assert (await _nearest(pool, tenant_id, vectors[number]))[0] == ids[number]


async def test_deletes_and_new_vectors_reach_sealed_segments_also_during_a_build(
    pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection
) -> None:
    keeper = SegmentKeeper("unused", SegmentPolicy(seal_rows=100, merge_factor=8))
    vectors = _vectors(300, seed=2)
    ids = await _write(pool, tenant_id, vectors, 0)
    assert await keeper.step(upkeep) == "sealed document_embeddings_s2"
    sealed = [name for name, state in await _partitions(upkeep) if state == "sealed"]
    built = await upkeep.fetchval("SELECT chorus_vector_build($1::text[], 0::smallint)", sealed)
    # Between the build's copy and its swap: a document erased, one deleted the way ingest
    # drops a stale vector, one given a new vector.
    async with tenant_transaction(pool, tenant_id) as db:
        await db.execute("DELETE FROM documents WHERE id = $1", ids[0])
        await db.execute("DELETE FROM document_embeddings WHERE document_id = $1", ids[1])
        await store.write_vectors(
            db, [store.VectorRow(ids[2], 0, (2).to_bytes(4, "big"), vectors[3], False)], MODEL, DIMENSIONS
        )
    await upkeep.execute("SELECT chorus_vector_swap($1)", built)
    assert (built, "indexed") in await _partitions(upkeep)
    async with tenant_transaction(pool, tenant_id) as db:
        counts = await db.fetch("SELECT document_id, count(*) FROM document_embeddings GROUP BY 1")
    stored = {row[0]: row[1] for row in counts}
    assert ids[0] not in stored and ids[1] not in stored and stored[ids[2]] == 1
    assert ids[0] not in await _nearest(pool, tenant_id, vectors[0])
    assert ids[1] not in await _nearest(pool, tenant_id, vectors[1])
    assert set((await _nearest(pool, tenant_id, vectors[3]))[:2]) == {ids[2], ids[3]}
    # A delete after the swap reaches the indexed partition.
    async with tenant_transaction(pool, tenant_id) as db:
        assert await db.execute("DELETE FROM document_embeddings WHERE document_id = $1", ids[4]) == "DELETE 1"
    assert ids[4] not in await _nearest(pool, tenant_id, vectors[4])


async def test_a_build_sizes_its_graph_and_memory_by_its_vectors(
    pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection
) -> None:
    """Migration 0019: more than chorus.wide_graph_vectors (150,000 unless set) get the wider graph;
    maintenance_work_mem for the index is the graph's size (each vector and 640 bytes, 768 in the
    wide graph, plus 16 MB), at most the caller's setting and never capped below 512 MB."""

    async def build(start: int, session: dict[str, str]) -> tuple[int, str]:
        """(kB of maintenance_work_mem the build took, the index's definition) for 1,000 new vectors."""
        await _write(pool, tenant_id, _vectors(1000, seed=start), start)
        sealed = await retry_while_locked(upkeep, "SELECT chorus_vector_seal(0)")
        async with upkeep.transaction():
            for name, value in session.items():
                await upkeep.execute("SELECT set_config($1, $2, true)", name, value)
            built = await upkeep.fetchval("SELECT chorus_vector_build($1::text[], 0::smallint)", [sealed])
            used = await upkeep.fetchval("SELECT pg_size_bytes(current_setting('maintenance_work_mem')) / 1024")
        await upkeep.execute("SELECT chorus_vector_swap($1)", built)
        definition = await upkeep.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", f"{built}_hnsw")
        return int(used), str(definition)

    vector_bytes = 4 * DIMENSIONS + 8
    used, definition = await build(0, {"maintenance_work_mem": "3GB"})
    assert used == 1000 * (vector_bytes + 640) // 1024 + 16384
    assert "m='12', ef_construction='40'" in definition
    # A session's 1 MB does not starve a build: 512 MB is the least it may take.
    used, definition = await build(1000, {"maintenance_work_mem": "1MB", "chorus.wide_graph_vectors": "999"})
    assert used == 1000 * (vector_bytes + 768) // 1024 + 16384
    assert "m='16', ef_construction='128'" in definition


async def test_a_build_cut_short_leaves_nothing_and_a_finished_one_is_swapped_in_by_the_next_keeper(
    pool: asyncpg.Pool, tenant_id: UUID, database: Database, upkeep: asyncpg.Connection
) -> None:
    keeper = SegmentKeeper("unused", SegmentPolicy(seal_rows=500, merge_factor=8))
    vectors = _vectors(1_500, seed=3)
    ids = await _write(pool, tenant_id, vectors, 0)
    await keeper.step(upkeep)
    sealed = [name for name, state in await _partitions(upkeep) if state == "sealed"]
    # A keeper killed in the middle of a build: its rows are copied and indexed, and it waits for
    # a lock on documents (held here) when its backend is ended.
    admin = await asyncpg.connect(database.admin_url)
    doomed = await asyncpg.connect(database.url)
    try:
        pid = await doomed.fetchval("SELECT pg_backend_pid()")
        await admin.execute("BEGIN; LOCK TABLE documents IN SHARE MODE")
        building = asyncio.create_task(doomed.execute("SELECT chorus_vector_build($1::text[], 0::smallint)", sealed))
        for _ in range(400):
            if await admin.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.005)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await admin.execute("ROLLBACK")
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await building
        leftovers = await admin.fetchval(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'document_embeddings_s%' AND relkind = 'r' "
            "AND relname NOT IN (SELECT name FROM chorus_meta.vector_partitions)"
        )
        assert leftovers == 0 and await admin.fetchval("SELECT count(*) FROM chorus_meta.vector_builds") == 0
    finally:
        await admin.close()
        doomed.terminate()
    # A keeper killed after a build committed and before its swap: the next one swaps it in.
    built = await upkeep.fetchval("SELECT chorus_vector_build($1::text[], 0::smallint)", sealed)
    async with tenant_transaction(pool, tenant_id) as db:
        assert await db.fetchval("SELECT count(*) FROM document_embeddings") == len(vectors)
    assert await SegmentKeeper("unused", keeper.policy).step(upkeep) == f"swapped in {built}"
    assert await _settle(keeper, upkeep) == []
    assert (built, "indexed") in await _partitions(upkeep)
    assert (await _nearest(pool, tenant_id, vectors[7]))[0] == ids[7]


def test_a_collapse_takes_every_partition_once_those_beside_the_largest_hold_the_share_and_tiers_by_size() -> None:
    policy = SegmentPolicy(collapse_share=0.25)
    assert policy.to_collapse({"big": 8_000, "small": 1_999}) == []
    assert policy.to_collapse({"small": 1_000, "big": 8_000, "other": 1_000}) == ["big", "other", "small"]
    assert policy.to_collapse({"alone": 8_000}) == []
    tiers = SegmentPolicy(seal_rows=500, merge_factor=4)
    sizes = (0, 499, 2_000, 31_999, 32_000, 100_000, 1_000_000)
    assert [tiers.tier_of(rows) for rows in sizes] == [0, 0, 1, 2, 3, 3, 5]


async def _indexed(db: asyncpg.Connection) -> list[str]:
    """The indexed partitions a collapse may take (not the table of migration 0001)."""
    rows = await db.fetch("SELECT name FROM chorus_meta.vector_partitions WHERE state = 'indexed' AND tier < 100")
    return sorted(row["name"] for row in rows)


async def test_a_collapse_builds_the_indexed_segments_into_one_once_the_small_ones_hold_the_share(
    pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection
) -> None:
    keeper = SegmentKeeper("unused", SegmentPolicy(seal_rows=100, merge_factor=8, collapse_share=0.5))
    vectors = _vectors(600, seed=7)
    ids: list[UUID] = []
    for start in range(0, 400, 100):
        ids += await _write(pool, tenant_id, vectors[start : start + 100], start)
        await _settle(keeper, upkeep)
    assert len(await _indexed(upkeep)) == 4
    collapsed = await keeper.collapse(upkeep)
    assert collapsed is not None and await _indexed(upkeep) == [collapsed.split()[1]]
    # 100 rows beside 400 are a quarter, under the share of one half: nothing to do.
    ids += await _write(pool, tenant_id, vectors[400:500], 400)
    await _settle(keeper, upkeep)
    assert len(await _indexed(upkeep)) == 2 and await keeper.collapse(upkeep) is None
    ids += await _write(pool, tenant_id, vectors[500:600], 500)
    await _settle(keeper, upkeep)
    collapsed = await keeper.collapse(upkeep)
    assert collapsed is not None and await _indexed(upkeep) == [collapsed.split()[1]]
    async with tenant_transaction(pool, tenant_id) as db:
        assert await db.fetchval("SELECT count(*) FROM document_embeddings") == len(vectors)
    for number in range(0, len(vectors), 53):
        assert (await _nearest(pool, tenant_id, vectors[number]))[0] == ids[number]


async def test_the_keeper_collapses_the_segments_by_itself_once_its_upkeep_is_quiet(
    pool: asyncpg.Pool, tenant_id: UUID, database: Database, upkeep: asyncpg.Connection
) -> None:
    policy = SegmentPolicy(seal_rows=100, merge_factor=8, collapse_after=0.5)
    keeper = SegmentKeeper(database.url, policy)
    running = asyncio.create_task(keeper.run(0.05))
    try:
        for start in range(0, 300, 100):
            await _write(pool, tenant_id, _vectors(100, seed=start), start)
            # Sealed and built before the next batch: a partition a batch until the upkeep is quiet.
            await _until(lambda: _all_indexed(pool, tenant_id, upkeep))
        await _until(lambda: _one_index_holds(pool, tenant_id, upkeep, 300))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert await _one_index_holds(pool, tenant_id, upkeep, 300), await _partitions(upkeep)


async def _in_partition(pool: asyncpg.Pool, tenant_id: UUID, name: str) -> int:
    async with tenant_transaction(pool, tenant_id) as db:
        return int(
            await db.fetchval(
                "SELECT count(*) FROM document_embeddings WHERE segment IN "
                "(SELECT unnest(segments) FROM chorus_meta.vector_partitions WHERE name = $1)",
                name,
            )
        )


async def _all_indexed(pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection) -> bool:
    """Nothing sealed waits for its index and the growing segment is empty."""
    partitions = dict(await _partitions(upkeep))
    [growing] = [name for name, state in partitions.items() if state == "growing"]
    return "sealed" not in partitions.values() and await _in_partition(pool, tenant_id, growing) == 0


async def _one_index_holds(pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection, rows: int) -> bool:
    indexed = await _indexed(upkeep)
    return len(indexed) == 1 and await _in_partition(pool, tenant_id, indexed[0]) == rows


async def _insert(pool: asyncpg.Pool, tenant_id: UUID, vectors: np.ndarray, start: int) -> None:
    """New documents with these vectors by a plain insert, which reaches the growing segment only
    (the embed service's write also deletes older vectors, in every segment)."""
    async with tenant_transaction(pool, tenant_id) as db:
        ids = await _documents(db, tenant_id, start, len(vectors))
        await db.executemany(
            "INSERT INTO document_embeddings (document_id, tenant_id, model, dimensions, content_hash, embedding) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (id_, tenant_id, MODEL, DIMENSIONS, (start + n).to_bytes(4, "big"), Vector(vector))
                for n, (id_, vector) in enumerate(zip(ids, vectors, strict=True))
            ],
        )


async def _waiting(admin: asyncpg.Connection, expected: int) -> int:
    """How many other backends wait for a lock, polled until `expected` (for up to 3 s)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    for _ in range(300):
        if (found := await admin.fetchval(query)) == expected:
            break
        await asyncio.sleep(0.01)
    return int(found)


async def _until(check: Callable[[], Awaitable[bool]], tries: int = 400) -> None:
    """Wait (up to `tries` x 20 ms) until `check` holds."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.02)


async def _states(db: asyncpg.Connection) -> list[str]:
    return [state for _, state in await _partitions(db)]


async def test_the_keeper_seals_the_growing_segment_while_its_other_steps_are_held_up(
    pool: asyncpg.Pool, tenant_id: UUID, database: Database, upkeep: asyncpg.Connection
) -> None:
    keeper = SegmentKeeper(database.url, SegmentPolicy(seal_rows=100, merge_factor=8))
    admin = await asyncpg.connect(database.admin_url)
    running = asyncio.create_task(keeper.run(0.05))
    try:
        await _insert(pool, tenant_id, _vectors(120, seed=12), 0)
        await _until(lambda: _indexed_count(upkeep, 1))
        # The keeper's steps (a long build, here a lock on the builds' table) hold up its connection
        # (waiting in the statement's parse, before pg_stat_activity shows it).
        await admin.execute("BEGIN; LOCK TABLE chorus_meta.vector_builds IN ACCESS EXCLUSIVE MODE")
        held_up = await _waiting(admin, 1)
        await _insert(pool, tenant_id, _vectors(120, seed=13), 120)
        await _until(lambda: _has_sealed(upkeep))
        states = await _states(upkeep)
        still_held_up = await _waiting(admin, 1)
    finally:
        await admin.execute("ROLLBACK")
        await admin.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert held_up == 1 and still_held_up == 1
    assert states.count("sealed") == 1, states


async def _indexed_count(db: asyncpg.Connection, count: int) -> bool:
    return len(await _indexed(db)) == count


async def _has_sealed(db: asyncpg.Connection) -> bool:
    return "sealed" in await _states(db)


async def test_a_collapse_is_given_up_when_writes_come_back_and_tried_again_when_quiet(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    database: Database,
    upkeep: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.embed.segments")
    keeper = SegmentKeeper(database.url, SegmentPolicy(seal_rows=100, merge_factor=8, collapse_after=2.0))
    for start in (0, 100):
        await _write(pool, tenant_id, _vectors(100, seed=20 + start), start)
        await _settle(keeper, upkeep)
    first = (await _indexed(upkeep))[0]
    admin = await asyncpg.connect(database.admin_url)
    running = asyncio.create_task(keeper.run(0.05))
    try:
        await _insert(pool, tenant_id, _vectors(120, seed=30), 200)
        await _until(lambda: _indexed_count(upkeep, 3))
        # Within the 2 s of quiet before the collapse: it will wait for the first partition, as
        # for a long build.
        await admin.execute(f'BEGIN; LOCK TABLE "{first}" IN ACCESS EXCLUSIVE MODE')
        assert await _waiting(admin, 1) == 1, "the collapse did not start"
        await _insert(pool, tenant_id, _vectors(120, seed=31), 320)
        # Ended in Postgres at once, not left waiting for the lock (or building) to its end.
        ended = await _waiting(admin, 0) == 0
        await admin.execute("ROLLBACK")
        await _until(lambda: _indexed_count(upkeep, 1), tries=600)
    finally:
        await admin.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert "vector segment collapse given up: writes came back" in caplog.messages
    assert ended
    [collapsed] = await _indexed(upkeep)
    async with tenant_transaction(pool, tenant_id) as db:
        assert await db.fetchval("SELECT count(*) FROM document_embeddings") == 440
    assert collapsed != first


async def test_a_document_with_several_chunks_is_one_hit_naming_its_nearest_chunk(
    pool: asyncpg.Pool, tenant_id: UUID
) -> None:
    vectors = _vectors(3, seed=4)
    ids = await _write(pool, tenant_id, vectors[:2], 0)
    async with tenant_transaction(pool, tenant_id) as db:
        await db.execute(
            "INSERT INTO document_embeddings (document_id, chunk, tenant_id, model, dimensions, content_hash, "
            "embedding) SELECT document_id, 1, tenant_id, model, dimensions, content_hash, $2 FROM document_embeddings "
            "WHERE document_id = $1",
            ids[0],
            vectors[2],
        )
    async with tenant_transaction(pool, tenant_id, queries.semantic_settings(40)) as db:
        hits = await queries.semantic(db, vectors[2], MODEL, queries.Filters(), 10, None, queries.ID_ONLY)
    assert [(hit.row["id"], hit.row["chunk"]) for hit in hits] == [(ids[0], 1), (ids[1], 0)]
    assert hits[0].semantic_score == pytest.approx(1.0, abs=1e-5)


async def test_one_keeper_of_several_leads_and_keeps_the_segments_in_the_background(
    pool: asyncpg.Pool, tenant_id: UUID, database: Database, upkeep: asyncpg.Connection
) -> None:
    policy = SegmentPolicy(seal_rows=100, merge_factor=8)
    leader, other = SegmentKeeper(database.url, policy), SegmentKeeper(database.url, policy)
    running = asyncio.create_task(leader.run(0.05))
    try:
        await _write(pool, tenant_id, _vectors(150, seed=5), 0)
        for _ in range(200):
            if [state for _, state in await _partitions(upkeep)].count("indexed") == 2:
                break
            await asyncio.sleep(0.05)
        assert await other._lead() is False
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        other.release()
    states = dict(await _partitions(upkeep))
    assert sorted(states.values()) == ["growing", "indexed", "indexed"], states


async def test_a_seal_does_not_wait_in_a_cycle_with_a_writer_of_documents(
    pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection
) -> None:
    # A writer as ingest's normalizer is one: it has stored a row that refers to its tenant (which
    # holds a lock on tenants) and is about to store a document.
    async with tenant_transaction(pool, tenant_id) as writer:
        await writer.execute(
            "INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, direction, text, "
            "message_created_at) VALUES ($1, 'm-1', 'creator', 'messaging:fan-1', 'inbound', 'hello', now())",
            tenant_id,
        )
        sealing = asyncio.ensure_future(upkeep.fetchval("SELECT chorus_vector_seal(0)"))
        await asyncio.sleep(0.3)  # the seal has taken what it takes before the writer goes on
        await writer.execute(
            "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
            "VALUES ($1, 'test', 'text', 'doc-1', 'hello', '\\x01')",
            tenant_id,
        )
    # Before migration 0016 the seal waited for tenants while holding documents, the writer waited
    # for documents: Postgres broke the cycle after a second by failing one of them.
    sealed = await asyncio.wait_for(sealing, timeout=10)
    assert sealed is not None
    assert [state for _, state in await _partitions(upkeep)].count("growing") == 1
    # The new growing partition has the parent's foreign keys: deleting a document takes its vectors.
    [document] = await _write(pool, tenant_id, _vectors(1, seed=9), 5_000)
    async with tenant_transaction(pool, tenant_id) as db:
        await db.execute("DELETE FROM documents WHERE id = $1", document)
        assert await db.fetchval("SELECT count(*) FROM document_embeddings WHERE document_id = $1", document) == 0


async def test_a_write_under_way_when_the_keeper_seals_stores_its_rows(
    pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection
) -> None:
    async with tenant_transaction(pool, tenant_id) as db:
        documents = await _documents(db, tenant_id, 0, 2)
    async with tenant_transaction(pool, tenant_id) as writer:
        # The embed service writes a batch of several tenants in one transaction. Once it has
        # stored rows, it holds every lock its next insert needs, and Postgres rereads the table's
        # partitions only when a transaction takes a new lock.
        insert = await writer.prepare(
            "INSERT INTO document_embeddings (document_id, tenant_id, model, dimensions, content_hash, embedding) "
            "VALUES ($1, $2, $3, $4, $5, $6)"
        )
        vectors = _vectors(2, seed=5)
        await insert.fetch(documents[0], tenant_id, MODEL, DIMENSIONS, (0).to_bytes(4, "big"), vectors[0])
        sealing = asyncio.ensure_future(upkeep.fetchval("SELECT chorus_vector_seal(0)"))
        await _committed_or_waiting(sealing, pool, upkeep.get_server_pid())
        # Before migration 0018 the seal had committed here, and Postgres refused the next row: it
        # named the new growing segment, a partition the writer's transaction did not know.
        await insert.fetch(documents[1], tenant_id, MODEL, DIMENSIONS, (1).to_bytes(4, "big"), vectors[1])
    try:
        sealed = await asyncio.wait_for(sealing, timeout=10)
    except asyncpg.LockNotAvailableError:  # the writer held the seal past its timeout: the next step seals
        sealed = await retry_while_locked(upkeep, "SELECT chorus_vector_seal(0)")
    assert sealed is not None
    async with tenant_transaction(pool, tenant_id) as db:
        stored = await db.fetch("SELECT document_id FROM document_embeddings")
    assert sorted(row["document_id"] for row in stored) == sorted(documents)


async def test_a_seal_does_not_wait_in_a_cycle_with_ingest_storing_a_document(
    pool: asyncpg.Pool, tenant_id: UUID, upkeep: asyncpg.Connection
) -> None:
    async with tenant_transaction(pool, tenant_id) as writer:
        # Ingest stores a document, then deletes the vectors of its older text.
        [document] = await _documents(writer, tenant_id, 0, 1)
        sealing = asyncio.ensure_future(upkeep.fetchval("SELECT chorus_vector_seal(0)"))
        await _committed_or_waiting(sealing, pool, upkeep.get_server_pid())
        await writer.execute("DELETE FROM document_embeddings WHERE document_id = $1", document)
    # Had the seal taken document_embeddings before documents, each would have waited for the other
    # until the seal's lock timeout failed it.
    assert await asyncio.wait_for(sealing, timeout=10) is not None


async def _committed_or_waiting(step: asyncio.Future[Any], pool: asyncpg.Pool, backend: int) -> None:
    """Until `step` has finished or its backend waits for a lock."""
    for _ in range(500):
        if step.done():
            return
        waiting = await pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", backend)
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the seal neither finished nor waited for a lock in 5 s")
