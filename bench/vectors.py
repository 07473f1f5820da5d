"""The vector store alone: write capacity (vectors/s in batches of 64, one and four writers) and
search p50/p99 and recall@10, for the segments Chorus ships beside HNSW and IVFFlat on the write path.

Needs a Postgres (the one of `make up`, or CHORUS_ADMIN_DATABASE_URL) and works in a database of
its own, `chorus_bench_vectors` (and `chorus_bench_vectors_hnsw` for the single index), made
afresh each run. Every mode runs the services' SQL
(services/embed/store.py writes, services/search/queries.py searches) as the services' role,
under row-level security, on clustered 384-dimension unit vectors like `make bench-search`'s:
- segments: partitions as the embed service keeps them (sealed at --seal-rows), searched twice:
  as a burst of writes leaves them (tiers merged by 4) and after the keeper's quiet collapse (one
  indexed partition), the growing one as full both times (full at 100,000);
- hnsw: every vector in one partition with an HNSW index (m 12, ef_construction 40) that the
  writes go to, which is what Chorus did before migration 0013; searched in turns with the
  collapsed segments, three rounds each, medians reported;
- ivfflat: the same partition with an IVFFlat index instead (lists = rows / 1,000), probed with
  --probes lists and iterative scans.
CHORUS_BENCH_VECTORS_1M=1 also measures segments at 1M documents as a quiet store holds them (the
keeper's collapse: one indexed partition, built with migration 0019's wider graph, and the growing
one), in `chorus_bench_vectors_1m_collapsed`, which is built once (about 15 minutes) and kept;
--ef-search-1m 128,256 searches it at wider ef_search too. `python -m bench.search --documents
1000000` measures the same size through the search service's HTTP API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
from pgvector import Vector

from bench.report import Figure, percentile, report
from bench.search import CENTRES, DIMENSIONS, near_centres, unit
from bench.segments import finish_swap, retry_while_locked
from launcher.stack.local import LocalStack, ensure_database, with_database
from services.embed import store
from services.embed.segments import SegmentKeeper, SegmentPolicy
from services.search import queries
from shared import tenants
from shared.db import create_pool, tenant_transaction
from shared.migrate import migrate

MODEL = "bench-vectors"
BATCH = 64
EXTRA = 12_000  # documents without a vector, written by the write runs (each run's are deleted after it)
WRITE_SECONDS = 4.0
MERGE_FACTOR = SegmentPolicy().merge_factor
EF_SEARCH = 64  # the search service's default (CHORUS_SEARCH_EF_SEARCH)
SEARCH_ROUNDS = 3  # of 200 queries, segments and HNSW alone in turns


@dataclass
class Corpus:
    admin_url: str
    pool: asyncpg.Pool
    keeper: SegmentKeeper
    tenant_id: uuid.UUID
    extra: list[uuid.UUID]
    extra_hashes: list[bytes]
    extra_vectors: np.ndarray
    queries: np.ndarray
    truth: np.ndarray


def _vectors(count: int, seed: int) -> np.ndarray:
    centres = unit(np.random.default_rng(7).standard_normal((CENTRES, DIMENSIONS)).astype(np.float32))
    rng = np.random.default_rng(seed)
    return near_centres(centres, rng.integers(0, CENTRES, size=count), rng)


def _hash(number: int) -> bytes:
    return number.to_bytes(8, "big")


def _service_url(admin_url: str, database: str) -> str:
    parts = urlsplit(with_database(admin_url, database))
    return urlunsplit(parts._replace(netloc=f"{database}:{database}@{parts.netloc.rsplit('@', 1)[-1]}"))


async def _settle(keeper: SegmentKeeper, db: asyncpg.Connection) -> None:
    while (done := await keeper.step(db)) is not None and "pending" not in done:
        pass


async def _prepare(database: str, count: int, seal_rows: int, fresh: bool, collapsed: bool = False) -> Corpus:
    """The corpus in `database`, loaded as a burst leaves it (`_layout`) or, when `collapsed`, as
    the keeper's collapse of a quiet store does (one indexed partition and the growing one)."""
    root = LocalStack().admin_database_url
    admin = await asyncpg.connect(root)
    if fresh:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await admin.close()
    await ensure_database(root, database)
    admin_url, service_url = with_database(root, database), _service_url(root, database)
    await migrate(admin_url, service_url, embedding_dim=DIMENSIONS)
    pool = await create_pool(service_url, max_size=5)
    keeper = SegmentKeeper(service_url, SegmentPolicy(seal_rows=seal_rows, merge_factor=MERGE_FACTOR))
    tenant_id = await tenants.find_tenant(pool, database) or await tenants.create_tenant(pool, database)
    base = _vectors(count, seed=1)
    async with tenant_transaction(pool, tenant_id) as db:
        stored = await db.fetchval("SELECT count(*) FROM document_embeddings")
    if stored != count:
        layout = _collapsed_layout(count, seal_rows) if collapsed else _layout(count, seal_rows, MERGE_FACTOR)
        await _load(admin_url, keeper, tenant_id, base, layout)
    extra = [_id(count + n) for n in range(EXTRA)]
    extra_hashes = [_hash(count + n) for n in range(EXTRA)]
    query_vectors = _vectors(200, seed=3)
    truth = np.argsort(-(query_vectors @ base.T), axis=1)[:, :10]
    return Corpus(
        admin_url, pool, keeper, tenant_id, extra, extra_hashes, _vectors(EXTRA, seed=2), query_vectors, truth
    )


