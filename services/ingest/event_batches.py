"""Raw events stored a fetch at a time: a statement per kind of row, with the rules of one at a time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from services.ingest import batch_store, store
from services.ingest.events import DocumentDraft, event_content_hash
from services.ingest.metrics import DUPLICATES
from services.ingest.new_messages import Emission
from services.ingest.tombstones import Delivery, erased_each
from shared.hashing import text_hash
from shared.records import EventEnvelope, utcnow
from shared.tombstones import event_value


@dataclass(frozen=True)
class FetchedEvent:
    """An event of the fetch with the documents it yields."""

    envelope: EventEnvelope
    drafts: list[DocumentDraft]


async def store_events(db: asyncpg.Connection, tenant_id: UUID, events: Sequence[FetchedEvent]) -> list[list[Emission]]:
    """Store a tenant's events, in order, and return what each hands on, in order.

    An event that comes again in the fetch (the same source and id) starts a new run of
    statements, so that it is stored after the first, as one at a time would store it.
    """
    emissions: list[list[Emission]] = []
    for run in _runs_without_repeats(events):
        emissions += await _store_run(db, tenant_id, run)
    return emissions


def _runs_without_repeats(events: Sequence[FetchedEvent]) -> list[list[FetchedEvent]]:
    runs: list[list[FetchedEvent]] = [[]]
    keys: set[tuple[str, str]] = set()
    for event in events:
        key = (event.envelope.source, event.envelope.external_id)
        if key in keys:
            runs.append([])
            keys.clear()
        runs[-1].append(event)
        keys.add(key)
    return [run for run in runs if run]


async def _store_run(db: asyncpg.Connection, tenant_id: UUID, run: list[FetchedEvent]) -> list[list[Emission]]:
    """Store events of which none comes twice: a statement for the tombstones, one for the event
    rows, then the documents of those that are new or changed."""
    envelopes = [event.envelope for event in run]
    checks = [
        Delivery([("event", event_value(envelope.source, envelope.external_id))],
                 (envelope.payload, envelope.tags, envelope.metadata), envelope.received_at or utcnow())
        for envelope in envelopes
    ]  # fmt: skip
    live = [index for index, dropped in enumerate(await erased_each(db, tenant_id, "events", checks)) if not dropped]
    emissions: list[list[Emission]] = [[] for _ in run]
    if not live:
        return emissions
    outcomes = await batch_store.upsert_raw_events(
        db, tenant_id, [(envelopes[index], event_content_hash(envelopes[index])) for index in live]
    )
    duplicates: dict[int, UUID] = {}
    stored: dict[int, UUID] = {}
    for index, (raw_id, outcome) in zip(live, outcomes, strict=True):
        if outcome == "duplicate":
            DUPLICATES.labels(envelopes[index].source, "external_id").inc()
            duplicates[index] = raw_id
        else:
            stored[index] = raw_id
    if duplicates:
        # Stored before, but the process may have stopped before handing the documents on.
        references = await batch_store.referenced_documents(db, list(duplicates.values()))
        wanted = [document_id for raw_id in duplicates.values() for document_id in references.get(raw_id, [])]
        pending = {row.id: row for row in await store.pending_documents(db, wanted)}
        for index, raw_id in duplicates.items():
            emissions[index] = [Emission(pending[id_]) for id_ in references.get(raw_id, []) if id_ in pending]
    if stored:
        await _store_documents(db, tenant_id, run, stored, emissions)
    return emissions


async def _store_documents(
    db: asyncpg.Connection, tenant_id: UUID, run: list[FetchedEvent], stored: dict[int, UUID],
    emissions: list[list[Emission]],
) -> None:  # fmt: skip
    """Store the documents of the events `stored` (new or changed, by index in `run`), point the
    events at them, and add the new or changed documents to each event's emissions.

    The references are replaced after every document is stored: a document that a changed event
    drops and a later event of the run takes up is kept, where one event at a time would delete
    it and bring it back (handing it on once more, unchanged).
    """
    owners: list[int] = []
    docs: list[store.NewDocument] = []
    for index in stored:
        envelope = run[index].envelope
        for draft in run[index].drafts:
            content_hash = text_hash(draft.text)
            owners.append(index)
            docs.append(
                store.NewDocument(
                    tenant_id=tenant_id, source=envelope.source, content_type=draft.content_type,
                    doc_key=content_hash.hex(), text=draft.text, content_hash=content_hash,
                    content_ref=draft.content_ref, external_id=envelope.external_id, tags=draft.tags,
                    metadata={**envelope.metadata, **draft.metadata}, occurred_at=envelope.occurred_at,
                )
            )  # fmt: skip
    references: dict[UUID, list[UUID]] = {raw_id: [] for raw_id in stored.values()}
    for index, doc, (row, changed) in zip(owners, docs, await upsert_each(db, docs), strict=True):
        references[stored[index]].append(row.id)
        if changed:
            emissions[index].append(Emission(row))
        else:
            DUPLICATES.labels(doc.source, "content_hash").inc()
    await batch_store.replace_references(db, tenant_id, references)


async def upsert_each(
    db: asyncpg.Connection, docs: Sequence[store.NewDocument]
) -> list[tuple[store.DocumentRow, bool]]:
    """`upsert_document` for each of `docs` in turn, a statement per source: a key that comes
    again finds the row the first one stored, unchanged (events that share a text share its document)."""
    first: dict[tuple[str, str], int] = {}
    for position, doc in enumerate(docs):
        first.setdefault((doc.source, doc.doc_key), position)
    by_source: dict[str, list[int]] = defaultdict(list)
    for (source, _), position in first.items():
        by_source[source].append(position)
    upserted: dict[int, tuple[store.DocumentRow, bool]] = {}
    for positions in by_source.values():
        rows = await batch_store.upsert_documents(db, [docs[position] for position in positions])
        upserted.update(zip(positions, rows, strict=True))
    found = []
    for position, doc in enumerate(docs):
        original = first[(doc.source, doc.doc_key)]
        found.append(upserted[position] if position == original else (upserted[original][0], False))
    return found
