"""One creator's batch of messages assigned in memory: the rules of docs/cluster.md played over
the clusters read once, leaving the changes to be written back once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import numpy as np

from services.cluster import rehoming
from services.cluster.store import Message, StoredCluster, StoredMember


@dataclass(frozen=True)
class Rules:
    threshold: float
    rehome_clusters: int
    rehome_most_members: int


@dataclass
class Placed:
    """A member as the batch sees it; `stored` when its row was in cluster_members when read."""

    message: Message
    cluster_id: UUID
    channel_cid: str
    vector: np.ndarray
    content_hash: bytes
    similarity: float | None
    stored: bool
    moved: bool = False


@dataclass
class _Cluster:
    id: UUID
    status: str
    size: int
    total: np.ndarray
    members: set[UUID]
    # Every member is known (read, or the cluster is new): only then can its members be re-homed.
    complete: bool
    new: bool = False
    # Its members as arrays, for re-homing; dropped when a member comes or goes.
    stacked: _Stack | None = None


@dataclass(frozen=True)
class _Stack:
    """A cluster's members with their vectors and their messages' order (time in microseconds,
    then message id) as arrays: re-homing gathers a neighbourhood's members without a Python
    step per member."""

    members: list[Placed]
    vectors: np.ndarray
    squares: np.ndarray  # the vectors' squared norms
    times: np.ndarray
    message_ids: np.ndarray

    @classmethod
    def of(cls, members: list[Placed]) -> _Stack:
        vectors = np.stack([member.vector for member in members])
        return cls(
            members,
            vectors,
            rehoming.squares_of(vectors),
            np.array([member.message.microseconds for member in members], dtype=np.int64),
            np.array([member.message.message_id for member in members], dtype=str),
        )

    def with_member(self, placed: Placed) -> _Stack:
        """The stack with `placed` at its end: a member joining costs one row, not a new stack."""
        return _Stack(
            [*self.members, placed],
            np.vstack((self.vectors, placed.vector)),
            np.append(self.squares, rehoming.squares_of(placed.vector[np.newaxis, :])),
            np.append(self.times, placed.message.microseconds),
            np.append(self.message_ids, placed.message.message_id),
        )


class _InOrder:
    """The members of several stacks in an order of all their rows (`_in_message_order`'s), found by
    place: re-homing reads only the members that move, so no list of everyone is made."""

    def __init__(self, stacks: list[_Stack], order: np.ndarray) -> None:
        self.stacks = stacks
        self.order = order
        self.starts = np.cumsum([0, *(len(stack.members) for stack in stacks)])

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> Placed:
        row = int(self.order[index])
        block = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.stacks[block].members[row - int(self.starts[block])]


@dataclass
class Changes:
    """What the batch changed, to be written in one go (services/cluster/store.py's write_changes)."""

    deleted_members: list[UUID] = field(default_factory=list)
    new_members: list[Placed] = field(default_factory=list)
    moved_members: list[Placed] = field(default_factory=list)
    # (id, size, centroid) of clusters opened, and of clusters whose members changed.
    new_clusters: list[tuple[UUID, int, np.ndarray]] = field(default_factory=list)
    changed_clusters: list[tuple[UUID, int, np.ndarray]] = field(default_factory=list)
    deleted_clusters: list[UUID] = field(default_factory=list)
    # Message -> the message that supersedes it, or None where that mark is cleared.
    superseded: dict[UUID, UUID | None] = field(default_factory=dict)


class _OpenSums:
    """The open clusters with members, their sums stacked and their sizes, for ranking clusters
    by similarity: the rows of clusters that changed are refreshed, instead of every cluster
    stacked again for every message; stacked again when a cluster opens, empties or closes."""

    def __init__(self) -> None:
        self.clusters: list[_Cluster] = []
        self.rows: dict[UUID, int] = {}
        self.sums = np.zeros((0, 0))
        self.sizes = np.zeros(0)
        self.since: set[UUID] | None = None  # changed since the last `current`; None: stack anew

    def changed(self, cluster_id: UUID) -> None:
        if self.since is not None:
            self.since.add(cluster_id)

    def current(self, clusters: dict[UUID, _Cluster]) -> tuple[list[_Cluster], np.ndarray, np.ndarray]:
        if self.since is None or any((cluster_id in self.rows) != _is_open(clusters[cluster_id])
                                     for cluster_id in self.since):  # fmt: skip
            self.clusters = [cluster for cluster in clusters.values() if _is_open(cluster)]
            self.rows = {cluster.id: row for row, cluster in enumerate(self.clusters)}
            self.sums = np.stack([cluster.total for cluster in self.clusters]) if self.clusters else np.zeros((0, 0))
            self.sizes = np.array([cluster.size for cluster in self.clusters], dtype=np.float64)
        else:
            # Of the changed clusters, those that are open (and were): the others have no row.
            for cluster_id in self.since & self.rows.keys():
                row = self.rows[cluster_id]
                self.sums[row] = clusters[cluster_id].total
                self.sizes[row] = clusters[cluster_id].size
        self.since = set()
        return self.clusters, self.sums, self.sizes


def _is_open(cluster: _Cluster) -> bool:
    return cluster.status == "open" and cluster.size > 0


class Batch:
    """The creator's clusters as read, changed message by message in the order of the records."""

    def __init__(
        self,
        rules: Rules,
        clusters: Iterable[StoredCluster],
        members: Iterable[StoredMember],
        complete: set[UUID],
        new_id: Callable[[], UUID] = uuid4,
    ) -> None:
        self.rules = rules
        self.new_id = new_id
        self.clusters: dict[UUID, _Cluster] = {}
        for stored in clusters:
            total = np.zeros(0) if stored.centroid is None else stored.centroid.astype(np.float64) * stored.size
            self.clusters[stored.id] = _Cluster(
                stored.id, stored.status, stored.size, total, set(), stored.id in complete
            )
        self.members: dict[UUID, Placed] = {}
        self.channels: dict[str, set[UUID]] = defaultdict(set)
        for member in members:
            placed = Placed(member.message, member.cluster_id, member.channel_cid, member.vector.astype(np.float64),
                            member.content_hash, member.similarity, stored=True)  # fmt: skip
            self.members[member.message.id] = placed
            self.channels[member.channel_cid].add(member.message.id)
            self.clusters[member.cluster_id].members.add(member.message.id)
        self.deleted_rows: set[UUID] = set()
        self.touched: set[UUID] = set()
        self.open_sums = _OpenSums()
        self.superseded: dict[UUID, UUID | None] = {}
        self.sizes_seen: list[int] = []
        self.superseded_count = 0

    # The rules, one record at a time

    def apply(self, message: Message, vector: np.ndarray | None, content_hash: bytes, delete: bool) -> str:
        """Bring the message's clustering up to date with its record; returns the outcome."""
        if delete or message.deleted or vector is None:
            removed = self.remove([message.id])
            # Deleted or not, a newer message replaced the older ones: the result must not depend
            # on whether it was clustered before it was deleted.
            self._replace_older(message)
            return "removed" if removed else "skipped"
        if message.content_hash != content_hash:
            return "skipped"  # an older text of an edited message: the record of the new text follows
        current = self.members.get(message.id)
        if current is not None:
            if current.content_hash == content_hash or self.clusters[current.cluster_id].status == "actioned":
                return "skipped"  # a replay, or a message of an answered cluster, which keeps its members
            self.remove([message.id])  # an edit: assigned afresh below
        newer = self._replace_older(message)
        if newer is not None:
            self.superseded[message.id] = newer
            return "superseded"
        self.superseded[message.id] = None
        return self._assign(message, _unit(vector), content_hash)

    def remove(self, message_ids: Iterable[UUID]) -> set[UUID]:
        """Take messages out of their clusters; returns the clusters touched."""
        touched = set()
        for message_id in message_ids:
            placed = self.members.pop(message_id, None)
            if placed is None:
                continue
            self.channels[placed.channel_cid].discard(message_id)
            self._leave(placed)
            if placed.stored:
                self.deleted_rows.add(message_id)
            touched.add(placed.cluster_id)
        return touched

    def _replace_older(self, message: Message) -> UUID | None:
        """The channel rule: a newer clustered message keeps this one out (its id is returned);
        otherwise this one takes the place of the channel's older messages in open clusters."""
        others = [self.members[other] for other in self.channels[message.channel_cid] if other != message.id]
        newer = [other.message for other in others if other.message.order > message.order]
        if newer:
            return max(newer, key=lambda other: other.order).id
        replaced = sorted(other.message.id for other in others if self.clusters[other.cluster_id].status == "open")
        if replaced:
            self.remove(replaced)
            for row_id in replaced:
                self.superseded[row_id] = message.id
            self.superseded_count += len(replaced)
        return None

    def _assign(self, message: Message, vector: np.ndarray, content_hash: bytes) -> str:
        nearest = self._nearest(vector)
        if nearest is not None and nearest[1] >= self.rules.threshold:
            cluster_id, similarity, outcome = nearest[0], nearest[1], "joined"
        else:
            cluster_id, similarity, outcome = self.new_id(), None, "new"
            self.clusters[cluster_id] = _Cluster(cluster_id, "open", 0, np.zeros(0), set(), complete=True, new=True)
        placed = Placed(message, cluster_id, message.channel_cid, vector, content_hash, similarity, stored=False)
        self.members[message.id] = placed
        self.channels[message.channel_cid].add(message.id)
        self._join(placed)
        self._rehome(cluster_id)
        self.sizes_seen.append(self.clusters[placed.cluster_id].size)
        return outcome

    # Re-homing (docs/cluster.md): the changed cluster's neighbourhood, as Clusterer did per message

    def _rehome(self, cluster_id: UUID) -> None:
        changed = self.clusters[cluster_id]
        near = self._ranked(changed.total / changed.size, self.rules.rehome_clusters)
        small = [cluster for cluster in near if cluster.complete and cluster.size <= self.rules.rehome_most_members]
        stacks = [self._stacked(cluster) for cluster in small]
        gathered: rehoming.Members[Placed] = []
        vectors = owners = None
        if stacks:
            order = _in_message_order(stacks)
            gathered = _InOrder(stacks, order)
            vectors = rehoming.Vectors([stack.vectors for stack in stacks], order, [stack.squares for stack in stacks])
            place = {cluster.id: number for number, cluster in enumerate(near)}
            owners = np.concatenate(
                [np.full(len(stack.members), place[cluster.id]) for cluster, stack in zip(small, stacks, strict=True)]
            )[order]
        moves = rehoming.plan_moves(
            {cluster.id: cluster.total for cluster in near},
            {cluster.id: cluster.size for cluster in near},
            gathered,
            self.rules.threshold,
            vectors,
            owners,
        )
        for move in moves:
            placed = move.member
            self._leave(placed)
            placed.cluster_id, placed.similarity, placed.moved = move.target, move.similarity, True
            self._join(placed)

    def _stacked(self, cluster: _Cluster) -> _Stack:
        if cluster.stacked is None:
            cluster.stacked = _Stack.of([self.members[member] for member in cluster.members])
        return cluster.stacked

    def _nearest(self, vector: np.ndarray) -> tuple[UUID, float] | None:
        ranked = self._ranked(vector, 1)
        if not ranked:
            return None
        return ranked[0].id, float(ranked[0].total @ vector) / ranked[0].size

    def _ranked(self, vector: np.ndarray, most: int | None = None) -> list[_Cluster]:
        """Open clusters by average similarity to `vector`, best first; ties go to the lower id."""
        open_clusters, sums, sizes = self.open_sums.current(self.clusters)
        if not open_clusters:
            return []
        similarities = sums @ vector / sizes
        candidates: Iterable[int] = range(len(open_clusters))
        if most is not None and most < len(open_clusters):
            # Only the best `most` need sorting, and whatever ties with the last of them.
            least = similarities[np.argpartition(-similarities, most - 1)[:most]].min()
            candidates = np.flatnonzero(similarities >= least).tolist()
        order = sorted(candidates, key=lambda i: (-similarities[i], open_clusters[i].id))
        return [open_clusters[i] for i in order[:most]]

    def _join(self, placed: Placed) -> None:
        cluster = self.clusters[placed.cluster_id]
        cluster.total = placed.vector.copy() if cluster.size == 0 else cluster.total + placed.vector
        cluster.size += 1
        cluster.members.add(placed.message.id)
        if cluster.stacked is not None:
            cluster.stacked = cluster.stacked.with_member(placed)
        self.touched.add(cluster.id)
        self.open_sums.changed(cluster.id)

    def _leave(self, placed: Placed) -> None:
        cluster = self.clusters[placed.cluster_id]
        cluster.size -= 1
        cluster.total = cluster.total - placed.vector if cluster.size else np.zeros(0)
        cluster.members.discard(placed.message.id)
        cluster.stacked = None
        self.touched.add(cluster.id)
        self.open_sums.changed(cluster.id)

    # The result

    def changes(self) -> Changes:
        """The rows to write: what the batch changed, whatever order it happened in."""
        changes = Changes(deleted_members=sorted(self.deleted_rows), superseded=dict(self.superseded))
        for placed in self.members.values():
            if not placed.stored:
                changes.new_members.append(placed)
            elif placed.moved:
                changes.moved_members.append(placed)
        for cluster_id in sorted(self.touched):
            cluster = self.clusters[cluster_id]
            if cluster.size == 0:
                if not cluster.new:
                    changes.deleted_clusters.append(cluster_id)
                continue
            row = (cluster_id, cluster.size, (cluster.total / cluster.size).astype(np.float32))
            (changes.new_clusters if cluster.new else changes.changed_clusters).append(row)
        return changes


def _in_message_order(stacks: list[_Stack]) -> np.ndarray:
    """The order of the stacks' rows by their messages' order (Message.order), as the records came:
    by time, and by message id where times are equal (rare, and slower to sort: ids are text)."""
    times = np.concatenate([stack.times for stack in stacks])
    order: np.ndarray = np.argsort(times, kind="stable")
    if np.any(np.diff(times[order]) == 0):
        order = np.lexsort((np.concatenate([stack.message_ids for stack in stacks]), times))
    return order


def _unit(vector: np.ndarray) -> np.ndarray:
    """Unit length, so that a mean of members answers average similarity (docs/cluster.md)."""
    vector = vector.astype(np.float64)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
