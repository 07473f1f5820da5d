"""Freshness under a steady stream: publish -> searchable, p50 and p99.

Needs the stack of `make up`. Sends StreamChat message.new webhooks at RATE a second for DURATION
seconds (each a new message with a text of its own, so each is embedded by the model), then reads
when each one's vector was committed (`document_embeddings.embedded_at`, the database's clock, the
same machine's) and subtracts the moment the webhook was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bench.cpu import cpu_seconds, used_since
from bench.report import Figure, demo_env, median, percentile, poll_demo_tenant, report
from bench.webhooks import direct_message, webhook_headers

SENDERS = 16  # connections; enough that answers of up to 160 ms keep 100 webhooks/s going


def _send(env: dict[str, str], run: str, rate: float, duration: float, creators: int) -> dict[str, datetime]:
    """One webhook every 1/rate seconds, handed to a pool of keep-alive connections so that a slow
    answer does not slow the rate. The standard library's client costs the machine little CPU:
    the load generator stands in for StreamChat's servers and should not compete with the stack."""
    address = urlsplit(env["CHORUS_INGEST_URL"])
    sent: dict[str, datetime] = {}
    refused: list[str] = []
    due: queue.Queue[int | None] = queue.Queue()

    def post_each_due() -> None:
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
        while (number := due.get()) is not None:
            message_id = f"fresh-{run}-{number}"
            text = f"fan {number} of run {run} asks when the next stream starts"
            creator = f"fresh-creator-{run}-{number % creators}"
            body = json.dumps(direct_message(creator, f"fan-{number}", message_id, text, datetime.now(UTC))).encode()
            headers = webhook_headers(body, env["CHORUS_STREAMCHAT_API_KEY"], env["CHORUS_STREAMCHAT_API_SECRET"],
                                      message_id)  # fmt: skip
            sent[message_id] = datetime.now(UTC)
            try:
                connection.request("POST", "/webhooks/streamchat", body, headers)
                answer = connection.getresponse()
                answer.read()
            except (OSError, http.client.HTTPException) as error:
                refused.append(f"{message_id}: {error!r}")
                connection.close()  # the next request opens a new connection
                continue
            if answer.status != 200:
                refused.append(f"{message_id}: {answer.status}")
        connection.close()

    senders = [threading.Thread(target=post_each_due) for _ in range(SENDERS)]
    for sender in senders:
        sender.start()
    started = time.perf_counter()
    for number in range(int(rate * duration)):
        time.sleep(max(0.0, number / rate - (time.perf_counter() - started)))
        due.put(number)
    for _ in senders:
        due.put(None)
    for sender in senders:
        sender.join()
    if refused:
        raise SystemExit(f"{len(refused)} webhooks were not accepted, the first: {refused[0]}")
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


async def main(rate: float, duration: float, creators: int) -> None:
    env = demo_env()
    run = uuid.uuid4().hex[:8]
    cpu_before, started = cpu_seconds(), time.perf_counter()
    sent = await asyncio.to_thread(_send, env, run, rate, duration, creators)
    latencies = list((await _searchable(env, sent, within=120)).values())
    used, elapsed = used_since(cpu_before), time.perf_counter() - started
    cpu_per_event = {part: 1000 * seconds / len(sent) for part, seconds in used.items()}
    report(
        "freshness",
        [
            Figure("events sent", len(sent), ""),
            Figure("achieved rate", len(sent) / duration, "events/s", f"{rate:.0f} events/s"),
            Figure("searchable", 100 * len(latencies) / len(sent), "%", "100 %"),
            Figure("publish -> searchable, p50", median(latencies) * 1000, "ms"),
            Figure("publish -> searchable, p99", percentile(latencies, 0.99) * 1000, "ms", "≤ 1,000 ms"),
            Figure(
                "cores the stack and client kept busy, on average until the last was searchable",
                sum(used.values()) / elapsed,
                "cores",
            ),
            *[
                Figure(f"CPU per event: {part}", milliseconds, "ms")
                for part, milliseconds in sorted(cpu_per_event.items(), key=lambda item: -item[1])
            ],
        ],
        {
            "rate_per_second": rate,
            "duration_s": duration,
            "creators": creators,
            "provider": "the stack's (make up: local int8)",
            "seconds_until_all_searchable": elapsed,
            "cores": os.cpu_count(),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--creators", type=int, default=1, help="creators the messages are spread over")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rate, arguments.duration, arguments.creators))
