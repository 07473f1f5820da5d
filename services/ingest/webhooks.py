"""The ingest HTTP endpoints: verify, validate, and answer 2xx only once Kafka has the record."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, TypeVar
from uuid import UUID

from aiokafka.errors import (
    InvalidMessageError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest import bodies, credentials
from services.ingest.events import documents_of
from services.ingest.fields import InvalidField, check_id
from services.ingest.metrics import EVENTS_ACCEPTED, PRODUCE_SECONDS, REQUESTS, SIGNATURE_FAILURES
from services.ingest.records import RawStreamChatDelivery, RawTavusDelivery
from services.ingest.requests import RequestProblem, load_json, parse_json, read_body, unstorable
from services.ingest.settings import IngestSettings
from services.ingest.streamchat import MESSAGE_EVENTS, event_type, parse_message_event, signature_is_valid
from services.ingest.tavus import parse_callback
from services.ingest.topics import RAW_STREAMCHAT, RAW_TAVUS
from shared import topics
from shared.errors import InvalidRecord
from shared.hashing import sha256
from shared.http.keys import authenticated_tenant, bearer, use_api_keys
from shared.http.problems import RETRY_SOON, FieldProblem, HTTPProblem, answer_with_problems, declare_problems
from shared.records import EventEnvelope, Record, utcnow
from shared.service import Resources
from shared.tenants import resolve_tenant
from shared.topics import Topic

R = TypeVar("R", bound=Record)
router = APIRouter()

# The largest record value ingest sends: the producer refuses a record (with its key and headers)
# over 1 MiB, and the broker's default message.max.bytes is hardly more.
MAX_RECORD_BYTES = 1_000_000
KAFKA_REFUSALS = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidMessageError)
TRANSCRIPTION_READY = "application.transcription_ready"
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")


def add_ingest_routes(app: FastAPI) -> None:
    """The routes, answering refusals with problem details; `app.state.settings` is already set."""
    settings: IngestSettings = app.state.settings
    app.include_router(router)
    use_api_keys(app, settings.key_cache_seconds)
    answer_with_problems(app)
    declare_problems(app)
    app.add_middleware(RequestCounter)


class RequestCounter:
    """Counts answers by endpoint and status. A plain ASGI wrapper: a function middleware
    (`@app.middleware`) would run each request in a task and memory streams of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router records the matched route in the request's scope.
            REQUESTS.labels(getattr(scope.get("route"), "path", "unmatched"), str(status)).inc()


@router.post("/webhooks/streamchat", summary="StreamChat push webhook", response_model=bodies.StreamChatAccepted,
             responses=bodies.REFUSALS, openapi_extra=bodies.STREAMCHAT)  # fmt: skip
async def receive_streamchat(request: Request) -> JSONResponse:
    resources, settings = _context(request)
    body = await read_body(request, settings.max_body_bytes)
    app = await credentials.streamchat_app(resources.pool, request.headers.get("x-api-key", ""))
    if app is None:
        SIGNATURE_FAILURES.labels("streamchat").inc()
        raise RequestProblem(401, "X-Api-Key names no StreamChat app known to Chorus")
    if not signature_is_valid(body, request.headers.get("x-signature", ""), app.api_secret):
        SIGNATURE_FAILURES.labels("streamchat").inc()
        raise RequestProblem(401, "X-Signature does not match the body signed with the app's secret")
    payload = _object(parse_json(body))
    try:
        _check_streamchat(payload)
    except InvalidRecord as error:
        raise _refusal(error) from None
    webhook_id = request.headers.get("x-webhook-id", "").strip()[:256]
    correlation_id = _correlation_id(request)
    delivery = RawStreamChatDelivery(
        tenant_id=app.tenant_id,
        # Without a webhook id, the body itself identifies the delivery, so a resend is still caught.
        webhook_id=webhook_id or "sha256:" + sha256(body).hex(),
        attempt=_attempt(request.headers.get("x-webhook-attempt")),
        received_at=utcnow(),
        paid_channel_types=tuple(sorted({*app.paid_channel_types, *settings.paid_channel_types})),
        correlation_id=correlation_id,
        body=payload,
    )
    await _produce(resources, RAW_STREAMCHAT, [delivery], correlation_id)
    EVENTS_ACCEPTED.labels("streamchat").inc()
    kind = event_type(payload)
    return _accepted({"accepted": 1, "event_type": kind, "stored": kind in MESSAGE_EVENTS}, correlation_id, 200)


