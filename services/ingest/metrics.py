"""The ingest service's metrics."""

from prometheus_client import Counter, Histogram

from shared.metrics import KNOWN_SOURCES, Bounded

# Event types an `event_type` label names (StreamChat's and Tavus's); any other is `other`.
KNOWN_EVENT_TYPES = frozenset({
    "message.read", "message.flagged", "message.unflagged", "reaction.new", "reaction.updated", "reaction.deleted",
    "channel.created", "channel.updated", "channel.deleted", "channel.truncated", "channel.hidden",
    "channel.visible", "member.added", "member.updated", "member.removed", "user.updated", "user.banned",
    "user.unbanned", "user.deleted", "typing.start", "typing.stop", "notification.message_new",
    "system.replica_joined", "system.shutdown", "application.recording_ready", "application.transcription_ready",
    "application.perception_analysis", "conversation.utterance", "conversation.tool_call",
})  # fmt: skip

REQUESTS = Counter("chorus_ingest_requests_total", "HTTP requests by endpoint and status.", ["endpoint", "status"])
EVENTS_ACCEPTED = Bounded(
    Counter("chorus_ingest_events_accepted_total", "Events acknowledged by Kafka and answered 2xx.", ["source"]),
    KNOWN_SOURCES,
)
DUPLICATES = Bounded(
    Counter("chorus_ingest_duplicates_total", "Deliveries dropped as seen before, by reason.", ["source", "reason"]),
    KNOWN_SOURCES,
    None,
)
SIGNATURE_FAILURES = Counter(
    "chorus_ingest_signature_failures_total", "Requests refused for a bad signature, key or token.", ["source"]
)
DOCUMENTS_EMITTED = Bounded(
    Counter("chorus_ingest_documents_emitted_total", "Documents handed to chorus.docs.", ["source", "action"]),
    KNOWN_SOURCES,
    None,
)
STALE_UPDATES = Counter(
    "chorus_ingest_stale_updates_total",
    "StreamChat message.updated events ignored: older (by updated_at) than the edit already stored.",
)
IGNORED_EVENTS = Bounded(
    Counter(
        "chorus_ingest_ignored_events_total",
        "Accepted deliveries that carry nothing to store.",
        ["source", "event_type"],
    ),
    KNOWN_SOURCES,
    KNOWN_EVENT_TYPES,
)
PRODUCE_SECONDS = Histogram(
    "chorus_kafka_produce_seconds",
    "Time from send to the broker's acknowledgement (acks=all).",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REPLIES_SENT = Counter(
    "chorus_ingest_replies_sent_total", "Replies StreamChat holds in their channel (one per channel and action)."
)
REPLIES_FAILED = Counter(
    "chorus_ingest_replies_failed_total",
    "Replies given up on: no_app (no connected StreamChat app), refused (a 4xx), exhausted (every attempt failed).",
    ["reason"],
)
REPLY_POSTS = Counter(
    "chorus_ingest_reply_posts_total",
    "Posts of a reply into StreamChat, by answer: ok, duplicate, 429, 5xx, 4xx, timeout, connection.",
    ["answer"],
)
REPLIES_PUBLISHED = Counter(
    "chorus_ingest_replies_published_total", "Replies the relay published from the outbox to chorus.replies."
)
