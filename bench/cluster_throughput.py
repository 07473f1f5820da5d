"""Cluster throughput for one creator, a burst of DMs end to end, and the CPU each part spends.

Needs the stack of `make up`. Three figures:
- the cluster service alone: messages of one new creator stored straight in the database (as
  ingest stores them) and their vectors published straight to chorus.embedded; messages/s from
  the first record published until every message is a member of a cluster;
- a burst of BURST message.new webhooks to one new creator (each fan a channel of its own, texts
  of the labelled DMs made distinct), sent as fast as ingest answers: seconds until all are clustered;
- CPU per event by part over the burst, from /proc (bench/cpu.py): ingest, embed, cluster,
  Postgres, Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from bench.cpu import cpu_seconds, settle, used_since
from bench.report import Figure, demo_env, poll_demo_tenant, report
from bench.webhooks import direct_message, webhook_headers
from shared import topics
from shared.db import create_pool, tenant_transaction
from shared.kafka import create_producer
from shared.records import EmbeddedDocument, utcnow

DATA = Path("bench") / "data" / "dm_intents.jsonl"
START = datetime(2026, 11, 20, 19, 0, tzinfo=UTC)
SENDERS = 16
TOPICS = 40


def _topic_vectors(count: int, dimensions: int, seed: int = 7) -> np.ndarray:
    """Noisy vectors around TOPICS directions: fan DMs about a few dozen questions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(TOPICS, dimensions))
    vectors = centres[rng.integers(TOPICS, size=count)] + rng.normal(scale=1.1, size=(count, dimensions))
    unit: np.ndarray = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return unit


async def _members(env: dict[str, str], creator: str, expected: int, within: float) -> int:
    rows = await poll_demo_tenant(
        env,
        "SELECT count(*) AS members FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
        "WHERE c.creator_id = $1",
        creator,
        done=lambda rows: rows[0]["members"] >= expected,
        within=within,
        every=0.1,
    )
    members: int = rows[0]["members"]
    return members


async def cluster_alone(env: dict[str, str], count: int) -> tuple[float, dict[str, float]]:
    """Messages/s of the cluster service for one creator, and its CPU seconds."""
    tenant_id = uuid.UUID(env["CHORUS_DEMO_TENANT"])
    creator = f"bench-alone-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(env["CHORUS_DATABASE_URL"], max_size=1)
    try:
        dimensions = await pool.fetchval(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'cluster_members'::regclass AND attname = 'embedding'"
        )
        vectors = _topic_vectors(count, dimensions)
        hashes = [vector.tobytes()[:32] for vector in vectors]
        async with tenant_transaction(pool, tenant_id) as db:
            rows = await db.fetch(
                """
                INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, visitor_id,
                                                 direction, text, content_hash, message_created_at)
                SELECT $1, $2 || n, $3, 'messaging:' || $2 || n, 'fan-' || n, 'inbound', 'bench message ' || n,
                       h, $5::timestamptz + n * interval '1 second'
                FROM unnest($4::bytea[]) WITH ORDINALITY AS u (h, n)
                RETURNING id, message_id
                """,
                tenant_id, f"{creator}-", creator, hashes, START,
            )  # fmt: skip
        row_ids = {row["message_id"]: row["id"] for row in rows}
    finally:
        await pool.close()
    producer = create_producer(env["CHORUS_KAFKA_BOOTSTRAP"])
    await producer.start()
    before = cpu_seconds()
    started = time.perf_counter()
    try:
        received = utcnow()
        for number, (vector, content_hash) in enumerate(zip(vectors, hashes, strict=True), start=1):
            message_id = f"{creator}-{number}"
            record = EmbeddedDocument(
                document_id=uuid.uuid4(), tenant_id=tenant_id, source="streamchat", content_type="message",
                content_hash=content_hash.hex(), creator_id=creator, channel_cid=f"messaging:{message_id}",
                received_at=received, message_row_id=row_ids[message_id], message_id=message_id,
                direction="inbound", is_paid=False, model="bench", vector_b64=EmbeddedDocument.encode_vector(vector),
            )  # fmt: skip
            await topics.EMBEDDED.send(producer, "", record)
        await producer.flush()
    finally:
        await producer.stop()
    clustered = await _members(env, creator, count, within=300)
    elapsed = time.perf_counter() - started
    if clustered < count:
        raise SystemExit(f"the cluster service placed {clustered} of {count} messages within 300 s")
    return count / elapsed, used_since(before)


