"""Settings of the ingest service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import CommonSettings, setting


@dataclass(frozen=True)
class IngestSettings(CommonSettings):
    port: int = setting("CHORUS_INGEST_PORT", 8081, "Port of the ingest service's HTTP server.")
    max_body_bytes: int = setting(
        "CHORUS_INGEST_MAX_BODY_BYTES", 1_048_576, "Largest request body ingest accepts (after gunzip); larger is 413."
    )
    max_events_per_request: int = setting(
        "CHORUS_INGEST_MAX_EVENTS_PER_REQUEST", 1000, "Most events one POST /v1/events may carry."
    )
    paid_channel_types: tuple[str, ...] = setting(
        "CHORUS_PAID_CHANNEL_TYPES", (), "StreamChat channel types whose messages are paid DMs, comma-separated."
    )
    normalize: bool = setting(
        "CHORUS_INGEST_NORMALIZE", True, "Run the agents that normalize raw topics into documents in this process."
    )
