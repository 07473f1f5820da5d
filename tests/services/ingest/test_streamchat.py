import asyncio
import copy
import gzip
import json

import pytest
from stream_chat.webhook import verify_signature

from services.ingest.streamchat import parse_message_event
from shared.db import tenant_transaction
from shared.errors import InvalidRecord
from tests.metrics import MetricDelta
from tests.services.conftest import APP_KEY, APP_SECRET, Ingest, sample, sign

MESSAGES = "SELECT count(*) FROM streamchat_messages"


def test_the_creator_is_the_member_with_a_creator_role() -> None:
    events = sample("streamchat_events")
    fan = parse_message_event(events[0])
    assert (fan.creator_id, fan.direction, fan.visitor and fan.visitor.id) == ("creator-jay", "inbound", "fan-maya")
    reply = parse_message_event(events[-1])
    assert (reply.creator_id, reply.direction, reply.visitor and reply.visitor.id) == (
        "creator-jay", "outgoing", "fan-maya"
    )  # fmt: skip


def test_without_roles_the_other_member_is_the_creator() -> None:
    event = copy.deepcopy(sample("streamchat_events")[0])
    for member in event["members"]:
        member.pop("channel_role")
    assert parse_message_event(event).creator_id == "creator-jay"


def test_paid_comes_from_the_message_or_the_channel_type() -> None:
    events = sample("streamchat_events")
    assert parse_message_event(events[5]).is_paid is True
    assert parse_message_event(events[0]).is_paid is False
    assert parse_message_event(events[0], paid_channel_types=("messaging",)).is_paid is True


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e.pop("message"), "'message' must be an object"),
        (lambda e: e["message"].pop("user"), "'message.user' must be an object"),
        (lambda e: e["message"].update(created_at="yesterday"), "'created_at' is not an ISO 8601 time"),
        (lambda e: (e.pop("members"), e.pop("cid"), e["message"].pop("cid")), "has no 'cid'"),
    ],
)
def test_a_broken_message_event_names_its_problem(change: object, reason: str) -> None:
    event = copy.deepcopy(sample("streamchat_events")[0])
    change(event)  # type: ignore[operator]
    with pytest.raises(InvalidRecord, match=reason):
        parse_message_event(event)


async def test_the_sample_webhooks_become_messages_and_documents(ingest: Ingest) -> None:
    for number, event in enumerate(sample("streamchat_events")):
        response = ingest.streamchat(event, webhook_id=f"hook-{number}")
        assert response.status_code == 200, response.text
    assert await ingest.wait_for("SELECT count(*) FROM streamchat_messages", 8) == 8
    async with tenant_transaction(ingest.pool, ingest.tenant.id) as db:
        rows = await db.fetch(
            "SELECT split_part(message_id, '-', 2) AS who, direction, is_paid, deleted_at IS NOT NULL AS deleted, "
            "creator_id FROM streamchat_messages ORDER BY message_created_at"
        )
        priya = await db.fetchval("SELECT text FROM streamchat_messages WHERE visitor_id = 'fan-priya'")
        documents = await db.fetch("SELECT source, content_type, deleted_at IS NOT NULL AS deleted FROM documents")
    assert [tuple(row) for row in rows] == [
        ("maya", "inbound", False, False, "creator-jay"),
        ("maya", "inbound", False, False, "creator-jay"),
        ("diego", "inbound", False, True, "creator-jay"),
        ("priya", "inbound", False, False, "creator-jay"),
        ("tom", "inbound", True, False, "creator-jay"),
        ("lena", "inbound", False, False, "creator-jay"),
        ("diego", "inbound", False, False, "creator-jay"),
        ("jay", "outgoing", False, False, "creator-jay"),
    ]
    assert priya.startswith("what gpu and cpu do you use?")
    assert len(documents) == 8
    assert sum(document["deleted"] for document in documents) == 1
    assert {(document["source"], document["content_type"]) for document in documents} == {("streamchat", "message")}


async def test_a_retried_delivery_adds_nothing(ingest: Ingest) -> None:
    duplicates = MetricDelta("chorus_ingest_duplicates_total", source="streamchat")
    event = sample("streamchat_events")[0]
    for attempt in (1, 2, 3):
        assert (
            ingest.streamchat(event, webhook_id="same-hook", **{"X-Webhook-Attempt": str(attempt)}).status_code == 200
        )
    assert ingest.streamchat(event, webhook_id="another-hook").status_code == 200
    assert await ingest.wait_for("SELECT count(*) FROM streamchat_deliveries", 2) == 2
    assert await ingest.count(MESSAGES) == 1
    assert await ingest.count("SELECT count(*) FROM documents") == 1
    assert duplicates.delta("webhook_id") == 2
    assert duplicates.delta("message_content") == 1


