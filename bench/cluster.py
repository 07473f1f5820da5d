"""Online clustering quality against the best offline clustering of the same vectors.

Needs the stack of `make up`. Streams bench/data/dm_intents.jsonl (fan DMs labelled by intent)
through the real pipeline as message.new webhooks of one new creator, each from a channel of its
own, in a seeded random order; waits until the cluster service placed every one; then scores
its clusters with ARI and V-measure next to, in the same run and on the vectors the pipeline
stored: scikit-learn's agglomerative clustering (average linkage, cosine, best threshold), and
the plain centroid rule (cosine to the normalized mean) replayed in the same order at its best
threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from bench.report import Figure, demo_env, poll_demo_tenant, report
from bench.webhooks import direct_message, webhook_headers

DATA = Path("bench") / "data" / "dm_intents.jsonl"
THRESHOLDS = np.arange(0.10, 0.95, 0.01)


def _labelled() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return [(row["text"], row["intent"]) for row in rows]


async def _send(env: dict[str, str], creator: str, texts: list[str]) -> None:
    started = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=env["CHORUS_INGEST_URL"], timeout=30) as client:
        for number, text in enumerate(texts):
            body = direct_message(creator, f"fan-{number}", f"{creator}-{number}", text,
                                  started + timedelta(seconds=number))  # fmt: skip
            raw = json.dumps(body).encode()
            headers = webhook_headers(raw, env["CHORUS_STREAMCHAT_API_KEY"], env["CHORUS_STREAMCHAT_API_SECRET"],
                                      f"{creator}-{number}")  # fmt: skip
            response = await client.post("/webhooks/streamchat", content=raw, headers=headers)
            response.raise_for_status()


async def _clustered(
    env: dict[str, str], creator: str, expected: int, within: float
) -> list[tuple[str, str, np.ndarray]]:
    """(message id, cluster id, vector) of every member of the creator's clusters, once all are placed."""
    rows = await poll_demo_tenant(
        env,
        "SELECT s.message_id, m.cluster_id, m.embedding FROM cluster_members m "
        "JOIN clusters c ON c.id = m.cluster_id JOIN streamchat_messages s ON s.id = m.message_id "
        "WHERE c.creator_id = $1",
        creator,
        done=lambda rows: len(rows) >= expected,
        within=within,
        every=0.5,
    )
    return [(row["message_id"], str(row["cluster_id"]), row["embedding"].to_numpy()) for row in rows]


def _best_offline(vectors: np.ndarray, labels: list[str]) -> tuple[float, float, float]:
    """ARI, V-measure and distance threshold of the best average-linkage clustering."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score, v_measure_score

    best = (-1.0, 0.0, 0.0)
    for threshold in THRESHOLDS:
        clustering = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=float(threshold)
        )
        predicted = clustering.fit_predict(vectors)
        best = max(best, (adjusted_rand_score(labels, predicted), v_measure_score(labels, predicted), threshold))
    return best


def _best_plain_centroid(vectors: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """ARI and similarity threshold of the plain centroid rule at its best threshold, same order."""
    from sklearn.metrics import adjusted_rand_score

    best = (-1.0, 0.0)
    for threshold in THRESHOLDS:
        sums: list[np.ndarray] = []
        predicted = []
        for vector in vectors:
            if sums:
                centroids = np.stack(sums)
                similarities = centroids @ vector / np.linalg.norm(centroids, axis=1)
                nearest = int(np.argmax(similarities))
                if similarities[nearest] >= threshold:
                    sums[nearest] = sums[nearest] + vector
                    predicted.append(nearest)
                    continue
            sums.append(vector.copy())
            predicted.append(len(sums) - 1)
        best = max(best, (adjusted_rand_score(labels, predicted), float(threshold)))
    return best


async def main(seed: int) -> None:
    from sklearn.metrics import adjusted_rand_score, v_measure_score

    env = demo_env()
    labelled = _labelled()
    random.Random(seed).shuffle(labelled)
    creator = f"bench-creator-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    await _send(env, creator, [text for text, _ in labelled])
    members = await _clustered(env, creator, len(labelled), within=300)
    elapsed = time.perf_counter() - started
    if len(members) != len(labelled):
        raise SystemExit(f"only {len(members)} of {len(labelled)} messages were clustered within 300 s")
    by_message = {message_id: (cluster_id, vector) for message_id, cluster_id, vector in members}
    order = [f"{creator}-{number}" for number in range(len(labelled))]
    labels = [intent for _, intent in labelled]
    online = [by_message[message_id][0] for message_id in order]
    vectors = np.stack([by_message[message_id][1] for message_id in order])

    online_ari, online_v = adjusted_rand_score(labels, online), v_measure_score(labels, online)
    offline_ari, offline_v, distance = _best_offline(vectors, labels)
    centroid_ari, centroid_threshold = _best_plain_centroid(vectors, labels)
    report(
        "cluster",
        [
            Figure("online ARI (the cluster service)", online_ari, ""),
            Figure("online V-measure", online_v, ""),
            Figure("offline ARI (agglomerative, average linkage, best threshold)", offline_ari, ""),
            Figure("offline V-measure", offline_v, ""),
            Figure("online ARI / offline ARI", online_ari / offline_ari, "", "≥ 0.95"),
            Figure("plain centroid rule ARI (best threshold, same order)", centroid_ari, ""),
            Figure("messages clustered per second, end to end", len(labelled) / elapsed, "msg/s"),
        ],
        {
            "messages": len(labelled),
            "intents": len(set(labels)),
            "online_clusters": len(set(online)),
            "seed": seed,
            "offline_best_cosine_distance": distance,
            "plain_centroid_best_threshold": centroid_threshold,
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(main(parser.parse_args().seed))
