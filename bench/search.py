"""Search latency, recall and throughput over 100,000 documents.

Needs the stack of `make up` (its Postgres). The data set is synthetic and clustered, said
plainly: 2,000 topic centres in 384 dimensions, each document a unit vector near one centre
(cosine about 0.7 to it) with a text of its topic's three words and twelve filler words. It lives
in a database of its own (`chorus_bench_search`, built once, then reused), migrated like the
real one, searched by a search service process of its own over real HTTP with the local model.

Printed, from one run: raw SQL top-10 latency of the semantic query the service runs, the HTTP
endpoint's latency for semantic-with-vector, keyword, hybrid-with-vector and hybrid-embedding-
the-text, recall@10 of semantic search against exact search (numpy over every vector), and
queries per second with 8 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import numpy as np

from bench.cpu import settle
from bench.report import Figure, median, percentile, report
from bench.segments import finish_swap, retry_while_locked
from launcher.stack.local import LocalStack, ensure_database, with_database
from launcher.stack.processes import free_port, spawn, stop
from services.embed.segments import SegmentKeeper, SegmentPolicy
from services.search import queries as search_queries
from services.search.settings import SearchSettings
from shared import tenants
from shared.db import create_pool, tenant_transaction
from shared.embedding.local import MODEL_NAME
from shared.hashing import text_hash
from shared.migrate import migrate

DATABASE = "chorus_bench_search"
TENANT = "bench-search"
DIMENSIONS = 384
CENTRES = 2000
NOISE = 0.05  # per dimension; in 384 dimensions a document's cosine to its centre is about 0.7
# The vectors stand in for the local model's (the search service filters by its provider's model).
MODEL = f"{MODEL_NAME}-int8"


def _database_for(count: int) -> str:
    """The bench database of `count` documents: each size is built once and kept."""
    return DATABASE if count == 100_000 else f"{DATABASE}_{count}"


def _document_id(number: int) -> uuid.UUID:
    """The id of the `number`th generated document: the same in every run, so exact search can name it."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"chorus-bench-search/{number}")


def unit(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1."""
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def near_centres(centres: np.ndarray, owners: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A unit vector near `centres[owner]` for each owner: the centre plus NOISE in every dimension."""
    return unit(centres[owners] + NOISE * rng.standard_normal((len(owners), DIMENSIONS)).astype(np.float32))


def _corpus(count: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str], np.ndarray, list[list[str]]]:
    """Centres, their topic words, and `count` documents: (vectors, texts)."""
    syllables = ["ka", "lo", "mi", "ne", "su", "ra", "to", "vi", "de", "po", "gu", "ze", "ba", "fi", "ho", "ju"]
    words = sorted({"".join(rng.choice(syllables, size=3)) + str(n % 7) for n in range(6000)})
    topics = [list(rng.choice(words, size=3, replace=False)) for _ in range(CENTRES)]
    centres = unit(rng.standard_normal((CENTRES, DIMENSIONS)).astype(np.float32))
    owners = rng.integers(0, CENTRES, size=count)
    vectors = near_centres(centres, owners, rng)
    fillers = rng.choice(words, size=(count, 12))
    texts = [" ".join([*topics[owner], *filler]) for owner, filler in zip(owners, fillers, strict=True)]
    return vectors, texts, centres, topics


async def _build(admin_url: str, tenant_id: uuid.UUID, vectors: np.ndarray, texts: list[str]) -> float:
    """Load the documents as the owner with the indexes dropped, then build them; returns seconds."""
    started = time.perf_counter()
    connection = await asyncpg.connect(admin_url)
    try:
        from pgvector.asyncpg import register_vector

        await register_vector(connection)
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('documents', 'document_embeddings') "
            "AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key'"
        )
        for index in indexes:
            await connection.execute(f'DROP INDEX "{index["indexname"]}"')
        ids = [_document_id(number) for number in range(len(texts))]
        hashes = [text_hash(text) for text in texts]
        await connection.copy_records_to_table(
            "documents",
            columns=["id", "tenant_id", "source", "content_type", "doc_key", "text", "content_hash"],
            records=[(id_, tenant_id, "bench", "text", str(id_), text, hash_)
                     for id_, text, hash_ in zip(ids, texts, hashes, strict=True)],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "document_embeddings",
            columns=["document_id", "tenant_id", "model", "dimensions", "content_hash", "embedding"],
            records=[(id_, tenant_id, MODEL, DIMENSIONS, hash_, vector)
                     for id_, hash_, vector in zip(ids, hashes, vectors, strict=True)],
        )  # fmt: skip
        await connection.execute("SET maintenance_work_mem = '1GB'")
        await connection.execute("SET max_parallel_maintenance_workers = 2")
        for index in indexes:
            await connection.execute(index["indexdef"])
        # The vectors landed in the growing segment (migration 0013): sealed and indexed in bulk,
        # as the embed service's upkeep would.
        sealed = await retry_while_locked(connection, "SELECT chorus_vector_seal(0)")
        keeper = SegmentKeeper(admin_url, SegmentPolicy())
        await finish_swap(connection, await keeper.build(connection, [sealed], 0))
        await connection.execute("ANALYZE documents; ANALYZE document_embeddings")
    finally:
        await connection.close()
    return time.perf_counter() - started


