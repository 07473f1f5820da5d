"""Every topic of Chorus, in the design contract's order, for creating them."""

from __future__ import annotations

from typing import Any

from services.ingest.topics import RAW_STREAMCHAT, RAW_TAVUS
from shared.topics import DLQ, DOCS, EMBEDDED, RAW_EVENTS, REPLIES, Topic

ALL_TOPICS: tuple[Topic[Any], ...] = (RAW_STREAMCHAT, RAW_TAVUS, RAW_EVENTS, DOCS, EMBEDDED, REPLIES, DLQ)
