"""A cluster's totals, updated member by member, equal the totals of its members however they came and went."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import numpy as np

from shared import clusters, tenants
from shared.db import tenant_transaction

DIMENSIONS = 384
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

EXACT_TOTALS = """
    SELECT c.id, c.size, c.channel_count, c.centroid, c.preview_text,
           count(m.message_id)::int AS members, count(DISTINCT m.channel_cid)::int AS channels,
           avg(m.embedding) AS mean,
           (array_agg(s.text ORDER BY m.message_created_at, s.message_id))[1] AS earliest
    FROM clusters c
    LEFT JOIN cluster_members m ON m.cluster_id = c.id
    LEFT JOIN streamchat_messages s ON s.id = m.message_id
    GROUP BY c.id
"""


def _unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.standard_normal(DIMENSIONS).astype(np.float32)
    return vector / np.linalg.norm(vector)


async def _message(db: asyncpg.Connection, tenant_id: UUID, number: int, channel: str, minute: int) -> UUID:
    row_id: UUID = await db.fetchval(
        "INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, direction, text, "
        "message_created_at) VALUES ($1, $2, 'creator', $3, 'inbound', $4, $5) RETURNING id",
        tenant_id, f"m-{number}", channel, f"text {number}", START + timedelta(minutes=minute),
    )  # fmt: skip
    return row_id


async def test_totals_follow_joins_leaves_and_moves(pool: asyncpg.Pool) -> None:
    rng = random.Random(20261123)
    vectors = np.random.default_rng(20261123)
    tenant_id = await tenants.create_tenant(pool, "acme")
    channels = [f"messaging:fan-{number}" for number in range(5)]
    async with tenant_transaction(pool, tenant_id) as db:
        members: dict[UUID, tuple[UUID, clusters.MemberVector]] = {}  # message -> (cluster, what it adds)
        done: Counter[str] = Counter()
        for step in range(240):
            choice = rng.random()
            live = [row["id"] for row in await db.fetch("SELECT id FROM clusters ORDER BY id")]
            if members and choice < 0.25:
                leaving = rng.sample(sorted(members), k=min(len(members), rng.randint(1, 3)))
                touched = await clusters.remove_members(db, leaving)
                assert touched == {members.pop(message)[0] for message in leaving}
                done["left"] += 1
            elif members and len(live) > 1 and choice < 0.45:
                message = rng.choice(sorted(members))
                source, member = members[message]
                target = rng.choice([cluster for cluster in live if cluster != source])
                await db.execute("UPDATE cluster_members SET cluster_id = $2 WHERE message_id = $1", message, target)
                await clusters.update_totals(db, source, left=[member])
                await clusters.update_totals(db, target, joined=[member])
                members[message] = (target, member)
                done["moved"] += 1
            else:
                if len(live) < 3 or rng.random() < 0.05:
                    cluster = await db.fetchval(
                        "INSERT INTO clusters (tenant_id, creator_id) VALUES ($1, 'creator') RETURNING id", tenant_id
                    )
                else:
                    cluster = rng.choice(live)
                channel = rng.choice(channels)
                message = await _message(db, tenant_id, step, channel, minute=rng.randint(0, 60))
                member = clusters.MemberVector(_unit(vectors), channel)
                await db.execute(
                    "INSERT INTO cluster_members (tenant_id, cluster_id, message_id, channel_cid, embedding, "
                    "content_hash, message_created_at) SELECT $1, $2, id, channel_cid, $4, '\\x00', "
                    "message_created_at FROM streamchat_messages WHERE id = $3",
                    tenant_id, cluster, message, member.vector,
                )  # fmt: skip
                await clusters.update_totals(db, cluster, joined=[member])
                members[message] = (cluster, member)
                done["joined"] += 1
            for row in await db.fetch(EXACT_TOTALS):
                assert row["members"] > 0, "a cluster left empty is deleted"
                assert (row["size"], row["channel_count"]) == (row["members"], row["channels"]), step
                assert np.allclose(row["centroid"].to_numpy(), row["mean"].to_numpy(), atol=1e-5), step
                assert row["preview_text"] == row["earliest"], step
    assert min(done["joined"], done["left"], done["moved"]) >= 30, done