@router.post("/webhooks/tavus", summary="Tavus conversation callback", response_model=bodies.TavusAccepted,
             responses=bodies.REFUSALS, openapi_extra=bodies.TAVUS)  # fmt: skip
async def receive_tavus(request: Request) -> JSONResponse:
    resources, settings = _context(request)
    token = request.headers.get("x-chorus-token") or request.query_params.get("token") or ""
    tenant_id = await credentials.tenant_for_tavus_token(resources.pool, token) if token else None
    if tenant_id is None:
        SIGNATURE_FAILURES.labels("tavus").inc()
        raise RequestProblem(401, "a valid X-Chorus-Token header or token query parameter is required")
    payload = _object(parse_json(await read_body(request, settings.max_body_bytes)))
    try:
        callback = parse_callback(payload)
        if callback.event_type == TRANSCRIPTION_READY:
            callback.transcript  # noqa: B018  (read for its checks: the agent reads it the same way)
    except InvalidRecord as error:
        raise _refusal(error) from None
    correlation_id = _correlation_id(request)
    delivery = RawTavusDelivery(tenant_id=tenant_id, received_at=utcnow(), correlation_id=correlation_id, body=payload)
    await _produce(resources, RAW_TAVUS, [delivery], correlation_id)
    EVENTS_ACCEPTED.labels("tavus").inc()
    return _accepted({"accepted": 1, "event_type": callback.event_type}, correlation_id, 200)


async def events_tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> UUID:
    """The API key's tenant, counting refused keys with the refused signatures and tokens."""
    try:
        return await authenticated_tenant(request, credentials)
    except HTTPProblem:
        SIGNATURE_FAILURES.labels("events").inc()
        raise


@router.post("/v1/events", summary="Events from any producer: one object, a JSON array, or NDJSON", status_code=202,
             response_model=bodies.EventsAccepted, responses=bodies.REFUSALS, openapi_extra=bodies.EVENTS)  # fmt: skip
async def receive_events(request: Request, tenant_id: Annotated[UUID, Depends(events_tenant)]) -> JSONResponse:
    resources, settings = _context(request)
    body = await read_body(request, settings.max_body_bytes)
    items = _event_items(body, request.headers.get("content-type", ""))
    if not items:
        raise RequestProblem(400, "the body holds no event")
    if len(items) > settings.max_events_per_request:
        raise RequestProblem(413, f"{len(items)} events in one request; the limit is {settings.max_events_per_request}")
    correlation_id = _correlation_id(request)
    received_at = utcnow()
    envelopes: list[EventEnvelope] = []
    problems: list[FieldProblem] = []
    named: dict[str, UUID | None] = {str(tenant_id): tenant_id}
    for index, item in enumerate(items):
        if found := unstorable(item, index):
            problems += found
            continue
        try:
            envelope = EventEnvelope.model_validate(item)
        except ValidationError as error:
            problems += [
                FieldProblem(event=index, field=".".join(str(part) for part in detail["loc"]),
                             problem=str(detail["msg"]).removeprefix("Value error, "))
                for detail in error.errors(include_url=False, include_input=False)
            ]  # fmt: skip
            continue
        if envelope.tenant_id is not None and await _tenant(resources, envelope.tenant_id, named) != tenant_id:
            # Unknown and other tenants alike: a key must not learn which tenant names exist.
            problems.append(FieldProblem(event=index, field="tenant_id", problem="is not the API key's tenant"))
            continue
        try:
            documents_of(envelope)  # what the agent will make of it: a vCon's structure is checked here
        except InvalidRecord as error:
            problems.append(FieldProblem(event=index, field="payload", problem=str(error)))
            continue
        envelopes.append(
            envelope.model_copy(
                update={"tenant_id": str(tenant_id), "received_at": received_at, "correlation_id": correlation_id}
            )
        )
    if problems:
        raise RequestProblem(400, f"{len({p.event for p in problems})} of {len(items)} events are invalid; none "
                             "was accepted", problems)  # fmt: skip
    await _produce(resources, topics.RAW_EVENTS, envelopes, correlation_id, numbered=True)
    for envelope in envelopes:
        EVENTS_ACCEPTED.labels(envelope.source).inc()
    return _accepted({"accepted": len(envelopes)}, correlation_id, 202)


