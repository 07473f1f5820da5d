"""Cluster changes that more than one service makes: removing members, recomputing, actioning.

The cluster service assigns messages; the search service actions clusters and erases parties.
Both go through these functions, inside a transaction with the tenant set (shared/db.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.records import Reply

MAX_RESPONSE_CHARS = 10_000


class ClusterNotFound(LookupError):
    """No cluster of this tenant has that id."""


class ClusterAlreadyActioned(Exception):
    """The cluster was answered before; a cluster is answered once."""


@dataclass(frozen=True)
class ActionedCluster:
    cluster_id: UUID
    actioned_at: datetime
    replies: int


async def recompute(db: asyncpg.Connection, cluster_ids: Iterable[UUID]) -> None:
    """Set size, channel count, centroid and preview from the members; a cluster left empty is deleted."""
    ids = sorted(set(cluster_ids))
    if not ids:
        return
    await db.execute(
        """
        UPDATE clusters c
        SET size = s.size, channel_count = s.channel_count, centroid = s.centroid,
            preview_text = s.preview_text, updated_at = now()
        FROM (
            SELECT m.cluster_id, count(*)::int AS size, count(DISTINCT m.channel_cid)::int AS channel_count,
                   avg(m.embedding) AS centroid,
                   (array_agg(msg.text ORDER BY m.message_created_at, msg.message_id))[1] AS preview_text
            FROM cluster_members m JOIN streamchat_messages msg ON msg.id = m.message_id
            WHERE m.cluster_id = ANY($1::uuid[])
            GROUP BY m.cluster_id
        ) s
        WHERE c.id = s.cluster_id
        """,
        ids,
    )
    await db.execute(
        "DELETE FROM clusters c WHERE c.id = ANY($1::uuid[]) "
        "AND NOT EXISTS (SELECT FROM cluster_members m WHERE m.cluster_id = c.id)",
        ids,
    )


async def remove_members(db: asyncpg.Connection, message_ids: Iterable[UUID]) -> set[UUID]:
    """Take messages out of their clusters and recompute those; returns the clusters touched."""
    rows = await db.fetch(
        "DELETE FROM cluster_members WHERE message_id = ANY($1::uuid[]) RETURNING cluster_id", list(message_ids)
    )
    touched = {row["cluster_id"] for row in rows}
    await recompute(db, touched)
    return touched


async def action_cluster(
    db: asyncpg.Connection, producer: AIOKafkaProducer, replies_topic: str, cluster_id: UUID, response_text: str
) -> ActionedCluster:
    """Answer a cluster: store the response, mark it actioned and publish one reply per channel.

    The replies are acknowledged by Kafka before the caller commits: if publishing fails, the
    cluster stays open and the creator can try again; a reply is never lost behind a commit.
    """
    if not response_text.strip():
        raise ValueError("response_text must not be empty")
    if len(response_text) > MAX_RESPONSE_CHARS:
        raise ValueError(f"response_text is longer than {MAX_RESPONSE_CHARS} characters")
    cluster = await db.fetchrow(
        "SELECT id, tenant_id, creator_id, status FROM clusters WHERE id = $1 FOR UPDATE", cluster_id
    )
    if cluster is None:
        raise ClusterNotFound(f"no cluster {cluster_id}")
    if cluster["status"] == "actioned":
        raise ClusterAlreadyActioned(f"cluster {cluster_id} was actioned before")
    actioned_at = await db.fetchval(
        "UPDATE clusters SET status = 'actioned', response_text = $2, actioned_at = now(), updated_at = now() "
        "WHERE id = $1 RETURNING actioned_at",
        cluster_id,
        response_text,
    )
    # One reply per channel, to the visitor of its newest message in the cluster.
    channels = await db.fetch(
        """
        SELECT DISTINCT ON (m.channel_cid) m.channel_cid, msg.visitor_id
        FROM cluster_members m JOIN streamchat_messages msg ON msg.id = m.message_id
        WHERE m.cluster_id = $1
        ORDER BY m.channel_cid, m.message_created_at DESC
        """,
        cluster_id,
    )
    sends = []
    for channel in channels:
        reply = Reply(
            reply_id=f"{cluster_id}:{channel['channel_cid']}",
            tenant_id=cluster["tenant_id"],
            cluster_id=cluster_id,
            creator_id=cluster["creator_id"],
            channel_cid=channel["channel_cid"],
            visitor_id=channel["visitor_id"],
            response_text=response_text,
            actioned_at=actioned_at,
        )
        sends.append(await producer.send(replies_topic, reply.to_bytes(), key=cluster["creator_id"].encode()))
    await asyncio.gather(*sends)
    return ActionedCluster(cluster_id, actioned_at, len(channels))
