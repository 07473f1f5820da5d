"""Reply delivery: an actioned cluster reaches each of its channels once, through the real SDK, Kafka and Postgres."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import asyncpg
import numpy as np
import pytest
from fastapi.testclient import TestClient

from launcher.stack.processes import free_port
from services.ingest.app import create_app
from services.ingest.replies import NO_APP
from services.ingest.settings import IngestSettings
from services.search.app import create_app as create_search_app
from services.search.settings import SearchSettings
from shared import tenants, topics
from shared.clusters import action_cluster, reply_message_id
from shared.db import tenant_transaction
from shared.kafka import create_producer
from shared.records import Reply
from shared.settings import load
from tests.conftest import REPO_ROOT
from tests.fake_streamchat import FakeStreamChat
from tests.metrics import MetricDelta
from tests.services.conftest import APP_KEY, Tenant

CREATOR = "creator-jay"
ANSWER = "Live at 9pm ET tonight!"
UNIT = (np.ones(384) / math.sqrt(384)).astype(np.float32)
# Quick retries: three posts, half a second each at most, 50 ms backoff (Retry-After aside).
QUICK = {
    "CHORUS_REPLY_MAX_ATTEMPTS": "3",
    "CHORUS_REPLY_TIMEOUT_SECONDS": "0.5",
    "CHORUS_REPLY_BACKOFF_SECONDS": "0.05",
    "CHORUS_REPLY_SWEEP_SECONDS": "1",
    "CHORUS_INGEST_NORMALIZE": "false",
}


def channel(fan: str) -> str:
    return f"messaging:dm-{CREATOR}-{fan}"


@pytest.fixture
def delivering(service_env: dict[str, str], streamchat: FakeStreamChat) -> Iterator[TestClient]:
    """An ingest service in this process that delivers replies to the fake StreamChat."""
    settings = load(IngestSettings, {**service_env, **QUICK, "CHORUS_STREAMCHAT_BASE_URL": streamchat.base_url})
    with TestClient(create_app(settings)) as client:
        yield client


async def seed_cluster(pool: asyncpg.Pool, tenant_id: UUID, fans: list[str]) -> UUID:
    """An open cluster of one message from each fan, each in its own channel with the creator."""
    async with tenant_transaction(pool, tenant_id) as db:
        cluster_id: UUID = await db.fetchval(
            "INSERT INTO clusters (tenant_id, creator_id, size, channel_count, preview_text, centroid) "
            "VALUES ($1, $2, $3, $3, 'when do you go live?', $4) RETURNING id",
            tenant_id, CREATOR, len(fans), UNIT,
        )  # fmt: skip
        for fan in fans:
            message_row = await db.fetchval(
                "INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, visitor_id, "
                "direction, text, message_created_at) VALUES ($1, $2, $3, $4, $5, 'inbound', $6, now()) RETURNING id",
                tenant_id, f"q-{cluster_id}-{fan}", CREATOR, channel(fan), fan, "when do you go live?",
            )  # fmt: skip
            await db.execute(
                "INSERT INTO cluster_members (tenant_id, cluster_id, message_id, channel_cid, embedding, content_hash, "
                "message_created_at) VALUES ($1, $2, $3, $4, $5, $6, now())",
                tenant_id, cluster_id, message_row, channel(fan), UNIT, b"hash",
            )  # fmt: skip
    return cluster_id


async def action(pool: asyncpg.Pool, tenant_id: UUID, cluster_id: UUID, text: str = ANSWER) -> None:
    async with tenant_transaction(pool, tenant_id) as db:
        await action_cluster(db, cluster_id, text)


async def deliveries(pool: asyncpg.Pool, tenant_id: UUID, cluster_id: UUID) -> dict[str, asyncpg.Record]:
    async with tenant_transaction(pool, tenant_id) as db:
        rows = await db.fetch("SELECT * FROM reply_deliveries WHERE cluster_id = $1", cluster_id)
    return {row["channel_cid"]: row for row in rows}


async def settled(
    pool: asyncpg.Pool, tenant_id: UUID, cluster_id: UUID, within: float = 60
) -> dict[str, asyncpg.Record]:
    """The cluster's deliveries once none is pending; fails when some still are after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        rows = await deliveries(pool, tenant_id, cluster_id)
        if rows and all(row["status"] != "pending" for row in rows.values()):
            return rows
        assert asyncio.get_running_loop().time() < deadline, f"deliveries still pending: {dict(rows)}"
        await asyncio.sleep(0.1)


