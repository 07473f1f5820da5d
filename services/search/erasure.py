"""Privacy erasure: every stored trace of one party, deleted in one transaction of its tenant.

A party is any string a payload holds anywhere, nested fields included: a StreamChat user id
(their messages, and every message whose stored webhook names them), a vCon party's mailto, tel
or name, a Tavus participant (the whole conversation), a raw event's author or any nested user,
email or phone. What goes is remembered as tombstones (keyed hashes, shared/tombstones.py) so
that the ingest agents drop it when it is delivered again. The request itself is recorded with
the keyed hash of the party, never the party.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from shared import clusters, tombstones
from shared.tombstones import Kind


@dataclass
class Erasure:
    """What one erasure deleted: rows per table, and the tombstones that keep it deleted."""

    counts: dict[str, int] = field(default_factory=dict)
    marks: set[tuple[Kind, str]] = field(default_factory=set)
    documents: set[UUID] = field(default_factory=set)  # deleted whatever references them
    referenced: set[UUID] = field(default_factory=set)  # deleted once no raw event references them


async def erase_party(db: asyncpg.Connection, tenant_id: UUID, party: str) -> tuple[UUID, Erasure]:
    """Delete what belongs to `party`; returns the privacy request's id and what was deleted."""
    key = await tombstones.key_for_erasing(db, tenant_id)
    erasure = Erasure(marks={("party", party)})
    await _erase_messages(db, erasure, party)
    await _erase_raw_events(db, erasure, party)
    await _erase_conversations(db, erasure, party)
    await _erase_documents(db, erasure, party)
    counts = erasure.counts
    request_id: UUID = await db.fetchval(
        "INSERT INTO privacy_requests (tenant_id, party, counts, completed_at) VALUES ($1, $2, $3, now()) RETURNING id",
        tenant_id,
        "hmac-sha256:" + tombstones.digest(key, "party", party).hex(),
        counts,
    )
    marks = sorted(erasure.marks)
    counts["erasure_tombstones"] = _count(await db.execute(
        """
        INSERT INTO erasure_tombstones (tenant_id, kind, digest, request_id)
        SELECT $1, kind, digest, $4 FROM unnest($2::text[], $3::bytea[]) AS t(kind, digest)
        ON CONFLICT DO NOTHING
        """,
        tenant_id, [kind for kind, _ in marks], [tombstones.digest(key, kind, value) for kind, value in marks],
        request_id,
    ))  # fmt: skip
    return request_id, erasure


async def _erase_messages(db: asyncpg.Connection, erasure: Erasure, party: str) -> None:
    """The party's StreamChat messages, their clusters' memberships, deliveries and replies."""
    messages = await db.fetch(
        "SELECT id, message_id, document_id, channel_cid FROM streamchat_messages "
        "WHERE visitor_id = $1 OR chorus_names_party(raw_payload, $1)",
        party,
    )
    row_ids = [row["id"] for row in messages]
    message_ids = [row["message_id"] for row in messages]
    channels = sorted({row["channel_cid"] for row in messages})
    erasure.marks |= {("message", message_id) for message_id in message_ids}
    erasure.documents |= {row["document_id"] for row in messages if row["document_id"] is not None}
    erasure.documents |= {
        row["id"]
        for row in await db.fetch(
            "SELECT id FROM documents WHERE source = 'streamchat' AND doc_key = ANY($1::text[])", message_ids
        )
    }
    counts = erasure.counts
    counts["cluster_memberships"] = await db.fetchval(
        "SELECT count(*) FROM cluster_members WHERE message_id = ANY($1::uuid[])", row_ids
    )
    # Sizes, centroids, previews and labels follow; the representative visitor is the first member left.
    counts["clusters_changed"] = len(await clusters.remove_members(db, row_ids))
    webhooks = await db.fetch(
        "DELETE FROM streamchat_deliveries WHERE message_id = ANY($1::text[]) RETURNING webhook_id", message_ids
    )
    erasure.marks |= {("webhook", row["webhook_id"]) for row in webhooks}
    counts["streamchat_deliveries"] = len(webhooks)
    counts["streamchat_messages"] = _count(
        await db.execute("DELETE FROM streamchat_messages WHERE id = ANY($1::uuid[])", row_ids)
    )
    # The creator's replies into the party's channels: who they went to, and when.
    counts["reply_deliveries"] = _count(await db.execute(
        "DELETE FROM reply_deliveries WHERE visitor_id = $1 OR (visitor_id IS NULL AND channel_cid = ANY($2::text[]))",
        party, channels,
    ))  # fmt: skip


