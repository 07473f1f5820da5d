import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from fastapi.testclient import TestClient

from services.embed.agents import Embedder
from services.embed.app import DimensionMismatch, create_app
from services.embed.settings import EmbedSettings
from shared import topics
from shared.db import tenant_transaction
from shared.embedding import create_provider
from shared.kafka import create_consumer, create_producer
from shared.records import DeadLetter, EmbeddedDocument, Record
from shared.settings import load
from shared.stream import Incoming
from tests.fake_openai import FakeOpenAI
from tests.services.conftest import Ingest, sample

T = TypeVar("T", bound=Record)

EMBEDDED = (
    "SELECT count(*) FROM documents d JOIN document_embeddings e ON e.document_id = d.id "
    "AND e.content_hash = d.content_hash WHERE d.deleted_at IS NULL"
)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _settings(env: dict[str, str], **extra: str) -> EmbedSettings:
    return load(EmbedSettings, {**env, "CHORUS_EMBED_BATCH_WAIT_MS": "20", **extra})


def _openai(server: FakeOpenAI) -> dict[str, str]:
    return {"CHORUS_EMBEDDING_PROVIDER": "openai", "CHORUS_OPENAI_BASE_URL": server.base_url,
            "CHORUS_OPENAI_API_KEY": "test-key", "CHORUS_OPENAI_TIMEOUT_SECONDS": "1",
            "CHORUS_EMBED_BACKOFF_SECONDS": "0.05"}  # fmt: skip


async def _read(env: dict[str, str], topic: topics.Topic, record_type: type[T], count: int) -> list[T]:
    """The first `count` records of the test's `topic`, read by a consumer group of its own."""
    consumer = create_consumer(env["CHORUS_KAFKA_BOOTSTRAP"], f"read-{uuid.uuid4()}",
                               topic.full_name(env["CHORUS_TOPIC_PREFIX"]))  # fmt: skip
    await consumer.start()
    found: list[T] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    found += [record_type.from_bytes(record.value) for record in batch]
    except TimeoutError:
        raise AssertionError(f"{len(found)} records on {topic.name}, expected {count}") from None
    finally:
        await consumer.stop()
    return found


async def _embedded_records(env: dict[str, str], count: int) -> list[EmbeddedDocument]:
    return await _read(env, topics.EMBEDDED, EmbeddedDocument, count)