Prepared = tuple[str, uuid.UUID, str, np.ndarray, np.ndarray, list[list[str]], float]


async def _prepare(count: int, rng: np.random.Generator) -> Prepared:
    """The bench database (built when missing), its service URL, tenant, API key, data and build time."""
    stack = LocalStack()
    database = _database_for(count)
    await ensure_database(stack.admin_database_url, database)
    admin_url = with_database(stack.admin_database_url, database)
    service_url = with_database(stack.database_url, database)
    await migrate(admin_url, service_url, embedding_dim=DIMENSIONS)
    vectors, texts, centres, topics = _corpus(count, rng)
    pool = await create_pool(service_url, max_size=2)
    try:
        tenant_id = await tenants.find_tenant(pool, TENANT) or await tenants.create_tenant(pool, TENANT)
        async with tenant_transaction(pool, tenant_id) as db:
            stored = await db.fetchval("SELECT count(*) FROM documents")
        build_seconds = 0.0
        if stored != count:
            async with tenant_transaction(pool, tenant_id) as db:
                await db.execute("DELETE FROM documents")
            build_seconds = await _build(admin_url, tenant_id, vectors, texts)
        key = await tenants.create_api_key(pool, tenant_id, "bench")
    finally:
        await pool.close()
    return service_url, tenant_id, key, vectors, centres, topics, build_seconds


async def _raw_sql(service_url: str, tenant_id: uuid.UUID, queries: np.ndarray, ef_search: int) -> list[float]:
    """The service's own semantic query, run straight on a connection: no HTTP, no JSON."""
    pool = await create_pool(service_url, max_size=1)
    latencies = []
    try:
        for vector in queries:
            started = time.perf_counter()
            async with tenant_transaction(pool, tenant_id, search_queries.semantic_settings(ef_search)) as db:
                await search_queries.semantic(db, vector, MODEL, search_queries.Filters(), 10, None)
            latencies.append(time.perf_counter() - started)
    finally:
        await pool.close()
    return latencies


