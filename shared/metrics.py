"""Metrics every consumer shares; each service defines its own beside its code."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS_PROCESSED = Counter(
    "chorus_records_processed_total", "Records a consumer finished, dead letters included.", ["service", "topic"]
)
PROCESSING_ERRORS = Counter(
    "chorus_processing_errors_total",
    "Failures while processing a record, retried or dead-lettered.",
    ["service", "topic", "error_class"],
)
DEAD_LETTERS = Counter("chorus_dead_letters_total", "Records sent to chorus.dlq.", ["service", "topic", "error_class"])
CONSUMER_LAG = Gauge(
    "chorus_consumer_lag_records",
    "Records between a consumer's position and the partition's end.",
    ["service", "topic", "partition"],
)
AGENT_UP = Gauge(
    "chorus_agent_up",
    "1 while an agent consumes; 0 once it stopped on an error that is neither a dependency's nor a record's.",
    ["service", "agent"],
)
