"""Centroids, sizes and memberships stay right under a random mix of new, edited, deleted and late messages."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from shared.db import tenant_transaction
from tests.services.cluster.conftest import MEMBER_OF, Pipeline

TEXTS = [
    json.loads(line)["text"]
    for line in (Path(__file__).resolve().parents[3] / "bench" / "data" / "dm_intents.jsonl").read_text().splitlines()
]


async def test_clusters_equal_what_their_members_say_after_a_random_sequence(pipeline: Pipeline) -> None:
    rng = random.Random(20261122)
    visitors = [f"fan-{number}" for number in range(6)]
    # message id -> (visitor, minute, deleted)
    sent: dict[str, tuple[str, float, bool]] = {}
    # The rules of DESIGN.md, played on the side: which message stands for each channel.
    members_by_channel: dict[str, str | None] = {}

    def clustered(message_id: str) -> None:
        visitor, minute, _ = sent[message_id]
        member = members_by_channel.get(visitor)
        if member is None or member == message_id or sent[member][1] < minute:
            members_by_channel[visitor] = message_id  # it supersedes the older member, if any

    for step in range(36):
        live = [message_id for message_id, (_, _, deleted) in sent.items() if not deleted]
        choice = rng.random()
        if live and choice < 0.2:
            message_id = rng.choice(live)
            visitor, minute, _ = sent[message_id]
            pipeline.dm(visitor, message_id, rng.choice(TEXTS), minute, kind="message.updated")
            clustered(message_id)
        elif live and choice < 0.3:
            message_id = rng.choice(live)
            visitor, minute, _ = sent[message_id]
            pipeline.dm(visitor, message_id, "", minute, kind="message.deleted")
            sent[message_id] = (visitor, minute, True)
            member = members_by_channel.get(visitor)
            if member is not None and sent[member][1] <= minute:
                members_by_channel[visitor] = None  # it goes, and so do the older ones it superseded
        else:
            # Now and then a late delivery: a message written before ones already sent.
            minute = step - (rng.uniform(2, 6) if rng.random() < 0.2 else 0)
            visitor = rng.choice(visitors)
            pipeline.dm(visitor, f"msg-{step}", rng.choice(TEXTS), minute)
            sent[f"msg-{step}"] = (visitor, minute, False)
            clustered(f"msg-{step}")
    # One creator's records are processed in order: when this one is clustered, all before it are.
    pipeline.dm("fan-last", "last", "what time do you go live tonight?", 100)
    await pipeline.settled(f"SELECT count(*) FROM ({MEMBER_OF}) found", 1, "last")

    async with tenant_transaction(pipeline.ingest.pool, pipeline.ingest.tenant.id) as db:
        clusters = await db.fetch("SELECT id, size, channel_count, centroid, preview_text FROM clusters")
        members = await db.fetch(
            "SELECT m.cluster_id, m.channel_cid, m.embedding, e.embedding AS current, s.message_id, s.text "
            "FROM cluster_members m JOIN streamchat_messages s ON s.id = m.message_id "
            "JOIN document_embeddings e ON e.document_id = s.document_id AND e.content_hash = s.content_hash "
            "ORDER BY m.message_created_at, s.message_id"
        )
        member_count = await db.fetchval("SELECT count(*) FROM cluster_members")

    assert len(members) == member_count, "every member's vector is the one of its message's current text"
    for cluster in clusters:
        own = [member for member in members if member["cluster_id"] == cluster["id"]]
        assert cluster["size"] == len(own) > 0
        assert cluster["channel_count"] == len({member["channel_cid"] for member in own})
        vectors = [member["embedding"].to_numpy() for member in own]
        assert np.allclose(cluster["centroid"].to_numpy(), np.mean(vectors, axis=0), atol=1e-5)
        assert cluster["preview_text"] == own[0]["text"], "the preview is the earliest member's text"
        for member in own:
            current = member["current"].to_numpy()
            assert np.allclose(member["embedding"].to_numpy(), current / np.linalg.norm(current), atol=1e-5)

    assert {member["message_id"] for member in members} == {*members_by_channel.values(), "last"} - {None}