def _post_all(env: dict[str, str], creator: str, texts: list[str]) -> None:
    """Every webhook, over SENDERS keep-alive connections; the standard library's client costs little CPU."""
    address = urlsplit(env["CHORUS_INGEST_URL"])
    numbers = iter(range(len(texts)))
    lock = threading.Lock()
    refused: list[str] = []

    def post() -> None:
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=60)
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                break
            message_id = f"{creator}-{number}"
            body = json.dumps(direct_message(creator, f"fan-{number}", message_id, texts[number],
                                             START + timedelta(seconds=number))).encode()  # fmt: skip
            headers = webhook_headers(body, env["CHORUS_STREAMCHAT_API_KEY"], env["CHORUS_STREAMCHAT_API_SECRET"],
                                      message_id)  # fmt: skip
            connection.request("POST", "/webhooks/streamchat", body, headers)
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                refused.append(f"{message_id}: {answer.status}")
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if refused:
        raise SystemExit(f"ingest refused {len(refused)} webhooks, the first: {refused[0]}")


async def burst(env: dict[str, str], count: int) -> tuple[float, float, dict[str, float]]:
    """Seconds to send `count` DMs to one creator, seconds until all are clustered, CPU seconds by part."""
    labelled = [json.loads(line)["text"] for line in DATA.read_text().splitlines() if line.strip()]
    # Distinct texts, in this run and from every earlier run, so that each is embedded: the same
    # text would reuse a stored vector (the embedding cache).
    run = uuid.uuid4().hex[:8]
    texts = [f"{labelled[number % len(labelled)]} ({run} {number // len(labelled)})" for number in range(count)]
    creator = f"bench-burst-{run}"
    before = cpu_seconds()
    started = time.perf_counter()
    await asyncio.to_thread(_post_all, env, creator, texts)
    sent = time.perf_counter() - started
    clustered = await _members(env, creator, count, within=600)
    elapsed = time.perf_counter() - started
    if clustered < count:
        raise SystemExit(f"{clustered} of {count} DMs were clustered within 600 s")
    return sent, elapsed, used_since(before)


async def main(alone_count: int, burst_count: int) -> None:
    env = demo_env()
    settled = await asyncio.to_thread(settle)
    rate, alone_cpu = await cluster_alone(env, alone_count)
    sent, elapsed, burst_cpu = await burst(env, burst_count)
    per_event = {part: seconds / burst_count * 1000 for part, seconds in sorted(burst_cpu.items())}
    figures = [
        Figure("cluster service alone, one creator (vectors to chorus.embedded)", rate, "msg/s", "≥ 1,000"),
        Figure("cluster service CPU per message, alone", alone_cpu.get("cluster", 0.0) / alone_count * 1000, "ms"),
        Figure(f"burst of {burst_count:,} DMs to one creator: all sent", sent, "s"),
        Figure(f"burst of {burst_count:,} DMs to one creator: all clustered", elapsed, "s"),
        Figure("burst: DMs clustered per second, end to end", burst_count / elapsed, "msg/s"),
        *[Figure(f"CPU per DM in the burst: {part}", ms, "ms") for part, ms in per_event.items()],
        Figure("CPU per DM in the burst: all parts", sum(per_event.values()), "ms"),
    ]
    report(
        "cluster_throughput",
        figures,
        {"alone_messages": alone_count, "burst_messages": burst_count, "alone_topics": TOPICS,
         "alone_cpu_seconds": alone_cpu, "burst_cpu_seconds": burst_cpu, "senders": SENDERS,
         "settled_seconds": settled},
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alone", type=int, default=5000, help="messages for the cluster service alone")
    parser.add_argument("--burst", type=int, default=5000, help="DMs in the burst")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.alone, arguments.burst))
