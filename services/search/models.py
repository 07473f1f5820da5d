"""The search API's request and response bodies (they make its OpenAPI description)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

Mode = Literal["hybrid", "semantic", "keyword"]
EXPLAIN = 'Give each result its rank and score in each list (docs/search.md "Relevance").'
MAX_QUERY_CHARS = 1000
# How far a `metadata` filter may nest and how many keys and values it may hold in all.
MAX_METADATA_DEPTH = 8
MAX_METADATA_ITEMS = 256


class SearchRequest(BaseModel):
    """What `POST /v1/search` takes; `GET /v1/search` takes the same as query parameters, but `metadata`."""

    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(None, max_length=MAX_QUERY_CHARS, description="The query text.")
    mode: Mode = "hybrid"
    limit: int = Field(10, ge=1, le=100)
    source: str | None = Field(None, max_length=64)
    content_type: str | None = Field(None, max_length=64)
    creator_id: str | None = Field(None, max_length=256)
    since: datetime | None = None
    until: datetime | None = None
    tag: list[str] = Field(default_factory=list, max_length=32, description="key:value; every one must match.")
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="Least cosine similarity of a semantic hit.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Documents whose metadata contains this.")
    vector: list[float] | None = Field(None, description="A query vector to use instead of embedding `q`.")
    cursor: str | None = Field(None, max_length=512, description="`next_cursor` of the previous page.")
    explain: bool = Field(False, description=EXPLAIN)

    @field_validator("tag")
    @classmethod
    def _tags_have_a_key(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            key, colon, _ = tag.partition(":")
            if not colon or not key:
                raise ValueError(f"{tag!r} is not key:value")
        return tags

    @field_validator("q", "source", "content_type", "creator_id", "cursor")
    @classmethod
    def _storable(cls, text: str | None) -> str | None:
        return None if text is None else storable_text(text)

    @field_validator("tag")
    @classmethod
    def _storable_tags(cls, tags: list[str]) -> list[str]:
        return [storable_text(tag) for tag in tags]

    @field_validator("since", "until")
    @classmethod
    def _in_range(cls, moment: datetime | None) -> datetime | None:
        # Postgres compares in UTC: a year-1 time east of UTC, or a year-9999 one west of it, has no UTC value.
        if moment is not None and moment.tzinfo is not None:
            try:
                moment.astimezone(UTC)
            except OverflowError:
                raise ValueError("is out of range once converted to UTC") from None
        return moment

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        _check_json(metadata)
        return metadata

    @model_validator(mode="after")
    def _enough_to_search_with(self) -> SearchRequest:
        has_text = bool(self.q and self.q.strip())
        if self.mode == "keyword" and not has_text:
            raise ValueError("q: keyword search needs a query text")
        if self.mode == "hybrid" and not has_text:
            raise ValueError("q: hybrid search needs a query text (a vector may come with it)")
        if self.mode == "semantic" and not has_text and self.vector is None:
            raise ValueError("q: semantic search needs a query text or a vector")
        if self.since and self.until and _comparable(self.since, self.until) and self.since >= self.until:
            raise ValueError("since: must be before until")
        return self

    def tags(self) -> dict[str, str]:
        return dict(tag.split(":", 1) for tag in self.tag)


def _comparable(first: datetime, second: datetime) -> bool:
    return (first.tzinfo is None) == (second.tzinfo is None)


def storable_text(text: str) -> str:
    """`text` if Postgres can store it: no NUL character, no lone surrogate (a `\\ud800` escape in JSON)."""
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("must not contain a lone surrogate") from None
    return text


def _check_json(metadata: dict[str, Any]) -> None:
    """Refuse what jsonb cannot hold (NUL, lone surrogates, 1e999 read as infinity) and more than
    MAX_METADATA_DEPTH levels or MAX_METADATA_ITEMS keys and values."""
    waiting: list[tuple[Any, int]] = [(metadata, 1)]
    items = 0
    while waiting:
        value, depth = waiting.pop()
        items += 1
        if items > MAX_METADATA_ITEMS:
            raise ValueError(f"must hold at most {MAX_METADATA_ITEMS} keys and values")
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(f"must nest at most {MAX_METADATA_DEPTH} levels")
        if isinstance(value, str):
            storable_text(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must hold finite numbers only")
        elif isinstance(value, dict):
            for key, item in value.items():
                storable_text(key)
                waiting.append((item, depth + 1))
        elif isinstance(value, list):
            waiting.extend((item, depth + 1) for item in value)


# A path or query parameter that goes into SQL: refused with a 400 naming it when Postgres could not take it.
StorableText = Annotated[str, AfterValidator(storable_text)]


class Explanation(BaseModel):
    """Where a result stood in each list (null: that list did not find it), and its final score."""

    semantic_rank: int | None
    semantic_score: float | None
    keyword_rank: int | None
    keyword_score: float | None
    score: float
    chunk: int | None = Field(
        None, description="The passage of a long text the semantic list found nearest, from 0 (its snippet)"
    )


class SearchResult(BaseModel):
    id: UUID
    source: str
    content_type: str
    content_ref: str | None
    external_id: str | None
    text: str
    snippet: str
    score: float
    semantic_score: float | None
    keyword_score: float | None
    explain: Explanation | None = Field(None, description="With `explain=true`: each list's rank and score.")
    tags: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime


class SearchResponse(BaseModel):
    query: str | None
    mode: Mode
    took_ms: float
    results: list[SearchResult]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Visitor(BaseModel):
    id: str | None
    name: str | None
    avatar_url: str | None


class ClusterSummary(BaseModel):
    id: UUID
    creator_id: str
    status: Literal["open", "actioned"]
    size: int
    channel_count: int
    preview_text: str | None
    label: str | None = Field(description="A few words that tell the cluster from the creator's others.")
    representative_visitor: Visitor | None = Field(description="The visitor of the cluster's earliest message.")
    visitor_avatar_urls: list[str] = Field(description="Up to three, earliest visitors first.")
    response_text: str | None
    created_at: datetime
    updated_at: datetime
    actioned_at: datetime | None


class ClustersResponse(BaseModel):
    clusters: list[ClusterSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ClusterMessage(BaseModel):
    message_id: str
    channel_cid: str
    visitor: Visitor
    text: str
    similarity: float | None
    created_at: datetime


class ReplyDelivery(BaseModel):
    """One channel's copy of the cluster's reply, as delivered into StreamChat (docs/replies.md)."""

    channel_cid: str
    status: Literal["pending", "sent", "failed"]
    reason: str | None = Field(description="Why it failed; while pending, why the last attempt did.")
    attempts: int = Field(description="Posts into StreamChat so far.")
    sent_at: datetime | None


class ClusterDetail(ClusterSummary):
    messages: list[ClusterMessage] = Field(description="A page of the messages, earliest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page of messages; null on the last.")
    replies: list[ReplyDelivery] = Field(
        default_factory=list, description="Each channel's delivery of the reply, by channel; empty until actioned."
    )


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_text: str = Field(min_length=1, max_length=10_000)

    @field_validator("response_text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("must not be blank")
        return storable_text(text)


class ActionResponse(BaseModel):
    id: UUID
    status: Literal["actioned"]
    response_text: str
    actioned_at: datetime
    replies: int = Field(description="chorus.replies records published, one per channel.")


class TranscriptTurn(BaseModel):
    turn_index: int
    role: str
    content: str


class ConversationEvent(BaseModel):
    event_type: str
    received_at: datetime


class Conversation(BaseModel):
    conversation_id: str
    status: str
    shutdown_reason: str | None
    replica_id: str | None
    recording_uri: str | None
    perception_analysis: Any
    started_at: datetime | None
    ended_at: datetime | None
    events: list[ConversationEvent]
    transcript: list[TranscriptTurn]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page of events and of transcript turns; null once both ended."
    )


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    party: str = Field(
        min_length=1, max_length=320, description="A StreamChat user id, an email address, a phone number or a name."
    )

    @field_validator("party")
    @classmethod
    def _not_blank(cls, party: str) -> str:
        if not party.strip() or "\x00" in party:
            raise ValueError("must be a non-blank string without NUL characters")
        return storable_text(party.strip())


class KafkaRemainder(BaseModel):
    """Records that may still hold the party in Kafka: topics delete them only when their retention ends."""

    topics: list[str]
    retention_hours: float
    until: datetime = Field(description="When the last record received before the erasure is past its retention.")
    holds: str


class ErasureResponse(BaseModel):
    """The receipt of an erasure: rows deleted per table, tombstones written, and what Kafka still holds."""

    id: UUID
    party: str
    counts: dict[str, int] = Field(description="Rows deleted (or changed: clusters_changed) per table.")
    tombstones: int = Field(description="Keyed hashes written so that ingest drops this data if it comes again.")
    remains_in_kafka: list[KafkaRemainder]
    horizon: datetime = Field(description="When no copy of the erased data is left anywhere Chorus keeps it.")
