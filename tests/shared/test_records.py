"""Topic records on the wire: each comes back as it went, of its own type, and bad ones are refused by field."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from uuid import UUID

import numpy as np
import pydantic
import pytest

from shared.records import DeadLetter, Document, EmbeddedDocument, EventEnvelope, Reply

TENANT = UUID("11111111-1111-1111-1111-111111111111")
DOCUMENT = UUID("22222222-2222-2222-2222-222222222222")
RECEIVED = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def document(**changes: object) -> Document:
    fields: dict[str, object] = {
        "document_id": DOCUMENT, "tenant_id": TENANT, "source": "streamchat", "content_type": "message",
        "content_hash": "ab" * 32, "creator_id": "creator-jay", "channel_cid": "messaging:fan-maya",
        "received_at": RECEIVED, "direction": "inbound", "is_paid": False, "text": "When is the tour?",
        "tags": {"topic": "tour"},
    }  # fmt: skip
    return Document.model_validate({**fields, **changes})


def test_a_document_comes_back_equal_and_of_its_own_type() -> None:
    original = document()
    decoded = Document.from_bytes(original.to_bytes())
    assert type(decoded) is Document
    assert decoded == original
    assert decoded.document_id == DOCUMENT and decoded.received_at == RECEIVED


def test_an_embedded_documents_vector_travels_as_little_endian_float32_base64() -> None:
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    encoded = EmbeddedDocument.encode_vector(vector)
    assert base64.b64decode(encoded) == b"\x00\x00\x00?\x00\x00\xa0\xbf\x00\x00@@"
    fields = document().model_dump(exclude={"text", "content_ref", "tags"})
    embedded = EmbeddedDocument.from_bytes(
        EmbeddedDocument(**fields, model="all-MiniLM-L6-v2", vector_b64=encoded).to_bytes()
    )
    assert embedded.vector is not None
    assert embedded.vector.dtype == np.dtype("<f4")
    assert embedded.vector.tolist() == [0.5, -1.25, 3.0]


def test_an_embedded_document_of_a_delete_carries_no_vector() -> None:
    fields = document().model_dump(exclude={"text", "content_ref", "tags"})
    deleted = EmbeddedDocument.from_bytes(EmbeddedDocument(**{**fields, "action": "delete"}).to_bytes())
    assert deleted.action == "delete" and deleted.vector is None


def test_a_dead_letter_keeps_the_original_bytes() -> None:
    original = b"\x00\xffnot json"
    letter = DeadLetter(
        service="cluster", topic="chorus.embedded", partition=1, offset=42, key_b64=DeadLetter.encode(None),
        value_b64=DeadLetter.encode(original) or "", value_size=len(original), error_class="ValidationError",
        reason="bad", failed_at=RECEIVED,
    )  # fmt: skip
    decoded = DeadLetter.from_bytes(letter.to_bytes())
    assert decoded.value == original
    assert (decoded.key_b64, decoded.offset, decoded.value_truncated) == (None, 42, False)


def test_a_reply_comes_back_equal() -> None:
    reply = Reply(
        reply_id="r-1", tenant_id=TENANT, cluster_id=DOCUMENT, creator_id="creator-jay",
        channel_cid="messaging:fan-maya", visitor_id=None, response_text="Dates are up on Friday!",
        actioned_at=RECEIVED,
    )  # fmt: skip
    assert Reply.from_bytes(reply.to_bytes()) == reply


def test_an_unknown_field_is_refused_not_dropped() -> None:
    body = json.loads(document().to_bytes())
    body["txet"] = "a misspelt field"
    with pytest.raises(pydantic.ValidationError, match="txet"):
        Document.from_bytes(json.dumps(body).encode())


def test_a_record_of_one_type_does_not_decode_as_another() -> None:
    with pytest.raises(pydantic.ValidationError):
        Reply.from_bytes(document().to_bytes())


def envelope_problems(**fields: object) -> list[tuple[str, ...]]:
    body = {"source": "slack", "event_type": "message", "external_id": "e-1", **fields}
    with pytest.raises(pydantic.ValidationError) as caught:
        EventEnvelope.model_validate(body)
    return [tuple(str(part) for part in error["loc"]) for error in caught.value.errors()]


def test_an_envelope_names_each_field_it_refuses() -> None:
    assert envelope_problems(source="Slack!") == [("source",)]
    assert envelope_problems(external_id="") == [("external_id",)]
    assert envelope_problems(event_type="x" * 129) == [("event_type",)]
    assert envelope_problems(tags={"k": "v" * 513}) == [("tags",)]
    assert envelope_problems(text="x" * 200_001) == [("text",)]
    assert envelope_problems(occurred_at="yesterday", colour="red") == [("occurred_at",), ("colour",)]


def test_a_valid_envelope_keeps_its_values() -> None:
    envelope = EventEnvelope.model_validate(
        {"source": "vcon", "event_type": "call", "external_id": "e-1", "occurred_at": "2026-03-01T12:30:00Z",
         "tags": {"topic": "tour"}, "payload": {"vcon": "0.0.1"}}
    )  # fmt: skip
    assert envelope.occurred_at == RECEIVED
    assert EventEnvelope.from_bytes(envelope.to_bytes()) == envelope
