"""The ingest service's metrics."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter("chorus_ingest_requests_total", "HTTP requests by endpoint and status.", ["endpoint", "status"])
EVENTS_ACCEPTED = Counter(
    "chorus_ingest_events_accepted_total", "Events acknowledged by Kafka and answered 2xx.", ["source"]
)
DUPLICATES = Counter(
    "chorus_ingest_duplicates_total", "Deliveries dropped as seen before, by reason.", ["source", "reason"]
)
SIGNATURE_FAILURES = Counter(
    "chorus_ingest_signature_failures_total", "Requests refused for a bad signature, key or token.", ["source"]
)
DOCUMENTS_EMITTED = Counter(
    "chorus_ingest_documents_emitted_total", "Documents handed to chorus.docs.", ["source", "action"]
)
IGNORED_EVENTS = Counter(
    "chorus_ingest_ignored_events_total", "Accepted deliveries that carry nothing to store.", ["source", "event_type"]
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
