"""Messages stored for the first time: a fetch's worth in a statement per kind of row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from services.ingest import batch_store, store
from services.ingest.streamchat import MessageEvent
from shared.hashing import text_hash


@dataclass(frozen=True)
class Emission:
    """A document row to hand on, with what the record about it needs beyond the row."""

    row: store.DocumentRow
    action: str = "upsert"
    message: MessageEvent | None = None
    message_row_id: UUID | None = None


def message_document(tenant_id: UUID, event: MessageEvent, content_hash: bytes) -> store.NewDocument:
    """The document of a StreamChat message's text."""
    return store.NewDocument(
        tenant_id=tenant_id, source="streamchat", content_type="message", doc_key=event.message_id, text=event.text,
        content_hash=content_hash, external_id=event.message_id, creator_id=event.creator_id,
        channel_cid=event.channel_cid, occurred_at=event.created_at,
        metadata={"message_id": event.message_id, "direction": event.direction, "is_paid": event.is_paid,
                  "visitor_id": event.visitor.id if event.visitor else None},
    )  # fmt: skip


async def store_new_messages(
    db: asyncpg.Connection, tenant_id: UUID, messages: list[tuple[MessageEvent, dict[str, Any]]]
) -> list[list[Emission]]:
    """Store messages no row holds yet, each id once, with their raw bodies: the documents first,
    then the messages that point at them. Returns each message's emissions, in order."""
    if not messages:
        return []
    events = [event for event, _ in messages]
    hashes = [text_hash(event.text) for event in events]
    # A message without text is stored, but has no document to search or embed.
    with_text = [position for position, event in enumerate(events) if event.text]
    documents: dict[int, tuple[store.DocumentRow, bool]] = {}
    if with_text:
        drafts = [message_document(tenant_id, events[position], hashes[position]) for position in with_text]
        documents = dict(zip(with_text, await batch_store.upsert_documents(db, drafts), strict=True))
    document_ids = {position: row.id for position, (row, _) in documents.items()}
    rows = [
        batch_store.NewMessage(event, hashes[position], body, document_ids.get(position))
        for position, (event, body) in enumerate(messages)
    ]
    row_ids = await batch_store.insert_messages(db, tenant_id, rows)
    emissions: list[list[Emission]] = [[] for _ in events]
    for position, (document, changed) in documents.items():
        if changed:
            event = events[position]
            emissions[position] = [Emission(document, message=event, message_row_id=row_ids[event.message_id])]
    return emissions
