"""What the HNSW index's build parameters cost and give: inserts/s and recall@10.

Needs the Postgres of `make up`; works in a database of its own (`chorus_bench_hnsw`). For each
kind of vectors (random unit vectors, which is what the hash provider makes, and clustered ones
like `make bench-search`'s) and each (m, ef_construction): load a base table with COPY, build the
index, then time inserts of new vectors 128 to a statement, the way the embed service writes a
batch, and measure recall@10 of 200 queries at ef_search 40 against exact search.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
import numpy as np
from pgvector import Vector
from pgvector.asyncpg import register_vector

from bench.report import Figure, report
from bench.search import CENTRES, DIMENSIONS, near_centres, unit
from launcher.stack.local import LocalStack, ensure_database, with_database

DATABASE = "chorus_bench_hnsw"
PARAMETERS = [(16, 64), (12, 40), (8, 32)]  # pgvector's defaults first; Chorus ships (12, 40)


def _vectors(kind: str, count: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "random":
        return unit(rng.standard_normal((count, DIMENSIONS)).astype(np.float32))
    centres = unit(np.random.default_rng(7).standard_normal((CENTRES, DIMENSIONS)).astype(np.float32))
    return near_centres(centres, rng.integers(0, CENTRES, size=count), rng)


async def _connect() -> asyncpg.Connection:
    admin_url = LocalStack().admin_database_url
    await ensure_database(admin_url, DATABASE)
    connection = await asyncpg.connect(with_database(admin_url, DATABASE))
    await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await register_vector(connection)
    return connection


async def _measure(db: asyncpg.Connection, base: np.ndarray, new: np.ndarray, queries: np.ndarray,
                   m: int, ef_construction: int) -> tuple[float, float]:  # fmt: skip
    """(inserts/s, recall@10) of one index."""
    await db.execute(f"DROP TABLE IF EXISTS vectors; CREATE TABLE vectors (id int PRIMARY KEY, v vector({DIMENSIONS}))")
    await db.copy_records_to_table("vectors", records=[(i, Vector(v)) for i, v in enumerate(base)])
    await db.execute("SET maintenance_work_mem = '1GB'")
    await db.execute(
        f"CREATE INDEX ON vectors USING hnsw (v vector_cosine_ops) WITH (m = {m}, ef_construction = {ef_construction})"
    )
    started = time.perf_counter()
    for start in range(0, len(new), 128):
        rows = list(range(len(base) + start, len(base) + start + len(new[start : start + 128])))
        await db.execute("INSERT INTO vectors SELECT unnest($1::int[]), unnest($2::vector[])",
                         rows, [Vector(v) for v in new[start : start + 128]])  # fmt: skip
    inserts = len(new) / (time.perf_counter() - started)
    everything = np.concatenate([base, new])
    exact = np.argsort(-(queries @ everything.T), axis=1)[:, :10]
    await db.execute("SET hnsw.ef_search = 40")
    recalls = []
    for query, expected in zip(queries, exact, strict=True):
        found = await db.fetch("SELECT id FROM vectors ORDER BY v <=> $1 LIMIT 10", Vector(query))
        recalls.append(len({row["id"] for row in found} & set(expected.tolist())) / 10)
    return inserts, float(np.mean(recalls))


async def main(base_count: int, insert_count: int) -> None:
    rng = np.random.default_rng(20261123)
    db = await _connect()
    figures, details = [], {}
    try:
        for kind in ("random", "clustered"):
            base, new = _vectors(kind, base_count, rng), _vectors(kind, insert_count, rng)
            queries = _vectors(kind, 200, rng)
            for m, ef_construction in PARAMETERS:
                inserts, recall = await _measure(db, base, new, queries, m, ef_construction)
                name = f"{kind} vectors, m {m}, ef_construction {ef_construction}"
                figures += [Figure(f"{name}: inserts", inserts, "rows/s"),
                            Figure(f"{name}: recall@10 at ef_search 40", recall, "")]  # fmt: skip
                details[name] = {"inserts_per_second": inserts, "recall_at_10": recall}
        await db.execute("DROP TABLE vectors")
    finally:
        await db.close()
    report("hnsw", figures, {"base_vectors": base_count, "inserted": insert_count, **details})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=int, default=30_000)
    parser.add_argument("--inserts", type=int, default=3_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.base, arguments.inserts))
