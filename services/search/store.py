"""What the search API reads besides search itself: clusters and Tavus conversations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import TypeAdapter

from services.search import cursors
from services.search.models import (
    ClusterMessage,
    ClustersResponse,
    ClusterSummary,
    Conversation,
    ConversationEvent,
    ReplyDelivery,
    TranscriptTurn,
    Visitor,
)

# The label is the one chosen last; the cluster service chooses it anew within a second or so of
# a change (docs/cluster.md "Labels"). The first members give the preview, the representative
# visitor and up to three avatars, in the order migration 0010 defines; avatars are looked for
# among the first AVATAR_MEMBERS only.
AVATAR_MEMBERS = 100
_CLUSTER_COLUMNS = f"""
    c.id, c.creator_id, c.status, c.size, c.channel_count, c.preview_text, c.response_text,
    c.created_at, c.updated_at, c.actioned_at,
    (SELECT l.label FROM cluster_labels l WHERE l.cluster_id = c.id) AS label,
    (SELECT jsonb_build_object('id', f.visitor_id, 'name', f.visitor_name, 'avatar_url', f.visitor_avatar_url)
     FROM chorus_cluster_members_in_order(c.id, how_many => 1) f) AS representative_visitor,
    ARRAY(SELECT avatar FROM (
        SELECT e.visitor_avatar_url AS avatar, min(e.ordinal) AS first
        FROM chorus_cluster_members_in_order(c.id, how_many => {AVATAR_MEMBERS}) e
        WHERE e.visitor_avatar_url IS NOT NULL
        GROUP BY e.visitor_avatar_url ORDER BY first LIMIT 3) avatars) AS visitor_avatar_urls
