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
    deliver_replies: bool = setting(
        "CHORUS_INGEST_DELIVER_REPLIES", True,
        "Run the agent that posts chorus.replies into StreamChat channels, and the relay that publishes them.",
    )  # fmt: skip
    streamchat_base_url: str = setting(
        "CHORUS_STREAMCHAT_BASE_URL", "https://chat.stream-io-api.com", "Base URL of the StreamChat server API."
    )
    reply_max_attempts: int = setting(
        "CHORUS_REPLY_MAX_ATTEMPTS", 5, "Posts of one reply into StreamChat before it is marked failed."
    )
    reply_timeout_seconds: float = setting(
        "CHORUS_REPLY_TIMEOUT_SECONDS", 10.0, "Seconds before a post into StreamChat counts as timed out."
    )
    reply_backoff_seconds: float = setting(
        "CHORUS_REPLY_BACKOFF_SECONDS", 1.0, "First delay before a reply is posted again; it doubles up to the cap."
    )
    reply_backoff_cap_seconds: float = setting(
        "CHORUS_REPLY_BACKOFF_CAP_SECONDS", 30.0, "Longest wait between two posts of a reply, Retry-After included."
    )
    reply_concurrency: int = setting(
        "CHORUS_REPLY_CONCURRENCY", 8, "Replies posted into StreamChat at once by one ingest process."
    )
    reply_sweep_seconds: float = setting(
        "CHORUS_REPLY_SWEEP_SECONDS", 5.0, "How often the relay looks for replies not yet on chorus.replies."
    )
