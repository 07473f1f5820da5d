"""The rules played in memory over one read: joins, supersedes, replays, edits and what is written."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from uuid import UUID

import numpy as np
import pytest

from services.cluster import assignment
from services.cluster.assignment import Batch, Rules
from services.cluster.store import Message, StoredCluster, StoredMember

RULES = Rules(threshold=0.5, rehome_clusters=6, rehome_most_members=100)
START = datetime(2026, 11, 20, 19, 0, tzinfo=UTC)
NUMBERS = itertools.count(1)


def _unit(*values: float) -> np.ndarray:
    vector = np.array([*values, 0.0, 0.0, 0.0][:4], dtype=np.float64)
    return vector / np.linalg.norm(vector)


def _message(channel: str, minute: float, content_hash: bytes = b"h") -> Message:
    number = next(NUMBERS)
    return Message(UUID(int=number), f"m{number}", channel, START + timedelta(minutes=minute), content_hash, False)


def _ids() -> itertools.count[int]:
    return itertools.count(1000)


def _batch(clusters: list[StoredCluster] = [], members: list[StoredMember] = []) -> Batch:  # noqa: B006
    ids = _ids()
    return Batch(RULES, clusters, members, {cluster.id for cluster in clusters}, new_id=lambda: UUID(int=next(ids)))


def test_a_similar_message_joins_and_a_different_one_opens_a_cluster() -> None:
    batch = _batch()
    first, second, third = _message("a", 0), _message("b", 1), _message("c", 2)
    assert batch.apply(first, _unit(1, 0), b"h", delete=False) == "new"
    assert batch.apply(second, _unit(1, 0.2), b"h", delete=False) == "joined"
    assert batch.apply(third, _unit(0, 1), b"h", delete=False) == "new"
    changes = batch.changes()
    assert sorted(size for _, size, _ in changes.new_clusters) == [1, 2]
    assert {placed.message.id for placed in changes.new_members} == {first.id, second.id, third.id}
    assert not changes.deleted_members and not changes.changed_clusters


def test_the_newer_message_of_a_channel_stands_in_either_order() -> None:
    batch = _batch()
    older, newer = _message("a", 0), _message("a", 5)
    assert batch.apply(newer, _unit(1, 0), b"h", delete=False) == "new"
    assert batch.apply(older, _unit(1, 0), b"h", delete=False) == "superseded"
    changes = batch.changes()
    assert [placed.message.id for placed in changes.new_members] == [newer.id]
    assert changes.superseded == {newer.id: None, older.id: newer.id}


def test_a_stored_member_replaced_by_a_newer_message_is_deleted_and_its_cluster_goes() -> None:
    stored = _message("a", 0)
    cluster = StoredCluster(UUID(int=500), "open", 1, _unit(1, 0).astype(np.float32))
    member = StoredMember(stored, cluster.id, "a", _unit(1, 0).astype(np.float32), b"h", None)
    batch = _batch([cluster], [member])
    newer = _message("a", 3)
    assert batch.apply(newer, _unit(0, 1), b"h", delete=False) == "new"
    changes = batch.changes()
    assert changes.deleted_members == [stored.id]
    assert changes.deleted_clusters == [cluster.id]
    assert changes.superseded[stored.id] == newer.id


def test_a_replay_changes_nothing_and_an_edit_is_written_as_leave_and_join() -> None:
    stored = _message("a", 0, content_hash=b"old")
    cluster = StoredCluster(UUID(int=500), "open", 1, _unit(1, 0).astype(np.float32))
    member = StoredMember(stored, cluster.id, "a", _unit(1, 0).astype(np.float32), b"old", 0.9)
    replay = _batch([cluster], [member])
    assert replay.apply(stored, _unit(1, 0), b"old", delete=False) == "skipped"
    assert replay.changes().new_members == [] and replay.changes().changed_clusters == []

    edited = Message(stored.id, stored.message_id, "a", stored.created_at, b"new", False)
    batch = _batch([cluster], [member])
    assert batch.apply(edited, _unit(0, 1), b"old", delete=False) == "skipped", "a record of the older text"
    assert batch.apply(edited, _unit(0, 1), b"new", delete=False) == "new"
    changes = batch.changes()
    assert changes.deleted_members == [stored.id]
    assert [(placed.message.id, placed.content_hash) for placed in changes.new_members] == [(stored.id, b"new")]


def test_an_actioned_cluster_keeps_its_member_and_takes_no_new_one() -> None:
    stored = _message("a", 0)
    cluster = StoredCluster(UUID(int=500), "actioned", 1, _unit(1, 0).astype(np.float32))
    member = StoredMember(stored, cluster.id, "a", _unit(1, 0).astype(np.float32), b"h", None)
    batch = _batch([cluster], [member])
    assert batch.apply(_message("b", 1), _unit(1, 0), b"h", delete=False) == "new"
    changes = batch.changes()
    assert [cluster_id for cluster_id, _, _ in changes.new_clusters] != [cluster.id]
    assert not changes.changed_clusters and not changes.deleted_members


def _memberships(rules: Rules, count: int, seed: int) -> list[tuple[str, UUID, float | None]]:
    """Apply `count` messages near three directions to a new batch, many of them sent in the same
    minute, and list where each one ended up."""
    ids = _ids()
    batch = Batch(rules, [], [], set(), new_id=lambda: UUID(int=next(ids)))
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(3, 8))
    for number in range(count):
        vector = directions[rng.integers(3)] + rng.normal(scale=0.9, size=8)
        sent = START + timedelta(minutes=int(rng.integers(5)))
        batch.apply(Message(UUID(int=10_000 + number), f"m{number}", f"c{number}", sent, b"h", False), vector, b"h",
                    delete=False)  # fmt: skip
    members = batch.members.values()
    return sorted((placed.message.message_id, placed.cluster_id, placed.similarity) for placed in members)


def test_stacks_grown_a_member_at_a_time_re_home_as_stacks_built_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = Rules(threshold=0.3, rehome_clusters=6, rehome_most_members=100)
    grown = _memberships(rules, 300, seed=5)
    # Built afresh: a member joining drops its cluster's stack, which is stacked again when needed.
    monkeypatch.setattr(assignment._Stack, "with_member", lambda stack, placed: None)
    afresh = _memberships(rules, 300, seed=5)
    assert len({cluster for _, cluster, _ in grown}) > 1, "the case must make several clusters"
    assert grown == afresh


def test_members_are_put_in_the_order_of_their_messages_also_when_times_tie() -> None:
    rng = np.random.default_rng(3)
    for distinct_times in (10_000, 3):  # unique times, then many ties broken by the message id
        stacks = []
        for size in (5, 7, 4):
            times = rng.integers(distinct_times, size=size)
            ids = np.array([f"m{rng.integers(1000)}" for _ in range(size)], dtype=str)
            stacks.append(assignment._Stack([], np.zeros((size, 2)), np.zeros(size), times, ids))
        times = np.concatenate([stack.times for stack in stacks])
        ids = np.concatenate([stack.message_ids for stack in stacks])
        expected = np.lexsort((ids, times))
        assert assignment._in_message_order(stacks).tolist() == expected.tolist()