def _context(request: Request) -> tuple[Resources, IngestSettings]:
    resources: Resources = request.app.state.resources
    settings: IngestSettings = request.app.state.settings
    return resources, settings


def _event_items(body: bytes, content_type: str) -> list[Any]:
    """The events of the body, parsed; their values are checked event by event (`unstorable`)."""
    if content_type.split(";")[0].strip().lower() in NDJSON_TYPES:
        lines = [line for line in body.split(b"\n") if line.strip()]
        return [load_json(line, f"line {number}") for number, line in enumerate(lines, start=1)]
    value = load_json(body)
    return value if isinstance(value, list) else [value]


def _check_streamchat(payload: dict[str, Any]) -> None:
    """Refuse what the agent would: a message event it cannot read, or ids too long to store."""
    if event_type(payload) not in MESSAGE_EVENTS:
        return
    event = parse_message_event(payload)
    check_id(event.message_id, "message.id")
    check_id(event.sender.id, "message.user.id")
    check_id(event.channel_cid, "cid")
    check_id(event.creator_id, "members.user_id")
    check_id(event.visitor.id if event.visitor else None, "members.user_id")


def _refusal(error: InvalidRecord) -> RequestProblem:
    if isinstance(error, InvalidField):
        return RequestProblem(400, str(error), [FieldProblem(field=error.field, problem=error.problem)])
    return RequestProblem(400, str(error))


async def _tenant(resources: Resources, name_or_id: str, known: dict[str, UUID | None]) -> UUID | None:
    """The tenant an event names as the agent resolves it (its id or name), once per request."""
    if name_or_id not in known:
        known[name_or_id] = await resolve_tenant(resources.pool, name_or_id)
    return known[name_or_id]


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestProblem(400, f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _attempt(header: str | None) -> int | None:
    return int(header) if header and header.isdigit() and len(header) < 6 else None


def _correlation_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given[:128] if given.isascii() and given.isprintable() and given else uuid.uuid4().hex


def _accepted(body: dict[str, Any], correlation_id: str, status: int) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"X-Correlation-Id": correlation_id})


async def _produce(
    resources: Resources, topic: Topic[R], records: list[R], correlation_id: str, *, numbered: bool = False
) -> None:
    """Send every record and wait until the broker acknowledged all of them (acks=all).

    A record Kafka would refuse for its size is a 413 before any is sent: waiting cannot make it
    smaller. `numbered`: name each event by its index in the request.
    """
    sizes = [(index, len(record.to_bytes())) for index, record in enumerate(records)]
    if too_large := [(index, size) for index, size in sizes if size > MAX_RECORD_BYTES]:
        problem = f"is larger than a Kafka record may be ({{}} bytes as a record; at most {MAX_RECORD_BYTES})"
        raise RequestProblem(413, f"the event {problem.format(too_large[0][1])}", [
            FieldProblem(field="body", problem=problem.format(size), event=index if numbered else None)
            for index, size in too_large
        ])  # fmt: skip
    prefix = resources.settings.topic_prefix
    started = time.perf_counter()
    try:
        futures = [await topic.send(resources.producer, prefix, record, correlation_id) for record in records]
        for future in futures:
            await future
    except KAFKA_REFUSALS as error:
        raise RequestProblem(413, f"Kafka refused the event for its size or form ({type(error).__name__})") from None
    except KafkaError as error:
        raise HTTPProblem(503, f"Kafka did not acknowledge the event ({type(error).__name__}); retry",
                          headers=RETRY_SOON) from None  # fmt: skip
    PRODUCE_SECONDS.labels(topic.name).observe(time.perf_counter() - started)