async def _erase_raw_events(db: asyncpg.Connection, erasure: Erasure, party: str) -> None:
    """Raw events naming the party anywhere in their payload, tags or metadata."""
    events = await db.fetch(
        """
        SELECT id, source, external_id FROM raw_events
        WHERE chorus_names_party(payload, $1) OR chorus_names_party(tags, $1) OR chorus_names_party(metadata, $1)
        """,
        party,
    )
    event_ids = [row["id"] for row in events]
    erasure.marks |= {("event", tombstones.event_value(row["source"], row["external_id"])) for row in events}
    references = await db.fetch(
        "DELETE FROM document_references WHERE raw_event_id = ANY($1::uuid[]) RETURNING document_id", event_ids
    )
    erasure.referenced |= {row["document_id"] for row in references}
    erasure.counts["document_references"] = len(references)
    erasure.counts["raw_events"] = _count(
        await db.execute("DELETE FROM raw_events WHERE id = ANY($1::uuid[])", event_ids)
    )
    # A document another event still references stays; it no longer names an erased event as its own.
    await db.execute(
        """
        UPDATE documents d
        SET external_id = (SELECT r.external_id FROM document_references x JOIN raw_events r ON r.id = x.raw_event_id
                           WHERE x.document_id = d.id ORDER BY r.received_at, r.id LIMIT 1),
            updated_at = now()
        WHERE d.id = ANY($1::uuid[]) AND d.external_id = ANY($2::text[])
          AND EXISTS (SELECT FROM document_references x WHERE x.document_id = d.id)
        """,
        sorted(erasure.referenced),
        [row["external_id"] for row in events],
    )


async def _erase_conversations(db: asyncpg.Connection, erasure: Erasure, party: str) -> None:
    """Tavus conversations the party is, or takes part in: all of each conversation."""
    conversations = [
        row["conversation_id"]
        for row in await db.fetch(
            """
            SELECT conversation_id FROM tavus_webhook_events
            WHERE conversation_id = $1 OR chorus_names_party(payload, $1)
            UNION
            SELECT conversation_id FROM tavus_conversations
            WHERE conversation_id = $1 OR chorus_names_party(coalesce(perception_analysis, 'null'), $1)
            """,
            party,
        )
    ]
    erasure.marks |= {("conversation", conversation) for conversation in conversations}
    erasure.documents |= {
        row["id"]
        for row in await db.fetch(
            "SELECT id FROM documents WHERE source = 'tavus' AND conversation_id = ANY($1::text[])", conversations
        )
    }
    for table in ("tavus_messages", "tavus_webhook_events", "tavus_conversations"):
        erasure.counts[table] = _count(
            await db.execute(f"DELETE FROM {table} WHERE conversation_id = ANY($1::text[])", conversations)
        )


async def _erase_documents(db: asyncpg.Connection, erasure: Erasure, party: str) -> None:
    """The documents of what went, the raw events' ones only when no other event references them,
    and any document whose tags or metadata name the party; their vectors (the embedding cache,
    reused by content hash) go with them."""
    documents = await db.fetch(
        """
        SELECT id FROM documents d
        WHERE d.id = ANY($1::uuid[])
           OR (d.id = ANY($2::uuid[]) AND NOT EXISTS (SELECT FROM document_references x WHERE x.document_id = d.id))
           OR chorus_names_party(d.metadata, $3) OR chorus_names_party(d.tags, $3)
        """,
        sorted(erasure.documents),
        sorted(erasure.referenced),
        party,
    )
    document_ids = [row["id"] for row in documents]
    erasure.counts["document_embeddings"] = await db.fetchval(
        "SELECT count(*) FROM document_embeddings WHERE document_id = ANY($1::uuid[])", document_ids
    )
    erasure.counts["documents"] = _count(
        await db.execute("DELETE FROM documents WHERE id = ANY($1::uuid[])", document_ids)
    )


def _count(status: str) -> int:
    """The row count of a command tag such as 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])