async def test_documents_from_the_ingest_path_get_local_model_vectors(
    ingest: Ingest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = str(tmp_path_factory.getbasetemp() / "models")
    with TestClient(create_app(_settings(ingest.env, CHORUS_MODEL_CACHE=cache))):
        assert ingest.events(sample("raw_events")).status_code == 202
        for number, event in enumerate(sample("streamchat_events")):
            assert ingest.streamchat(event, f"hook-{number}").status_code == 200
        expected = 26 + 7  # raw-event documents and live StreamChat messages
        assert await ingest.wait_for(EMBEDDED, expected, within=120) == expected
        # Read while the service runs: vectors are committed before they are announced.
        records = await _embedded_records(ingest.env, expected + 1)
    assert await ingest.count("SELECT count(DISTINCT (model, dimensions)) FROM document_embeddings") == 1
    assert await ingest.count(EMBEDDED + " AND e.model = 'all-MiniLM-L6-v2-int8' AND e.dimensions = 384") == expected
    inbound = [r for r in records if r.source == "streamchat" and r.direction == "inbound" and r.action == "upsert"]
    assert {r.creator_id for r in inbound} == {"creator-jay"}
    assert all(r.vector is not None and r.vector.shape == (384,) and r.channel_cid for r in inbound)
    assert [r.action for r in records].count("delete") == 1


async def test_the_same_text_twice_costs_one_provider_call(ingest: Ingest, fake_openai: FakeOpenAI) -> None:
    first, second = sample("streamchat_events")[0], json.loads(json.dumps(sample("streamchat_events")[2]))
    second["message"]["text"] = first["message"]["text"]
    with TestClient(create_app(_settings(ingest.env, **_openai(fake_openai)))):
        assert ingest.streamchat(first, "same-1").status_code == 200
        assert await ingest.wait_for(EMBEDDED, 1) == 1
        assert ingest.streamchat(second, "same-2").status_code == 200
        assert await ingest.wait_for(EMBEDDED, 2) == 2
    assert fake_openai.inputs == [first["message"]["text"]]


async def test_a_crash_between_the_database_commit_and_the_offset_commit_leaves_one_row_each(
    ingest: Ingest, fake_openai: FakeOpenAI, pool: asyncpg.Pool
) -> None:
    settings = _settings(ingest.env, **_openai(fake_openai), CHORUS_INGEST_NORMALIZE="true")
    assert ingest.events(sample("raw_events")).status_code == 202
    assert await ingest.wait_for("SELECT count(*) FROM documents", 26) == 26
    # The first life of the embed service: it takes the batch, commits the vectors to Postgres and
    # sends its output, then dies before it commits its Kafka offsets.
    producer = create_producer(settings.kafka_bootstrap)
    await producer.start()
    provider = create_provider(settings)
    embedder = Embedder(settings, pool, producer, provider)
    agent = embedder.agent()
    prefix = settings.topic_prefix
    consumer = create_consumer(settings.kafka_bootstrap, f"{prefix}{agent.group}", agent.topic.full_name(prefix))
    await consumer.start()
    taken = []
    async with asyncio.timeout(30):
        while len(taken) < 26:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                taken += batch
    result = await embedder.embed_documents([Incoming(agent.topic.decode(record.value), record) for record in taken])
    await asyncio.gather(*result.sent)
    await consumer.stop()  # no commit: the offsets stay where they were
    await producer.stop()
    await provider.close()
    assert await ingest.count(EMBEDDED) == 26
    calls = len(fake_openai.inputs)
    # The second life replays the same records from the last committed offset.
    with TestClient(create_app(settings)):
        # Everything the first life took is announced again (ingest may have handed some twice).
        records = await _embedded_records(ingest.env, 2 * len(taken))
    assert (
        {record.document_id for record in records}
        == {uuid.UUID(json.loads(record.value)["document_id"]) for record in taken}
        == set(await _document_ids(pool, ingest))
    )
    assert await ingest.count("SELECT count(*) FROM documents") == 26
    assert await ingest.count(EMBEDDED) == 26
    assert len(fake_openai.inputs) == calls


async def test_provider_faults_delay_documents_but_lose_none(ingest: Ingest, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.extend(["429", "500", "hang", "429", "500"])
    with TestClient(create_app(_settings(ingest.env, **_openai(fake_openai), CHORUS_EMBED_BATCH_SIZE="8"))):
        assert ingest.events(sample("raw_events")).status_code == 202
        assert await ingest.wait_for(EMBEDDED, 26, within=90) == 26
    assert fake_openai.answers[:2] == [429, 500]
    assert fake_openai.answers.count(200) >= 4


async def test_documents_past_the_attempts_are_dead_lettered_and_the_stream_moves_on(
    ingest: Ingest, fake_openai: FakeOpenAI
) -> None:
    fake_openai.always = "500"
    settings = _settings(
        ingest.env, **_openai(fake_openai), CHORUS_EMBED_MAX_ATTEMPTS="2", CHORUS_EMBED_BATCH_SIZE="64"
    )
    with TestClient(create_app(settings)):
        assert ingest.events(sample("raw_events")[:3]).status_code == 202
        letters = await _dead_letters(ingest.env, 3)
        fake_openai.always = "ok"
        assert ingest.events(sample("raw_events")[3:6]).status_code == 202
        assert await ingest.wait_for(EMBEDDED, 3) == 3
    assert {letter.error_class for letter in letters} == {"ProviderGaveUp"}
    assert all("500" in letter.reason and "attempt 2 of 2" in letter.reason for letter in letters)


async def _document_ids(pool: asyncpg.Pool, ingest: Ingest) -> list[uuid.UUID]:
    async with tenant_transaction(pool, ingest.tenant.id) as db:
        return [row["id"] for row in await db.fetch("SELECT id FROM documents")]


async def _dead_letters(env: dict[str, str], count: int) -> list[DeadLetter]:
    return await _read(env, topics.DLQ, DeadLetter, count)


def test_a_dimension_that_does_not_fit_the_database_stops_the_service(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    settings = load(EmbedSettings, {**service_env, "CHORUS_EMBEDDING_DIMENSIONS": "256",
                                    "CHORUS_EMBEDDING_PROVIDER": "hash"})  # fmt: skip
    expected = "CHORUS_EMBEDDING_DIMENSIONS is 256 but document_embeddings.embedding holds 384-d vectors"
    with pytest.raises(DimensionMismatch, match=re.escape(expected)), TestClient(create_app(settings)):
        pass
