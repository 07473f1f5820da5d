"""What the ingest endpoints take and answer, as their OpenAPI declares it.

The endpoints read the raw body (a signature covers its exact bytes), so FastAPI cannot infer
the request bodies; they are declared here, with examples, through `openapi_extra`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from shared.http.problems import problems
from shared.records import EventEnvelope


class StreamChatAccepted(BaseModel):
    accepted: int = Field(description="1: the delivery is on chorus.raw.streamchat.")
    event_type: str = Field(description="The webhook's `type`.")
    stored: bool = Field(description="Whether the event type is one Chorus stores (a message event).")


class TavusAccepted(BaseModel):
    accepted: int = Field(description="1: the callback is on chorus.raw.tavus.")
    event_type: str = Field(description="The callback's `event_type`.")


class EventsAccepted(BaseModel):
    accepted: int = Field(description="How many events are on chorus.raw.events: all of the request's.")


ACCEPTED_HEADERS = {
    "X-Correlation-Id": {"description": "The request's X-Request-Id, or a new id.", "schema": {"type": "string"}}
}
REFUSALS = problems(
    400,
    (401, "The signature, app, token or key does not name a tenant."),
    (
        413,
        "The body is larger than the limit (also once gunzipped), holds too many events, or an event is larger "
        "than a Kafka record may be (1,000,000 bytes).",
    ),
    (415, "The body's Content-Encoding is neither gzip nor identity."),
    (503, "Kafka did not acknowledge the record, or Postgres did not answer; nothing was accepted: retry."),
)


def _header(name: str, description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": {"type": "string", **schema}}  # fmt: skip


COMMON_HEADERS = [
    _header(
        "Content-Encoding", "`gzip` for a gzipped body; the limits apply to it unzipped.", enum=["gzip", "identity"]
    ),
    _header("X-Request-Id", "Carried with the records as their correlation id; answered as X-Correlation-Id."),
]

STREAMCHAT_EXAMPLE = {
    "type": "message.new",
    "cid": "messaging:dm-jay-maya",
    "channel_type": "messaging",
    "message": {
        "id": "fan-maya-0b6f3c2e",
        "text": "hey jay!! what time is stream tonight?",
        "user": {"id": "fan-maya", "name": "Maya López", "image": "https://avatars.example.com/u/fan-maya.png"},
        "created_at": "2026-11-20T19:02:11.482913Z",
    },
    "members": [
        {"user_id": "creator-jay", "channel_role": "channel_moderator", "user": {"id": "creator-jay"}},
        {"user_id": "fan-maya", "channel_role": "channel_member", "user": {"id": "fan-maya"}},
    ],
    "created_at": "2026-11-20T19:02:11.482913Z",
}
STREAMCHAT_SCHEMA = {
    "type": "object",
    "description": "A StreamChat push webhook. Message events (message.new, message.updated, message.deleted) "
    "need `message` with `id`, `user.id` and `created_at`, the channel (`cid`), and members that tell the "
    "creator; any other event type is acknowledged and not stored.",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "minLength": 1, "examples": ["message.new"]},
        "cid": {"type": "string", "description": "`channel_type:channel_id`."},
        "channel_type": {"type": "string"},
        "channel_id": {"type": "string"},
        "message": {"type": "object", "additionalProperties": True},
        "members": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        "created_at": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": True,
}
STREAMCHAT = {
    "parameters": [
        _header("X-Api-Key", "The StreamChat app's key, registered for a tenant.", required=True),
        _header("X-Signature", "Hex HMAC-SHA256 of the uncompressed body, keyed with the app's secret.", required=True),
        _header("X-Webhook-Id", "StreamChat's id of the delivery: a resend with the same id is stored once."),
        _header("X-Webhook-Attempt", "Which attempt of the delivery this is."),
        *COMMON_HEADERS,
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": STREAMCHAT_SCHEMA, "example": STREAMCHAT_EXAMPLE}},
    },
    "responses": {"200": {"headers": ACCEPTED_HEADERS}},
}

TAVUS_EXAMPLE = {
    "conversation_id": "c7a3e91f",
    "event_type": "system.shutdown",
    "message_type": "system",
    "timestamp": "2026-11-18T15:19:47.902114Z",
    "properties": {"replica_id": "r3fa6c2d81b", "shutdown_reason": "participant_left_timeout"},
}
TAVUS_SCHEMA = {
    "type": "object",
    "description": "A Tavus conversation callback; `properties.transcript` carries the turns of "
    "application.transcription_ready.",
    "required": ["conversation_id", "event_type"],
    "properties": {
        "conversation_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "event_type": {"type": "string", "minLength": 1},
        "message_type": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "properties": {"type": "object", "additionalProperties": True},
    },
    "additionalProperties": True,
}
TAVUS = {
    "parameters": [
        _header("X-Chorus-Token", "The tenant's Tavus token (or the `token` query parameter)."),
        {
            "name": "token",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "The tenant's Tavus token, for callback URLs that cannot set headers.",
        },
        *COMMON_HEADERS,
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": TAVUS_SCHEMA, "example": TAVUS_EXAMPLE}},
    },
    "responses": {"200": {"headers": ACCEPTED_HEADERS}},
}

EVENT_EXAMPLE = {
    "source": "jira",
    "event_type": "jira:issue_created",
    "external_id": "BKG-412/created",
    "occurred_at": "2026-11-16T09:12:37Z",
    "text": "BKG-412 Add idempotency keys to POST /v1/bookings",
    "tags": {"project": "BKG"},
    "metadata": {"priority": "high"},
}
ENVELOPE_SCHEMA = EventEnvelope.model_json_schema()
EVENTS = {
    "parameters": COMMON_HEADERS,
    "requestBody": {
        "required": True,
        "description": "One event envelope, a JSON array of them, or NDJSON. The tenant comes from the key; "
        "received_at and correlation_id are set by ingest.",
        "content": {
            "application/json": {
                "schema": {"oneOf": [ENVELOPE_SCHEMA, {"type": "array", "items": ENVELOPE_SCHEMA, "minItems": 1}]},
                "examples": {
                    "one": {"summary": "One event", "value": EVENT_EXAMPLE},
                    "array": {"summary": "A JSON array of events", "value": [EVENT_EXAMPLE]},
                },
            },
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "One event envelope (as in application/json) per line."},
                "example": "".join(
                    json.dumps(event) + "\n"
                    for event in (EVENT_EXAMPLE, {**EVENT_EXAMPLE, "external_id": "BKG-413/created"})
                ),
            },
        },
    },
    "responses": {"202": {"headers": ACCEPTED_HEADERS}},
}
