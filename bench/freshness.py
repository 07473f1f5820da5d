"""Freshness under a steady stream: publish -> searchable, p50 and p99.

Needs the stack of `make up`. Sends StreamChat message.new webhooks at RATE a second for DURATION
seconds (each a new message with a text of its own, so each is embedded by the model), then reads
when each one's vector was committed (`document_embeddings.embedded_at`, the database's clock, the
same machine's) and subtracts the moment the webhook was sent.

With --replica (a stack of `chorus up --postgres-replica`), it also polls search's replica
(CHORUS_SEARCH_DATABASE_URL of demo.env) every POLL_SECONDS while sending, and takes the moment each
message's vector is first seen there, on the clock that stamped the send: publish -> searchable on
the replica, the primary's figure plus the replica's lag.
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

from bench.cpu import cpu_seconds, settle, used_since
from bench.report import Figure, demo_env, median, percentile, poll_demo_tenant, report
from bench.webhooks import direct_message, webhook_headers
from shared.db import create_pool, tenant_transaction

SENDERS = 16  # connections; enough that answers of up to 160 ms keep 100 webhooks/s going
POLL_SECONDS = 0.05  # the replica's figures are late by up to this plus one query
VECTORS_OF = (
    "SELECT s.message_id FROM streamchat_messages s "
    "JOIN document_embeddings e ON e.document_id = s.document_id WHERE s.message_id = ANY($1::text[])"
)


def _send(
    env: dict[str, str], run: str, rate: float, duration: float, creators: int, sent: dict[str, datetime]
) -> None:
    """One webhook every 1/rate seconds, handed to a pool of keep-alive connections so that a slow
    answer does not slow the rate; `sent` gets each message's id and its sending time as it goes.
    The standard library's client costs the machine little CPU: the load generator stands in for
    StreamChat's servers and should not compete with the stack."""
    address = urlsplit(env["CHORUS_INGEST_URL"])
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


async def _seen_on_replica(
    env: dict[str, str], sent: dict[str, datetime], sending: asyncio.Future[None], within: float
) -> dict[str, float]:
    """Seconds from each message's publication until its vector was first seen on the replica,
    polled while the messages are sent and until all are seen or `within` seconds after the last."""
    pool = await create_pool(env["CHORUS_SEARCH_DATABASE_URL"], max_size=1)
    seen: dict[str, datetime] = {}
    deadline = float("inf")
    try:
        while True:
            # A copy: the sending threads add to `sent` meanwhile (dict.copy holds the GIL throughout).
            waiting = [message_id for message_id in sent.copy() if message_id not in seen]
            if waiting:
                async with tenant_transaction(pool, env["CHORUS_DEMO_TENANT"]) as db:
                    rows = await db.fetch(VECTORS_OF, waiting)
                # When the answer came: visible by then, at most one poll and one query after it was.
                now = datetime.now(UTC)
                seen.update((row["message_id"], now) for row in rows)
            if sending.done():
                deadline = min(deadline, time.perf_counter() + within)
                if len(seen) == len(sent) or time.perf_counter() > deadline:
                    break
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await pool.close()
    return {message_id: (at - sent[message_id]).total_seconds() for message_id, at in seen.items()}


def _replica_figures(on_primary: dict[str, float], on_replica: dict[str, float], sent: int) -> list[Figure]:
    latencies = list(on_replica.values())
    # Per message, the replica's figure less the primary's: the lag, plus the poll's resolution.
    behind = [on_replica[message_id] - on_primary[message_id] for message_id in on_replica.keys() & on_primary]
    return [
        Figure("searchable on the replica", 100 * len(latencies) / sent, "%", "100 %"),
        Figure("publish -> searchable on the replica, p50", median(latencies) * 1000, "ms"),
        Figure("publish -> searchable on the replica, p99", percentile(latencies, 0.99) * 1000, "ms", "≤ 1,000 ms"),
        Figure("replica later than the primary, p50", median(behind) * 1000, "ms"),
        Figure("replica later than the primary, p99", percentile(behind, 0.99) * 1000, "ms"),
    ]


async def main(rate: float, duration: float, creators: int, replica: bool) -> None:
    env = demo_env()
    if replica and "CHORUS_SEARCH_DATABASE_URL" not in env:
        raise SystemExit("--replica: the stack has no replica; start it with `chorus up --postgres-replica`")
    settled = await asyncio.to_thread(settle)
    run = uuid.uuid4().hex[:8]
    sent: dict[str, datetime] = {}
    cpu_before, started = cpu_seconds(), time.perf_counter()
    sending = asyncio.ensure_future(asyncio.to_thread(_send, env, run, rate, duration, creators, sent))
    watching = asyncio.ensure_future(_seen_on_replica(env, sent, sending, within=120)) if replica else None
    await sending
    on_primary = await _searchable(env, sent, within=120)
    on_replica = await watching if watching is not None else {}
    if replica and not on_replica:
        raise SystemExit("no message reached the replica within 120 s: see `chorus status` and its postgres.log")
    latencies = list(on_primary.values())
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
            *(_replica_figures(on_primary, on_replica, len(sent)) if replica else []),
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
            "replica": replica,
            "settled_seconds": settled,
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--creators", type=int, default=1, help="creators the messages are spread over")
    parser.add_argument(
        "--replica", action="store_true", help="also measure to search's replica (`chorus up --postgres-replica`)"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rate, arguments.duration, arguments.creators, arguments.replica))
