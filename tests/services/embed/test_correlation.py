"""The ingest correlation id travels in Kafka headers from the webhook to chorus.embedded, and log
lines written while a record is processed carry it."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from fastapi.testclient import TestClient

from services.embed.app import create_app
from services.embed.settings import EmbedSettings
from services.ingest.topics import RAW_STREAMCHAT
from shared import topics
from shared.kafka import create_consumer
from shared.logging import JsonFormatter, bound
from shared.settings import load
from shared.topics import correlation_of
from tests.services.conftest import Ingest, sample


async def _headers_on(env: dict[str, str], topic: topics.Topic) -> list[str | None]:
    consumer = create_consumer(env["CHORUS_KAFKA_BOOTSTRAP"], f"read-{uuid.uuid4()}",
                               topic.full_name(env["CHORUS_TOPIC_PREFIX"]))  # fmt: skip
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                found = [correlation_of(record.headers) for records in batches.values() for record in records]
                if found:
                    return found
    finally:
        await consumer.stop()


async def test_the_correlation_id_reaches_chorus_embedded(
    ingest: Ingest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = str(tmp_path_factory.getbasetemp() / "models")
    settings = load(EmbedSettings, {**ingest.env, "CHORUS_MODEL_CACHE": cache, "CHORUS_EMBED_BATCH_WAIT_MS": "10"})
    with TestClient(create_app(settings)):
        response = ingest.streamchat(sample("streamchat_events")[0], "trace-hook", **{"X-Request-Id": "trace-7f3a"})
        assert response.headers["X-Correlation-Id"] == "trace-7f3a"
        for topic in (RAW_STREAMCHAT, topics.DOCS, topics.EMBEDDED):
            assert await _headers_on(ingest.env, topic) == ["trace-7f3a"], topic.name


def test_log_lines_carry_the_bound_fields() -> None:
    record = logging.LogRecord("chorus", logging.WARNING, __file__, 1, "a dependency failed", None, None)
    formatter = JsonFormatter("embed")
    with bound(correlation_id="trace-7f3a", topic="chorus.docs", offset=41):
        line = json.loads(formatter.format(record))
    assert (line["service"], line["correlation_id"], line["offset"]) == ("embed", "trace-7f3a", 41)
    assert "correlation_id" not in json.loads(formatter.format(record))