"""

ClusterSort = Literal["size", "newest"]
# Each order ends with the id, so a page's last row is a unique position to continue after.
_ORDERS: dict[str, tuple[str, str]] = {
    "size": ("c.size DESC, c.id", "(c.size < {0} OR (c.size = {0} AND c.id > {1}))"),
    "newest": ("c.created_at DESC, c.id", "(c.created_at < {0} OR (c.created_at = {0} AND c.id > {1}))"),
}
_SORT_KEYS: dict[str, TypeAdapter[tuple[Any, UUID]]] = {
    "size": TypeAdapter(tuple[int, UUID]),
    "newest": TypeAdapter(tuple[datetime, UUID]),
}
_MESSAGE_KEY = TypeAdapter(tuple[datetime, str])


async def list_clusters(
    db: asyncpg.Connection,
    creator_id: str | None,
    status: str | None,
    min_size: int,
    limit: int,
    sort: ClusterSort = "size",
    cursor: str | None = None,
) -> ClustersResponse:
    """A page of clusters, filtered by creator, status and size, largest (or newest) first.

    Raises cursors.InvalidCursor for a cursor of another list."""
    of = cursors.scope("clusters", creator_id, status, min_size, sort)
    conditions, values = ["c.size >= $1"], [min_size]

    def bind(value: Any) -> str:
        values.append(value)
        return f"${len(values)}"

    if creator_id is not None:
        conditions.append(f"c.creator_id = {bind(creator_id)}")
    if status is not None:
        conditions.append(f"c.status = {bind(status)}")
    order, after = _ORDERS[sort]
    if cursor is not None:
        key, cluster_id = cursors.decode(cursor, of, _SORT_KEYS[sort])
        conditions.append(after.format(bind(key), bind(cluster_id)))
    rows = await db.fetch(
        f"SELECT {_CLUSTER_COLUMNS} FROM clusters c WHERE {' AND '.join(conditions)} "
        f"ORDER BY {order} LIMIT {bind(limit + 1)}",
        *values,
    )
    page = [_summary(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = cursors.encode([last.size if sort == "size" else last.created_at, last.id], of)
    return ClustersResponse(clusters=page, next_cursor=next_cursor)


async def cluster_summary(db: asyncpg.Connection, cluster_id: UUID) -> ClusterSummary | None:
    row = await db.fetchrow(f"SELECT {_CLUSTER_COLUMNS} FROM clusters c WHERE c.id = $1", cluster_id)
    return None if row is None else _summary(row)


async def cluster_messages(
    db: asyncpg.Connection, cluster_id: UUID, limit: int, cursor: str | None = None
) -> tuple[list[ClusterMessage], str | None]:
    """A page of the cluster's messages, earliest first, and the cursor of the next page (None on the last).

    Raises cursors.InvalidCursor for a cursor of another cluster."""
    of = cursors.scope("cluster messages", cluster_id)
    columns = (
        "message_id, channel_cid, visitor_id, visitor_name, visitor_avatar_url, text, similarity, message_created_at"
    )
    if cursor is None:
        rows = await db.fetch(
            f"SELECT {columns} FROM chorus_cluster_members_in_order($1, how_many => $2) ORDER BY ordinal",
            cluster_id,
            limit + 1,
        )
    else:
        created_at, message_id = cursors.decode(cursor, of, _MESSAGE_KEY)
        rows = await db.fetch(
            f"SELECT {columns} FROM chorus_cluster_members_in_order($1, $2, $3, $4) ORDER BY ordinal",
            cluster_id,
            created_at,
            message_id,
            limit + 1,
        )
    messages = [
        ClusterMessage(
            message_id=row["message_id"],
            channel_cid=row["channel_cid"],
            visitor=Visitor(id=row["visitor_id"], name=row["visitor_name"], avatar_url=row["visitor_avatar_url"]),
            text=row["text"],
            similarity=row["similarity"],
            created_at=row["message_created_at"],
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return messages, cursors.encode([messages[-1].created_at, messages[-1].message_id], of) if more else None


# Where a conversation's two lists continue: after an event (received_at, type, id) or from the
# start (None), after a transcript turn or from the start; True where a list has ended.
_ConversationPosition = tuple[tuple[datetime, str, UUID] | None, bool, int | None, bool]
_CONVERSATION_KEY: TypeAdapter[_ConversationPosition] = TypeAdapter(_ConversationPosition)


async def conversation(
    db: asyncpg.Connection, conversation_id: str, limit: int, cursor: str | None = None
) -> Conversation | None:
    """A Tavus conversation with a page of its events (oldest first) and of its transcript (in turn
    order), `limit` of each; `next_cursor` continues both, and is None once both have ended.

    Raises cursors.InvalidCursor for a cursor of another conversation."""
    of = cursors.scope("conversation", conversation_id)
    after_event, events_ended, after_turn, transcript_ended = (
        (None, False, None, False) if cursor is None else cursors.decode(cursor, of, _CONVERSATION_KEY)
    )
    row = await db.fetchrow(
        "SELECT conversation_id, status, shutdown_reason, replica_id, recording_uri, perception_analysis, "
        "started_at, ended_at FROM tavus_conversations WHERE conversation_id = $1",
        conversation_id,
    )
    if row is None:
        return None
    events: list[asyncpg.Record] = []
    if not events_ended:
        event_key = after_event or (datetime.min.replace(tzinfo=UTC), "", UUID(int=0))
        events = await db.fetch(
            "SELECT id, event_type, received_at FROM tavus_webhook_events "
            "WHERE conversation_id = $1 AND (received_at, event_type, id) > ($2, $3, $4) "
            "ORDER BY received_at, event_type, id LIMIT $5",
            conversation_id, *event_key, limit + 1,
        )  # fmt: skip
    turns: list[asyncpg.Record] = []
    if not transcript_ended:
        turns = await db.fetch(
            "SELECT turn_index, role, content FROM tavus_messages WHERE conversation_id = $1 AND turn_index > $2 "
            "ORDER BY turn_index LIMIT $3",
            conversation_id, -1 if after_turn is None else after_turn, limit + 1,
        )  # fmt: skip
    events_ended, transcript_ended = len(events) <= limit, len(turns) <= limit
    events, turns = events[:limit], turns[:limit]
    next_cursor = None
    if not (events_ended and transcript_ended):
        last_event = (events[-1]["received_at"], events[-1]["event_type"], events[-1]["id"]) if events else after_event
        last_turn = turns[-1]["turn_index"] if turns else after_turn
        next_cursor = cursors.encode([last_event, events_ended, last_turn, transcript_ended], of)
    return Conversation(
        **dict(row),
        events=[ConversationEvent(event_type=row["event_type"], received_at=row["received_at"]) for row in events],
        transcript=[TranscriptTurn(**turn) for turn in turns],
        next_cursor=next_cursor,
    )


def _summary(row: asyncpg.Record) -> ClusterSummary:
    fields: dict[str, Any] = dict(row)
    return ClusterSummary(**fields)


async def reply_deliveries(db: asyncpg.Connection, cluster_id: UUID) -> list[ReplyDelivery]:
    """Each channel's delivery of the cluster's reply, by channel."""
    rows = await db.fetch(
        "SELECT channel_cid, status, reason, attempts, sent_at FROM reply_deliveries WHERE cluster_id = $1 "
        "ORDER BY channel_cid",
        cluster_id,
    )
    return [ReplyDelivery(**dict(row)) for row in rows]
