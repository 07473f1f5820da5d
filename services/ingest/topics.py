"""The raw topics only ingest writes and reads: deliveries as they were accepted over HTTP."""

from __future__ import annotations

from services.ingest.records import RawStreamChatDelivery, RawTavusDelivery
from services.ingest.streamchat import creator_key
from services.ingest.tavus import parse_callback
from shared.topics import Topic

RAW_STREAMCHAT = Topic(
    "chorus.raw.streamchat",
    RawStreamChatDelivery,
    key_of=lambda delivery: creator_key(delivery.body).encode(),
    raw=True,
)
RAW_TAVUS = Topic(
    "chorus.raw.tavus",
    RawTavusDelivery,
    key_of=lambda delivery: parse_callback(delivery.body).conversation_id.encode(),
    raw=True,
)
