"""Each clustering rule of DESIGN.md, through real Kafka, Postgres and the local model."""

from __future__ import annotations

import asyncio
import uuid

from services.cluster.settings import ClusterSettings
from shared import topics
from shared.clusters import ClusterAlreadyActioned, action_cluster
from shared.db import tenant_transaction
from shared.kafka import create_consumer
from shared.records import Reply
from shared.settings import load
from tests.services.cluster.conftest import MEMBER_OF, Pipeline

IN_CLUSTER = f"SELECT count(*) FROM ({MEMBER_OF} AND m.cluster_id = $2) found"
MEMBERS = "SELECT count(*) FROM cluster_members"
CLUSTERED = f"SELECT count(*) FROM ({MEMBER_OF}) found"
SUPERSEDED_BY = (
    "SELECT count(*) FROM streamchat_messages old JOIN streamchat_messages new ON new.id = old.superseded_by "
    "WHERE old.message_id = $1 AND new.message_id = $2"
)


async def test_two_messages_a_minute_apart_in_one_channel_leave_one_membership(pipeline: Pipeline) -> None:
    pipeline.dm("fan-maya", "m1", "what time do you go live tonight?", minute=0)
    await pipeline.settled(CLUSTERED, 1, "m1")
    pipeline.dm("fan-maya", "m2", "actually, is the stream still on for 9pm?", minute=1)
    await pipeline.settled(CLUSTERED, 1, "m2")
    assert await pipeline.ingest.count(MEMBERS) == 1
    assert await pipeline.ingest.count(SUPERSEDED_BY, "m1", "m2") == 1
    # The old message is kept, only out of the cluster; the empty cluster is gone.
    assert await pipeline.ingest.count("SELECT count(*) FROM streamchat_messages") == 2
    assert await pipeline.ingest.count("SELECT count(*) FROM clusters") == 1


async def test_a_late_older_message_supersedes_nothing_and_is_stored_superseded(pipeline: Pipeline) -> None:
    pipeline.dm("fan-maya", "newer", "is the stream still on for 9pm?", minute=5)
    await pipeline.settled(CLUSTERED, 1, "newer")
    pipeline.dm("fan-maya", "older", "what time do you go live tonight?", minute=1)
    await pipeline.settled(SUPERSEDED_BY, 1, "older", "newer")
    assert await pipeline.cluster_of("older") is None
    assert await pipeline.cluster_of("newer") is not None
    assert await pipeline.ingest.count(MEMBERS) == 1


async def test_an_edit_moves_the_message_and_a_delete_removes_it(pipeline: Pipeline) -> None:
    pipeline.dm("fan-a", "stream-a", "what time do you go live tonight?")
    pipeline.dm("fan-b", "stream-b", "when does the stream start today?")
    pipeline.dm("fan-c", "merch-c", "is there a discount code for the merch store hoodies?")
    await pipeline.settled(MEMBERS, 3)
    stream, merch = await pipeline.cluster_of("stream-a"), await pipeline.cluster_of("merch-c")
    assert stream is not None and merch is not None and stream != merch
    assert await pipeline.cluster_of("stream-b") == stream

    pipeline.dm("fan-b", "stream-b", "do you have a promo code for the merch hoodies?", kind="message.updated")
    await pipeline.settled(IN_CLUSTER, 1, "stream-b", merch)
    assert await pipeline.cluster_of("stream-b") == merch

    pipeline.dm("fan-c", "merch-c", "", kind="message.deleted")
    await pipeline.settled(CLUSTERED, 0, "merch-c")
    assert await pipeline.ingest.count("SELECT size FROM clusters WHERE id = $1", merch) == 1


async def test_paid_and_outgoing_messages_are_never_clustered(pipeline: Pipeline) -> None:
    pipeline.dm("fan-a", "paid", "what time do you go live tonight?", paid=True)
    pipeline.dm("fan-a", "reply", "going live at 9pm tonight!", minute=1, from_creator=True)
    pipeline.dm("fan-b", "free", "when does the stream start today?", minute=2)
    # One creator's records are processed in order: once the last is clustered, the others were seen.
    await pipeline.settled(CLUSTERED, 1, "free")
    assert await pipeline.cluster_of("paid") is None
    assert await pipeline.cluster_of("reply") is None
    assert await pipeline.ingest.count(MEMBERS) == 1


async def test_actioning_emits_one_reply_per_channel_once(pipeline: Pipeline) -> None:
    env = pipeline.ingest.env
    for number, fan in enumerate(["fan-a", "fan-b", "fan-c"]):
        pipeline.dm(fan, f"q-{fan}", f"what time do you go live tonight? ({number})", minute=number)
    pipeline.dm("fan-a", "q-fan-a-again", "so when is the stream tonight??", minute=5)
    await pipeline.settled(MEMBERS, 3)
    cluster_id = await pipeline.cluster_of("q-fan-b")
    assert cluster_id is not None and await pipeline.cluster_of("q-fan-a-again") == cluster_id

    settings = load(ClusterSettings, env)
    replies_topic = topics.REPLIES.full_name(settings.topic_prefix)
    async with tenant_transaction(pipeline.ingest.pool, pipeline.ingest.tenant.id) as db:
        actioned = await action_cluster(db, cluster_id, "Live at 9pm ET!")
    assert actioned.replies == 3
    async with tenant_transaction(pipeline.ingest.pool, pipeline.ingest.tenant.id) as db:
        try:
            await action_cluster(db, cluster_id, "again")
            raise AssertionError("actioning twice was accepted")
        except ClusterAlreadyActioned:
            pass

    # Published after the commit by ingest's reply relay, from the action's outbox rows.
    replies = await _replies(settings.kafka_bootstrap, replies_topic)
    assert sorted(reply.channel_cid for reply in replies) == [
        "messaging:dm-creator-jay-fan-a", "messaging:dm-creator-jay-fan-b", "messaging:dm-creator-jay-fan-c"
    ]  # fmt: skip
    assert {reply.response_text for reply in replies} == {"Live at 9pm ET!"}
    assert {reply.cluster_id for reply in replies} == {cluster_id}
    assert {reply.visitor_id for reply in replies} == {"fan-a", "fan-b", "fan-c"}

    # An actioned cluster takes no new members: the same question now opens a new cluster.
    pipeline.dm("fan-d", "q-fan-d", "what time do you go live tonight?", minute=10)
    await pipeline.settled(CLUSTERED, 1, "q-fan-d")
    assert await pipeline.cluster_of("q-fan-d") != cluster_id
    assert await pipeline.ingest.count("SELECT size FROM clusters WHERE id = $1", cluster_id) == 3


async def _replies(bootstrap: str, topic: str, expected: int = 3) -> list[Reply]:
    """The replies on `topic`: once `expected` came (within a minute, however busy the machine),
    three seconds more for any extra one."""
    consumer = create_consumer(bootstrap, f"read-{uuid.uuid4()}", topic)
    await consumer.start()
    found: list[Reply] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < expected:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    found += [Reply.from_bytes(record.value) for record in batch]
        extra_until = asyncio.get_running_loop().time() + 3
        while asyncio.get_running_loop().time() < extra_until:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found += [Reply.from_bytes(record.value) for record in batch]
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found
