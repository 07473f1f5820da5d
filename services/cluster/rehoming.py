"""Re-homing's arithmetic: which members of a neighbourhood move to which cluster, given the sums and sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar
from uuid import UUID

import numpy as np


class Member(Protocol):
    """What re-homing needs of a member: its cluster and its unit vector."""

    @property
    def cluster_id(self) -> UUID: ...

    @property
    def vector(self) -> np.ndarray: ...


M = TypeVar("M", bound=Member)
M_co = TypeVar("M_co", bound=Member, covariant=True)


class Members(Protocol[M_co]):
    """The members of a neighbourhood in their order, found by place: a list, or a view that
    finds a member only when it is asked for (re-homing asks for those that move)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> M_co: ...


@dataclass(frozen=True)
class Move(Generic[M]):
    """`member` leaves `member.cluster_id` for `target`, where its average similarity is `similarity`."""

    member: M
    target: UUID
    similarity: float


@dataclass(frozen=True)
class Vectors:
    """The members' vectors as blocks (each cluster's, which a caller keeps between calls) and the
    order that puts the blocks' rows in the members' order: dot products are taken block by
    block and put in order, so no call copies every vector."""

    blocks: Sequence[np.ndarray]
    order: np.ndarray
    # Each block's squared norms (`squares_of`), where the caller keeps them too.
    squares: Sequence[np.ndarray] | None = None

    @classmethod
    def stacked(cls, vectors: np.ndarray) -> Vectors:
        """Vectors already in the members' order."""
        return cls([vectors], np.arange(len(vectors)))

    def dots(self, other: np.ndarray) -> np.ndarray:
        """Every member's dot products with `other` (a vector, or vectors as columns), in order."""
        products: np.ndarray = np.concatenate([block @ other for block in self.blocks])
        ordered: np.ndarray = products[self.order]
        return ordered

    def squared_norms(self) -> np.ndarray:
        blocks = self.squares if self.squares is not None else [squares_of(block) for block in self.blocks]
        ordered: np.ndarray = np.concatenate(blocks)[self.order]
        return ordered

    def of(self, index: int) -> np.ndarray:
        """The vector of the member at `index`."""
        row = int(self.order[index])
        for block in self.blocks:
            if row < len(block):
                vector: np.ndarray = block[row]
                return vector
            row -= len(block)
        raise IndexError(index)


def squares_of(vectors: np.ndarray) -> np.ndarray:
    """Each row's squared norm."""
    squares: np.ndarray = np.einsum("ij,ij->i", vectors, vectors)
    return squares


def plan_moves(
    sums: Mapping[UUID, np.ndarray],
    counts: Mapping[UUID, int],
    members: Members[M],
    threshold: float,
    vectors: Vectors | None = None,
    owners: np.ndarray | None = None,
) -> list[Move[M]]:
    """The moves that put each member where it fits best, in the order they are made.

    Vectors are unit length, so a cluster's sum over its size answers a member's average
    similarity to it. A member moves when its average similarity to another of the clusters is
    at or above `threshold` and higher than to its own cluster's other members (a member alone
    has none: -1). Each move updates the sums and sizes the members after it are judged by; of
    two equally similar clusters, the one whose id is greater as text wins, so the result does
    not depend on the order of `sums`. A caller that keeps the members' vectors and clusters at
    hand passes them (`vectors`; `owners`, the places in `sums` of the members' clusters) and
    saves the work of gathering them. The arguments are left as they are.
    """
    if not members or not sums:
        return []
    clusters = list(sums)
    position = {cluster: index for index, cluster in enumerate(clusters)}
    # Of two clusters equally similar, the one whose id is greater as text wins: its rank is higher.
    rank = np.empty(len(clusters))
    rank[sorted(range(len(clusters)), key=lambda index: str(clusters[index]))] = np.arange(len(clusters))
    totals = np.stack([np.asarray(sums[cluster], dtype=np.float64) for cluster in clusters])
    sizes = np.array([counts[cluster] for cluster in clusters], dtype=np.float64)
    everyone = [members[index] for index in range(len(members))] if vectors is None or owners is None else []
    if vectors is None:
        vectors = Vectors.stacked(np.stack([np.asarray(member.vector, dtype=np.float64) for member in everyone]))
    # Every member's dot product with every cluster's sum, kept current as members move: a move
    # changes two columns by the mover's dot products with the members. Members are judged all at
    # once up to the first that moves, then again from the one after it (moves are few).
    dots = vectors.dots(totals.T)
    own_dots = vectors.squared_norms()
    owns = np.array([position[member.cluster_id] for member in everyone]) if owners is None else owners
    rows = np.arange(len(members))
    moves: list[Move[M]] = []
    start = 0
    while start < len(members):
        own_sizes = sizes[owns[start:]]
        own_similarity = np.where(
            own_sizes > 1,
            (dots[rows[start:], owns[start:]] - own_dots[start:]) / np.maximum(own_sizes - 1, 1),
            -1.0,
        )
        others = np.broadcast_to(sizes > 0, (len(members) - start, len(clusters))).copy()
        others[rows[: len(members) - start], owns[start:]] = False
        similarities = np.where(others, dots[start:] / np.where(sizes > 0, sizes, 1.0), -np.inf)
        best_similarity = similarities.max(axis=1)
        moving = np.flatnonzero((best_similarity >= threshold) & (best_similarity > own_similarity))
        if not len(moving):
            break
        index = start + int(moving[0])
        tied = np.flatnonzero(similarities[index - start] == best_similarity[index - start])
        best, own = int(tied[np.argmax(rank[tied])]), owns[index]
        moved = vectors.dots(vectors.of(index))
        dots[:, own] -= moved
        dots[:, best] += moved
        sizes[own] -= 1
        sizes[best] += 1
        moves.append(Move(members[index], clusters[best], float(best_similarity[index - start])))
        start = index + 1
    return moves
