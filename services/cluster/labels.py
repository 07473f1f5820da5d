"""Cluster labels: a few words that tell a cluster from its creator's other open clusters."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from shared.db import tenant_transaction
from shared.errors import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

# Words in a label, at most; a cluster whose members share fewer gets fewer.
LABEL_WORDS = 3
# The cluster's most used terms that may make its label: a label word is one many members use.
CANDIDATES = 30
# A stale label of a cluster up to this size is chosen anew; a larger cluster's only when its size
# moved by a sixteenth since its label was chosen (refresh_labels): one member more hardly moves
# the words of hundreds, and a large cluster has many terms to read.
RELABEL_ALWAYS_UP_TO = 64
# Labels chosen per transaction.
BATCH = 200
# How often the labeller looks for stale labels. Labels are chosen apart from the messages that
# change them: a busy cluster is relabelled once a round, not on each of its messages, and a
# message's transaction pays only for counting its words (docs/cluster.md "Labels").
REFRESH_SECONDS = 1.0

_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class Term:
    """A term of a cluster: how its members wrote it, how many of them use it, and how many of
    the creator's open clusters use it."""

    word: str
    members: int
    clusters: int


def score(term: Term, size: int, open_clusters: int) -> float:
    """Class-based TF-IDF: the share of the cluster's members using the term, times how rare the
    term is among the creator's open clusters (each cluster one class)."""
    share = term.members / max(size, 1)
    return share * math.log(1 + max(open_clusters, 1) / max(term.clusters, 1))


def choose_label(terms: Sequence[Term], size: int, open_clusters: int, preview: str | None) -> str | None:
    """The label of a cluster of `size` members with these `terms`: its best-scoring words, in the
    order the preview (its first message) says them; the preview's first words when no term is left.

    A word only one member used names nobody's question but that member's, so when two or more
    words are shared by several members, only those compete.
    """
    if not terms:
        return _first_words(preview)
    shared = [term for term in terms if term.members >= 2]
    competing = shared if len(shared) >= 2 else list(terms)
    ranked = sorted(competing, key=lambda term: (-score(term, size, open_clusters), -term.members, term.word))
    return " ".join(_reading_order([term.word for term in ranked[:LABEL_WORDS]], preview))


def _reading_order(words: list[str], preview: str | None) -> list[str]:
    """`words` in the order they first appear in `preview`; words it lacks keep their rank, after."""
    text = (preview or "").lower()
    found = {word: match.start() for word in words if (match := re.search(rf"\b{re.escape(word)}", text))}
    return sorted(words, key=lambda word: (word not in found, found.get(word, 0), words.index(word)))


def _first_words(preview: str | None) -> str | None:
    words = _WORD.findall((preview or "").lower())[:LABEL_WORDS]
    return " ".join(words) or None


async def refresh_labels(db: asyncpg.Connection, batch: int = BATCH) -> int:
    """Choose the stale labels of the transaction's tenant, the longest stale first, `batch` at
    most; returns how many were looked at.

    The counts they come from are current (migrations 0010 and 0015's triggers keep them as members
    join, move and leave). A label is written only if its cluster did not change again meanwhile,
    and only if no writer holds its row now (a member joining marks it stale): then it stays stale,
    for the next round. The labeller never waits for a writer, so the two cannot wait for each other
    (they did: a writer marks labels stale in its own order, the labeller wrote them in another).
    """
    stale = await db.fetch(
        """
        WITH stale AS (
            SELECT l.cluster_id, l.label, l.labelled_size, l.changed_at, c.creator_id, c.size, c.preview_text
            FROM cluster_labels l JOIN clusters c ON c.id = l.cluster_id
            WHERE l.stale
            ORDER BY l.changed_at
            LIMIT $1
        ), creators AS (
            SELECT creator_id, count(*) AS open_clusters FROM clusters
            WHERE status = 'open' AND creator_id IN (SELECT creator_id FROM stale)
            GROUP BY creator_id
        )
        SELECT s.cluster_id, s.label, s.labelled_size, s.changed_at, s.size, s.preview_text,
               coalesce(cr.open_clusters, 0) AS open_clusters, t.words, t.members, t.clusters,
               s.label IS NULL OR s.size <= $3 OR abs(s.size - s.labelled_size) * 16 >= s.size AS relabel
        FROM stale s LEFT JOIN creators cr ON cr.creator_id = s.creator_id
        LEFT JOIN LATERAL (  -- the terms, only of the clusters to relabel
            SELECT array_agg(top.word) AS words, array_agg(top.members) AS members,
                   array_agg(coalesce(ct.clusters, 0)) AS clusters
            FROM (SELECT tenant_id, term, word, members FROM cluster_terms WHERE cluster_id = s.cluster_id
                  ORDER BY members DESC, term LIMIT $2) top
            LEFT JOIN creator_terms ct ON ct.tenant_id = top.tenant_id AND ct.creator_id = s.creator_id
                                          AND ct.term = top.term
            WHERE s.label IS NULL OR s.size <= $3 OR abs(s.size - s.labelled_size) * 16 >= s.size
        ) t ON true
        ORDER BY s.cluster_id
        """,
        batch,
        CANDIDATES,
        RELABEL_ALWAYS_UP_TO,
    )
    if not stale:
        return 0
    chosen: list[tuple[UUID, str | None, int, datetime]] = []
    for row in stale:
        if not row["relabel"]:  # a large cluster whose size hardly moved keeps its label
            chosen.append((row["cluster_id"], row["label"], row["labelled_size"], row["changed_at"]))
            continue
        columns = (row["words"] or [], row["members"] or [], row["clusters"] or [])
        terms = [Term(*term) for term in zip(*columns, strict=True)]
        label = choose_label(terms, row["size"], row["open_clusters"], row["preview_text"])
        chosen.append((row["cluster_id"], label, row["size"], row["changed_at"]))
    await db.execute(
        """
        UPDATE cluster_labels l SET label = chosen.label, labelled_size = chosen.size, stale = false
        FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[]) AS chosen(cluster_id, label, size, changed_at)
        WHERE l.cluster_id = chosen.cluster_id AND l.changed_at = chosen.changed_at
          AND l.cluster_id IN (SELECT cluster_id FROM cluster_labels WHERE cluster_id = ANY($1::uuid[])
                               FOR UPDATE SKIP LOCKED)
        """,
        *(list(column) for column in zip(*chosen, strict=True)),
    )
    return len(chosen)


async def keep_labels_current(pool: asyncpg.Pool, every_seconds: float = REFRESH_SECONDS) -> None:
    """Choose the stale labels of every tenant, a batch per tenant a round; rounds follow each
    other without a pause while some tenant has more stale labels than a batch."""
    while True:
        busy = False
        try:
            tenants = [row["id"] for row in await pool.fetch("SELECT chorus_tenants_with_stale_labels() AS id")]
            for tenant_id in tenants:
                # A transaction per batch: the label rows it writes stay locked until it commits,
                # and a message changing one of those clusters waits for them.
                async with tenant_transaction(pool, tenant_id) as db:
                    busy |= await refresh_labels(db) == BATCH
        except TRANSIENT_ERRORS as error:
            log.warning("could not refresh cluster labels", extra={"error": repr(error)})
        if not busy:
            await asyncio.sleep(every_seconds)
