"""The ingest service's set-based SQL: a fetch of deliveries stored with a statement per kind of row."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from asyncpg import Connection

from services.ingest.store import DOCUMENT_COLUMNS, UPSERT_DOCUMENT, DocumentRow, NewDocument
from services.ingest.streamchat import MessageEvent
from shared.records import EventEnvelope


async def record_streamchat_deliveries(
    db: Connection, tenant_id: UUID, deliveries: Sequence[tuple[str, str]]
) -> set[str]:
    """`record_streamchat_delivery` for a fetch: the webhook ids (webhook, message) not seen before."""
    rows = await db.fetch(
        "INSERT INTO streamchat_deliveries (tenant_id, webhook_id, message_id) "
        "SELECT $1, webhook_id, message_id FROM unnest($2::text[], $3::text[]) AS d (webhook_id, message_id) "
        "ON CONFLICT DO NOTHING RETURNING webhook_id",
        tenant_id, [webhook for webhook, _ in deliveries], [message for _, message in deliveries],
    )  # fmt: skip
    return {row["webhook_id"] for row in rows}


async def stored_message_ids(db: Connection, tenant_id: UUID, message_ids: Sequence[str]) -> set[str]:
    rows = await db.fetch(
        "SELECT message_id FROM streamchat_messages WHERE tenant_id = $1 AND message_id = ANY($2::text[])",
        tenant_id, list(message_ids),
    )  # fmt: skip
    return {row["message_id"] for row in rows}


@dataclass(frozen=True)
class NewMessage:
    event: MessageEvent
    content_hash: bytes
    raw: dict[str, Any]
    document_id: UUID | None


async def insert_messages(db: Connection, tenant_id: UUID, messages: Sequence[NewMessage]) -> dict[str, UUID]:
    """`insert_message` for messages not stored before, each with its document: row ids by message id."""
    events = [message.event for message in messages]
    rows = await db.fetch(
        """
        INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, channel_type, visitor_id,
            visitor_name, visitor_avatar_url, direction, is_paid, text, content_hash, message_created_at,
            message_updated_at, deleted_at, raw_payload, document_id)
        SELECT $1, u.message_id, u.creator_id, u.channel_cid, u.channel_type, u.visitor_id, u.visitor_name,
               u.visitor_avatar_url, u.direction, u.is_paid, u.text, u.content_hash, u.created_at, u.updated_at,
               u.deleted_at, u.raw::jsonb, u.document_id
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                    $10::boolean[], $11::text[], $12::bytea[], $13::timestamptz[], $14::timestamptz[],
                    $15::timestamptz[], $16::text[], $17::uuid[])
            AS u (message_id, creator_id, channel_cid, channel_type, visitor_id, visitor_name, visitor_avatar_url,
                  direction, is_paid, text, content_hash, created_at, updated_at, deleted_at, raw, document_id)
        RETURNING id, message_id
        """,
        tenant_id, [event.message_id for event in events], [event.creator_id for event in events],
        [event.channel_cid for event in events], [event.channel_type for event in events],
        [event.visitor.id if event.visitor else None for event in events],
        [event.visitor.name if event.visitor else None for event in events],
        [event.visitor.image if event.visitor else None for event in events],
        [event.direction for event in events], [event.is_paid for event in events], [event.text for event in events],
        [message.content_hash for message in messages], [event.created_at for event in events],
        [event.updated_at for event in events], [event.deleted_at for event in events],
        [_json(message.raw) for message in messages], [message.document_id for message in messages],
    )  # fmt: skip
    return {row["message_id"]: row["id"] for row in rows}


async def upsert_documents(db: Connection, docs: Sequence[NewDocument]) -> list[tuple[DocumentRow, bool]]:
    """`upsert_document` for many documents of one tenant and source with distinct keys, in two
    statements (three when some text changed): the rows in the order of `docs`."""
    tenant_id, source = docs[0].tenant_id, docs[0].source
    keys = [doc.doc_key for doc in docs]
    assert all(doc.tenant_id == tenant_id and doc.source == source for doc in docs) and len(set(keys)) == len(keys)
    rows = await db.fetch(
        f"""
        INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash, content_ref,
                               external_id, creator_id, conversation_id, channel_cid, tags, metadata, occurred_at)
        SELECT $1, $2, u.content_type, u.doc_key, u.text, u.content_hash, u.content_ref, u.external_id, u.creator_id,
               u.conversation_id, u.channel_cid, u.tags::jsonb, u.metadata::jsonb, u.occurred_at
        FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::text[], $9::text[], $10::text[],
                    $11::text[], $12::text[], $13::text[], $14::timestamptz[])
            AS u (content_type, doc_key, text, content_hash, content_ref, external_id, creator_id, conversation_id,
                  channel_cid, tags, metadata, occurred_at)
        {UPSERT_DOCUMENT}
        RETURNING {DOCUMENT_COLUMNS}, doc_key
        """,
        tenant_id, source, [doc.content_type for doc in docs], keys, [doc.text for doc in docs],
        [doc.content_hash for doc in docs], [doc.content_ref for doc in docs], [doc.external_id for doc in docs],
        [doc.creator_id for doc in docs], [doc.conversation_id for doc in docs], [doc.channel_cid for doc in docs],
        [_json(doc.tags or {}) for doc in docs], [_json(doc.metadata or {}) for doc in docs],
        [doc.occurred_at for doc in docs],
    )  # fmt: skip
    changed = {row["doc_key"]: row for row in rows}
    if changed:
        await db.execute(
            "DELETE FROM document_embeddings e USING unnest($1::uuid[], $2::bytea[]) AS u (id, content_hash) "
            "WHERE e.document_id = u.id AND e.content_hash <> u.content_hash",
            [row["id"] for row in changed.values()], [row["content_hash"] for row in changed.values()],
        )  # fmt: skip
    kept = {}
    if len(changed) < len(keys):
        found = await db.fetch(
            f"SELECT {DOCUMENT_COLUMNS}, doc_key FROM documents WHERE tenant_id = $1 AND source = $2 "
            "AND doc_key = ANY($3::text[])",
            tenant_id, source, [key for key in keys if key not in changed],
        )  # fmt: skip
        kept = {row["doc_key"]: row for row in found}
    return [
        (_document_row(changed[key]), True) if key in changed else (_document_row(kept[key]), False) for key in keys
    ]


# Raw events


async def upsert_raw_events(
    db: Connection, tenant_id: UUID, events: Sequence[tuple[EventEnvelope, bytes]]
) -> list[tuple[UUID, str]]:
    """Store events (each with its content hash; no event id twice): the id of each, in order, and
    'new', 'changed' (same id, new content) or 'duplicate'."""
    envelopes = [envelope for envelope, _ in events]
    rows = await db.fetch(
        """
        INSERT INTO raw_events (tenant_id, source, event_type, external_id, occurred_at, content_hash, payload,
                                tags, metadata, status)
        SELECT $1, u.source, u.event_type, u.external_id, u.occurred_at, u.content_hash, u.payload::jsonb,
               u.tags::jsonb, u.metadata::jsonb, 'processed'
        FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[], $7::text[], $8::text[],
                    $9::text[])
            AS u (source, event_type, external_id, occurred_at, content_hash, payload, tags, metadata)
        ON CONFLICT (tenant_id, source, external_id) DO UPDATE
            SET event_type = excluded.event_type, occurred_at = excluded.occurred_at,
                content_hash = excluded.content_hash, payload = excluded.payload, tags = excluded.tags,
                metadata = excluded.metadata, received_at = now()
            WHERE raw_events.content_hash <> excluded.content_hash
        RETURNING id, source, external_id, (xmax = 0) AS inserted
        """,
        tenant_id, [envelope.source for envelope in envelopes], [envelope.event_type for envelope in envelopes],
        [envelope.external_id for envelope in envelopes], [envelope.occurred_at for envelope in envelopes],
        [content_hash for _, content_hash in events], [_json(envelope.payload) for envelope in envelopes],
        [_json(envelope.tags) for envelope in envelopes], [_json(envelope.metadata) for envelope in envelopes],
    )  # fmt: skip
    stored = {(row["source"], row["external_id"]): (row["id"], "new" if row["inserted"] else "changed") for row in rows}
    if len(stored) < len(events):
        unchanged = [envelope for envelope in envelopes if (envelope.source, envelope.external_id) not in stored]
        found = await db.fetch(
            "SELECT r.id, r.source, r.external_id FROM raw_events r "
            "JOIN unnest($2::text[], $3::text[]) AS u (source, external_id) "
            "ON r.source = u.source AND r.external_id = u.external_id WHERE r.tenant_id = $1",
            tenant_id, [envelope.source for envelope in unchanged], [envelope.external_id for envelope in unchanged],
        )  # fmt: skip
        stored |= {(row["source"], row["external_id"]): (row["id"], "duplicate") for row in found}
    return [stored[(envelope.source, envelope.external_id)] for envelope in envelopes]


async def referenced_documents(db: Connection, raw_event_ids: Sequence[UUID]) -> dict[UUID, list[UUID]]:
    """The documents each of `raw_event_ids` references (events that reference none are left out)."""
    rows = await db.fetch(
        "SELECT raw_event_id, document_id FROM document_references WHERE raw_event_id = ANY($1::uuid[])",
        list(raw_event_ids),
    )
    references: dict[UUID, list[UUID]] = {}
    for row in rows:
        references.setdefault(row["raw_event_id"], []).append(row["document_id"])
    return references


async def replace_references(db: Connection, tenant_id: UUID, references: dict[UUID, list[UUID]]) -> None:
    """Point each event at exactly its documents; documents no event references any more are deleted."""
    pairs = [(raw_event_id, document_id) for raw_event_id, documents in references.items() for document_id in documents]
    events, documents = [event for event, _ in pairs], [document for _, document in pairs]
    dropped = await db.fetch(
        "DELETE FROM document_references r WHERE r.raw_event_id = ANY($1::uuid[]) AND NOT EXISTS ("
        "SELECT FROM unnest($2::uuid[], $3::uuid[]) AS k (raw_event_id, document_id) "
        "WHERE k.raw_event_id = r.raw_event_id AND k.document_id = r.document_id) RETURNING document_id",
        list(references), events, documents,
    )  # fmt: skip
    await db.execute(
        "INSERT INTO document_references (tenant_id, document_id, raw_event_id) "
        "SELECT $1, document_id, raw_event_id FROM unnest($2::uuid[], $3::uuid[]) AS k (document_id, raw_event_id) "
        "ON CONFLICT DO NOTHING",
        tenant_id, documents, events,
    )  # fmt: skip
    if dropped:
        await db.execute(
            "UPDATE documents d SET deleted_at = now() WHERE d.id = ANY($1::uuid[]) "
            "AND NOT EXISTS (SELECT FROM document_references r WHERE r.document_id = d.id)",
            [row["document_id"] for row in dropped],
        )


def _document_row(row: asyncpg.Record) -> DocumentRow:
    return DocumentRow(**{key: value for key, value in dict(row).items() if key != "doc_key"})


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
