"""Tavus callbacks without a server: what is valid, the event hash, the transcript's turns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingest.tavus import Turn, parse_callback
from shared.errors import InvalidRecord
from shared.hashing import json_hash


def callback(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "conversation_id": "c7a3e91f",
        "event_type": "application.transcription_ready",
        "message_type": "application",
        "timestamp": "2026-11-18T15:20:01Z",
        "properties": {"transcript": [{"role": "system", "content": "You are Avery."},
                                      {"role": "user", "content": " Cafe\u0301? "},
                                      {"role": "assistant", "content": None}]},
    }  # fmt: skip
    body.update(changes)
    return body


def test_a_callback_keeps_its_fields_and_is_hashed_as_canonical_json() -> None:
    parsed = parse_callback(callback())
    assert (parsed.conversation_id, parsed.event_type, parsed.message_type) == (
        "c7a3e91f", "application.transcription_ready", "application"
    )  # fmt: skip
    assert parsed.timestamp == datetime(2026, 11, 18, 15, 20, 1, tzinfo=UTC)
    assert parsed.event_hash == json_hash(callback())
    assert parse_callback(dict(reversed(callback().items()))).event_hash == parsed.event_hash
    assert parse_callback(callback(timestamp="2026-11-18T15:20:02Z")).event_hash != parsed.event_hash


def test_the_transcript_is_numbered_turns_of_normalized_text() -> None:
    assert parse_callback(callback()).transcript == [
        Turn(0, "system", "You are Avery."), Turn(1, "user", "Caf\u00e9?"), Turn(2, "assistant", "")
    ]  # fmt: skip


def test_optional_fields_may_be_missing() -> None:
    parsed = parse_callback({"conversation_id": "c1", "event_type": "system.shutdown"})
    assert (parsed.message_type, parsed.timestamp, parsed.properties) == (None, None, {})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"conversation_id": ""}, "'conversation_id' must be a non-empty string"),
        ({"conversation_id": "c" * 257}, "at most 256 characters"),
        ({"conversation_id": 7}, "'conversation_id' must be"),
        ({"event_type": None}, "'event_type' must be a non-empty string"),
        ({"properties": ["x"]}, "'properties' must be an object"),
        ({"timestamp": "soon"}, "'timestamp' is not an ISO 8601 time"),
    ],
)
def test_a_broken_callback_names_its_problem(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        parse_callback(callback(**changes))


@pytest.mark.parametrize(
    ("transcript", "reason"),
    [("hello", "must be a list"), ([{"role": "user"}, "hi"], r"'properties.transcript\[1\]' must be an object"),
     ([{"content": "no role"}], r"transcript\[0\]")],
)  # fmt: skip
def test_a_broken_transcript_names_the_turn(transcript: Any, reason: str) -> None:
    parsed = parse_callback(callback(properties={"transcript": transcript}))
    with pytest.raises(InvalidRecord, match=reason):
        _ = parsed.transcript
