"""One creator's batch of messages assigned in memory: the rules of docs/cluster.md played over
the clusters read once, leaving the changes to be written back once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import numpy as np

from services.cluster import rehoming
from services.cluster.store import Member, Message, StoredCluster, StoredMember


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
    # Its members and their vectors stacked, for re-homing; dropped when a member comes or goes.
    stacked: tuple[list[Placed], np.ndarray] | None = None


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
        near = self._ranked(changed.total / changed.size)[: self.rules.rehome_clusters]
        small = [cluster for cluster in near if cluster.complete and cluster.size <= self.rules.rehome_most_members]
        stacks = [self._stacked(cluster) for cluster in small]
        gathered = [member for members, _ in stacks for member in members]
        order = sorted(range(len(gathered)), key=lambda index: gathered[index].message.order)
        moves = rehoming.plan_moves(
            {cluster.id: cluster.total for cluster in near},
            {cluster.id: cluster.size for cluster in near},
            [Member(gathered[index].message.id, gathered[index].cluster_id, gathered[index].channel_cid,
                    gathered[index].vector) for index in order],
            self.rules.threshold,
            np.concatenate([stacked for _, stacked in stacks])[order] if gathered else None,
        )  # fmt: skip
        for move in moves:
            placed = self.members[move.member.message_id]
            self._leave(placed)
            placed.cluster_id, placed.similarity, placed.moved = move.target, move.similarity, True
            self._join(placed)

    def _stacked(self, cluster: _Cluster) -> tuple[list[Placed], np.ndarray]:
        if cluster.stacked is None:
            members = [self.members[member] for member in cluster.members]
            cluster.stacked = (members, np.stack([member.vector for member in members]))
        return cluster.stacked

    def _nearest(self, vector: np.ndarray) -> tuple[UUID, float] | None:
        ranked = self._ranked(vector, 1)
        if not ranked:
            return None
        return ranked[0].id, float(ranked[0].total @ vector) / ranked[0].size

    def _ranked(self, vector: np.ndarray, most: int | None = None) -> list[_Cluster]:
        """Open clusters by average similarity to `vector`, best first; ties go to the lower id."""
        open_clusters = [cluster for cluster in self.clusters.values() if cluster.status == "open" and cluster.size]
        if not open_clusters:
            return []
        similarities = (
            np.stack([cluster.total for cluster in open_clusters])
            @ vector
            / np.array([cluster.size for cluster in open_clusters])
        )
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
        cluster.stacked = None
        self.touched.add(cluster.id)

    def _leave(self, placed: Placed) -> None:
        cluster = self.clusters[placed.cluster_id]
        cluster.size -= 1
        cluster.total = cluster.total - placed.vector if cluster.size else np.zeros(0)
        cluster.members.discard(placed.message.id)
        cluster.stacked = None
        self.touched.add(cluster.id)

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


def _unit(vector: np.ndarray) -> np.ndarray:
    """Unit length, so that a mean of members answers average similarity (docs/cluster.md)."""
    vector = vector.astype(np.float64)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