def test_signatures_made_as_streamchat_makes_them_are_accepted_and_tampering_is_not(ingest: Ingest) -> None:
    accepted = MetricDelta("chorus_ingest_requests_total", endpoint="/webhooks/streamchat", status="200")
    refused = MetricDelta("chorus_ingest_requests_total", endpoint="/webhooks/streamchat", status="401")
    body = json.dumps(sample("streamchat_events")[0]).encode()
    signature = sign(body)
    assert verify_signature(body, signature, APP_SECRET)
    headers = {"X-Api-Key": APP_KEY, "X-Webhook-Id": "sig-1", "Content-Type": "application/json"}
    assert (
        ingest.client.post(
            "/webhooks/streamchat", content=body, headers={**headers, "X-Signature": signature}
        ).status_code
        == 200
    )

    tampered = body.replace(b"stream tonight", b"stream tonighT")
    assert len(tampered) == len(body) and not verify_signature(tampered, signature, APP_SECRET)
    answer = ingest.client.post("/webhooks/streamchat", content=tampered, headers={**headers, "X-Signature": signature})
    assert (answer.status_code, answer.json()["detail"]) == (
        401,
        "X-Signature does not match the body signed with the app's secret",
    )

    wrong_secret = sign(body, "not-the-secret")
    assert (
        ingest.client.post(
            "/webhooks/streamchat", content=body, headers={**headers, "X-Signature": wrong_secret}
        ).status_code
        == 401
    )
    unknown_app = {**headers, "X-Api-Key": "someone-else", "X-Signature": signature}
    assert ingest.client.post("/webhooks/streamchat", content=body, headers=unknown_app).status_code == 401
    missing = ingest.client.post("/webhooks/streamchat", content=body, headers=headers)
    assert missing.status_code == 401
    assert (accepted.delta(), refused.delta()) == (1, 4), "every answer is counted by endpoint and status"
    unmatched = MetricDelta("chorus_ingest_requests_total", endpoint="unmatched", status="404")
    assert ingest.client.get("/no-such-path").status_code == 404
    assert unmatched.delta() == 1


async def test_a_gzip_body_is_verified_over_its_uncompressed_bytes(ingest: Ingest) -> None:
    body = json.dumps(sample("streamchat_events")[2]).encode()
    response = ingest.client.post(
        "/webhooks/streamchat",
        content=gzip.compress(body),
        headers={"X-Api-Key": APP_KEY, "X-Signature": sign(body), "X-Webhook-Id": "gz-1",
                 "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert await ingest.wait_for(MESSAGES, 1) == 1


async def test_an_edit_with_the_same_text_changes_nothing_and_a_new_text_re_embeds(ingest: Ingest) -> None:
    duplicates = MetricDelta("chorus_ingest_duplicates_total", source="streamchat")
    emitted = MetricDelta("chorus_ingest_documents_emitted_total", source="streamchat", action="upsert")
    original = sample("streamchat_events")[3]
    assert ingest.streamchat(original, "edit-0").status_code == 200
    assert await ingest.wait_for(MESSAGES, 1) == 1
    same_text = copy.deepcopy(original) | {"type": "message.updated"}
    assert ingest.streamchat(same_text, "edit-1").status_code == 200
    new_text = copy.deepcopy(same_text)
    new_text["message"]["text"] = "which gpu is in the stream pc?"
    assert ingest.streamchat(new_text, "edit-2").status_code == 200
    assert await ingest.wait_for("SELECT count(*) FROM documents WHERE text = 'which gpu is in the stream pc?'", 1) == 1
    assert await ingest.count("SELECT count(*) FROM documents") == 1
    assert duplicates.delta("message_content") == 1
    # No embed service runs here, so the document is still unembedded when the same-text edit
    # arrives: the duplicate hands it on again (embedding is idempotent), the new text re-embeds.
    assert emitted.delta() == 3


async def test_an_edit_older_than_the_stored_one_is_ignored_and_counted(ingest: Ingest) -> None:
    stale = MetricDelta("chorus_ingest_stale_updates_total")
    original = sample("streamchat_events")[3]
    newer, older = copy.deepcopy(original) | {"type": "message.updated"}, copy.deepcopy(original)
    newer["message"].update(text="which gpu is in the stream pc?", updated_at="2026-11-20T19:30:00Z")
    older |= {"type": "message.updated"}
    older["message"].update(text="what gpu? (an edit StreamChat sent first)", updated_at="2026-11-20T19:10:00Z")
    # Webhooks arrive out of order: the 19:30 edit first, then the 19:10 one it replaced.
    for number, event in enumerate([original, newer, older]):
        assert ingest.streamchat(event, f"order-{number}").status_code == 200
    for _ in range(200):
        if stale.delta() >= 1:
            break
        await asyncio.sleep(0.1)
    assert stale.delta() == 1
    async with tenant_transaction(ingest.pool, ingest.tenant.id) as db:
        stored = await db.fetchrow("SELECT text, message_updated_at FROM streamchat_messages")
        documents = await db.fetch("SELECT text FROM documents")
    assert stored["text"] == "which gpu is in the stream pc?"
    assert stored["message_updated_at"].isoformat() == "2026-11-20T19:30:00+00:00"
    assert [row["text"] for row in documents] == ["which gpu is in the stream pc?"]


async def test_producer_chosen_sources_and_event_types_are_labelled_other(ingest: Ingest) -> None:
    """A metric label takes values from a fixed set: a thousand invented event types or sources
    would otherwise be a thousand time series on /metrics."""
    ignored = "chorus_ingest_ignored_events_total"
    other_type = MetricDelta(ignored, source="streamchat", event_type="other")
    known_type = MetricDelta(ignored, source="streamchat", event_type="reaction.new")
    invented_type = MetricDelta(ignored, event_type="invented.type-0")
    other_source = MetricDelta("chorus_ingest_events_accepted_total", source="other")
    invented_source = MetricDelta("chorus_ingest_events_accepted_total", source="invented-0")
    for number in range(3):
        body = {"type": f"invented.type-{number}", "cid": "messaging:x"}
        assert ingest.streamchat(body, f"invented-{number}").status_code == 200
    event = sample("raw_events")[0]
    sources = [dict(event, source=f"invented-{number}", external_id=f"invented-{number}") for number in range(3)]
    assert ingest.events(sources).status_code == 202
    assert ingest.streamchat({"type": "reaction.new", "cid": "messaging:x"}, "known").status_code == 200
    for _ in range(200):
        if other_type.delta() + known_type.delta() + invented_type.delta() >= 4:
            break
        await asyncio.sleep(0.1)
    assert (other_type.delta(), known_type.delta(), invented_type.delta()) == (3, 1, 0)
    assert (other_source.delta(), invented_source.delta()) == (3, 0)
