"""Re-homing's arithmetic without a database: who moves where, given the clusters' sums and sizes."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import numpy as np
import pytest

from services.cluster.rehoming import Vectors, plan_moves

A = UUID("00000000-0000-0000-0000-00000000000a")
B = UUID("00000000-0000-0000-0000-00000000000b")
C = UUID("00000000-0000-0000-0000-00000000000c")


@dataclass(frozen=True)
class Member:
    message_id: UUID
    cluster_id: UUID
    channel_cid: str
    vector: np.ndarray


def member(number: int, cluster: UUID, *vector: float) -> Member:
    unit = np.array(vector, dtype=np.float64)
    return Member(UUID(int=number), cluster, f"messaging:fan-{number}", unit / np.linalg.norm(unit))


def totals(*members: Member) -> tuple[dict[UUID, np.ndarray], dict[UUID, int]]:
    """The clusters' sums and sizes, as the cluster rows keep them."""
    sums: dict[UUID, np.ndarray] = {}
    counts: dict[UUID, int] = {}
    for one in members:
        sums[one.cluster_id] = sums.get(one.cluster_id, np.zeros_like(one.vector)) + one.vector
        counts[one.cluster_id] = counts.get(one.cluster_id, 0) + 1
    return sums, counts


def test_a_member_moves_to_the_cluster_it_is_more_similar_to() -> None:
    x, y, b = member(1, A, 1, 0), member(2, A, 0, 1), member(3, B, 0.1, 1)
    sums, counts = totals(x, y, b)
    [move] = plan_moves(sums, counts, [x, y, b], threshold=0.8)
    assert (move.member, move.target) == (y, B)
    assert move.similarity == pytest.approx(float(y.vector @ b.vector))


def test_the_similarity_to_a_cluster_is_the_average_over_its_members() -> None:
    # To B's two members y is 1.0 and 0.0 similar: 0.5 on average, under a threshold of 0.6.
    x, y = member(1, A, 1, -1), member(2, A, 1, 1)
    b1, b2 = member(3, B, 1, 1), member(4, B, -1, 1)
    sums, counts = totals(x, y, b1, b2)
    assert plan_moves(sums, counts, [y], threshold=0.51) == []
    [move] = plan_moves(sums, counts, [y], threshold=0.49)
    assert move.target == B and move.similarity == pytest.approx(0.5)


def test_a_better_cluster_under_the_threshold_is_not_enough() -> None:
    x, y, b = member(1, A, 1, 0), member(2, A, 0, 1), member(3, B, 0.75, 1)
    sums, counts = totals(x, y, b)
    assert float(y.vector @ b.vector) == pytest.approx(0.8)
    assert plan_moves(sums, counts, [x, y], threshold=0.81) == []


def test_a_similarity_equal_to_the_threshold_is_enough() -> None:
    x, y, b = member(1, A, 0, 1), member(2, A, 1, 0), member(3, B, 0.6, 0.8)
    sums, counts = totals(x, y, b)
    [move] = plan_moves(sums, counts, [y], threshold=0.6)
    assert (move.member, move.target) == (y, B)
    assert move.similarity == pytest.approx(0.6)


def test_as_similar_as_its_own_cluster_is_not_better_so_the_member_stays() -> None:
    p, q, r = member(1, A, 1, 0), member(2, A, 1, 0), member(3, B, 1, 0)
    sums, counts = totals(p, q, r)
    assert plan_moves(sums, counts, [p, q], threshold=0.5) == []


def test_a_member_alone_moves_only_into_a_cluster_at_the_threshold() -> None:
    x, y, alone = member(1, A, 1, 0), member(2, A, 1, 0.2), member(3, B, 0, 1)
    sums, counts = totals(x, y, alone)
    # Its own cluster offers nothing (-1): any cluster is better, but only one at the threshold will do.
    assert plan_moves(sums, counts, [alone], threshold=0.3) == []
    near = member(4, C, 0.7, 0.7)
    sums, counts = totals(x, y, near)
    [move] = plan_moves(sums, counts, [near], threshold=0.3)
    assert move.target == A and move.similarity > 0.3


def test_of_two_equally_similar_clusters_the_greater_id_wins_whatever_the_order() -> None:
    alone = member(1, A, 1, 0)
    b, c = member(2, B, 1, 1), member(3, C, 1, -1)
    sums, counts = totals(alone, b, c)
    forward = plan_moves(sums, counts, [alone], threshold=0.5)
    backward = plan_moves(dict(reversed(sums.items())), dict(reversed(counts.items())), [alone], threshold=0.5)
    assert [move.target for move in forward] == [move.target for move in backward] == [C]