def _id(number: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"chorus-bench-vectors/{number}")


def _layout(count: int, seal_rows: int, merge_factor: int) -> list[tuple[int, int]]:
    """(rows, tier) of the indexed partitions the embed service would have made of `count` rows
    written in a burst (no quiet time for a collapse), largest first, and the growing segment last
    (tier -1): the digits of the number of sealed segments in base `merge_factor` are the
    partitions of each tier."""
    seals = max(count - seal_rows // 2, 0) // seal_rows
    layout = []
    tier = 0
    while seals:
        layout += [(seal_rows * merge_factor**tier, tier)] * (seals % merge_factor)
        seals //= merge_factor
        tier += 1
    layout.reverse()
    return [*layout, (count - sum(rows for rows, _ in layout), -1)]


def _collapsed_layout(count: int, seal_rows: int) -> list[tuple[int, int]]:
    """`_layout` after the keeper's collapse: every sealed row in one partition of its size's tier."""
    sealed = sum(rows for rows, tier in _layout(count, seal_rows, MERGE_FACTOR) if tier >= 0)
    policy = SegmentPolicy(seal_rows=seal_rows, merge_factor=MERGE_FACTOR)
    return [(sealed, policy.tier_of(sealed)), (count - sealed, -1)]


async def _load(
    admin_url: str, keeper: SegmentKeeper, tenant_id: uuid.UUID, base: np.ndarray, layout: list[tuple[int, int]]
) -> None:
    """Documents by COPY as the owner, then the vectors in the partitions of `layout` (rows, tier;
    the growing one last), each indexed once as the embed service's keeper builds."""
    owner = await asyncpg.connect(admin_url)
    upkeep = await asyncpg.connect(keeper.url)
    try:
        from pgvector.asyncpg import register_vector

        await register_vector(owner)
        await owner.execute("DELETE FROM documents")  # a load cut short is redone
        numbers = range(len(base) + EXTRA)
        await owner.copy_records_to_table(
            "documents",
            columns=["id", "tenant_id", "source", "content_type", "doc_key", "text", "content_hash"],
            records=[(_id(n), tenant_id, "bench", "text", str(n), f"document {n}", _hash(n)) for n in numbers],
        )
        start = 0
        for rows, tier in layout:
            await owner.copy_records_to_table(
                "document_embeddings",
                columns=["document_id", "tenant_id", "model", "dimensions", "content_hash", "embedding"],
                records=[(_id(n), tenant_id, MODEL, DIMENSIONS, _hash(n), Vector(base[n]))
                         for n in range(start, start + rows)],
            )  # fmt: skip
            start += rows
            if tier >= 0:
                sealed = await retry_while_locked(upkeep, "SELECT chorus_vector_seal(0)")
                await finish_swap(upkeep, await keeper.build(upkeep, [sealed], tier))
        await owner.execute("ANALYZE documents; ANALYZE document_embeddings")
    finally:
        await owner.close()
        await upkeep.close()


async def _search(corpus: Corpus, local_settings: dict[str, str | int]) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, recall@10) of the semantic query over the corpus."""
    latencies, recalls = [], []
    ids = {_id(n): n for n in range(int(corpus.truth.max()) + 1)}
    for round_ in range(2):  # the first round warms caches and plans
        for query, expected in zip(corpus.queries, corpus.truth, strict=True):
            started = time.perf_counter()
            async with tenant_transaction(corpus.pool, corpus.tenant_id, local_settings) as db:
                hits = await queries.semantic(db, query, MODEL, queries.Filters(), 10, None, queries.ID_ONLY)
            if round_:
                latencies.append((time.perf_counter() - started) * 1000)
                found = {ids.get(hit.row["id"], -1) for hit in hits}
                recalls.append(len(found & set(expected.tolist())) / 10)
    return percentile(latencies, 0.5), percentile(latencies, 0.99), float(np.mean(recalls))


async def _writes(corpus: Corpus, writers: int, keep: bool) -> float:
    """Vectors/s stored by `writers` concurrent writers of batches of 64 for WRITE_SECONDS; the
    segment upkeep runs beside them when `keep`."""
    share = len(corpus.extra) // writers
    written = [0] * writers
    deadline = time.perf_counter() + WRITE_SECONDS

    async def writer(number: int) -> None:
        for start in range(number * share, (number + 1) * share, BATCH):
            if time.perf_counter() > deadline:
                return
            end = min(start + BATCH, (number + 1) * share)
            rows = [
                store.VectorRow(corpus.extra[n], 0, corpus.extra_hashes[n], corpus.extra_vectors[n], False)
                for n in range(start, end)
            ]
            async with tenant_transaction(corpus.pool, corpus.tenant_id) as db:
                await store.write_vectors(db, rows, MODEL, DIMENSIONS)
            written[number] += end - start

    async def upkeep() -> None:
        connection = await asyncpg.connect(corpus.keeper.url)
        try:
            while True:
                await _settle(corpus.keeper, connection)
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    keeper = asyncio.create_task(upkeep()) if keep else None
    started = time.perf_counter()
    await asyncio.gather(*(writer(number) for number in range(writers)))
    elapsed = time.perf_counter() - started
    if keeper is not None:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    async with tenant_transaction(corpus.pool, corpus.tenant_id) as db:
        await db.execute("DELETE FROM document_embeddings WHERE document_id = ANY($1::uuid[])", corpus.extra)
    return sum(written) / elapsed


async def _collapse(corpus: Corpus) -> None:
    """The keeper's collapse of a quiet store."""
    async with corpus.pool.acquire() as upkeep:
        done = await corpus.keeper.collapse(upkeep)
        if done is None:
            raise SystemExit("the keeper found nothing to collapse")
        await finish_swap(upkeep, done)


