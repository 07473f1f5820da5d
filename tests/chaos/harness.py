"""The chaos harness: a stream of mixed events through `chorus up` while services are SIGKILLed,
the broker and Postgres restarted; then every accepted event is checked to be stored exactly once
and the clusters to equal a clean run's over the same events in the same order.

The stack runs with the hash provider (`CHORUS_EMBEDDING_PROVIDER=hash`): texts come from a small
pool, so equal texts cluster together and different ones do not, and the comparison with the
clean run is exact. What is proved here is the pipeline's delivery, not the model.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from bench.webhooks import direct_message, webhook_headers
from launcher.stack.local import LocalStack
from launcher.stack.processes import running_pid
from services.ingest import credentials
from shared import tenants, topics
from shared.db import create_pool, tenant_transaction
from shared.kafka import create_consumer
from shared.records import DeadLetter

KILLABLE = ("ingest", "embed", "cluster")
# What happens to the stack while the events stream, in order, evenly spread over the stream.
SCHEDULE = ("kill", "kill", "kill", "kafka", "kill", "kill", "postgres", "kill", "kill", "kill")
START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TEXTS = [f"question {number}: when is the next stream and will you play the new map" for number in range(25)]


@dataclass(frozen=True)
class Event:
    """One delivery to ingest: `kind` is streamchat, tavus or events."""

    kind: str
    body: Any
    key: str  # webhook id, or what identifies the event for the counts


@dataclass
class Expected:
    messages: set[str] = field(default_factory=set)
    raw_events: set[tuple[str, str]] = field(default_factory=set)
    tavus_callbacks: int = 0
    transcript_turns: set[tuple[str, int]] = field(default_factory=set)


def make_events(count: int, seed: int) -> tuple[list[Event], Expected]:
    """`count` events: StreamChat DMs (70 %), raw Slack/Jira events (15 %), vCon records (5 %), Tavus (10 %)."""
    rng = random.Random(seed)
    events: list[Event] = []
    expected = Expected()
    for number in range(count):
        draw = rng.random()
        if draw < 0.70:
            creator, fan = f"creator-{rng.randrange(4)}", f"fan-{rng.randrange(60)}"
            message_id = f"m-{number}"
            body = direct_message(creator, fan, message_id, rng.choice(TEXTS), START + timedelta(seconds=number))
            events.append(Event("streamchat", body, f"hook-{number}"))
            expected.messages.add(message_id)
        elif draw < 0.85:
            source = rng.choice(["slack", "jira"])
            body = {"source": source, "event_type": "message", "external_id": f"e-{number}",
                    "text": f"{source} event {number}: deploy of bookings-api {number % 7}"}  # fmt: skip
            events.append(Event("events", body, f"e-{number}"))
            expected.raw_events.add((source, f"e-{number}"))
        elif draw < 0.90:
            vcon = {"vcon": "0.3.0", "uuid": f"vcon-{number}", "subject": f"support call {number}",
                    "parties": [{"tel": f"+1555{number:07d}", "name": f"Caller {number}"}],
                    "dialog": [{"type": "text", "parties": [0], "body": f"my invoice {number} was charged twice",
                                "start": "2026-11-17T14:05:12.000Z"}]}  # fmt: skip
            events.append(Event("events", {"source": "vcon", "event_type": "vcon", "external_id": f"vcon-{number}",
                                           "payload": vcon}, f"vcon-{number}"))  # fmt: skip
            expected.raw_events.add(("vcon", f"vcon-{number}"))
        else:
            conversation = f"conv-{number}"
            transcript = [{"role": "user", "content": f"hello, this is call {number}"},
                          {"role": "replica", "content": f"hi! how can I help with order {number}?"}]  # fmt: skip
            body = {"conversation_id": conversation, "event_type": "application.transcription_ready",
                    "message_type": "application", "timestamp": (START + timedelta(seconds=number)).isoformat(),
                    "properties": {"replica_id": "r1", "transcript": transcript}}  # fmt: skip
            events.append(Event("tavus", body, conversation))
            expected.tavus_callbacks += 1
            expected.transcript_turns |= {(conversation, 0), (conversation, 1)}
    return events, expected


@dataclass
class Tenant:
    id: UUID
    api_key: str
    tavus_token: str
    app_key: str
    app_secret: str


class Sender:
    """Sends events in order, each until ingest answers 2xx: a refused or failed request is retried."""

    def __init__(self, ingest_url: str, tenant: Tenant) -> None:
        self.client = httpx.Client(base_url=ingest_url, timeout=10)
        self.tenant = tenant
        self.attempts = 0
        self.accepted = 0
        # Answers other than 2xx and 503 (a dependency down, retry): a 500 is a bug even if a retry passes.
        self.server_errors: list[str] = []

    def send_all(self, events: list[Event]) -> None:
        try:
            for event in events:
                while not self._send(event):
                    time.sleep(0.2)
                self.accepted += 1
        finally:
            self.client.close()

    def _send(self, event: Event) -> bool:
        self.attempts += 1
        try:
            if event.kind == "streamchat":
                raw = json.dumps(event.body).encode()
                headers = webhook_headers(raw, self.tenant.app_key, self.tenant.app_secret, event.key)
                response = self.client.post("/webhooks/streamchat", content=raw, headers=headers)
            elif event.kind == "tavus":
                response = self.client.post("/webhooks/tavus", json=event.body,
                                            headers={"X-Chorus-Token": self.tenant.tavus_token})  # fmt: skip
            else:
                response = self.client.post("/v1/events", json=event.body,
                                            headers={"Authorization": f"Bearer {self.tenant.api_key}"})  # fmt: skip
        except httpx.HTTPError:
            return False
        if 400 <= response.status_code < 500:
            raise AssertionError(f"a valid event was refused: {response.status_code} {response.text}")
        if response.status_code >= 500 and response.status_code != 503:
            self.server_errors.append(f"{response.status_code} {response.text[:200]}")
        return response.is_success


@dataclass
class Chaos:
    """Kills and restarts while the sender runs; records what it did and how long recovery took."""

    stack: LocalStack
    seed: int
    kills: list[str] = field(default_factory=list)
    recoveries: dict[str, float] = field(default_factory=dict)

    def run(self, sender: Sender, total: int, sending: threading.Thread) -> None:
        """Spread SCHEDULE over the stream: each step when its share of the events is accepted."""
        rng = random.Random(self.seed)
        for step, action in enumerate(SCHEDULE, start=1):
            while sending.is_alive() and sender.accepted < total * step / (len(SCHEDULE) + 1):
                time.sleep(0.05)
            if not sending.is_alive():
                return
            if action == "kill":
                self._kill(rng.choice(KILLABLE))
            else:
                self._restart(action)

    def _kill(self, service: str) -> None:
        pid = running_pid(self.stack.home / "run" / f"{service}.pid")
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            self.kills.append(service)
            self._up()

    def _restart(self, part: str) -> None:
        started = time.monotonic()
        if part == "kafka":
            self.stack.broker.stop()
        else:
            self.stack.postgres.stop()
        self._up()
        self.recoveries[part] = time.monotonic() - started

    def _up(self) -> None:
        # `up` starts whatever is not running and waits until every service is ready again.
        for _ in range(3):
            try:
                self.stack.up()
                return
            except Exception:
                time.sleep(1)
        self.stack.up()


async def create_tenant(stack: LocalStack, name: str) -> Tenant:
    pool = await create_pool(stack.database_url, max_size=1)
    try:
        tenant_id = await tenants.create_tenant(pool, name)
        app_key, app_secret = f"{name}-app", f"{name}-secret"
        await credentials.add_streamchat_app(pool, tenant_id, app_key, app_secret)
        return Tenant(tenant_id, await tenants.create_api_key(pool, tenant_id),
                      await credentials.create_tavus_token(pool, tenant_id), app_key, app_secret)  # fmt: skip
    finally:
        await pool.close()


@dataclass
class Stored:
    messages: dict[str, int]
    raw_events: dict[tuple[str, str], int]
    tavus_callbacks: int
    transcript_turns: dict[tuple[str, int], int]
    documents: int
    documents_without_vector: int
    clusters: set[frozenset[str]]


async def stored(stack: LocalStack, tenant_id: UUID) -> Stored:
    pool = await create_pool(stack.database_url, max_size=1)
    try:
        async with tenant_transaction(pool, tenant_id) as db:
            messages = await db.fetch("SELECT message_id, count(*) FROM streamchat_messages GROUP BY 1")
            raw = await db.fetch("SELECT source, external_id, count(*) FROM raw_events GROUP BY 1, 2")
            callbacks = await db.fetchval("SELECT count(*) FROM tavus_webhook_events")
            turns = await db.fetch("SELECT conversation_id, turn_index, count(*) FROM tavus_messages GROUP BY 1, 2")
            documents = await db.fetchval("SELECT count(*) FROM documents WHERE deleted_at IS NULL")
            missing = await db.fetchval(
                "SELECT count(*) FROM documents d WHERE deleted_at IS NULL AND NOT EXISTS ("
                "SELECT FROM document_embeddings e WHERE e.document_id = d.id AND e.content_hash = d.content_hash)"
            )
            members = await db.fetch(
                "SELECT m.cluster_id, s.message_id FROM cluster_members m "
                "JOIN streamchat_messages s ON s.id = m.message_id"
            )
    finally:
        await pool.close()
    clusters: dict[UUID, set[str]] = defaultdict(set)
    for row in members:
        clusters[row["cluster_id"]].add(row["message_id"])
    return Stored(
        messages={row[0]: row[1] for row in messages},
        raw_events={(row[0], row[1]): row[2] for row in raw},
        tavus_callbacks=callbacks,
        transcript_turns={(row[0], row[1]): row[2] for row in turns},
        documents=documents,
        documents_without_vector=missing,
        clusters={frozenset(members) for members in clusters.values()},
    )


async def settled(stack: LocalStack, tenant_id: UUID, expected: Expected, within: float) -> Stored:
    """Wait until everything expected is stored, every document has its vector and clusters stop changing."""
    deadline = time.monotonic() + within
    previous: Stored | None = None
    while True:
        current = await stored(stack, tenant_id)
        done = (
            set(current.messages) >= expected.messages
            and set(current.raw_events) >= expected.raw_events
            and set(current.transcript_turns) >= expected.transcript_turns
            and current.documents_without_vector == 0
            and previous is not None
            and current.clusters == previous.clusters
        )
        if done or time.monotonic() > deadline:
            return current
        previous = current
        await asyncio.sleep(3)


async def dead_letters(stack: LocalStack) -> list[DeadLetter]:
    """Every record on chorus.dlq."""
    name = topics.DLQ.full_name(stack.common.topic_prefix)
    consumer = create_consumer(stack.kafka_bootstrap, f"chaos-dlq-{time.time()}", name)
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        for _ in range(6):
            batches = await consumer.getmany(timeout_ms=500)
            letters += [DeadLetter.from_bytes(record.value or b"") for batch in batches.values() for record in batch]
    finally:
        await consumer.stop()
    return letters


def summary(lines: list[tuple[str, object]]) -> str:
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in lines)


def stack_environment(home: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHORUS_")}
    env.update({
        "CHORUS_HOME": str(home), "CHORUS_DEMO_DATA": "false", "CHORUS_PROMETHEUS": "off",
        "CHORUS_EMBEDDING_PROVIDER": "hash", "CHORUS_TOPIC_PARTITIONS": "3",
        **{f"CHORUS_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    })  # fmt: skip
    return env
