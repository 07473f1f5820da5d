"""Re-homing's arithmetic: which members of a neighbourhood move to which cluster, given the sums and sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

import numpy as np

from services.cluster.store import Member


@dataclass(frozen=True)
class Move:
    """`member` leaves `member.cluster_id` for `target`, where its average similarity is `similarity`."""

    member: Member
    target: UUID
    similarity: float


def plan_moves(
    sums: Mapping[UUID, np.ndarray], counts: Mapping[UUID, int], members: Sequence[Member], threshold: float
) -> list[Move]:
    """The moves that put each member where it fits best, in the order they are made.

    Vectors are unit length, so a cluster's sum over its size answers a member's average
    similarity to it. A member moves when its average similarity to another of the clusters is
    at or above `threshold` and higher than to its own cluster's other members (a member alone
    has none: -1). Each move updates the sums and sizes the members after it are judged by; of
    two equally similar clusters, the one whose id is greater as text wins, so the result does
    not depend on the order of `sums`. The arguments are left as they are.
    """
    # New arrays replace a cluster's sum on each move (never changed in place): the caller's stay as they were.
    totals = dict(sums)
    sizes = dict(counts)
    moves = []
    for member in members:
        own = member.cluster_id
        own_similarity = (
            float((totals[own] - member.vector) @ member.vector) / (sizes[own] - 1) if sizes[own] > 1 else -1.0
        )
        others = {other: float(member.vector @ totals[other]) / sizes[other]
                  for other in totals if other != own and sizes[other] > 0}  # fmt: skip
        if not others:
            continue
        best = max(others, key=lambda other: (others[other], str(other)))
        if others[best] >= threshold and others[best] > own_similarity:
            totals[own] = totals[own] - member.vector
            sizes[own] -= 1
            totals[best] = totals[best] + member.vector
            sizes[best] += 1
            moves.append(Move(member, best, others[best]))
    return moves