async def _one_partition(corpus: Corpus) -> str:
    """Every vector merged into one indexed partition, which then takes the writes (as the owner)."""
    owner = await asyncpg.connect(corpus.admin_url)
    try:
        await retry_while_locked(owner, "SELECT chorus_vector_seal(0)")
        names = await owner.fetch("SELECT name FROM chorus_meta.vector_partitions WHERE state <> 'growing'")
        built = await owner.fetchval(
            "SELECT chorus_vector_build($1::text[], 0::smallint)", [row["name"] for row in names]
        )
        await retry_while_locked(owner, "SELECT chorus_vector_swap($1)", built)
        await owner.execute(
            "UPDATE chorus_meta.vector_partitions SET state = 'sealed' WHERE state = 'growing'; "
            f"UPDATE chorus_meta.vector_partitions SET state = 'growing' WHERE name = '{built}'; "
            "ANALYZE document_embeddings"
        )
    finally:
        await owner.close()
    return str(built)


async def _ivfflat(corpus: Corpus, partition: str, rows: int) -> int:
    """The partition's HNSW index replaced by an IVFFlat one; returns its lists."""
    lists = max(rows // 1000, 10)
    owner = await asyncpg.connect(corpus.admin_url)
    try:
        await owner.execute(f"DROP INDEX \"{partition}_hnsw\"; SET maintenance_work_mem = '512MB'")
        await owner.execute(
            f'CREATE INDEX ON "{partition}" USING ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})'
        )
    finally:
        await owner.close()
    return lists


async def _partitions(corpus: Corpus) -> int:
    return int(await corpus.pool.fetchval("SELECT count(*) FROM chorus_meta.vector_partitions"))


async def _mode(corpus: Corpus, name: str, searches: list[tuple[float, float, float]], keep: bool) -> dict[str, float]:
    """The searches' medians (p50, p99, recall), then the write runs."""
    p50, p99, recall = (float(np.median(figure)) for figure in zip(*searches, strict=True))
    result = {"search_p50_ms": p50, "search_p99_ms": p99, "recall_at_10": recall,
              "partitions": await _partitions(corpus), "search_rounds": len(searches)}  # fmt: skip
    for writers in (1, 4):
        result[f"writes_per_second_{writers}"] = await _writes(corpus, writers, keep)
    print(name, {key: round(value, 3) for key, value in result.items()}, flush=True)
    return result


def _figures(count: int, results: dict[str, dict[str, float]]) -> list[Figure]:
    size = f"{count // 1000}K" if count < 1_000_000 else f"{count // 1_000_000}M"
    figures = []
    hnsw_p50 = results.get("hnsw", {}).get("search_p50_ms")
    for name, result in results.items():
        target = name == "segments"
        figures += [
            Figure(f"{name} {size}: writes, 1 writer", result["writes_per_second_1"], "vectors/s",
                   "≥ 5,000" if target else ""),
            Figure(f"{name} {size}: writes, 4 writers", result["writes_per_second_4"], "vectors/s",
                   "≥ 5,000" if target else ""),
            Figure(f"{name} {size}: search p50", result["search_p50_ms"], "ms",
                   f"≤ {1.5 * hnsw_p50:.2f} (1.5 x hnsw)" if target and hnsw_p50 else ""),
            Figure(f"{name} {size}: search p99", result["search_p99_ms"], "ms"),
            Figure(f"{name} {size}: recall@10", result["recall_at_10"], "", "≥ 0.95" if target else ""),
        ]  # fmt: skip
    return figures


async def main(count: int, seal_rows: int, probes: int, wider: list[int]) -> None:
    hnsw_settings = queries.semantic_settings(EF_SEARCH)
    corpus = await _prepare("chorus_bench_vectors", count, seal_rows, fresh=True)
    single = await _prepare("chorus_bench_vectors_hnsw", count, seal_rows, fresh=True)
    results: dict[str, dict[str, float]] = {}
    try:
        tiers = await _search(corpus, hnsw_settings)
        tiers_partitions = await _partitions(corpus)
        print("segments, tiers of a burst:", [round(value, 3) for value in tiers], tiers_partitions, "partitions")
        await _collapse(corpus)
        partition = await _one_partition(single)
        # The collapsed segments and HNSW alone (a database of its own) searched in turns: this
        # machine's speed drifts by a third within minutes, and the target is their ratio.
        rounds: dict[str, list[tuple[float, float, float]]] = {"segments": [], "hnsw": []}
        for _ in range(SEARCH_ROUNDS):
            rounds["segments"].append(await _search(corpus, hnsw_settings))
            rounds["hnsw"].append(await _search(single, hnsw_settings))
        results["segments"] = await _mode(corpus, "segments", rounds["segments"], keep=True)
        results["hnsw"] = await _mode(single, "hnsw", rounds["hnsw"], keep=False)
        lists = await _ivfflat(single, partition, count)
        ivf_settings: dict[str, str | int] = {"ivfflat.probes": probes, "ivfflat.iterative_scan": "relaxed_order"}
        results["ivfflat"] = await _mode(single, "ivfflat", [await _search(single, ivf_settings)], keep=False)
    finally:
        await corpus.pool.close()
        await single.pool.close()
    details: dict[str, object] = {"vectors": count, "seal_rows": seal_rows, "merge_factor": MERGE_FACTOR,
                                  "ef_search": EF_SEARCH, "ivfflat_lists": lists, "ivfflat_probes": probes,
                                  "batch": BATCH, "write_seconds": WRITE_SECONDS, **results}  # fmt: skip
    figures = _figures(count, results)
    figures += [
        Figure(f"segments {count // 1000}K, tiers of a burst (before the quiet collapse): search p50", tiers[0], "ms"),
        Figure(f"segments {count // 1000}K, tiers of a burst: recall@10", tiers[2], ""),
    ]
    details["segments_tiers"] = {"search_p50_ms": tiers[0], "search_p99_ms": tiers[1], "recall_at_10": tiers[2],
                                 "partitions": tiers_partitions}  # fmt: skip
    if os.environ.get("CHORUS_BENCH_VECTORS_1M") == "1":
        # Built once and kept: only the segments are measured at this size.
        large = await _prepare("chorus_bench_vectors_1m_collapsed", 1_000_000, seal_rows, fresh=False, collapsed=True)
        try:
            details["segments_1m"] = await _mode(large, "segments 1M", [await _search(large, hnsw_settings)], keep=True)
            figures += _figures(1_000_000, {"segments": details["segments_1m"]})  # type: ignore[dict-item]
            for ef_search in wider:
                p50, p99, recall = await _search(large, queries.semantic_settings(ef_search))
                print(f"segments 1M, ef_search {ef_search}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, recall@10 {recall:.3f}")
                figures += [Figure(f"segments 1M, ef_search {ef_search}: search p50", p50, "ms"),
                            Figure(f"segments 1M, ef_search {ef_search}: recall@10", recall, "")]  # fmt: skip
        finally:
            await large.pool.close()
    report("vectors", figures, details)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--seal-rows", type=int, default=SegmentPolicy().seal_rows)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument(
        "--ef-search-1m", default="", help="more ef_search values (comma-separated) to search the 1M corpus with"
    )
    arguments = parser.parse_args()
    wider = [int(value) for value in arguments.ef_search_1m.split(",") if value.strip()]
    asyncio.run(main(arguments.vectors, arguments.seal_rows, arguments.probes, wider))
