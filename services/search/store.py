"""What the search API reads besides search itself: clusters and Tavus conversations."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from services.search.models import (
    ClusterMessage,
    ClusterSummary,
    Conversation,
    ConversationEvent,
    TranscriptTurn,
    Visitor,
)

_CLUSTER_COLUMNS = """
    c.id, c.creator_id, c.status, c.size, c.channel_count, c.preview_text, c.response_text,
    c.created_at, c.updated_at, c.actioned_at,
    (SELECT jsonb_build_object('id', s.visitor_id, 'name', s.visitor_name, 'avatar_url', s.visitor_avatar_url)
     FROM cluster_members m JOIN streamchat_messages s ON s.id = m.message_id
     WHERE m.cluster_id = c.id ORDER BY m.message_created_at, s.message_id LIMIT 1) AS representative_visitor,
    ARRAY(SELECT avatar FROM (
        SELECT s.visitor_avatar_url AS avatar, min(m.message_created_at) AS first
        FROM cluster_members m JOIN streamchat_messages s ON s.id = m.message_id
        WHERE m.cluster_id = c.id AND s.visitor_avatar_url IS NOT NULL
        GROUP BY s.visitor_avatar_url ORDER BY first, avatar LIMIT 3) avatars) AS visitor_avatar_urls
"""


async def list_clusters(
    db: asyncpg.Connection, creator_id: str | None, status: str | None, min_size: int, limit: int
) -> list[ClusterSummary]:
    """Newest first, filtered by creator, status and size."""
    rows = await db.fetch(
        f"""
        SELECT {_CLUSTER_COLUMNS} FROM clusters c
        WHERE ($1::text IS NULL OR c.creator_id = $1) AND ($2::text IS NULL OR c.status = $2) AND c.size >= $3
        ORDER BY c.created_at DESC, c.id
        LIMIT $4
        """,
        creator_id,
        status,
        min_size,
        limit,
    )
    return [_summary(row) for row in rows]


async def cluster_summary(db: asyncpg.Connection, cluster_id: UUID) -> ClusterSummary | None:
    row = await db.fetchrow(f"SELECT {_CLUSTER_COLUMNS} FROM clusters c WHERE c.id = $1", cluster_id)
    return None if row is None else _summary(row)


async def cluster_messages(db: asyncpg.Connection, cluster_id: UUID) -> list[ClusterMessage]:
    rows = await db.fetch(
        """
        SELECT s.message_id, m.channel_cid, s.visitor_id, s.visitor_name, s.visitor_avatar_url, s.text,
               m.similarity, s.message_created_at
        FROM cluster_members m JOIN streamchat_messages s ON s.id = m.message_id
        WHERE m.cluster_id = $1
        ORDER BY s.message_created_at, s.message_id
        """,
        cluster_id,
    )
    return [
        ClusterMessage(
            message_id=row["message_id"],
            channel_cid=row["channel_cid"],
            visitor=Visitor(id=row["visitor_id"], name=row["visitor_name"], avatar_url=row["visitor_avatar_url"]),
            text=row["text"],
            similarity=row["similarity"],
            created_at=row["message_created_at"],
        )
        for row in rows
    ]


async def conversation(db: asyncpg.Connection, conversation_id: str) -> Conversation | None:
    row = await db.fetchrow(
        "SELECT conversation_id, status, shutdown_reason, replica_id, recording_uri, perception_analysis, "
        "started_at, ended_at FROM tavus_conversations WHERE conversation_id = $1",
        conversation_id,
    )
    if row is None:
        return None
    events = await db.fetch(
        "SELECT event_type, received_at FROM tavus_webhook_events WHERE conversation_id = $1 "
        "ORDER BY received_at, event_type",
        conversation_id,
    )
    turns = await db.fetch(
        "SELECT turn_index, role, content FROM tavus_messages WHERE conversation_id = $1 ORDER BY turn_index",
        conversation_id,
    )
    return Conversation(
        **dict(row),
        events=[ConversationEvent(**event) for event in events],
        transcript=[TranscriptTurn(**turn) for turn in turns],
    )


def _summary(row: asyncpg.Record) -> ClusterSummary:
    fields: dict[str, Any] = dict(row)
    return ClusterSummary(**fields)
