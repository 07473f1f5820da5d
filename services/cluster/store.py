"""The cluster service's SQL; every function runs inside the caller's tenant transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg
import numpy as np
from pgvector import Vector

if TYPE_CHECKING:
    from services.cluster.assignment import Changes


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

    @cached_property
    def microseconds(self) -> int:
        """`created_at` in whole microseconds since the epoch: exact, where a float timestamp may round."""
        return (self.created_at - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def lock_creator(db: asyncpg.Connection, tenant_id: UUID, creator_id: str) -> None:
    """Serialize the changes to one creator's clusters, also across two consumers during a rebalance."""
    await db.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"cluster:{tenant_id}:{creator_id}")


async def find_messages(db: asyncpg.Connection, row_ids: list[UUID]) -> dict[UUID, Message]:
    rows = await db.fetch(
        "SELECT id, message_id, channel_cid, message_created_at, content_hash, deleted_at IS NOT NULL AS deleted "
        "FROM streamchat_messages WHERE id = ANY($1::uuid[])",
        row_ids,
    )
    return {row["id"]: _message(row) for row in rows}


@dataclass(frozen=True)
class StoredCluster:
    id: UUID
    status: str
    size: int
    centroid: np.ndarray | None


@dataclass(frozen=True)
class StoredMember:
    message: Message
    cluster_id: UUID
    channel_cid: str
    vector: np.ndarray
    content_hash: bytes
    similarity: float | None


async def lock_clusters(
    db: asyncpg.Connection,
    creator_id: str,
    vectors: list[np.ndarray],
    per_vector: int,
    message_ids: list[UUID],
    channels: list[str],
) -> list[StoredCluster]:
    """Lock and read the clusters a batch of the creator's messages may change: the `per_vector`
    open clusters nearest to each vector (through the centroid index), and those holding the
    messages or other messages of their channels. Locked in id order, as every writer does."""
    rows = await db.fetch(
        """
        SELECT id, status, size, centroid FROM clusters
        WHERE id IN (
            SELECT near.id FROM unnest($2::vector[]) AS q(v)
            CROSS JOIN LATERAL (
                SELECT id FROM clusters WHERE creator_id = $1 AND status = 'open'
                ORDER BY centroid <#> q.v, id LIMIT $3
            ) AS near
            UNION
            SELECT m.cluster_id FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id
            WHERE m.message_id = ANY($4::uuid[]) OR (m.channel_cid = ANY($5::text[]) AND c.creator_id = $1)
        )
        ORDER BY id FOR UPDATE
        """,
        creator_id,
        [Vector(vector) for vector in vectors],
        per_vector,
        message_ids,
        channels,
    )
    return [StoredCluster(row["id"], row["status"], row["size"], _numpy(row["centroid"])) for row in rows]


async def members_of(
    db: asyncpg.Connection, clusters: list[UUID], whole: list[UUID], message_ids: list[UUID], channels: list[str]
) -> list[StoredMember]:
    """Of the members of `clusters`: all those of the `whole` clusters, the messages, and the other
    messages of their channels."""
    rows = await db.fetch(
        """
        SELECT s.id, s.message_id, m.channel_cid, s.message_created_at, s.content_hash AS message_hash,
               s.deleted_at IS NOT NULL AS deleted, m.cluster_id, m.embedding, m.content_hash, m.similarity
        FROM cluster_members m JOIN streamchat_messages s ON s.id = m.message_id
        WHERE m.cluster_id = ANY($1::uuid[])
          AND (m.cluster_id = ANY($2::uuid[]) OR m.message_id = ANY($3::uuid[]) OR m.channel_cid = ANY($4::text[]))
        """,
        clusters,
        whole,
        message_ids,
        channels,
    )
    return [_member(row) for row in rows]


def _member(row: asyncpg.Record) -> StoredMember:
    message = Message(
        row["id"], row["message_id"], row["channel_cid"], row["message_created_at"], row["message_hash"], row["deleted"]
    )
    return StoredMember(
        message, row["cluster_id"], row["channel_cid"], row["embedding"].to_numpy(), row["content_hash"],
        row["similarity"],
    )  # fmt: skip


def _numpy(vector: Vector | None) -> np.ndarray | None:
    return None if vector is None else vector.to_numpy()


def _message(row: asyncpg.Record) -> Message:
    return Message(
        row["id"], row["message_id"], row["channel_cid"], row["message_created_at"], row["content_hash"], row["deleted"]
    )


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
    # The member's words feed its cluster's label (migrations 0010 and 0015 count them by trigger).
    await db.execute(
        "INSERT INTO cluster_members (tenant_id, cluster_id, message_id, channel_cid, similarity, embedding, "
        "content_hash, message_created_at, words) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "chorus_label_words((SELECT text FROM streamchat_messages WHERE id = $3)))",
        tenant_id, cluster_id, message.id, message.channel_cid, similarity, vector, content_hash, message.created_at,
    )  # fmt: skip


