"""The cluster service's SQL; every function runs inside the caller's tenant transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
import numpy as np


@dataclass(frozen=True)
class Message:
    """A stored StreamChat message, as clustering sees it."""

    id: UUID
    message_id: str
    channel_cid: str
    created_at: datetime
    content_hash: bytes | None
    deleted: bool

    @property
    def order(self) -> tuple[datetime, str]:
        """Which of two messages of a channel is newer; the message id breaks a tie of timestamps."""
        return self.created_at, self.message_id


@dataclass(frozen=True)
class Membership:
    cluster_id: UUID
    status: str
    content_hash: bytes


async def lock_creator(db: asyncpg.Connection, tenant_id: UUID, creator_id: str) -> None:
    """Serialize the changes to one creator's clusters, also across two consumers during a rebalance."""
    await db.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"cluster:{tenant_id}:{creator_id}")


async def find_message(db: asyncpg.Connection, row_id: UUID) -> Message | None:
    row = await db.fetchrow(
        "SELECT id, message_id, channel_cid, message_created_at, content_hash, deleted_at IS NOT NULL AS deleted "
        "FROM streamchat_messages WHERE id = $1",
        row_id,
    )
    return None if row is None else _message(row)


async def membership(db: asyncpg.Connection, message: Message) -> Membership | None:
    row = await db.fetchrow(
        "SELECT m.cluster_id, c.status, m.content_hash FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
        "WHERE m.message_id = $1",
        message.id,
    )
    return None if row is None else Membership(row["cluster_id"], row["status"], row["content_hash"])


async def channel_members(db: asyncpg.Connection, creator_id: str, message: Message) -> list[tuple[Message, str]]:
    """The other clustered messages of the message's channel for this creator, with their cluster's status."""
    rows = await db.fetch(
        """
        SELECT msg.id, msg.message_id, msg.channel_cid, msg.message_created_at, msg.content_hash,
               msg.deleted_at IS NOT NULL AS deleted, c.status
        FROM cluster_members m
        JOIN clusters c ON c.id = m.cluster_id
        JOIN streamchat_messages msg ON msg.id = m.message_id
        WHERE m.channel_cid = $1 AND c.creator_id = $2 AND m.message_id <> $3
        """,
        message.channel_cid,
        creator_id,
        message.id,
    )
    return [(_message(row), row["status"]) for row in rows]


def _message(row: asyncpg.Record) -> Message:
    return Message(
        row["id"], row["message_id"], row["channel_cid"], row["message_created_at"], row["content_hash"], row["deleted"]
    )


async def mark_superseded(db: asyncpg.Connection, row_ids: list[UUID], by: UUID) -> None:
    await db.execute(
        "UPDATE streamchat_messages SET superseded_by = $2, superseded_at = now(), updated_at = now() "
        "WHERE id = ANY($1::uuid[])",
        row_ids,
        by,
    )


async def clear_superseded(db: asyncpg.Connection, row_id: UUID) -> None:
    await db.execute(
        "UPDATE streamchat_messages SET superseded_by = NULL, superseded_at = NULL WHERE id = $1 "
        "AND superseded_by IS NOT NULL",
        row_id,
    )


async def nearest_open_cluster(
    db: asyncpg.Connection, creator_id: str, vector: np.ndarray
) -> tuple[UUID, float] | None:
    """The creator's open cluster with the highest average similarity to `vector`, through the centroid index."""
    row = await db.fetchrow(
        "SELECT id, -(centroid <#> $2) AS similarity FROM clusters "
        "WHERE creator_id = $1 AND status = 'open' ORDER BY centroid <#> $2, id LIMIT 1",
        creator_id,
        vector,
    )
    return None if row is None else (row["id"], float(row["similarity"]))


async def open_cluster(db: asyncpg.Connection, tenant_id: UUID, creator_id: str) -> UUID:
    cluster_id: UUID = await db.fetchval(
        "INSERT INTO clusters (tenant_id, creator_id) VALUES ($1, $2) RETURNING id", tenant_id, creator_id
    )
    return cluster_id


async def add_member(
    db: asyncpg.Connection,
    tenant_id: UUID,
    cluster_id: UUID,
    message: Message,
    similarity: float | None,
    vector: np.ndarray,
    content_hash: bytes,
) -> None:
    # The member's words feed its cluster's label (migration 0010 counts them by trigger).
    await db.execute(
        "INSERT INTO cluster_members (tenant_id, cluster_id, message_id, channel_cid, similarity, embedding, "
        "content_hash, message_created_at, words) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "chorus_label_words((SELECT text FROM streamchat_messages WHERE id = $3)))",
        tenant_id, cluster_id, message.id, message.channel_cid, similarity, vector, content_hash, message.created_at,
    )  # fmt: skip


async def size_of_cluster_of(db: asyncpg.Connection, message: Message) -> int:
    size: int = await db.fetchval(
        "SELECT c.size FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.message_id = $1",
        message.id,
    )
    return size


async def open_cluster_count(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM clusters WHERE status = 'open'")
    return count


@dataclass(frozen=True)
class Member:
    message_id: UUID
    cluster_id: UUID
    channel_cid: str
    vector: np.ndarray


@dataclass(frozen=True)
class Neighbourhood:
    """Nearby open clusters as (id, sum of member vectors, size), and the members of the small ones."""

    clusters: list[tuple[UUID, np.ndarray, int]]
    members: list[Member]


async def neighbourhood(
    db: asyncpg.Connection, creator_id: str, cluster_id: UUID, clusters: int, most_members: int
) -> Neighbourhood:
    """`cluster_id` and the creator's `clusters - 1` open clusters nearest to it; members are read
    only from those of at most `most_members`, so the work per message stays bounded."""
    centroid = await db.fetchval("SELECT centroid FROM clusters WHERE id = $1", cluster_id)
    if centroid is None:
        return Neighbourhood([], [])
    near = await db.fetch(
        "SELECT id, centroid, size FROM clusters WHERE creator_id = $1 AND status = 'open' "
        "ORDER BY centroid <#> $2, id LIMIT $3",
        creator_id,
        centroid,
        clusters,
    )
    small = [row["id"] for row in near if row["size"] <= most_members]
    # Each cluster's members in their order (migration 0010), merged into one time order.
    rows = await db.fetch(
        """
        SELECT e.message_row_id AS message_id, e.cluster_id, e.channel_cid, e.embedding
        FROM unnest($1::uuid[]) AS c(id), chorus_cluster_members_in_order(c.id) e
        ORDER BY e.message_created_at, e.message_id
        """,
        small,
    )
    return Neighbourhood(
        [(row["id"], row["centroid"].to_numpy() * row["size"], row["size"]) for row in near],
        [Member(row["message_id"], row["cluster_id"], row["channel_cid"], row["embedding"].to_numpy()) for row in rows],
    )


async def move_member(db: asyncpg.Connection, message_id: UUID, cluster_id: UUID, similarity: float) -> None:
    await db.execute(
        "UPDATE cluster_members SET cluster_id = $2, similarity = $3 WHERE message_id = $1",
        message_id,
        cluster_id,
        similarity,
    )
