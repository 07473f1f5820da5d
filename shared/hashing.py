"""Content hashes for dedupe: canonical JSON and normalized text, SHA-256."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def json_hash(value: Any) -> bytes:
    """SHA-256 of the canonical JSON of `value` (the Tavus event hash)."""
    return sha256(canonical_json(value))


# The longest text a document stores, in characters, after normalization: NFC can make a text
# longer (a 200,000-character text of decomposable characters grew threefold), and a document
# record must stay well inside Kafka's 1 MiB message limit.
MAX_DOCUMENT_CHARS = 200_000


def normalize_text(text: str) -> str:
    """Text as it is stored and embedded: NFC, no NUL characters, no surrounding whitespace, at
    most MAX_DOCUMENT_CHARS characters."""
    return unicodedata.normalize("NFC", text).replace("\x00", "").strip()[:MAX_DOCUMENT_CHARS]


def text_hash(text: str) -> bytes:
    """SHA-256 of the normalized text: equal for texts that differ only in form."""
    return sha256(normalize_text(text).encode())
