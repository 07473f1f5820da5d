"""Search relevance on the labelled fan DMs: nDCG@10, recall@10 and MRR per mode, empty answers, typos.

Needs the stack of `make up` (its Postgres). The DMs of bench/data/dm_intents.jsonl are stored as
documents, with their vectors from the local model, in a database of their own
(`chorus_bench_relevance`, migrated like the real one; vectors cached in .chorus/bench). Each DM
whose intent has others is a query; the other DMs of its intent are the relevant documents, and
the query's own DM is hidden (deleted in a savepoint rolled back after the query). The modes run
the search service's own query functions in a tenant transaction, as the route does. Not through
ingest and HTTP: hiding the query's own DM (which would otherwise be every query's first result
and, in hybrid, its feedback) needs that savepoint. With CHORUS_DATABASE_URL and
CHORUS_ADMIN_DATABASE_URL it runs on any Postgres instead of `make up`'s. Sets: the
DMs as written; the same with one word misspelt (two inner letters swapped in the longest word);
and the intent-less `singleton` DMs, where the right answer is nothing: how many results they get.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import numpy as np

from bench.report import RESULTS, Figure, report
from launcher.stack.local import LocalStack, ensure_database, with_database
from services.search import queries, relevance
from services.search.settings import SearchSettings
from shared import tenants
from shared.db import create_pool, tenant_transaction
from shared.embedding import create_provider
from shared.hashing import text_hash
from shared.migrate import migrate
from shared.settings import load

DATA = Path("bench") / "data" / "dm_intents.jsonl"
DATABASE = "chorus_bench_relevance"
TENANT = "bench-relevance"
CACHE = RESULTS / "cache" / "relevance_vectors.json"  # outside `make bench`'s rm of results
NO_INTENT = "singleton"
MODES = ("semantic", "keyword", "hybrid")
WORD = re.compile(r"[A-Za-z]{5,}")
T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    document: uuid.UUID  # the query's own DM, left out of its results
    text: str
    relevant: frozenset[uuid.UUID]


def document_id(number: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"chorus-bench-relevance/{number}")


def labelled() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return [(row["text"], row["intent"]) for row in rows]


def misspelt(text: str) -> str | None:
    """`text` with two inner letters of its longest word swapped (None: no word of 5 letters)."""
    words = WORD.findall(text)
    if not words:
        return None
    word = max(words, key=len)
    middle = len(word) // 2
    typo = word[: middle - 1] + word[middle] + word[middle - 1] + word[middle + 1 :]
    return text.replace(word, typo if typo != word else word[:middle] + word[middle + 1 :], 1)


def query_sets(rows: list[tuple[str, str]]) -> dict[str, list[Query]]:
    by_intent: dict[str, set[uuid.UUID]] = {}
    for number, (_, intent) in enumerate(rows):
        by_intent.setdefault(intent, set()).add(document_id(number))
    dms, typos, none = [], [], []
    for number, (text, intent) in enumerate(rows):
        own = document_id(number)
        if intent == NO_INTENT:
            none.append(Query(own, text, frozenset()))
            continue
        query = Query(own, text, frozenset(by_intent[intent] - {own}))
        dms.append(query)
        typo = misspelt(text)
        if typo is not None:
            typos.append(Query(own, typo, query.relevant))
    return {"dms": dms, "typos": typos, "no intent": none}


async def vectors(texts: list[str], settings: SearchSettings) -> dict[str, np.ndarray]:
    """The local model's vector of each text, embedded once and cached in .chorus/bench."""
    cached: dict[str, list[float]] = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    missing = sorted({text for text in texts if text_hash(text).hex() not in cached})
    if missing:
        provider = create_provider(settings)
        try:
            for start in range(0, len(missing), 32):
                batch = missing[start : start + 32]
                for text, embedding in zip(batch, await provider.embed(batch), strict=True):
                    cached[text_hash(text).hex()] = [float(value) for value in embedding.vector]
        finally:
            await provider.close()
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        CACHE.write_text(json.dumps(cached))
    return {text: np.asarray(cached[text_hash(text).hex()], dtype=np.float32) for text in texts}


async def prepare(
    pool: asyncpg.Pool, rows: list[tuple[str, str]], found: dict[str, np.ndarray], model: str
) -> uuid.UUID:
    tenant_id = await tenants.find_tenant(pool, TENANT) or await tenants.create_tenant(pool, TENANT)
    async with tenant_transaction(pool, tenant_id) as db:
        await db.execute("DELETE FROM documents")
        for number, (text, _) in enumerate(rows):
            await db.execute(
                "INSERT INTO documents (id, tenant_id, source, content_type, doc_key, text, content_hash) "
                "VALUES ($1, $2, 'bench', 'text', $3, $4, $5)",
                document_id(number), tenant_id, f"dm-{number}", text, text_hash(text),
            )  # fmt: skip
            await db.execute(
                "INSERT INTO document_embeddings (document_id, tenant_id, model, dimensions, content_hash, embedding) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                document_id(number), tenant_id, model, len(found[text]), text_hash(text), found[text],
            )  # fmt: skip
    return tenant_id


def scores(ranked: list[uuid.UUID], relevant: frozenset[uuid.UUID]) -> tuple[float, float, float]:
    """nDCG@10, recall@10 (of all relevant) and reciprocal rank of the first relevant result."""
    gains = [1.0 if found in relevant else 0.0 for found in ranked[:10]]
    dcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(10, len(relevant))))
    first = next((rank for rank, gain in enumerate(gains, start=1) if gain), None)
    return dcg / ideal if ideal else 0.0, sum(gains) / len(relevant) if relevant else 0.0, 1.0 / first if first else 0.0


