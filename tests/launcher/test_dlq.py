"""`chorus dlq`: records that ingest's agent dead-lettered, listed by each filter, shown and replayed."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from fastapi.testclient import TestClient

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared import tenants
from shared.db import tenant_transaction
from shared.dead_letters import read_dead_letters, read_to_end
from shared.kafka import create_producer
from shared.settings import load
from shared.topics import CORRELATION_HEADER, DLQ, RAW_EVENTS
from tests.launcher.test_cli import _environment, chorus

# Named by the event before the tenant exists: dead-lettered now, fine once the tenant is added.
EARLY = {
    "source": "slack",
    "event_type": "message",
    "external_id": "C1/1",
    "text": "the early bird",
    "tenant_id": "late",
}


@pytest.fixture
def ingest(service_env: dict[str, str]) -> Iterator[None]:
    """Ingest's agents at work on the test's topics: what dead-letters the records below."""
    with TestClient(create_app(load(IngestSettings, service_env))):
        yield


@pytest.fixture
def env(service_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return _environment(tmp_path, **service_env)


async def _send(bootstrap: str, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
    producer: AIOKafkaProducer = create_producer(bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def _dead_letters(bootstrap: str, prefix: str, count: int) -> int:
    """Wait until the dead-letter topic holds `count` records; how many it holds then."""
    held = 0
    for _ in range(150):
        held = len([entry async for entry in read_dead_letters(bootstrap, DLQ.full_name(prefix))])
        if held >= count:
            break
        await asyncio.sleep(0.2)
    return held


def _rows(output: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line) for line in output.strip().splitlines()[1:]]


def _ids(output: str) -> list[str]:
    return [row[0] for row in _rows(output)]


async def _raw_records(bootstrap: str, prefix: str) -> list[ConsumerRecord[bytes, bytes]]:
    return [record async for record in read_to_end(bootstrap, RAW_EVENTS.full_name(prefix))]


async def test_dead_letters_are_listed_by_each_filter_shown_and_replayed(
    ingest: None, env: dict[str, str], pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    beta = await tenants.create_tenant(pool, "beta")
    raw = RAW_EVENTS.full_name(topic_prefix)
    # A record that names a tenant nobody added yet, and one that is no event at all.
    await _send(kafka_bootstrap, raw, json.dumps(EARLY).encode(), b"late:C1/1", [(CORRELATION_HEADER, b"corr-early")])
    # One after the other: the list is in the order they failed.
    assert await _dead_letters(kafka_bootstrap, topic_prefix, 1) == 1
    bad = {"tenant_id": str(beta), "source": "Not A Source!", "event_type": "message", "external_id": "x"}
    await _send(kafka_bootstrap, raw, json.dumps(bad).encode(), f"{beta}:x".encode(), [])
    assert await _dead_letters(kafka_bootstrap, topic_prefix, 2) == 2

    everything = chorus("dlq", "list", env=env).ok()
    assert everything.splitlines()[0].split() == [
        "id",
        "failed",
        "topic",
        "service",
        "error",
        "size",
        "tenant",
        "reason",
    ]
    rows = _rows(everything)
    assert [(row[2], row[3], row[4], row[6]) for row in rows] == [
        ("chorus.raw.events", "ingest", "InvalidRecord", "late"),
        ("chorus.raw.events", "ingest", "ValidationError", str(beta)),
    ]
    early_id, bad_id = _ids(everything)
    assert rows[0][5] == str(len(json.dumps(EARLY))) and "no tenant is named" in rows[0][7]

    def listed(*filters: str) -> list[str]:
        return _ids(chorus("dlq", "list", *filters, env=env).ok())

    assert listed("--topic", "chorus.raw.events") == listed("--topic", raw) == [early_id, bad_id]
    assert listed("--topic", "chorus.docs") == []
    assert listed("--reason", "NO TENANT IS") == [early_id]
    assert listed("--reason", "validationerror") == [bad_id]
    assert listed("--tenant", "beta") == listed("--tenant", str(beta)) == [bad_id]
    assert listed("--since", "10m") == [early_id, bad_id]
    assert listed("--until", "10m") == listed("--since", "2099-01-01T00:00Z") == []
    assert listed("--since", "1h", "--until", "2099-01-01", "--reason", "source") == [bad_id]
    assert chorus("dlq", "list", "--tenant", "late", env=env).error() == (
        "chorus: no tenant named 'late'; `chorus tenants list` shows them"
    )
    assert "neither an ISO time nor an age" in chorus("dlq", "list", "--since", "soon", env=env).stderr

    shown = chorus("dlq", "show", early_id, env=env).ok()
    assert f"from:    {raw}[" in shown and "service: ingest" in shown and "key:     late:C1/1" in shown
    assert f"headers: {CORRELATION_HEADER}=corr-early" in shown
    assert "reason:\nno tenant is named or has the id 'late'" in shown
    assert json.loads(shown.split("record:\n", 1)[1]) == EARLY
    assert (
        chorus("dlq", "show", "9:999", env=env).error() == "chorus: no dead letter 9:999; `chorus dlq list` shows them"
    )
    assert "is not a dead letter id" in chorus("dlq", "show", "latest", env=env).error()

    # A dry run says what it would send and sends nothing.
    before = len(await _raw_records(kafka_bootstrap, topic_prefix))
    dry = chorus("dlq", "replay", early_id, "--dry-run", env=env).ok()
    assert dry.splitlines() == [
        f"would send {early_id} to {raw} ({len(json.dumps(EARLY))} bytes)",
        "would send 1, skipped 0",
    ]
    assert len(await _raw_records(kafka_bootstrap, topic_prefix)) == before
    assert "name the dead letters" in chorus("dlq", "replay", env=env).error()

    # After the fix (the tenant exists), the replayed record lands on its topic as it came, and is stored.
    late = await tenants.create_tenant(pool, "late")
    assert chorus("dlq", "replay", early_id, env=env).ok().splitlines()[-1] == "sent 1, skipped 0"
    records = await _raw_records(kafka_bootstrap, topic_prefix)
    assert len(records) == before + 1
    replayed = [record for record in records if "chorus-replay-of" in dict(record.headers)]
    assert [(record.key, record.value, dict(record.headers)) for record in replayed] == [
        (
            b"late:C1/1",
            json.dumps(EARLY).encode(),
            {CORRELATION_HEADER: b"corr-early", "chorus-replay-of": early_id.encode()},
        )
    ]
    assert await _stored_events(pool, late) == ["C1/1"]

    # A record that is still bad is dead-lettered again, saying which dead letter it replays.
    assert chorus("dlq", "replay", "--tenant", "beta", env=env).ok().splitlines()[-1] == "sent 1, skipped 0"
    assert await _dead_letters(kafka_bootstrap, topic_prefix, 3) == 3
    again = _ids(chorus("dlq", "list", "--tenant", "beta", env=env).ok())
    assert again[0] == bad_id and len(again) == 2
    assert f"chorus-replay-of={bad_id}" in chorus("dlq", "show", again[1], env=env).ok()


async def _stored_events(pool: asyncpg.Pool, tenant_id: UUID) -> list[str]:
    for _ in range(100):
        async with tenant_transaction(pool, tenant_id) as db:
            found = [row[0] for row in await db.fetch("SELECT external_id FROM raw_events")]
        if found:
            return found
        await asyncio.sleep(0.2)
    return []
