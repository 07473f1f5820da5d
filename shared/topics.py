"""The Kafka topics of Chorus: each name, its key and what its records carry, defined once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """A topic of the pipeline; `name` is the unprefixed name from the design contract."""

    name: str
    key: str
    value: str

    def full_name(self, prefix: str = "") -> str:
        """The name on the broker, after the deployment's topic prefix."""
        return f"{prefix}{self.name}"


RAW_STREAMCHAT = Topic(
    "chorus.raw.streamchat",
    key="creator id",
    value="StreamChat webhook body + delivery metadata (webhook id, received_at, tenant)",
)
RAW_TAVUS = Topic(
    "chorus.raw.tavus",
    key="conversation id",
    value="Tavus callback + delivery metadata",
)
RAW_EVENTS = Topic(
    "chorus.raw.events",
    key="tenant:external_id",
    value="generic event envelope; vCon records use source vcon",
)
DOCS = Topic(
    "chorus.docs",
    key="tenant:creator or tenant:conversation",
    value="normalized document to embed",
)
EMBEDDED = Topic(
    "chorus.embedded",
    key="same as chorus.docs",
    value="document id, vector, model, and the fields the cluster service needs",
)
REPLIES = Topic(
    "chorus.replies",
    key="creator id",
    value="one reply command per channel when a cluster is actioned",
)
DLQ = Topic(
    "chorus.dlq",
    key="original key",
    value="original bytes, topic, partition, offset, error class, reason",
)

ALL_TOPICS: tuple[Topic, ...] = (
    RAW_STREAMCHAT,
    RAW_TAVUS,
    RAW_EVENTS,
    DOCS,
    EMBEDDED,
    REPLIES,
    DLQ,
)
