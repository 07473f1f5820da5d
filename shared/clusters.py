"""Cluster changes that more than one service makes: removing members, updating totals, actioning.

The cluster service assigns messages; the search service actions clusters and erases parties.
Both go through these functions, inside a transaction with the tenant set (shared/db.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid5

import asyncpg
import numpy as np

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


@dataclass(frozen=True)
class MemberVector:
    """What a member adds to its cluster's totals: its unit vector and its channel."""

    vector: np.ndarray
    channel_cid: str


async def update_totals(
    db: asyncpg.Connection,
    cluster_id: UUID,
    joined: Sequence[MemberVector] = (),
    left: Sequence[MemberVector] = (),
) -> None:
    """Bring size, centroid, channel count and preview up to date after members joined or left
    (their rows already changed); a cluster left empty is deleted.

    The work does not grow with the cluster: the centroid moves by the vectors that came and went,
    only the channels they belong to are counted, and the preview is the first member in the
    (cluster, time) index. A creator's viral question can gather thousands of members.
    """
    cluster = await db.fetchrow("SELECT size, centroid FROM clusters WHERE id = $1 FOR UPDATE", cluster_id)
    if cluster is None:
        return
    size = cluster["size"] + len(joined) - len(left)
    if size <= 0:
        await db.execute("DELETE FROM clusters WHERE id = $1", cluster_id)
        return
    before = 0.0 if cluster["centroid"] is None else cluster["centroid"].to_numpy().astype(np.float64) * cluster["size"]
    total = before + sum(member.vector for member in joined) - sum(member.vector for member in left)
    await db.execute(
        """
        UPDATE clusters
        SET size = $2, centroid = $3, channel_count = channel_count + $4, updated_at = now(),
            preview_text = (SELECT text FROM chorus_cluster_members_in_order($1, how_many => 1))
        WHERE id = $1
        """,
        cluster_id,
        size,
        (total / size).astype(np.float32),
        await _channel_change(db, cluster_id, joined, left),
    )


async def _channel_change(
    db: asyncpg.Connection, cluster_id: UUID, joined: Sequence[MemberVector], left: Sequence[MemberVector]
) -> int:
    """How many channels the cluster gained (positive) or lost (negative) with these members."""
    came = Counter(member.channel_cid for member in joined)
    went = Counter(member.channel_cid for member in left)
    rows = await db.fetch(
        "SELECT channel_cid, count(*)::int AS members FROM cluster_members "
        "WHERE cluster_id = $1 AND channel_cid = ANY($2::text[]) GROUP BY channel_cid",
        cluster_id,
        sorted(came | went),
    )
    now = {row["channel_cid"]: row["members"] for row in rows}
    return sum(
        int(now.get(channel, 0) > 0) - int(now.get(channel, 0) - came[channel] + went[channel] > 0)
        for channel in came | went
    )


async def remove_members(db: asyncpg.Connection, message_ids: Iterable[UUID]) -> set[UUID]:
    """Take messages out of their clusters and update those; returns the clusters touched."""
    rows = await db.fetch(
        "DELETE FROM cluster_members WHERE message_id = ANY($1::uuid[]) RETURNING cluster_id, channel_cid, embedding",
        list(message_ids),
    )
    left: dict[UUID, list[MemberVector]] = defaultdict(list)
    for row in rows:
        left[row["cluster_id"]].append(MemberVector(row["embedding"].to_numpy(), row["channel_cid"]))
    for cluster_id in sorted(left):
        await update_totals(db, cluster_id, left=left[cluster_id])
    return set(left)


# Listened to by the reply relay (services/ingest/outbox.py); Postgres sends it at commit only.
REPLIES_CHANNEL = "chorus_replies"


def reply_message_id(cluster_id: UUID, channel_cid: str) -> str:
    """The StreamChat message id of a cluster's reply in one channel: the same on every attempt,
    so StreamChat refuses a second copy of it."""
    return f"chorus-{uuid5(cluster_id, channel_cid)}"


async def action_cluster(db: asyncpg.Connection, cluster_id: UUID, response_text: str) -> ActionedCluster:
    """Answer a cluster: store the response, mark it actioned and record one pending reply per channel.

    The replies are rows of `reply_deliveries` in the caller's transaction (an outbox): they exist
    exactly when the action committed, and the relay publishes them to chorus.replies after the
    commit. Nothing is produced to Kafka here, so a failed commit leaves no reply behind.
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
    await db.executemany(
        "INSERT INTO reply_deliveries (tenant_id, cluster_id, channel_cid, visitor_id, message_id) "
        "VALUES ($1, $2, $3, $4, $5)",
        [
            (cluster["tenant_id"], cluster_id, channel["channel_cid"], channel["visitor_id"],
             reply_message_id(cluster_id, channel["channel_cid"]))
            for channel in channels
        ],
    )  # fmt: skip
    await db.execute("SELECT pg_notify($1, $2)", REPLIES_CHANNEL, str(cluster["tenant_id"]))
    return ActionedCluster(cluster_id, actioned_at, len(channels))