def test_a_move_changes_the_sums_the_later_members_are_judged_by() -> None:
    # b joins A (0.5 on average); B is then empty, so y, which alone would have gone to b, stays.
    x, y, b = member(1, A, 1, 0), member(2, A, 0, 1), member(3, B, 0, 1)
    sums, counts = totals(x, y, b)
    assert [(move.member, move.target) for move in plan_moves(sums, counts, [y], threshold=0.5)] == [(y, B)]
    moves = plan_moves(sums, counts, [b, y], threshold=0.5)
    assert [(move.member, move.target) for move in moves] == [(b, A)]
    assert moves[0].similarity == pytest.approx(0.5)


def test_a_member_that_left_no_longer_counts_in_its_old_clusters_average() -> None:
    # Once a1 has left for B, a2's own cluster is a3 alone (1.0 similar), which C (0.71) does not beat.
    a1, a2, a3 = member(1, A, 1, 0), member(2, A, 0, 1), member(3, A, 0, 1)
    b, c = member(4, B, 1, 0.05), member(5, C, 0.7, 0.714)
    sums, counts = totals(a1, a2, a3, b, c)
    moves = plan_moves(sums, counts, [a1, a2, a3], threshold=0.5)
    assert [(move.member, move.target) for move in moves] == [(a1, B)]


def test_a_member_that_joined_counts_in_its_new_clusters_average() -> None:
    # m2 is like none of B's first member but like m1, which joins B first: 0.6 over two members.
    b, a1, m1 = member(1, B, 1, 0, 0), member(2, A, 0, 0, 1), member(3, A, 0.8, 0.6, 0)
    m2, c2 = member(4, C, 0, 1, 0), member(5, C, 0, 0, 1)
    sums, counts = totals(b, a1, m1, m2, c2)
    moves = plan_moves(sums, counts, [m1, m2], threshold=0.25)
    assert [(move.member, move.target) for move in moves] == [(m1, B), (m2, B)]
    assert [move.similarity for move in moves] == [pytest.approx(0.8), pytest.approx(0.3)]


def test_the_callers_sums_and_counts_are_left_as_they_were() -> None:
    x, y, b = member(1, A, 1, 0), member(2, A, 0, 1), member(3, B, 0.1, 1)
    sums, counts = totals(x, y, b)
    before = ({cluster: total.copy() for cluster, total in sums.items()}, dict(counts))
    assert len(plan_moves(sums, counts, [x, y, b], threshold=0.8)) == 1
    assert counts == before[1]
    assert all(np.array_equal(sums[cluster], before[0][cluster]) for cluster in sums)


def test_a_member_with_no_other_cluster_near_stays() -> None:
    x, y = member(1, A, 1, 0), member(2, A, 0, 1)
    sums, counts = totals(x, y)
    assert plan_moves(sums, counts, [x, y], threshold=0.0) == []


def test_vectors_kept_in_blocks_give_the_moves_of_vectors_stacked_in_order() -> None:
    # The cluster service keeps each cluster's members as a block and passes the order that
    # interleaves them (services/cluster/assignment.py): the moves must be those of one matrix.
    rng = np.random.default_rng(3)
    centres = {A: rng.normal(size=8), B: rng.normal(size=8), C: rng.normal(size=8)}
    blocks = {
        cluster: [member(10 * index + number, cluster, *(centres[other] + rng.normal(size=8)))
                  for number, other in enumerate([A, B, C, A, B, C, A])]
        for index, cluster in enumerate([A, B, C], start=1)
    }  # fmt: skip
    everyone = [one for members in blocks.values() for one in members]
    order = rng.permutation(len(everyone))
    in_order = [everyone[index] for index in order]
    sums, counts = totals(*everyone)
    stacked = plan_moves(sums, counts, in_order, threshold=0.2)
    place = {cluster: number for number, cluster in enumerate(sums)}
    kept = plan_moves(
        sums,
        counts,
        in_order,
        threshold=0.2,
        vectors=Vectors([np.stack([one.vector for one in members]) for members in blocks.values()], order),
        owners=np.array([place[one.cluster_id] for one in everyone])[order],
    )
    assert len(stacked) >= 2, "the case must move members for the comparison to mean anything"
    assert [(move.member, move.target) for move in kept] == [(move.member, move.target) for move in stacked]
    assert [move.similarity for move in kept] == pytest.approx([move.similarity for move in stacked])