async def test_an_actioned_cluster_of_three_channels_gets_one_message_in_each(
    delivering: TestClient, streamchat: FakeStreamChat, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    sent = MetricDelta("chorus_ingest_replies_sent_total")
    fans = ["fan-a", "fan-b", "fan-c"]
    cluster_id = await seed_cluster(pool, tenant.id, fans)
    await action(pool, tenant.id, cluster_id)

    rows = await settled(pool, tenant.id, cluster_id)
    assert {cid: row["status"] for cid, row in rows.items()} == {channel(fan): "sent" for fan in fans}
    assert all(row["attempts"] == 1 and row["sent_at"] is not None and row["reason"] is None for row in rows.values())
    assert all(row["published_at"] is not None for row in rows.values())
    for fan in fans:
        [message] = streamchat.kept_in(channel(fan))
        assert message.id == reply_message_id(cluster_id, channel(fan))
        assert (message.text, message.user_id, message.api_key) == (ANSWER, CREATOR, APP_KEY)
    assert len(streamchat.messages) == 3 and len(streamchat.posts) == 3
    assert sent.delta() == 3


async def test_a_rate_limited_channel_waits_as_asked_and_is_sent(
    delivering: TestClient, streamchat: FakeStreamChat, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    streamchat.faults[channel("fan-a")].extend(["429", "429"])
    cluster_id = await seed_cluster(pool, tenant.id, ["fan-a", "fan-b", "fan-c"])
    await action(pool, tenant.id, cluster_id)

    rows = await settled(pool, tenant.id, cluster_id)
    assert {row["status"] for row in rows.values()} == {"sent"}
    assert rows[channel("fan-a")]["attempts"] == 3
    assert len(streamchat.messages) == 3
    posts = streamchat.posts_to(channel("fan-a"))
    assert [post.status for post in posts] == [429, 429, 201]
    # Retry-After said 1 s; the backoff alone would have waited about 50 and 100 ms.
    assert posts[1].at - posts[0].at >= 0.95 and posts[2].at - posts[1].at >= 0.95


async def test_a_failing_and_a_hanging_channel_are_failed_and_the_others_sent(
    delivering: TestClient, streamchat: FakeStreamChat, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    exhausted = MetricDelta("chorus_ingest_replies_failed_total", reason="exhausted")
    streamchat.always[channel("fan-a")] = "500"
    streamchat.always[channel("fan-b")] = "hang"
    cluster_id = await seed_cluster(pool, tenant.id, ["fan-a", "fan-b", "fan-c"])
    await action(pool, tenant.id, cluster_id)

    rows = await settled(pool, tenant.id, cluster_id)
    failing, hanging, fine = rows[channel("fan-a")], rows[channel("fan-b")], rows[channel("fan-c")]
    assert (failing["status"], failing["attempts"], failing["sent_at"]) == ("failed", 3, None)
    assert "gave up after 3 attempts" in failing["reason"] and "(500)" in failing["reason"]
    assert (hanging["status"], hanging["attempts"]) == ("failed", 3)
    assert "did not answer within 0.5 s" in hanging["reason"]
    assert fine["status"] == "sent"
    assert len(streamchat.posts_to(channel("fan-a"))) == 3 and len(streamchat.posts_to(channel("fan-b"))) == 3
    assert [message.cid for message in streamchat.messages.values()] == [channel("fan-c")]
    assert exhausted.delta() == 2


async def test_a_tenant_without_a_connected_app_gets_failed_deliveries(
    delivering: TestClient, streamchat: FakeStreamChat, pool: asyncpg.Pool
) -> None:
    no_app = MetricDelta("chorus_ingest_replies_failed_total", reason="no_app")
    tenant_id = await tenants.create_tenant(pool, "unconnected")
    cluster_id = await seed_cluster(pool, tenant_id, ["fan-a", "fan-b"])
    await action(pool, tenant_id, cluster_id)

    rows = await settled(pool, tenant_id, cluster_id)
    assert {(row["status"], row["reason"], row["attempts"]) for row in rows.values()} == {("failed", NO_APP, 0)}
    assert streamchat.posts == []
    assert no_app.delta() == 2


async def test_a_replayed_reply_is_not_posted_again(
    delivering: TestClient, streamchat: FakeStreamChat, pool: asyncpg.Pool, tenant: Tenant, service_env: dict[str, str]
) -> None:
    first = await seed_cluster(pool, tenant.id, ["fan-a", "fan-b", "fan-c"])
    await action(pool, tenant.id, first)
    await settled(pool, tenant.id, first)
    assert len(streamchat.posts) == 3

    # The same records again: published by hand, and by the relay as if it crashed before marking them.
    async with tenant_transaction(pool, tenant.id) as db:
        rows = await db.fetch(
            "SELECT d.*, c.creator_id, c.response_text, c.actioned_at FROM reply_deliveries d "
            "JOIN clusters c ON c.id = d.cluster_id WHERE d.cluster_id = $1",
            first,
        )
        await db.execute("UPDATE reply_deliveries SET published_at = NULL WHERE cluster_id = $1", first)
        await db.execute("NOTIFY chorus_replies")
    producer = create_producer(service_env["CHORUS_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        for row in rows:
            reply = Reply(reply_id=f"{first}:{row['channel_cid']}", tenant_id=tenant.id, cluster_id=first,
                          creator_id=CREATOR, channel_cid=row["channel_cid"], visitor_id=row["visitor_id"],
                          response_text=ANSWER, actioned_at=row["actioned_at"])  # fmt: skip
            await (await topics.REPLIES.send(producer, service_env["CHORUS_TOPIC_PREFIX"], reply))
    finally:
        await producer.stop()
    await _wait_until_republished(pool, tenant.id, first)

    # The creator's replies share a partition: once a later action is delivered, the repeats were seen.
    later = await seed_cluster(pool, tenant.id, ["fan-d"])
    await action(pool, tenant.id, later, "second answer")
    assert (await settled(pool, tenant.id, later))[channel("fan-d")]["status"] == "sent"
    assert [post.cid for post in streamchat.posts].count(channel("fan-a")) == 1
    assert len(streamchat.posts) == 4 and len(streamchat.messages) == 4


async def test_the_cluster_detail_shows_each_channels_delivery_until_the_fan_is_erased(
    delivering: TestClient, streamchat: FakeStreamChat, pool: asyncpg.Pool, tenant: Tenant, service_env: dict[str, str]
) -> None:
    streamchat.always[channel("fan-b")] = "500"
    cluster_id = await seed_cluster(pool, tenant.id, ["fan-a", "fan-b"])
    auth = {"Authorization": f"Bearer {tenant.api_key}"}
    with TestClient(
        create_search_app(load(SearchSettings, {**service_env, "CHORUS_EMBEDDING_PROVIDER": "hash"}))
    ) as search:
        assert search.get(f"/v1/clusters/{cluster_id}", headers=auth).json()["replies"] == []
        actioned = search.post(f"/v1/clusters/{cluster_id}/action", json={"response_text": ANSWER}, headers=auth)
        assert actioned.status_code == 200 and actioned.json()["replies"] == 2, actioned.text
        await settled(pool, tenant.id, cluster_id)
        detail = search.get(f"/v1/clusters/{cluster_id}", headers=auth)
        # Erasing a fan erases the record of the reply sent to them too.
        erased = search.post("/v1/privacy/erasure", json={"party": "fan-b"}, headers=auth)
        after = search.get(f"/v1/clusters/{cluster_id}", headers=auth).json()["replies"]
    assert erased.status_code == 200 and erased.json()["counts"]["reply_deliveries"] == 1, erased.text
    assert [reply["channel_cid"] for reply in after] == [channel("fan-a")]
    assert detail.status_code == 200, detail.text
    sent, failed = detail.json()["replies"]
    assert (sent["channel_cid"], sent["status"], sent["attempts"], sent["reason"]) == (
        channel("fan-a"),
        "sent",
        1,
        None,
    )
    assert sent["sent_at"] is not None
    assert (failed["channel_cid"], failed["status"], failed["attempts"], failed["sent_at"]) == (
        channel("fan-b"), "failed", 3, None
    )  # fmt: skip
    assert "(500)" in failed["reason"]
    assert [message.cid for message in streamchat.messages.values()] == [channel("fan-a")]


async def _wait_until_republished(pool: asyncpg.Pool, tenant_id: UUID, cluster_id: UUID) -> None:
    for _ in range(300):
        rows = await deliveries(pool, tenant_id, cluster_id)
        if all(row["published_at"] is not None for row in rows.values()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the relay did not publish the replies again")


async def test_a_delivering_process_killed_mid_batch_sends_each_reply_once(
    streamchat: FakeStreamChat, pool: asyncpg.Pool, tenant: Tenant, service_env: dict[str, str], tmp_path: Path
) -> None:
    fans = [f"fan-{number:02d}" for number in range(20)]
    cluster_id = await seed_cluster(pool, tenant.id, fans)
    # Actioned while no ingest runs: the relay publishes the outbox when it starts.
    await action(pool, tenant.id, cluster_id)
    streamchat.delay_seconds = 1.0  # slow answers: the kill lands while kept messages await their answer
    env = {**os.environ, **service_env, **QUICK, "CHORUS_STREAMCHAT_BASE_URL": streamchat.base_url,
           "CHORUS_REPLY_CONCURRENCY": "4", "CHORUS_REPLY_TIMEOUT_SECONDS": "5",
           "CHORUS_INGEST_PORT": str(free_port()), "CHORUS_LOG_LEVEL": "INFO"}  # fmt: skip

    first = _start_ingest(env, tmp_path / "ingest-1.log")
    try:
        await _wait_for(lambda: len(streamchat.messages) >= 5, 60, "the first posts", tmp_path / "ingest-1.log")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        _stop(first)
    kept_before_restart = len(streamchat.messages)
    assert 5 <= kept_before_restart < len(fans), "the kill came too late to land mid-batch"

    streamchat.delay_seconds = 0
    second = _start_ingest(env, tmp_path / "ingest-2.log")
    try:
        rows = await settled(pool, tenant.id, cluster_id, within=120)
    finally:
        _stop(second)
    assert {row["status"] for row in rows.values()} == {"sent"}
    for fan in fans:
        assert len(streamchat.kept_in(channel(fan))) == 1, f"{fan} got {streamchat.kept_in(channel(fan))}"
    accepted = [post for post in streamchat.posts if post.status == 201]
    assert len(accepted) == len(fans) == len({post.cid for post in accepted})
    # Messages kept but unanswered when the process died were posted again and refused as duplicates.
    assert any(post.status == 400 for post in streamchat.posts), "no post was refused as a duplicate"


def _start_ingest(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env, cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


async def _wait_for(condition: Callable[[], bool], within: float, what: str, log_path: Path) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            written = await asyncio.to_thread(log_path.read_text)
            raise AssertionError(f"{what} did not happen; ingest wrote:\n{written[-3000:]}")
        await asyncio.sleep(0.05)
