"""The ingest service's SQL: one named function a statement, each run inside a tenant transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from asyncpg import Connection

from services.ingest.streamchat import MessageEvent

DOCUMENT_COLUMNS = """
    id, tenant_id, source, content_type, content_ref, external_id, text, content_hash, creator_id,
    conversation_id, channel_cid, tags, occurred_at, deleted_at
"""

# What storing a document's text does to the row of the same key: a changed text (or a deleted
# document that comes back) is written; the same text again changes nothing.
UPSERT_DOCUMENT = """ON CONFLICT (tenant_id, source, doc_key) DO UPDATE
            SET text = excluded.text,
                content_hash = excluded.content_hash,
                deleted_at = NULL,
                updated_at = now()
            WHERE documents.content_hash <> excluded.content_hash OR documents.deleted_at IS NOT NULL"""


@dataclass(frozen=True)
class DocumentRow:
    id: UUID
    tenant_id: UUID
    source: str
    content_type: str
    content_ref: str | None
    external_id: str | None
    text: str
    content_hash: bytes
    creator_id: str | None
    conversation_id: str | None
    channel_cid: str | None
    tags: dict[str, str]
    occurred_at: datetime | None
    deleted_at: datetime | None


@dataclass(frozen=True)
class NewDocument:
    tenant_id: UUID
    source: str
    content_type: str
    doc_key: str
    text: str
    content_hash: bytes
    content_ref: str | None = None
    external_id: str | None = None
    creator_id: str | None = None
    conversation_id: str | None = None
    channel_cid: str | None = None
    tags: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    occurred_at: datetime | None = None


async def upsert_document(db: Connection, doc: NewDocument) -> tuple[DocumentRow, bool]:
    """Insert the document, or find it by its key; True when it is new or its text changed.

    A changed text drops the stored vector, so the document is embedded again.
    """
    row = await db.fetchrow(
        f"""
        INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash, content_ref,
                               external_id, creator_id, conversation_id, channel_cid, tags, metadata, occurred_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        {UPSERT_DOCUMENT}
        RETURNING {DOCUMENT_COLUMNS}
        """,
        doc.tenant_id, doc.source, doc.content_type, doc.doc_key, doc.text, doc.content_hash, doc.content_ref,
        doc.external_id, doc.creator_id, doc.conversation_id, doc.channel_cid, doc.tags or {}, doc.metadata or {},
        doc.occurred_at,
    )  # fmt: skip
    if row is not None:
        await db.execute(
            "DELETE FROM document_embeddings WHERE document_id = $1 AND content_hash <> $2", row["id"], doc.content_hash
        )
        return DocumentRow(**dict(row)), True
    existing = await db.fetchrow(
        f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant_id = $1 AND source = $2 AND doc_key = $3",
        doc.tenant_id, doc.source, doc.doc_key,
    )  # fmt: skip
    return DocumentRow(**dict(existing)), False


async def mark_document_deleted(db: Connection, document_id: UUID) -> DocumentRow | None:
    row = await db.fetchrow(
        f"UPDATE documents SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL "
        f"RETURNING {DOCUMENT_COLUMNS}",
        document_id,
    )
    return None if row is None else DocumentRow(**dict(row))


async def pending_documents(db: Connection, document_ids: list[UUID]) -> list[DocumentRow]:
    """Of `document_ids`, those not yet embedded and not deleted: a redelivery hands them on again."""
    rows = await db.fetch(
        f"SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL "
        "AND NOT EXISTS (SELECT FROM document_embeddings e WHERE e.document_id = d.id "
        "AND e.content_hash = d.content_hash)",
        document_ids,
    )
    return [DocumentRow(**dict(row)) for row in rows]


# StreamChat


async def record_streamchat_delivery(db: Connection, tenant_id: UUID, webhook_id: str, message_id: str | None) -> bool:
    """False when this webhook id was seen before."""
    inserted = await db.fetchval(
        "INSERT INTO streamchat_deliveries (tenant_id, webhook_id, message_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING true",
        tenant_id, webhook_id, message_id,
    )  # fmt: skip
    return inserted is True


async def find_message(db: Connection, tenant_id: UUID, message_id: str) -> asyncpg.Record | None:
    """The stored message: its row id, text hash, document, deletion and `edited_at` (its last edit, else creation)."""
    return await db.fetchrow(
        "SELECT id, content_hash, document_id, deleted_at, "
        "coalesce(message_updated_at, message_created_at) AS edited_at FROM streamchat_messages "
        "WHERE tenant_id = $1 AND message_id = $2",
        tenant_id, message_id,
    )  # fmt: skip


async def insert_message(
    db: Connection, tenant_id: UUID, event: MessageEvent, content_hash: bytes, raw: dict[str, Any]
) -> UUID:
    visitor = event.visitor
    row_id: UUID = await db.fetchval(
        """
        INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, channel_type, visitor_id,
            visitor_name, visitor_avatar_url, direction, is_paid, text, content_hash, message_created_at,
            message_updated_at, deleted_at, raw_payload)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        RETURNING id
        """,
        tenant_id, event.message_id, event.creator_id, event.channel_cid, event.channel_type,
        visitor.id if visitor else None, visitor.name if visitor else None, visitor.image if visitor else None,
        event.direction, event.is_paid, event.text, content_hash, event.created_at, event.updated_at,
        event.deleted_at, raw,
    )  # fmt: skip
    return row_id


async def update_message_text(
    db: Connection, row_id: UUID, event: MessageEvent, content_hash: bytes, raw: dict[str, Any]
) -> None:
    await db.execute(
        "UPDATE streamchat_messages SET text = $2, content_hash = $3, message_updated_at = $4, raw_payload = $5, "
        "updated_at = now() WHERE id = $1",
        row_id, event.text, content_hash, event.updated_at, raw,
    )  # fmt: skip


async def link_message_document(db: Connection, row_id: UUID, document_id: UUID) -> None:
    await db.execute("UPDATE streamchat_messages SET document_id = $2 WHERE id = $1", row_id, document_id)


async def mark_message_deleted(db: Connection, row_id: UUID, deleted_at: datetime | None) -> None:
    await db.execute(
        "UPDATE streamchat_messages SET deleted_at = coalesce($2, now()), updated_at = now() WHERE id = $1",
        row_id, deleted_at,
    )  # fmt: skip


# Tavus


async def record_tavus_event(
    db: Connection, tenant_id: UUID, event_hash: bytes, conversation_id: str, event_type: str, body: dict[str, Any]
) -> bool:
    """False when a callback with this event hash was stored before."""
    inserted = await db.fetchval(
        "INSERT INTO tavus_webhook_events (tenant_id, event_hash, conversation_id, event_type, payload) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        tenant_id, event_hash, conversation_id, event_type, body,
    )  # fmt: skip
    return inserted is True


async def conversation_documents(db: Connection, tenant_id: UUID, conversation_id: str) -> list[UUID]:
    """The documents made of a Tavus conversation: its transcript turns and its analysis."""
    rows = await db.fetch(
        "SELECT id FROM documents WHERE tenant_id = $1 AND source = 'tavus' AND conversation_id = $2",
        tenant_id, conversation_id,
    )  # fmt: skip
    return [row["id"] for row in rows]


async def update_conversation(db: Connection, tenant_id: UUID, conversation_id: str, **fields: Any) -> None:
    """Create the conversation if needed and set `fields` (columns of tavus_conversations)."""
    columns = list(fields)
    assignments = ", ".join(f"{column} = ${index}" for index, column in enumerate(columns, start=3))
    await db.execute(
        "INSERT INTO tavus_conversations (tenant_id, conversation_id) VALUES ($1, $2) "
        "ON CONFLICT (tenant_id, conversation_id) DO NOTHING",
        tenant_id, conversation_id,
    )  # fmt: skip
    if columns:
        await db.execute(
            f"UPDATE tavus_conversations SET {assignments}, updated_at = now() "
            "WHERE tenant_id = $1 AND conversation_id = $2",
            tenant_id, conversation_id, *fields.values(),
        )  # fmt: skip


async def upsert_conversation_message(
    db: Connection, tenant_id: UUID, conversation_id: str, turn_index: int, role: str, content: str,
    document_id: UUID | None,
) -> None:  # fmt: skip
    await db.execute(
        """
        INSERT INTO tavus_messages (tenant_id, conversation_id, turn_index, role, content, document_id)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id, conversation_id, turn_index) DO UPDATE
            SET role = excluded.role, content = excluded.content, document_id = excluded.document_id
        """,
        tenant_id, conversation_id, turn_index, role, content, document_id,
    )  # fmt: skip
