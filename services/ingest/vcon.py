"""A vCon dialog or analysis body as the text a document stores: a list of turns one turn a line."""

from __future__ import annotations

import json
from typing import Any

from shared.hashing import normalize_text

# The keys a turn names its speaker and its words by: vCon tools write speaker/message (the vCon
# server's transcripts and analyses), chat transcripts role/content.
SPEAKER_KEYS = ("speaker", "role")
MESSAGE_KEYS = ("message", "content", "text")


def body_text(body: Any) -> str:
    """`body` as stored text: a list of turns as `speaker: message` lines (also when it comes as
    a JSON string, as an analysis with encoding "json" does), other JSON as canonical JSON, text
    as it is."""
    if isinstance(body, str):
        turns = _turns(_parsed_list(body))
        return _lines(turns) if turns is not None else normalize_text(body)
    if isinstance(body, list):
        turns = _turns(body)
        if turns is not None:
            return _lines(turns)
    if isinstance(body, dict | list):
        return normalize_text(json.dumps(body, ensure_ascii=False, sort_keys=True))
    return ""


def _parsed_list(body: str) -> Any:
    """The list a string body encodes as JSON, else None: only a string that starts like a list
    is parsed, so prose that merely contains brackets stays prose."""
    if not body.lstrip().startswith("["):
        return None
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return None


def _turns(items: Any) -> list[tuple[str, str]] | None:
    """(speaker, message) of every item when `items` is a non-empty list of turns, else None: a
    list with anything but turns in it stays JSON, nothing of it lost."""
    if not isinstance(items, list) or not items:
        return None
    turns = []
    for item in items:
        if not isinstance(item, dict):
            return None
        message = next((item[key] for key in MESSAGE_KEYS if isinstance(item.get(key), str)), None)
        if message is None:
            return None
        speaker = next((item[key] for key in SPEAKER_KEYS if isinstance(item.get(key), str | int)), None)
        turns.append(("" if speaker is None else str(speaker), message))
    return turns


def _lines(turns: list[tuple[str, str]]) -> str:
    """One line a turn, `speaker: message` (the message alone when no speaker is named); a
    message's own line breaks become spaces so that each line stays one turn."""
    lines = []
    for speaker, message in turns:
        words = " ".join(message.split())
        if words:
            lines.append(f"{' '.join(speaker.split())}: {words}" if speaker.strip() else words)
    return normalize_text("\n".join(lines))
