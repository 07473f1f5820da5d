"""`chorus publish` looks up every event's tenant first: what ingest would dead-letter is not sent."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from shared import tenants
from shared.dead_letters import read_to_end
from shared.records import EventEnvelope
from shared.topics import RAW_EVENTS
from tests.launcher.test_cli import _environment, chorus
from tests.services.conftest import sample


@pytest.fixture
def env(service_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return _environment(tmp_path, **service_env)


def _file(tmp_path: Path, events: list[dict[str, object]]) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return str(path)


async def _sent(kafka_bootstrap: str, topic_prefix: str) -> list[EventEnvelope]:
    topic = RAW_EVENTS.full_name(topic_prefix)
    return [EventEnvelope.from_bytes(record.value or b"") async for record in read_to_end(kafka_bootstrap, topic)]


async def test_events_without_a_known_tenant_are_not_sent(
    env: dict[str, str], pool: asyncpg.Pool, tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    acme = await tenants.create_tenant(pool, "acme")
    events = [{key: value for key, value in event.items() if key != "tenant_id"} for event in sample("raw_events")[:3]]

    refused = chorus("publish", _file(tmp_path, events), env=env)
    assert refused.code == 1 and refused.stdout.strip().splitlines()[-1] == "sent 0, failed 3"
    problems = [line for line in refused.stderr.splitlines() if line.startswith("line ")]
    assert problems == [
        f"line {n}: the event names no tenant: set 'tenant_id' in it or pass --tenant" for n in (1, 2, 3)
    ]

    ghosts = [dict(events[0], tenant_id="ghost"), dict(events[1], tenant_id="acme")]
    partly = chorus("publish", _file(tmp_path, ghosts), env=env)
    assert partly.code == 1 and partly.stdout.strip().splitlines()[-1] == "sent 1, failed 1"
    assert "line 1: no tenant is named or has the id 'ghost'; `chorus tenants list` shows them" in partly.stderr

    assert chorus("publish", _file(tmp_path, events), "--tenant", "nobody", env=env).error() == (
        "chorus: no tenant named 'nobody'; `chorus tenants list` shows them"
    )
    assert chorus("publish", _file(tmp_path, events), "--tenant", "acme", env=env).last_line() == "sent 3, failed 0"

    # Only the events with a known tenant reached the topic; --tenant sends the tenant's id.
    sent = await _sent(kafka_bootstrap, topic_prefix)
    assert sorted((event.external_id, event.tenant_id) for event in sent) == sorted(
        [(events[1]["external_id"], "acme")] + [(event["external_id"], str(acme)) for event in events]
    )
