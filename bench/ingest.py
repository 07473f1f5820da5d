"""How many StreamChat webhooks a second the ingest endpoint answers, each acknowledged by Kafka.

Needs the stack of `make up` (reads .chorus/demo.env). Sends signed message.new webhooks with
distinct message ids from CONCURRENCY clients for DURATION seconds, then waits until every
accepted one is a row in Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.report import Figure, demo_env, median, percentile, poll_demo_tenant, report
from bench.webhooks import webhook_headers

TEMPLATE = Path("deploy") / "demo" / "streamchat_events.jsonl"


async def _sender(client: httpx.AsyncClient, env: dict[str, str], run: str, stop_at: float,
                  latencies: list[float], statuses: dict[int, int], worker: int) -> None:  # fmt: skip
    template = json.loads(TEMPLATE.read_text().splitlines()[0])
    secret = env["CHORUS_STREAMCHAT_API_SECRET"]
    number = 0
    while time.perf_counter() < stop_at:
        event: dict[str, Any] = copy.deepcopy(template)
        event["message"]["id"] = f"bench-{run}-{worker}-{number}"
        event["message"]["text"] = f"bench message {number} from worker {worker}: when is the next stream?"
        body = json.dumps(event).encode()
        headers = webhook_headers(body, env["CHORUS_STREAMCHAT_API_KEY"], secret, f"{run}-{worker}-{number}")
        started = time.perf_counter()
        response = await client.post("/webhooks/streamchat", content=body, headers=headers)
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        number += 1


async def _landed(env: dict[str, str], run: str, expected: int, within: float) -> tuple[int, float]:
    """How many of the run's messages are stored, once all are or `within` seconds passed, and when."""
    started = time.perf_counter()
    rows = await poll_demo_tenant(
        env,
        "SELECT count(*) FROM streamchat_messages WHERE message_id LIKE $1",
        f"bench-{run}-%",
        done=lambda rows: rows[0][0] >= expected,
        within=within,
    )
    return rows[0][0], time.perf_counter() - started


async def main(duration: float, concurrency: int) -> None:
    env = demo_env()
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=env["CHORUS_INGEST_URL"], limits=limits, timeout=30) as client:
        warm_until = time.perf_counter() + 2
        await asyncio.gather(*(_sender(client, env, f"{run}w", warm_until, [], {}, w) for w in range(concurrency)))
        started = time.perf_counter()
        stop_at = started + duration
        await asyncio.gather(*(_sender(client, env, run, stop_at, latencies, statuses, w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    accepted = statuses.get(200, 0)
    landed, drain_seconds = await _landed(env, run, accepted, within=120)
    report(
        "ingest",
        [
            Figure("StreamChat webhooks answered 200 per second", accepted / elapsed, "req/s"),
            Figure("latency p50", median(latencies) * 1000, "ms"),
            Figure("latency p99", percentile(latencies, 0.99) * 1000, "ms"),
            Figure("accepted webhooks stored as rows", 100 * landed / max(accepted, 1), "%", "100 %"),
            Figure("time for the backlog to be stored after the load", drain_seconds, "s"),
        ],
        {
            "duration_s": elapsed,
            "concurrency": concurrency,
            "statuses": statuses,
            "accepted": accepted,
            "stored": landed,
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.duration, arguments.concurrency))
