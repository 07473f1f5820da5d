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


def _document_row(row: asyncpg.Record) -> DocumentRow:
    return DocumentRow(**{key: value for key, value in dict(row).items() if key != "doc_key"})


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