async def hidden(db: asyncpg.Connection, document: uuid.UUID, search: Awaitable[T]) -> T:
    """What `search` answers while `document` (the query's own DM) is deleted: in a savepoint
    rolled back afterwards, so no list, no term count and no feedback sees it."""
    await db.execute("SAVEPOINT hidden")
    await db.execute("UPDATE documents SET deleted_at = now() WHERE id = $1", document)
    try:
        return await search
    finally:
        await db.execute("ROLLBACK TO SAVEPOINT hidden")


async def run_set(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    mode: str,
    queries_: list[Query],
    found: dict[str, np.ndarray],
    settings: SearchSettings,
    model: str,
) -> dict[str, float]:
    totals = {"ndcg@10": 0.0, "recall@10": 0.0, "mrr": 0.0, "empty": 0.0, "results": 0.0}
    for query in queries_:
        async with tenant_transaction(pool, tenant_id, queries.semantic_settings(settings.ef_search)) as db:
            hits = await hidden(db, query.document, relevance.search(
                db, mode, query.text, found[query.text], model, queries.Filters(), 10, settings))  # fmt: skip
        ranked = [hit.row["id"] for hit in hits]
        ndcg, recall, reciprocal = scores(ranked, query.relevant)
        for name, value in zip(totals, (ndcg, recall, reciprocal, float(not ranked), len(ranked)), strict=True):
            totals[name] += value
    return {name: value / len(queries_) for name, value in totals.items()}


async def measure(settings: SearchSettings) -> dict[str, dict[str, dict[str, float]]]:
    stack = LocalStack()
    await ensure_database(stack.admin_database_url, DATABASE)
    service_url = with_database(stack.database_url, DATABASE)
    admin_url = with_database(stack.admin_database_url, DATABASE)
    await migrate(admin_url, service_url, embedding_dim=settings.embedding_dimensions)
    rows = labelled()
    sets = query_sets(rows)
    found = await vectors([text for text, _ in rows] + [query.text for query in sets["typos"]], settings)
    model = create_provider(settings).model
    pool = await create_pool(service_url, max_size=2)
    try:
        tenant_id = await prepare(pool, rows, found, model)
        return {name: {mode: await run_set(pool, tenant_id, mode, queries_, found, settings, model) for mode in MODES}
                for name, queries_ in sets.items()}  # fmt: skip
    finally:
        await pool.close()


def figures(measured: dict[str, dict[str, dict[str, float]]]) -> list[Figure]:
    dms, typos, none = measured["dms"], measured["typos"], measured["no intent"]

    def against_better(sets: dict[str, dict[str, float]]) -> float:
        return 100 * sets["hybrid"]["ndcg@10"] / max(sets["semantic"]["ndcg@10"], sets["keyword"]["ndcg@10"])

    rows = [Figure(f"{mode} {name}", value, "") for mode in MODES for name, value in dms[mode].items()
            if name in ("ndcg@10", "recall@10", "mrr")]  # fmt: skip
    rows += [Figure(f"{mode} queries answered with nothing", dms[mode]["empty"] * 100, "%",
                    "≤ 5 %" if mode == "keyword" else "") for mode in MODES]  # fmt: skip
    rows += [
        Figure("hybrid nDCG@10 / semantic", 100 * dms["hybrid"]["ndcg@10"] / dms["semantic"]["ndcg@10"], "%", "≥ 103"),
        Figure("hybrid nDCG@10 / better single mode", against_better(dms), "%", "≥ 100"),
    ]
    rows += [Figure(f"typos: {mode} nDCG@10", typos[mode]["ndcg@10"], "") for mode in MODES]
    rows += [Figure(f"typos: {mode} recall@10 / correct spelling's", 100 * typos[mode]["recall@10"] /
                    dms[mode]["recall@10"], "%", "≥ 80") for mode in MODES]  # fmt: skip
    rows.append(Figure("typos: hybrid nDCG@10 / better single mode", against_better(typos), "%", "≥ 100"))
    rows += [Figure(f"no intent: {mode} results per query", none[mode]["results"], "") for mode in MODES]
    return rows


def table(measured: dict[str, dict[str, dict[str, float]]]) -> str:
    """Every set and mode in one Markdown table (the figures of `make bench`'s summary are these)."""
    lines = ["| set | mode | nDCG@10 | recall@10 | MRR | answered with nothing | results per query |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, modes in measured.items():
        for mode, value in modes.items():
            lines.append(f"| {name} | {mode} | {value['ndcg@10']:.3f} | {value['recall@10']:.3f} | {value['mrr']:.3f} "
                         f"| {100 * value['empty']:.1f} % | {value['results']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    settings = load(SearchSettings)
    measured = asyncio.run(measure(settings))
    print(f"\n### relevance by set and mode\n\n{table(measured)}")
    fusion = {"fusion": settings.fusion, "hybrid_candidates": settings.hybrid_candidates, "rrf_k": settings.rrf_k,
              "keyword_weight": settings.keyword_weight, "feedback": settings.feedback,
              "semantic_floor": settings.semantic_floor}  # fmt: skip
    report("relevance", figures(measured), {"sets": measured, "settings": fusion})


if __name__ == "__main__":
    main()
