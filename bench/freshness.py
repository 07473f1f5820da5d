"""Freshness under a steady stream: publish -> searchable, p50 and p99.

Needs the stack of `make up`. Sends StreamChat message.new webhooks at RATE a second for DURATION
seconds (each a new message with a text of its own, so each is embedded by the model), then reads
when each one's vector was committed (`document_embeddings.embedded_at`, the database's clock, the
same machine's) and subtracts the moment the webhook was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import httpx

from bench.report import Figure, demo_env, median, percentile, poll_demo_tenant, report
from bench.webhooks import direct_message, webhook_headers


async def _send(env: dict[str, str], run: str, rate: float, duration: float) -> dict[str, datetime]:
    """One webhook every 1/rate seconds, each on its own task: a slow answer does not slow the rate."""
    sent: dict[str, datetime] = {}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=env["CHORUS_INGEST_URL"], timeout=30, limits=limits) as client:

        async def post(number: int) -> None:
            message_id = f"fresh-{run}-{number}"
            text = f"fan {number} of run {run} asks when the next stream starts"
            body = json.dumps(direct_message(f"fresh-creator-{run}", f"fan-{number}", message_id, text,
                                             datetime.now(UTC))).encode()  # fmt: skip
            headers = webhook_headers(body, env["CHORUS_STREAMCHAT_API_KEY"], env["CHORUS_STREAMCHAT_API_SECRET"],
                                      message_id)  # fmt: skip
            sent[message_id] = datetime.now(UTC)
            (await client.post("/webhooks/streamchat", content=body, headers=headers)).raise_for_status()

        started = time.perf_counter()
        tasks = []
        for number in range(int(rate * duration)):
            await asyncio.sleep(max(0.0, number / rate - (time.perf_counter() - started)))
            tasks.append(asyncio.create_task(post(number)))
        await asyncio.gather(*tasks)
    return sent


async def _searchable(env: dict[str, str], sent: dict[str, datetime], within: float) -> dict[str, float]:
    """Seconds from each message's publication to its vector's commit, once all are searchable."""
    rows = await poll_demo_tenant(
        env,
        "SELECT s.message_id, e.embedded_at FROM streamchat_messages s "
        "JOIN document_embeddings e ON e.document_id = s.document_id WHERE s.message_id = ANY($1::text[])",
        list(sent),
        done=lambda rows: len(rows) == len(sent),
        within=within,
        every=1.0,
    )
    return {row["message_id"]: (row["embedded_at"] - sent[row["message_id"]]).total_seconds() for row in rows}


async def main(rate: float, duration: float) -> None:
    env = demo_env()
    run = uuid.uuid4().hex[:8]
    sent = await _send(env, run, rate, duration)
    latencies = list((await _searchable(env, sent, within=120)).values())
    report(
        "freshness",
        [
            Figure("events sent", len(sent), ""),
            Figure("achieved rate", len(sent) / duration, "events/s", f"{rate:.0f} events/s"),
            Figure("searchable", 100 * len(latencies) / len(sent), "%", "100 %"),
            Figure("publish -> searchable, p50", median(latencies) * 1000, "ms"),
            Figure("publish -> searchable, p99", percentile(latencies, 0.99) * 1000, "ms", "≤ 1,000 ms"),
        ],
        {"rate_per_second": rate, "duration_s": duration, "provider": "the stack's (make up: local int8)"},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=60.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rate, arguments.duration))
