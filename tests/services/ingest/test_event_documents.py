"""Which documents an event yields, without a server: its text, or a vCon's subject, dialog and analysis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.ingest.events import documents_of, event_content_hash, vcon_tenant
from shared.errors import InvalidRecord
from shared.records import EventEnvelope


def envelope(**fields: Any) -> EventEnvelope:
    return EventEnvelope.model_validate({"source": "slack", "event_type": "message", "external_id": "e-1", **fields})


def vcon(**fields: Any) -> EventEnvelope:
    return envelope(source="vcon", event_type="vcon", payload={"vcon": "0.0.2", "uuid": "v-1", **fields})


def test_an_event_yields_one_document_of_its_normalized_text_with_its_tags() -> None:
    [draft] = documents_of(envelope(text=" Cafe\u0301\x00 ", tags={"team": "support"}))
    assert (draft.content_type, draft.content_ref, draft.text, draft.tags) == (
        "event", None, "Caf\u00e9", {"team": "support"}
    )  # fmt: skip


@pytest.mark.parametrize("text", [None, "", "  \n\x00 "])
def test_an_event_without_text_yields_nothing(text: str | None) -> None:
    assert documents_of(envelope(text=text)) == []


def test_a_vcon_yields_its_parts_with_tags_parties_and_part_types() -> None:
    drafts = documents_of(
        vcon(
            subject="Billing outage",
            parties=[{"name": "Ana", "tel": "+100", "role": "agent"}, "nobody", {"mailto": "b@example.com"}],
            dialog=[{"type": "text", "body": "It is down"}, {"type": "recording", "body": None},
                    {"type": "text", "body": {"said": "still down"}}],
            analysis=[{"type": "summary", "body": "Outage, resolved."}],
            attachments=[{"type": "tags", "body": json.dumps(["topic: outage", "no colon", "region:eu"])}],
        )
    )  # fmt: skip
    assert [(draft.content_type, draft.content_ref, draft.text) for draft in drafts] == [
        ("subject", "subject", "Billing outage"),
        ("dialog", "dialog_0", "It is down"),
        ("dialog", "dialog_2", '{"said": "still down"}'),
        ("analysis", "analysis_0", "Outage, resolved."),
    ]
    assert drafts[0].tags == {"topic": "outage", "region": "eu"}
    assert drafts[0].metadata == {"vcon_uuid": "v-1", "parties": [{"name": "Ana", "tel": "+100"},
                                                                   {"mailto": "b@example.com"}]}  # fmt: skip
    assert drafts[2].metadata["part_type"] == "text" and drafts[3].metadata["part_type"] == "summary"


def test_the_envelopes_tags_give_way_to_the_vcons_own() -> None:
    [draft] = documents_of(
        envelope(source="vcon", event_type="vcon", tags={"topic": "billing", "team": "a"},
                 payload={"vcon": "0.0.2", "subject": "Hi", "attachments": [{"type": "tags", "body": ["topic:x"]}]})
    )  # fmt: skip
    assert draft.tags == {"topic": "x", "team": "a"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [({"subject": "no version"}, "must be a vCon object"),
     ({"vcon": "0.0.2", "dialog": "text"}, "'dialog' must be a list"),
     ({"vcon": "0.0.2", "parties": {"name": "Ana"}}, "'parties' must be a list"),
     ({"vcon": "0.0.2", "attachments": [{"type": "tags", "body": "{not json"}]}, "body is not JSON"),
     ({"vcon": "0.0.2", "attachments": [{"type": "tags", "body": {"a": "b"}}]}, "JSON array")],
)  # fmt: skip
def test_a_broken_vcon_is_an_invalid_record_naming_the_part(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        documents_of(envelope(source="vcon", event_type="vcon", payload=payload))


def test_a_vcons_tenant_comes_from_its_tenant_attachment() -> None:
    named = vcon(attachments=[{"type": "tags", "body": []}, {"type": "tenant", "body": '{"id": "acme"}'}])
    assert vcon_tenant(named) == "acme"
    assert vcon_tenant(vcon(attachments=[{"type": "tenant", "body": {"id": 7}}])) is None
    assert vcon_tenant(vcon()) is None


def test_delivery_details_do_not_change_the_content_hash() -> None:
    first = envelope(text="hello", tenant_id="acme", correlation_id="c-1", received_at="2026-01-01T00:00:00Z")
    again = envelope(text="hello", tenant_id="other", correlation_id="c-2")
    assert event_content_hash(first) == event_content_hash(again)
    assert event_content_hash(envelope(text="hello!")) != event_content_hash(first)
    assert event_content_hash(envelope(text="hello", tags={"a": "b"})) != event_content_hash(first)
