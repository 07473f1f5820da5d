import asyncio

from shared.db import tenant_transaction
from tests.metrics import MetricDelta
from tests.services.conftest import Ingest, sample


async def test_the_sample_callbacks_become_conversations_turns_and_documents(ingest: Ingest) -> None:
    callbacks = sample("tavus_callbacks")
    for callback in callbacks:
        response = ingest.tavus(callback)
        assert response.status_code == 200, response.text
    assert await ingest.wait_for("SELECT count(*) FROM tavus_webhook_events", len(callbacks)) == len(callbacks)
    transcripts = {
        c["conversation_id"]: c["properties"]["transcript"] for c in callbacks if "transcript" in c["properties"]
    }
    spoken = sum(1 for turns in transcripts.values() for turn in turns if turn["role"] in ("user", "assistant"))
    assert await ingest.wait_for("SELECT count(*) FROM documents", spoken + 2) == spoken + 2
    async with tenant_transaction(ingest.pool, ingest.tenant.id) as db:
        conversations = await db.fetch(
            "SELECT conversation_id, status, shutdown_reason, recording_uri IS NOT NULL AS recorded, "
            "perception_analysis IS NOT NULL AS analysed, replica_id FROM tavus_conversations ORDER BY 1"
        )
        turns = await db.fetch("SELECT conversation_id, turn_index, role, content FROM tavus_messages ORDER BY 1, 2")
        kinds = await db.fetch("SELECT content_type, count(*) FROM documents GROUP BY 1 ORDER BY 1")
    shutdown = {
        c["conversation_id"]: c["properties"]["shutdown_reason"]
        for c in callbacks
        if c["event_type"] == "system.shutdown"
    }
    assert [tuple(row)[:5] for row in conversations] == [
        (conversation, "ended", shutdown[conversation], True, True) for conversation in sorted(shutdown)
    ]
    assert all(row["replica_id"] for row in conversations)
    expected_turns = [
        (conversation, index, turn["role"], turn["content"])
        for conversation in sorted(transcripts)
        for index, turn in enumerate(transcripts[conversation])
    ]
    assert [tuple(row) for row in turns] == expected_turns
    assert [tuple(row) for row in kinds] == [("perception_analysis", 2), ("transcript", spoken)]


async def test_a_repeated_callback_is_dropped_by_its_event_hash(ingest: Ingest) -> None:
    callback = sample("tavus_callbacks")[2]
    for _ in range(3):
        assert ingest.tavus(callback).status_code == 200
    changed = dict(callback, timestamp="2026-11-18T15:20:00Z")
    assert ingest.tavus(changed).status_code == 200
    assert await ingest.wait_for("SELECT count(*) FROM tavus_webhook_events", 2) == 2
    turns = len(callback["properties"]["transcript"])
    assert await ingest.count("SELECT count(*) FROM tavus_messages") == turns


def test_the_tavus_token_is_required(ingest: Ingest) -> None:
    callback = sample("tavus_callbacks")[0]
    assert ingest.client.post("/webhooks/tavus", json=callback).status_code == 401
    assert ingest.client.post("/webhooks/tavus?token=wrong", json=callback).status_code == 401
    by_query = ingest.client.post(f"/webhooks/tavus?token={ingest.tenant.tavus_token}", json=callback)
    assert by_query.status_code == 200


def test_a_callback_without_a_conversation_is_a_400(ingest: Ingest) -> None:
    response = ingest.tavus({"event_type": "system.shutdown", "properties": {}})
    assert response.status_code == 400
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "'conversation_id' must be a non-empty string of at most 256 characters",
        "errors": [],
    }


async def test_a_redelivered_callback_hands_on_the_documents_not_yet_embedded(ingest: Ingest) -> None:
    """A callback stored, then redelivered before its documents were embedded (the process may
    have stopped between the commit and the send): the redelivery sends them again."""
    emitted = MetricDelta("chorus_ingest_documents_emitted_total", source="tavus", action="upsert")
    duplicates = MetricDelta("chorus_ingest_duplicates_total", source="tavus", reason="event_hash")
    callback = sample("tavus_callbacks")[2]
    spoken = sum(1 for turn in callback["properties"]["transcript"] if turn["role"] in ("user", "assistant"))
    assert ingest.tavus(callback).status_code == 200
    assert await ingest.wait_for("SELECT count(*) FROM documents", spoken) == spoken
    assert ingest.tavus(callback).status_code == 200
    for _ in range(200):
        if duplicates.delta() >= 1 and emitted.delta() >= 2 * spoken:
            break
        await asyncio.sleep(0.1)
    assert duplicates.delta() == 1
    assert emitted.delta() == 2 * spoken  # no embed service runs here: every document is still pending
    assert await ingest.count("SELECT count(*) FROM documents") == spoken
