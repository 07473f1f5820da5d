"""Metrics every consumer shares; each service defines its own beside its code."""

from __future__ import annotations

from collections.abc import Collection
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)
OTHER = "other"
# The sources a `source` label names; any other (a raw event's source is the producer's choice) is `other`.
KNOWN_SOURCES = frozenset({
    "streamchat", "tavus", "events", "vcon", "slack", "jira", "git", "github", "gitlab", "zendesk", "intercom",
    "email", "sms", "discord", "hubspot", "salesforce", "linear",
})  # fmt: skip

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


class Bounded(Generic[M]):
    """A metric whose label values come from fixed sets: a value outside its label's set is `other`.

    Labels fed by what a producer sends (a source, an event type) would otherwise make one time
    series per value an attacker cares to send. `None` for a label leaves it unbounded (a fixed
    set of the code's own values, a reason or an action)."""

    def __init__(self, metric: M, *allowed: Collection[str] | None) -> None:
        self.metric = metric
        self.allowed = allowed

    def labels(self, *values: str) -> M:
        pairs = zip(values, self.allowed, strict=True)
        return self.metric.labels(*(value if known is None or value in known else OTHER for value, known in pairs))