def _posts(url: str, headers: dict[str, str], bodies: list[dict[str, Any]]) -> tuple[list[float], list[list[str]]]:
    """POST each body in turn on one keep-alive connection of the standard library's HTTP client:
    its own cost per request is tens of microseconds, so the latency is the service's, much as
    asyncpg's is for the raw SQL figure. (httpx spends about a millisecond of its own per request;
    the table shows one figure through it for comparison.)"""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
    latencies, results = [], []
    try:
        for body in bodies:
            payload = json.dumps(body).encode()  # bytes: headers and body leave in one packet
            started = time.perf_counter()
            connection.request("POST", "/v1/search", payload, {**headers, "Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise SystemExit(f"/v1/search answered {response.status}: {answer[:300]!r}")
            results.append([hit["id"] for hit in json.loads(answer)["results"]])
    finally:
        connection.close()
    return latencies, results


async def _httpx_posts(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[float]:
    latencies = []
    for body in bodies:
        started = time.perf_counter()
        (await client.post("/v1/search", json=body)).raise_for_status()
        latencies.append(time.perf_counter() - started)
    return latencies


async def _qps(client: httpx.AsyncClient, bodies: list[dict[str, Any]], clients: int, seconds: float) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        number = offset
        while time.perf_counter() < stop_at:
            (await client.post("/v1/search", json=bodies[number % len(bodies)])).raise_for_status()
            done += 1
            number += clients

    started = time.perf_counter()
    await asyncio.gather(*(worker(offset) for offset in range(clients)))
    return done / (time.perf_counter() - started)


async def _start_search(service_url: str, ef_search: int) -> tuple[Path, str]:
    port = free_port()
    home = Path(".chorus") / "bench"
    env = {**os.environ, **LocalStack().service_env(), "CHORUS_DATABASE_URL": service_url,
           "CHORUS_SEARCH_PORT": str(port), "CHORUS_SEARCH_EF_SEARCH": str(ef_search)}  # fmt: skip
    pid_path = home / "search.pid"
    spawn([sys.executable, "-m", "services.search"], log_path=home / "search.log", pid_path=pid_path, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.perf_counter() + 120
    async with httpx.AsyncClient() as client:
        while time.perf_counter() < deadline:
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return pid_path, url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    stop(pid_path)
    raise SystemExit(f"the bench search service did not get ready; see {home / 'search.log'}")


async def main(count: int, queries: int, ef_search: int) -> None:
    rng = np.random.default_rng(20261122)
    service_url, tenant_id, key, vectors, centres, topics, build_seconds = await _prepare(count, rng)
    picked = rng.integers(0, CENTRES, size=queries)
    query_vectors = near_centres(centres, picked, rng)
    words = [" ".join(topics[centre][:2]) for centre in picked]
    # Other words of the same topics: texts the service has not embedded (and cached) before.
    texts = [" ".join(topics[centre][1:]) for centre in picked]

    settled = await asyncio.to_thread(settle)  # a build above, or earlier benchmarks' leftovers
    # Warm-up: plans, and the pages the queries read (at a million, an index larger than
    # shared_buffers: 20 queries left the timed ones reading from the operating system's cache).
    await _raw_sql(service_url, tenant_id, query_vectors, ef_search)
    raw = await _raw_sql(service_url, tenant_id, query_vectors, ef_search)
    pid_path, url = await _start_search(service_url, ef_search)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            semantic = [{"mode": "semantic", "vector": v.tolist()} for v in query_vectors]
            keyword = [{"mode": "keyword", "q": q} for q in words]
            hybrid = [{"mode": "hybrid", "q": q, "vector": v.tolist()}
                      for q, v in zip(words, query_vectors, strict=True)]  # fmt: skip
            # Distinct texts, so every query is embedded by the model (no cache hit).
            hybrid_text = [{"mode": "hybrid", "q": text} for text in texts]
            # Warm-up: every pooled connection of the service prepares its statements, the model loads.
            await asyncio.to_thread(_posts, url, headers, semantic + keyword[:50] + hybrid[:50] + hybrid_text[:5])
            semantic_latency, semantic_ids = await asyncio.to_thread(_posts, url, headers, semantic)
            keyword_latency, _ = await asyncio.to_thread(_posts, url, headers, keyword)
            hybrid_latency, _ = await asyncio.to_thread(_posts, url, headers, hybrid)
            text_latency, _ = await asyncio.to_thread(_posts, url, headers, hybrid_text[5:])
            await _httpx_posts(client, semantic[:20])  # warm-up of httpx's connection
            httpx_latency = await _httpx_posts(client, semantic)
            qps = await _qps(client, hybrid, clients=8, seconds=15)
    finally:
        stop(pid_path)

    exact = np.argsort(-(query_vectors @ vectors.T), axis=1)[:, :10]
    recalls = [len({str(_document_id(i)) for i in row} & set(found)) / 10
               for row, found in zip(exact, semantic_ids, strict=True)]  # fmt: skip
    recall = float(np.mean(recalls))
    # The targets: the search service's at 100,000 documents, the write path's at a million.
    at_100k = count == 100_000
    semantic_target, ratio_target = ("≤ 2 x raw SQL p50", "≤ 2") if at_100k else ("≤ 20 ms", "")
    hybrid_target, text_target = ("≤ 10 ms", "≤ 25 ms") if at_100k else ("", "")
    figures = [
        Figure("raw SQL semantic top-10, p50", median(raw) * 1000, "ms"),
        Figure("raw SQL semantic top-10, p99", percentile(raw, 0.99) * 1000, "ms"),
        Figure("HTTP semantic with vector, p50", median(semantic_latency) * 1000, "ms", semantic_target),
        Figure("HTTP semantic with vector, p99", percentile(semantic_latency, 0.99) * 1000, "ms"),
        Figure("HTTP p50 / raw SQL p50", median(semantic_latency) / median(raw), "x", ratio_target),
        Figure("recall@10 against exact search", recall, "", "≥ 0.95"),
        Figure("HTTP semantic with vector through httpx, p50", median(httpx_latency) * 1000, "ms"),
        Figure("HTTP keyword, p50", median(keyword_latency) * 1000, "ms"),
        Figure("HTTP keyword, p99", percentile(keyword_latency, 0.99) * 1000, "ms"),
        Figure("HTTP hybrid with vector, p50", median(hybrid_latency) * 1000, "ms", hybrid_target),
        Figure("HTTP hybrid with vector, p99", percentile(hybrid_latency, 0.99) * 1000, "ms"),
        Figure("HTTP hybrid embedding the text, p50", median(text_latency) * 1000, "ms", text_target),
        Figure("HTTP hybrid embedding the text, p99", percentile(text_latency, 0.99) * 1000, "ms"),
        Figure("hybrid with vector, 8 concurrent clients", qps, "queries/s"),
    ]
    details = {"documents": count, "queries": queries, "ef_search": ef_search, "build_seconds": build_seconds,
               "data": "synthetic clustered", "settled_seconds": settled}  # fmt: skip
    report("search" if at_100k else f"search-{count}", figures, details)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef-search", type=int, default=SearchSettings.ef_search)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.documents, arguments.queries, arguments.ef_search))
