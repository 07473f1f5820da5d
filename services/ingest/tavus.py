"""Tavus conversation callbacks: validation, the event hash, and what each event type means."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.ingest.fields import parse_time
from shared.errors import InvalidRecord
from shared.hashing import json_hash, normalize_text

SPOKEN_ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Turn:
    index: int
    role: str
    content: str


@dataclass(frozen=True)
class Callback:
    conversation_id: str
    event_type: str
    message_type: str | None
    timestamp: datetime | None
    properties: dict[str, Any]
    event_hash: bytes

    @property
    def transcript(self) -> list[Turn]:
        turns = self.properties.get("transcript")
        if not isinstance(turns, list):
            raise InvalidRecord("'properties.transcript' must be a list of {role, content}")
        parsed = []
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("role"), str):
                raise InvalidRecord(f"'properties.transcript[{index}]' must be an object with a role")
            content = turn.get("content")
            parsed.append(Turn(index, turn["role"], normalize_text(content if isinstance(content, str) else "")))
        return parsed


def parse_callback(body: dict[str, Any]) -> Callback:
    """Validate a callback body; InvalidRecord names what is wrong."""
    conversation_id = body.get("conversation_id")
    if not isinstance(conversation_id, str) or not conversation_id or len(conversation_id) > 256:
        raise InvalidRecord("'conversation_id' must be a non-empty string of at most 256 characters")
    kind = body.get("event_type")
    if not isinstance(kind, str) or not kind:
        raise InvalidRecord("'event_type' must be a non-empty string")
    properties = body.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidRecord("'properties' must be an object")
    message_type = body.get("message_type")
    return Callback(
        conversation_id=conversation_id,
        event_type=kind,
        message_type=message_type if isinstance(message_type, str) else None,
        timestamp=None if body.get("timestamp") is None else parse_time(body["timestamp"], "timestamp"),
        properties=properties,
        event_hash=json_hash(body),
    )
