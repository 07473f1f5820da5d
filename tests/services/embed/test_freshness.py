"""The freshness histogram: seconds from an event's arrival at ingest to its vector being stored."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.embed.app import create_app
from services.embed.settings import EmbedSettings
from shared import topics
from shared.kafka import create_producer
from shared.records import EventEnvelope, utcnow
from shared.settings import load
from tests.metrics import MetricDelta
from tests.services.conftest import Ingest


async def test_events_land_in_the_buckets_of_their_age(
    ingest: Ingest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tenant = str(ingest.tenant.id)
    # Bucket counts are cumulative: `le` counts every observation at or below it.
    late_10 = MetricDelta("chorus_freshness_seconds_bucket", source="jira", le="10.0")
    late_30 = MetricDelta("chorus_freshness_seconds_bucket", source="jira", le="30.0")
    fresh_10 = MetricDelta("chorus_freshness_seconds_bucket", source="slack", le="10.0")
    fresh_count = MetricDelta("chorus_freshness_seconds_count", source="slack")
    now = utcnow()
    events = [
        # Arrived at ingest 20 s ago (a producer's record waited on the topic): lands in (10, 30].
        EventEnvelope(source="jira", event_type="issue", external_id="late", text="a ticket that waited",
                      tenant_id=tenant, received_at=now - timedelta(seconds=20)),
        # Arrived now: lands at or below 10 s.
        EventEnvelope(source="slack", event_type="message", external_id="fresh", text="a message just in",
                      tenant_id=tenant, received_at=now),
    ]  # fmt: skip
    producer = create_producer(ingest.env["CHORUS_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topics.RAW_EVENTS.full_name(ingest.env["CHORUS_TOPIC_PREFIX"]),
                                         event.to_bytes(), key=f"{tenant}:{event.external_id}".encode())  # fmt: skip
    finally:
        await producer.stop()
    cache = str(tmp_path_factory.getbasetemp() / "models")
    settings = load(EmbedSettings, {**ingest.env, "CHORUS_MODEL_CACHE": cache, "CHORUS_EMBED_BATCH_WAIT_MS": "10"})
    late_count = MetricDelta("chorus_freshness_seconds_count", source="jira")
    with TestClient(create_app(settings)):
        assert await ingest.wait_for("SELECT count(*) FROM document_embeddings", 2) == 2
        # Observed when the stored vector is announced, just after the commit.
        async with asyncio.timeout(30):
            while late_count.delta() + fresh_count.delta() < 2:
                await asyncio.sleep(0.1)
    assert (late_10.delta(), late_30.delta()) == (0, 1)
    assert (fresh_10.delta(), fresh_count.delta()) == (1, 1)
    freshness = [metric for metric in REGISTRY.collect() if metric.name == "chorus_freshness_seconds"]
    assert freshness and all("tenant" not in sample.labels for sample in freshness[0].samples)
