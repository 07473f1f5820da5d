"""`chorus publish`: send a JSONL file of events straight to chorus.raw.events, for backfills."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Any
from uuid import UUID

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from services.ingest.events import VCON_SOURCE, vcon_tenant
from services.ingest.requests import RequestProblem, parse_json
from shared import topics
from shared.errors import InvalidRecord
from shared.kafka import create_producer
from shared.records import EventEnvelope, utcnow


@dataclass
class PublishSummary:
    sent: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)


async def publish_lines(
    lines: list[bytes],
    bootstrap: str,
    *,
    topic_prefix: str = "",
    source: str | None = None,
    tenant: str | None = None,
    progress: IO[str] = sys.stderr,
    resolve_tenant: Callable[[str], Awaitable[UUID | None]] | None = None,
) -> PublishSummary:
    """Validate each line as an event envelope and send the valid ones; report the rest by line.
    With `resolve_tenant`, an event that names no tenant, or one it does not know, is not sent:
    ingest would only dead-letter it."""
    summary = PublishSummary()
    known: dict[str, bool] = {}
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        pending = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                envelope = _envelope(line, number, source, tenant)
                if resolve_tenant is not None:
                    await _check_tenant(envelope, resolve_tenant, known)
            except (RequestProblem, ValidationError, InvalidRecord) as error:
                summary.failed += 1
                summary.problems.append(f"line {number}: {_reason(error)}")
                continue
            key = f"{envelope.tenant_id or ''}:{envelope.external_id}".encode()
            pending.append((number, await producer.send(topics.RAW_EVENTS.full_name(topic_prefix),
                                                        envelope.to_bytes(), key=key)))  # fmt: skip
            if len(pending) >= 500:
                await _settle(pending, summary)
                _draw(progress, number, len(lines), summary)
        await _settle(pending, summary)
        _draw(progress, len(lines), len(lines), summary)
        progress.write("\n")
    finally:
        await producer.stop()
    return summary


def _envelope(line: bytes, number: int, source: str | None, tenant: str | None) -> EventEnvelope:
    item: Any = parse_json(line, f"line {number}")
    if not isinstance(item, dict):
        raise RequestProblem(400, "not a JSON object")
    if source is not None:
        item = {**item, "source": source}
    if tenant is not None:
        item = {**item, "tenant_id": tenant}
    envelope = EventEnvelope.model_validate(item)
    return envelope.model_copy(update={"received_at": utcnow()})


async def _check_tenant(
    envelope: EventEnvelope, resolve: Callable[[str], Awaitable[UUID | None]], known: dict[str, bool]
) -> None:
    """Refuse the event as ingest's agent would: it names no tenant, or a tenant that is not there."""
    named = envelope.tenant_id or (vcon_tenant(envelope) if envelope.source == VCON_SOURCE else None)
    if not named:
        raise InvalidRecord("the event names no tenant: set 'tenant_id' in it or pass --tenant")
    if named not in known:
        known[named] = await resolve(named) is not None
    if not known[named]:
        raise InvalidRecord(f"no tenant is named or has the id {named[:128]!r}; `chorus tenants list` shows them")


async def _settle(pending: list[tuple[int, Any]], summary: PublishSummary) -> None:
    for number, future in pending:
        try:
            await future
            summary.sent += 1
        except KafkaError as error:
            summary.failed += 1
            summary.problems.append(f"line {number}: Kafka refused it ({type(error).__name__})")
    pending.clear()


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in detail['loc'])}: {detail['msg']}"
            for detail in error.errors(include_url=False)
        )
    return str(error)


def _draw(progress: IO[str], done: int, total: int, summary: PublishSummary) -> None:
    width = 30
    filled = width * done // max(total, 1)
    progress.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} lines  sent {summary.sent}  failed {summary.failed}"
    )
    progress.flush()
