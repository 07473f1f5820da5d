"""Erasure that holds: replays are dropped, nested parties are found, shared documents survive."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from tests.services.conftest import sample
from tests.services.search.conftest import SEARCHABLE, Search, settled

FAN = "fan-maya"
CONVERSATION = "conv-erase-maya"
TAVUS_PHRASE = "my quokka sanctuary needs a sponsor spreadsheet"
TAVUS_CALLBACK = {
    "conversation_id": CONVERSATION,
    "event_type": "application.transcription_ready",
    "message_type": "application",
    "timestamp": "2026-11-20T18:00:00Z",
    # The fan is named only deep inside the callback, as a participant's nested user.
    "properties": {
        "participants": [{"role": "guest", "user": {"id": FAN}}],
        "transcript": [{"role": "user", "content": TAVUS_PHRASE}, {"role": "assistant", "content": "Tell me more."}],
    },
}


def dropped(agent: str) -> float:
    """How many deliveries the agent dropped as erased (every kind of tombstone)."""
    return sum(
        REGISTRY.get_sample_value("chorus_ingest_erased_dropped_total", {"agent": agent, "kind": kind}) or 0.0
        for kind in ("party", "message", "webhook", "conversation", "event")
    )


async def wait_until(condition: Any, within: float = 30.0) -> None:
    for _ in range(int(within / 0.2)):
        if condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the agents did not get there in time")


async def test_redelivered_webhook_and_callback_of_an_erased_fan_store_nothing(search: Search) -> None:
    ingest = search.ingest
    assert ingest.tavus(TAVUS_CALLBACK).status_code == 200
    await settled(ingest)
    assert [r for r in search.search(q=TAVUS_PHRASE, mode="keyword") if r["text"] == TAVUS_PHRASE]
    maya = [(number, event) for number, event in enumerate(sample("streamchat_events")) if event["user"]["id"] == FAN]
    message_ids = [event["message"]["id"] for _, event in maya]
    fans_documents = "SELECT count(*) FROM documents WHERE source = 'streamchat' AND doc_key = ANY($1)"
    assert await ingest.count(fans_documents, message_ids) == len(maya)

    erased = search.post("/v1/privacy/erasure", {"party": FAN})
    assert erased.status_code == 200, erased.text
    receipt = erased.json()
    assert receipt["counts"]["streamchat_messages"] >= 1 and receipt["counts"]["tavus_conversations"] == 1
    assert receipt["counts"]["document_embeddings"] >= 2 and receipt["tombstones"] >= 4
    raw = next(remainder for remainder in receipt["remains_in_kafka"] if remainder["topics"][0].endswith("raw.*"))
    assert raw["retention_hours"] == 168 and receipt["horizon"] >= raw["until"]

    # The very same signed deliveries again: StreamChat's redelivery (same X-Webhook-Id) and Tavus's.
    streamchat_before, tavus_before = dropped("streamchat"), dropped("tavus")
    for number, event in maya:
        assert ingest.streamchat(event, f"demo-{number}").status_code == 200
    assert ingest.tavus(TAVUS_CALLBACK).status_code == 200
    await wait_until(lambda: dropped("streamchat") >= streamchat_before + len(maya))
    await wait_until(lambda: dropped("tavus") >= tavus_before + 1)

    assert await ingest.count("SELECT count(*) FROM streamchat_messages WHERE message_id = ANY($1)", message_ids) == 0
    assert await ingest.count("SELECT count(*) FROM streamchat_deliveries WHERE message_id = ANY($1)", message_ids) == 0
    for table in ("tavus_webhook_events", "tavus_conversations", "tavus_messages"):
        assert await ingest.count(f"SELECT count(*) FROM {table} WHERE conversation_id = $1", CONVERSATION) == 0
    assert await ingest.count(fans_documents, message_ids) == 0
    assert await ingest.count("SELECT count(*) FROM documents WHERE text ILIKE '%quokka%'") == 0
    assert not [r for r in search.search(q=TAVUS_PHRASE, limit=100) if "quokka" in r["text"]]
    assert not [r for r in search.search(q="what time is stream tonight", limit=100) if "👀" in r["text"]]
    clusters = search.get("/v1/clusters", creator_id="creator-jay").json()["clusters"]
    assert all(cluster["representative_visitor"]["id"] != FAN for cluster in clusters)


async def test_a_party_named_only_inside_a_nested_payload_is_erased(search: Search) -> None:
    ingest = search.ingest
    event = {
        "source": "zendesk", "event_type": "ticket.created", "external_id": "ZD-9001",
        "text": "The invoice export drops the last line of every multi-page invoice",
        "payload": {"ticket": {"requester": {"contact": [{"kind": "phone", "value": "+15550100777"}]}}},
    }  # fmt: skip
    assert ingest.events([event]).status_code == 202
    await settled(ingest)
    assert [r for r in search.search(q="invoice export drops the last line") if r["text"] == event["text"]]

    erased = search.post("/v1/privacy/erasure", {"party": "+15550100777"})
    assert erased.status_code == 200, erased.text
    assert (erased.json()["counts"]["raw_events"], erased.json()["counts"]["documents"]) == (1, 1)
    assert await ingest.count("SELECT count(*) FROM raw_events WHERE external_id = 'ZD-9001'") == 0
    assert not [r for r in search.search(q="invoice export drops the last line") if r["text"] == event["text"]]

    # Sent again, the erased event is dropped by its tombstone.
    before = dropped("events")
    assert ingest.events([event]).status_code == 202
    await wait_until(lambda: dropped("events") >= before + 1)
    assert await ingest.count("SELECT count(*) FROM raw_events WHERE external_id = 'ZD-9001'") == 0
    assert await ingest.count("SELECT count(*) FROM documents WHERE text = $1", event["text"]) == 0


async def test_a_deduplicated_document_shared_with_another_event_survives(search: Search) -> None:
    ingest = search.ingest
    text = "Dark mode turns the chart legend unreadable on the billing page"
    erased_event = {"source": "intercom", "event_type": "conversation", "external_id": "IC-1", "text": text,
                    "payload": {"email": "dora@example.com"}}  # fmt: skip
    kept_event = {"source": "intercom", "event_type": "conversation", "external_id": "IC-2", "text": text,
                  "payload": {"author": {"profile": {"email": "sam@example.com"}}}}  # fmt: skip
    assert ingest.events([erased_event, kept_event]).status_code == 202
    await settled(ingest)
    references = (
        "SELECT count(*) FROM document_references x JOIN documents d ON d.id = x.document_id "
        "JOIN raw_events r ON r.id = x.raw_event_id WHERE d.text = $1 AND r.external_id = $2"
    )
    assert await ingest.wait_for(references, 1, text, "IC-2") == 1
    assert await ingest.count("SELECT count(*) FROM documents WHERE text = $1", text) == 1

    erased = search.post("/v1/privacy/erasure", {"party": "dora@example.com"})
    assert erased.status_code == 200, erased.text
    counts = erased.json()["counts"]
    assert (counts["raw_events"], counts["document_references"], counts["documents"]) == (1, 1, 0)
    assert await ingest.count(references, text, "IC-1") == 0
    assert await ingest.count(references, text, "IC-2") == 1
    assert await ingest.count("SELECT count(*) FROM documents WHERE text = $1 AND external_id = 'IC-2'", text) == 1
    assert await ingest.count(SEARCHABLE + " AND d.text = $1", text) == 1
    assert [r for r in search.search(q="dark mode chart legend unreadable") if r["text"] == text]
