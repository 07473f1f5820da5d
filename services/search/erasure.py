"""Privacy erasure: every stored trace of one party, deleted in one transaction of its tenant.

A party is matched as a StreamChat user (their direct-message channels: their messages and the
creator's replies to them), a vCon party (mailto, tel or name: the whole vCon record), a Tavus
conversation participant (conversation id or a participant id/name/email in a callback's
properties: the whole conversation), and a raw event's author (user, email or author field of its
payload). The request is recorded with a hash of the party, never the party itself.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from shared import clusters
from shared.hashing import text_hash

PARTICIPANT_FIELDS = ("participant_id", "participant_name", "participant_email", "user_id", "email")
AUTHOR_FIELDS = ("user", "user_id", "email", "author")


async def erase_party(db: asyncpg.Connection, tenant_id: UUID, party: str) -> tuple[UUID, dict[str, int]]:
    """Delete what belongs to `party`; returns the privacy request's id and what was deleted."""
    counts: dict[str, int] = {}
    documents: set[UUID] = set()

    messages = await db.fetch(
        "SELECT id, message_id, document_id FROM streamchat_messages WHERE visitor_id = $1", party
    )
    message_ids = [row["id"] for row in messages]
    documents |= {row["document_id"] for row in messages if row["document_id"] is not None}
    memberships = await db.fetchval(
        "SELECT count(*) FROM cluster_members WHERE message_id = ANY($1::uuid[])", message_ids
    )
    touched = await clusters.remove_members(db, message_ids)
    counts["cluster_memberships"] = memberships
    counts["clusters_changed"] = len(touched)
    counts["streamchat_deliveries"] = _count(await db.execute(
        "DELETE FROM streamchat_deliveries WHERE message_id = ANY($1::text[])", [row["message_id"] for row in messages]
    ))  # fmt: skip
    counts["streamchat_messages"] = _count(
        await db.execute("DELETE FROM streamchat_messages WHERE id = ANY($1::uuid[])", message_ids)
    )
    # The creator's replies into the party's channels: who they went to, and when.
    counts["reply_deliveries"] = _count(await db.execute("DELETE FROM reply_deliveries WHERE visitor_id = $1", party))

    vcon_party = [{"mailto": party}, {"tel": party}, {"name": party}]
    raw_events = await db.fetch(
        """
        SELECT id FROM raw_events
        WHERE (source = 'vcon' AND (payload->'parties' @> $1::jsonb OR payload->'parties' @> $2::jsonb
                                    OR payload->'parties' @> $3::jsonb))
           OR payload @> ANY($4::jsonb[])
        """,
        [vcon_party[0]], [vcon_party[1]], [vcon_party[2]],
        [{field: party} for field in AUTHOR_FIELDS],
    )  # fmt: skip
    raw_event_ids = [row["id"] for row in raw_events]
    documents |= {
        row["document_id"]
        for row in await db.fetch(
            "SELECT document_id FROM document_references WHERE raw_event_id = ANY($1::uuid[])", raw_event_ids
        )
    }
    counts["raw_events"] = _count(await db.execute("DELETE FROM raw_events WHERE id = ANY($1::uuid[])", raw_event_ids))

    conversations = [
        row["conversation_id"]
        for row in await db.fetch(
            """
            SELECT DISTINCT conversation_id FROM tavus_webhook_events
            WHERE conversation_id = $1 OR payload->'properties' @> ANY($2::jsonb[])
            """,
            party,
            [{field: party} for field in PARTICIPANT_FIELDS],
        )
    ]
    documents |= {
        row["id"]
        for row in await db.fetch(
            "SELECT id FROM documents WHERE source = 'tavus' AND conversation_id = ANY($1::text[])", conversations
        )
    }
    for table in ("tavus_messages", "tavus_webhook_events", "tavus_conversations"):
        counts[table] = _count(
            await db.execute(f"DELETE FROM {table} WHERE conversation_id = ANY($1::text[])", conversations)
        )

    # Vectors and references go with their documents (ON DELETE CASCADE).
    counts["documents"] = _count(await db.execute("DELETE FROM documents WHERE id = ANY($1::uuid[])", list(documents)))
    request_id: UUID = await db.fetchval(
        "INSERT INTO privacy_requests (tenant_id, party, counts, completed_at) VALUES ($1, $2, $3, now()) RETURNING id",
        tenant_id,
        "sha256:" + text_hash(party).hex(),
        counts,
    )
    return request_id, counts


def _count(status: str) -> int:
    """The row count of a command tag such as 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])