async def open_cluster_count(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM clusters WHERE status = 'open'")
    return count


async def write_changes(db: asyncpg.Connection, tenant_id: UUID, creator_id: str, changes: Changes) -> None:
    """Write what a batch changed, a statement per kind of change, in the order the rows allow:
    members leave, new clusters exist before members join them, emptied clusters go last."""
    if changes.deleted_members:
        await db.execute("DELETE FROM cluster_members WHERE message_id = ANY($1::uuid[])", changes.deleted_members)
    if changes.new_clusters:
        await db.execute(
            "INSERT INTO clusters (id, tenant_id, creator_id, size, centroid) "
            "SELECT id, $1, $2, size, centroid "
            "FROM unnest($3::uuid[], $4::int[], $5::vector[]) AS c (id, size, centroid)",
            tenant_id, creator_id, *_columns(changes.new_clusters),
        )  # fmt: skip
    if changes.moved_members:
        await db.execute(
            "UPDATE cluster_members m SET cluster_id = u.cluster_id, similarity = u.similarity "
            "FROM unnest($1::uuid[], $2::uuid[], $3::real[]) AS u (message_id, cluster_id, similarity) "
            "WHERE m.message_id = u.message_id",
            [placed.message.id for placed in changes.moved_members],
            [placed.cluster_id for placed in changes.moved_members],
            [placed.similarity for placed in changes.moved_members],
        )
    if changes.new_members:
        # The member's words feed its cluster's label (migration 0015 counts a statement's at once).
        new = changes.new_members
        await db.execute(
            """
            INSERT INTO cluster_members (tenant_id, cluster_id, message_id, channel_cid, similarity, embedding,
                                         content_hash, message_created_at, words)
            SELECT $1, u.cluster_id, u.message_id, s.channel_cid, u.similarity, u.embedding, u.content_hash,
                   s.message_created_at, chorus_label_words(s.text)
            FROM unnest($2::uuid[], $3::uuid[], $4::real[], $5::vector[], $6::bytea[])
                AS u (message_id, cluster_id, similarity, embedding, content_hash)
            JOIN streamchat_messages s ON s.id = u.message_id
            """,
            tenant_id,
            [placed.message.id for placed in new],
            [placed.cluster_id for placed in new],
            [placed.similarity for placed in new],
            [Vector(placed.vector.astype(np.float32)) for placed in new],
            [placed.content_hash for placed in new],
        )
    if changes.deleted_clusters:
        await db.execute("DELETE FROM clusters WHERE id = ANY($1::uuid[])", changes.deleted_clusters)
    changed = changes.changed_clusters + changes.new_clusters
    if changed:
        # Channels are counted once per batch and cluster (an index-only scan of (cluster, channel));
        # the preview is the first member in the (cluster, time) index.
        await db.execute(
            """
            UPDATE clusters c
            SET size = u.size, centroid = u.centroid, updated_at = now(),
                channel_count = (SELECT count(DISTINCT channel_cid) FROM cluster_members m WHERE m.cluster_id = c.id),
                preview_text = (SELECT text FROM chorus_cluster_members_in_order(c.id, how_many => 1))
            FROM unnest($1::uuid[], $2::int[], $3::vector[]) AS u (id, size, centroid)
            WHERE c.id = u.id
            """,
            *_columns(changed),
        )
    marked = {row_id: by for row_id, by in changes.superseded.items() if by is not None}
    if marked:
        await db.execute(
            "UPDATE streamchat_messages s SET superseded_by = u.by, superseded_at = now(), updated_at = now() "
            "FROM unnest($1::uuid[], $2::uuid[]) AS u (id, by) WHERE s.id = u.id",
            list(marked), list(marked.values()),
        )  # fmt: skip
    cleared = [row_id for row_id, by in changes.superseded.items() if by is None]
    if cleared:
        await db.execute(
            "UPDATE streamchat_messages SET superseded_by = NULL, superseded_at = NULL "
            "WHERE id = ANY($1::uuid[]) AND superseded_by IS NOT NULL",
            cleared,
        )


def _columns(rows: list[tuple[UUID, int, np.ndarray]]) -> tuple[list[UUID], list[int], list[Vector]]:
    # Arrays of vectors travel as pgvector's Vector: asyncpg would take an ndarray for a nested list.
    return [row[0] for row in rows], [row[1] for row in rows], [Vector(row[2]) for row in rows]
