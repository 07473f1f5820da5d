"""Agents that turn raw deliveries into stored rows and documents on chorus.docs."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer

from services.ingest import batch_store, store
from services.ingest.event_batches import FetchedEvent, store_events
from services.ingest.events import VCON_SOURCE, documents_of, vcon_tenant
from services.ingest.metrics import DOCUMENTS_EMITTED, DUPLICATES, IGNORED_EVENTS, STALE_UPDATES
from services.ingest.new_messages import Emission, message_document, store_new_messages
from services.ingest.records import RawStreamChatDelivery, RawTavusDelivery
from services.ingest.streamchat import MESSAGE_EVENTS, MessageEvent, event_type, parse_message_event
from services.ingest.tavus import SPOKEN_ROLES, Callback, parse_callback
from services.ingest.tombstones import Delivery, erased, erased_each
from services.ingest.topics import RAW_STREAMCHAT, RAW_TAVUS
from shared import topics
from shared.db import set_tenant, tenant_transaction
from shared.errors import InvalidRecord
from shared.hashing import normalize_text, text_hash
from shared.records import Document, EventEnvelope, utcnow
from shared.stream import Agent, BatchResult, Incoming, Sent
from shared.tenants import resolve_tenant
from shared.tombstones import Kind

log = logging.getLogger(__name__)

T = TypeVar("T")

# Webhooks stored in one transaction: a burst to one creator shares a partition.
STREAMCHAT_BATCH = 500
# Raw events stored in one transaction: a bulk publish or a burst of the events API.
EVENTS_BATCH = 500


class Normalizer:
    """The three agents of the ingest service, sharing its pool and producer."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, topic_prefix: str) -> None:
        self.pool = pool
        self.producer = producer
        self.prefix = topic_prefix
        self._tenants: dict[str, UUID] = {}

    def agents(self) -> list[Agent[Any]]:
        return [
            Agent("normalize_streamchat", "ingest", "chorus-ingest-streamchat", RAW_STREAMCHAT,
                  handle_batch=self.normalize_streamchat, max_batch=STREAMCHAT_BATCH),
            Agent("normalize_tavus", "ingest", "chorus-ingest-tavus", RAW_TAVUS, handle_batch=self.normalize_tavus),
            Agent("normalize_events", "ingest", "chorus-ingest-events", topics.RAW_EVENTS,
                  handle_batch=self.normalize_events, max_batch=EVENTS_BATCH),
        ]  # fmt: skip

    # StreamChat

    async def normalize_streamchat(self, batch: list[Incoming[RawStreamChatDelivery]]) -> BatchResult:
        """Store a fetch of webhooks in one transaction per tenant, then hand its documents on.

        Messages stored for the first time, once in the fetch (a burst's usual case), go in with a
        statement per kind of row; edits, deletes and redeliveries take the way of one record at a
        time, in the same transaction. A record that does not parse is refused alone.
        """
        result = BatchResult()
        tenants: dict[UUID, list[tuple[RawStreamChatDelivery, str, MessageEvent]]] = defaultdict(list)
        for incoming in batch:
            delivery = incoming.value
            try:
                kind = event_type(delivery.body)
                if kind not in MESSAGE_EVENTS:
                    IGNORED_EVENTS.labels("streamchat", kind[:64]).inc()
                    continue
                event = parse_message_event(delivery.body, delivery.paid_channel_types)
            except InvalidRecord as error:
                result.refused.append((incoming.message, error))
                continue
            tenants[delivery.tenant_id].append((delivery, kind, event))
        for tenant_id, records in tenants.items():
            async with tenant_transaction(self.pool, tenant_id) as db:
                emissions = await self._store_streamchat(db, tenant_id, records)
            for (delivery, _, _), emitted in zip(records, emissions, strict=True):
                result.sent += await self._emit(emitted, delivery.received_at, delivery.correlation_id)
        return result

    async def _store_streamchat(
        self, db: asyncpg.Connection, tenant_id: UUID, records: list[tuple[RawStreamChatDelivery, str, MessageEvent]]
    ) -> list[list[Emission]]:
        """The emissions of each record, in their order."""
        checks = [Delivery([("webhook", delivery.webhook_id), ("message", event.message_id)], delivery.body,
                           delivery.received_at) for delivery, _, event in records]  # fmt: skip
        erased = await erased_each(db, tenant_id, "streamchat", checks)
        live = [index for index, dropped in enumerate(erased) if not dropped]
        new_webhooks = await batch_store.record_streamchat_deliveries(
            db, tenant_id, [(records[index][0].webhook_id, records[index][2].message_id) for index in live]
        )
        fresh = []
        for index in live:
            # A webhook id twice in the fetch: the second is a redelivery of the first.
            if (webhook_id := records[index][0].webhook_id) in new_webhooks:
                new_webhooks.discard(webhook_id)
                fresh.append(index)
        stored = await batch_store.stored_message_ids(db, tenant_id, [records[index][2].message_id for index in fresh])
        times = Counter(records[index][2].message_id for index in live)
        first_seen = [
            index for index in fresh
            if records[index][1] != "message.deleted"
            and (message_id := records[index][2].message_id) not in stored and times[message_id] == 1
        ]  # fmt: skip
        emissions: list[list[Emission]] = [[] for _ in records]
        new = [(records[index][2], records[index][0].body) for index in first_seen]
        for index, emitted in zip(first_seen, await store_new_messages(db, tenant_id, new), strict=True):
            emissions[index] = emitted
        fresh_set, first_set = set(fresh), set(first_seen)
        for index in live:
            if index in first_set:
                continue
            delivery, kind, event = records[index]
            if index not in fresh_set:
                DUPLICATES.labels("streamchat", "webhook_id").inc()
                emissions[index] = await self._pending_for_message(db, tenant_id, event)
            elif kind == "message.deleted":
                emissions[index] = await self._delete_message(db, tenant_id, event)
            else:
                emissions[index] = await self._store_message(db, tenant_id, event, delivery.body)
        return emissions

    async def _store_message(
        self, db: asyncpg.Connection, tenant_id: UUID, event: MessageEvent, body: dict[str, object]
    ) -> list[Emission]:
        content_hash = text_hash(event.text)
        existing = await store.find_message(db, tenant_id, event.message_id)
        if existing is None:
            row_id = await store.insert_message(db, tenant_id, event, content_hash, body)
        elif existing["content_hash"] == content_hash or existing["deleted_at"] is not None:
            DUPLICATES.labels("streamchat", "message_content").inc()
            return await self._pending_for_message(db, tenant_id, event)
        elif event.edited_at < existing["edited_at"]:
            # Webhooks can arrive out of order: an older edit must not overwrite a newer one.
            STALE_UPDATES.inc()
            return await self._pending_for_message(db, tenant_id, event)
        else:
            row_id = existing["id"]
            await store.update_message_text(db, row_id, event, content_hash, body)
        if not event.text:
            return []
        document, changed = await store.upsert_document(db, message_document(tenant_id, event, content_hash))
        await store.link_message_document(db, row_id, document.id)
        return [Emission(document, message=event, message_row_id=row_id)] if changed else []

    async def _delete_message(self, db: asyncpg.Connection, tenant_id: UUID, event: MessageEvent) -> list[Emission]:
        existing = await store.find_message(db, tenant_id, event.message_id)
        if existing is None or existing["deleted_at"] is not None:
            DUPLICATES.labels("streamchat", "already_deleted" if existing else "unknown_message").inc()
            return []
        await store.mark_message_deleted(db, existing["id"], event.deleted_at)
        if existing["document_id"] is None:
            return []
        document = await store.mark_document_deleted(db, existing["document_id"])
        if document is None:
            return []
        return [Emission(document, action="delete", message=event, message_row_id=existing["id"])]

    async def _pending_for_message(
        self, db: asyncpg.Connection, tenant_id: UUID, event: MessageEvent
    ) -> list[Emission]:
        existing = await store.find_message(db, tenant_id, event.message_id)
        if existing is None or existing["document_id"] is None:
            return []
        pending = await store.pending_documents(db, [existing["document_id"]])
        return [Emission(row, message=event, message_row_id=existing["id"]) for row in pending]

    # Tavus

    async def normalize_tavus(self, batch: list[Incoming[RawTavusDelivery]]) -> BatchResult:
        """Store a fetch of callbacks in one transaction, then hand their documents on in the order
        of the records. Callbacks are few: each is stored with its own statements, in turn.

        A callback that does not parse is refused alone; one that fails while it is stored (a bad
        transcript, a value Postgres refuses) fails the fetch, which the agent loop then splits.
        """
        result = BatchResult()
        tenants: dict[UUID, list[tuple[int, tuple[RawTavusDelivery, Callback]]]] = defaultdict(list)
        for position, incoming in enumerate(batch):
            try:
                callback = parse_callback(incoming.value.body)
            except InvalidRecord as error:
                result.refused.append((incoming.message, error))
                continue
            tenants[incoming.value.tenant_id].append((position, (incoming.value, callback)))
        emissions = await self._store_by_tenant(tenants, self._store_callbacks)
        for position, emitted in sorted(emissions.items()):
            delivery = batch[position].value
            result.sent += await self._emit(emitted, delivery.received_at, delivery.correlation_id)
        return result

    async def _store_callbacks(
        self, db: asyncpg.Connection, tenant_id: UUID, callbacks: list[tuple[RawTavusDelivery, Callback]]
    ) -> list[list[Emission]]:
        return [await self._store_callback(db, tenant_id, delivery, callback) for delivery, callback in callbacks]

    async def _store_callback(
        self, db: asyncpg.Connection, tenant_id: UUID, delivery: RawTavusDelivery, callback: Callback
    ) -> list[Emission]:
        conversation: list[tuple[Kind, str]] = [("conversation", callback.conversation_id)]
        if await erased(db, tenant_id, "tavus", conversation, delivery.body, delivery.received_at):
            return []
        fresh = await store.record_tavus_event(
            db, tenant_id, callback.event_hash, callback.conversation_id, callback.event_type, delivery.body
        )
        if fresh:
            return await self._apply_callback(db, tenant_id, callback)
        DUPLICATES.labels("tavus", "event_hash").inc()
        # Stored before, but the process may have stopped before handing the documents on.
        documents = await store.conversation_documents(db, tenant_id, callback.conversation_id)
        return [Emission(row) for row in await store.pending_documents(db, documents)]

    async def _apply_callback(self, db: asyncpg.Connection, tenant_id: UUID, callback: Callback) -> list[Emission]:
        conversation = callback.conversation_id
        properties = callback.properties
        kind = callback.event_type
        if kind == "system.replica_joined":
            await store.update_conversation(
                db, tenant_id, conversation, status="active", replica_id=_string(properties.get("replica_id")),
                started_at=callback.timestamp,
            )  # fmt: skip
            return []
        if kind == "system.shutdown":
            await store.update_conversation(
                db, tenant_id, conversation, status="ended",
                shutdown_reason=_string(properties.get("shutdown_reason")), ended_at=callback.timestamp,
            )  # fmt: skip
            return []
        if kind == "application.recording_ready":
            await store.update_conversation(
                db, tenant_id, conversation, recording_uri=_string(properties.get("storage_uri"))
            )
            return []
        if kind == "application.transcription_ready":
            await store.update_conversation(db, tenant_id, conversation)
            return await self._store_transcript(db, tenant_id, callback)
        if kind == "application.perception_analysis":
            analysis = properties.get("analysis")
            await store.update_conversation(db, tenant_id, conversation, perception_analysis=analysis)
            text = normalize_text(analysis if isinstance(analysis, str) else str(analysis or ""))
            if not text:
                return []
            _, emissions = await self._conversation_document(
                db, tenant_id, callback, "perception_analysis", "perception_analysis", text, {}
            )
            return emissions
        await store.update_conversation(db, tenant_id, conversation)
        IGNORED_EVENTS.labels("tavus", kind[:64]).inc()
        return []

    async def _store_transcript(self, db: asyncpg.Connection, tenant_id: UUID, callback: Callback) -> list[Emission]:
        emissions = []
        for turn in callback.transcript:
            document_id = None
            if turn.role in SPOKEN_ROLES and turn.content:
                document_id, emitted = await self._conversation_document(
                    db, tenant_id, callback, "transcript", f"turn_{turn.index}", turn.content,
                    {"role": turn.role, "turn_index": turn.index},
                )  # fmt: skip
                emissions += emitted
            await store.upsert_conversation_message(
                db, tenant_id, callback.conversation_id, turn.index, turn.role, turn.content, document_id
            )
        return emissions

    async def _conversation_document(
        self, db: asyncpg.Connection, tenant_id: UUID, callback: Callback, content_type: str, ref: str, text: str,
        metadata: dict[str, object],
    ) -> tuple[UUID, list[Emission]]:  # fmt: skip
        document, changed = await store.upsert_document(
            db,
            store.NewDocument(
                tenant_id=tenant_id, source="tavus", content_type=content_type,
                doc_key=f"{callback.conversation_id}:{ref}", text=text, content_hash=text_hash(text),
                content_ref=ref, external_id=callback.conversation_id, conversation_id=callback.conversation_id,
                metadata=metadata, occurred_at=callback.timestamp,
            ),
        )  # fmt: skip
        if changed:
            return document.id, [Emission(document)]
        return document.id, [Emission(row) for row in await store.pending_documents(db, [document.id])]

    # Raw events and vCon

    async def normalize_events(self, batch: list[Incoming[EventEnvelope]]) -> BatchResult:
        """Store a fetch of raw events in one transaction, a tenant at a time, then hand their
        documents on in the order of the records.

        A record that names no known tenant or yields no valid documents is refused alone; one
        that Postgres refuses fails the fetch, which the agent loop then splits to find it.
        """
        result = BatchResult()
        tenants: dict[UUID, list[tuple[int, FetchedEvent]]] = defaultdict(list)
        for position, incoming in enumerate(batch):
            envelope = incoming.value
            try:
                tenant_id = await self._tenant_of(envelope, incoming.headers)
                event = FetchedEvent(envelope, documents_of(envelope))
            except InvalidRecord as error:
                result.refused.append((incoming.message, error))
                continue
            tenants[tenant_id].append((position, event))
        emissions = await self._store_by_tenant(tenants, store_events)
        for position, emitted in sorted(emissions.items()):
            envelope = batch[position].value
            result.sent += await self._emit(emitted, envelope.received_at or utcnow(), envelope.correlation_id)
        return result

    async def _tenant_of(self, envelope: EventEnvelope, headers: dict[str, bytes]) -> UUID:
        header = headers.get("tenant_id")
        named = envelope.tenant_id or (header.decode(errors="replace") if header else None)
        if named is None and envelope.source == VCON_SOURCE:
            named = vcon_tenant(envelope)
        if not named:
            raise InvalidRecord("the event names no tenant: set 'tenant_id' in the record or its tenant_id header")
        if named not in self._tenants:
            tenant_id = await resolve_tenant(self.pool, named)
            if tenant_id is None:
                raise InvalidRecord(f"no tenant is named or has the id {named[:128]!r}")
            self._tenants[named] = tenant_id
        return self._tenants[named]

    # Fetches

    async def _store_by_tenant(
        self,
        tenants: dict[UUID, list[tuple[int, T]]],
        store_records: Callable[[asyncpg.Connection, UUID, list[T]], Awaitable[list[list[Emission]]]],
    ) -> dict[int, list[Emission]]:
        """Store each tenant's records (with their positions in the fetch) in one transaction,
        scoped to each tenant in turn: the emissions of each record by its position."""
        emissions: dict[int, list[Emission]] = {}
        if not tenants:
            return emissions
        async with tenant_transaction(self.pool, next(iter(tenants))) as db:
            for number, (tenant_id, records) in enumerate(tenants.items()):
                if number:
                    await set_tenant(db, tenant_id)
                stored = await store_records(db, tenant_id, [record for _, record in records])
                emissions.update(zip([position for position, _ in records], stored, strict=True))
        return emissions

    # Output

    async def _emit(self, emissions: list[Emission], received_at: datetime, correlation_id: str | None) -> Sent:
        """Hand the documents on, after their rows committed; the agent loop awaits the acknowledgements."""
        pending = []
        for emission in emissions:
            document = _document_record(emission, received_at, correlation_id)
            pending.append(await topics.DOCS.send(self.producer, self.prefix, document, correlation_id))
            DOCUMENTS_EMITTED.labels(document.source, document.action).inc()
        return pending


def _document_record(emission: Emission, received_at: datetime, correlation_id: str | None) -> Document:
    row, message = emission.row, emission.message
    return Document(
        document_id=row.id, tenant_id=row.tenant_id, action="delete" if emission.action == "delete" else "upsert",
        source=row.source, content_type=row.content_type, content_ref=row.content_ref, external_id=row.external_id,
        text=row.text, content_hash=row.content_hash.hex(), creator_id=row.creator_id,
        conversation_id=row.conversation_id, channel_cid=row.channel_cid, tags=row.tags,
        occurred_at=row.occurred_at, received_at=received_at, correlation_id=correlation_id,
        message_row_id=emission.message_row_id,
        message_id=message.message_id if message else None,
        visitor_id=message.visitor.id if message and message.visitor else None,
        direction=message.direction if message else None,
        is_paid=message.is_paid if message else None,
    )  # fmt: skip


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None
