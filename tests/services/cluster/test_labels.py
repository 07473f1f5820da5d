"""Cluster labels: chosen by class-based TF-IDF, kept by counts that follow members in and out."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import asyncpg
import numpy as np
import pytest

from services.cluster import labels, store
from services.cluster.assignment import Changes, Placed
from services.cluster.labels import Term, choose_label
from shared import clusters
from shared.db import tenant_transaction
from tests.services.cluster.conftest import CREATOR, Pipeline
from tests.services.conftest import Tenant

INTENTS = Path(__file__).resolve().parents[3] / "bench" / "data" / "dm_intents.jsonl"
# Intents of three creators' kinds, and words a label of each should hold one of.
EXPECTED_WORDS = {
    "music.tour_dates": {"tour", "dates", "date"},
    "music.vinyl_restock": {"vinyl", "restock", "restocking"},
    "music.guitar_tabs": {"tabs", "guitar"},
    "fitness.refund_request": {"refund"},
    "fitness.forgot_password": {"password", "forgot", "reset"},
    "fitness.knee_pain_squats": {"knee", "knees", "squat", "squats", "pain"},
}
START = datetime(2026, 11, 20, 19, 0, tzinfo=UTC)

# The term counts as the triggers keep them, against the same counts from the members themselves.
COUNTS_DRIFT = """
    WITH truth AS (
        SELECT m.cluster_id, s.term, count(*)::int AS members
        FROM cluster_members m, unnest(m.words) AS w, LATERAL (SELECT (ts_lexize('english_stem', w))[1] AS term) s
        WHERE s.term IS NOT NULL
        GROUP BY 1, 2
    )
    SELECT count(*) FROM truth FULL JOIN cluster_terms t USING (cluster_id, term)
    WHERE truth.members IS DISTINCT FROM t.members
"""
CREATOR_DRIFT = """
    WITH truth AS (
        SELECT c.creator_id, t.term, count(*)::int AS clusters
        FROM cluster_terms t JOIN clusters c ON c.id = t.cluster_id WHERE c.status = 'open' GROUP BY 1, 2
    )
    SELECT count(*) FROM truth FULL JOIN creator_terms ct USING (creator_id, term)
    WHERE truth.clusters IS DISTINCT FROM ct.clusters
"""


def test_a_label_takes_the_words_frequent_in_the_cluster_and_rare_elsewhere() -> None:
    terms = [Term("stream", 5, 9), Term("tonight", 4, 2), Term("jay", 5, 10), Term("schedule", 3, 1), Term("pc", 1, 1)]
    label = choose_label(terms, 5, 10, "what time is the stream tonight? need the schedule")
    # "jay" is in every one of the creator's clusters, "pc" only one member's word.
    assert label == "stream tonight schedule"
    assert choose_label(terms, 5, 10, None) == "schedule tonight stream", "without a preview, best first"


def test_a_cluster_of_one_message_is_named_by_its_words() -> None:
    terms = [Term("refund", 1, 1), Term("program", 1, 6), Term("bought", 1, 2), Term("week", 1, 8)]
    assert choose_label(terms, 1, 10, "I bought the program, can I get a refund?") == "bought program refund"
    assert choose_label([], 1, 10, "What?? Where?!") == "what where"
    assert choose_label([], 1, 10, "🙏🙏") is None


class Members:
    """Messages put into clusters directly, the way the cluster service's store does."""

    def __init__(self, db: asyncpg.Connection, tenant_id: UUID) -> None:
        self.db, self.tenant_id = db, tenant_id
        self.numbers = itertools.count()
        self.vector = np.ones(384, dtype=np.float32) / np.sqrt(384)

    async def message(self, text: str, creator: str = CREATOR) -> store.Message:
        number = next(self.numbers)
        created_at = START + timedelta(seconds=number)
        row_id = await self.db.fetchval(
            "INSERT INTO streamchat_messages (tenant_id, message_id, creator_id, channel_cid, direction, text, "
            "message_created_at) VALUES ($1, $2, $3, $4, 'inbound', $5, $6) RETURNING id",
            self.tenant_id, f"m-{number}", creator, f"messaging:fan-{number}", text, created_at,
        )  # fmt: skip
        return store.Message(row_id, f"m-{number}", f"messaging:fan-{number}", created_at, b"h", False)

    async def join(self, text: str, cluster_id: UUID | None = None, creator: str = CREATOR) -> tuple[UUID, UUID]:
        """Add a message with `text` to `cluster_id` (a new cluster without one); returns both ids."""
        message = await self.message(text, creator)
        if cluster_id is None:
            cluster_id = await store.open_cluster(self.db, self.tenant_id, creator)
        await store.add_member(self.db, self.tenant_id, cluster_id, message, None, self.vector, b"h")
        joined = clusters.MemberVector(self.vector, message.channel_cid)
        await clusters.update_totals(self.db, cluster_id, joined=[joined])
        return cluster_id, message.id

    async def label(self, cluster_id: UUID) -> str | None:
        label: str | None = await self.db.fetchval("SELECT label FROM cluster_labels WHERE cluster_id = $1", cluster_id)
        return label


@pytest.mark.integration
async def test_a_label_follows_its_members_and_tells_clusters_apart(pool: asyncpg.Pool, tenant: Tenant) -> None:
    async with tenant_transaction(pool, tenant.id) as db:
        members = Members(db, tenant.id)
        no_terms, only = await members.join("Where is it??")  # stop words only: named by its first words
        await labels.refresh_labels(db)
        assert await members.label(no_terms) == "where is it"
        assert not await db.fetchval("SELECT stale FROM cluster_labels WHERE cluster_id = $1", no_terms)
        await clusters.remove_members(db, [only])

        refund, first = await members.join("Can I get a refund for the meal plan?")
        await labels.refresh_labels(db)
        assert await members.label(refund) == "refund meal plan"

        tour, _ = await members.join("any tour dates in the UK next year?")
        for text in ("tour dates for europe?", "when are the tour dates out", "meal plan tour?"):
            await members.join(text, tour)
        refunds = ["refund please, charged twice", "how do i request a refund", "refund for the program"]
        leaving = [(await members.join(text, refund))[1] for text in refunds]
        assert await labels.refresh_labels(db) == 2
        assert await members.label(tour) == "tour dates"
        before = await members.label(refund)
        assert before is not None and "refund" in before.split() and "tour" not in before

        # Members leave: the words only they used leave the label with them.
        await clusters.remove_members(db, [first, *leaving[:2]])
        assert await db.fetchval("SELECT stale FROM cluster_labels WHERE cluster_id = $1", refund)
        await labels.refresh_labels(db)
        after = await members.label(refund)
        assert after == "refund program" and after != before
        assert await db.fetchval(COUNTS_DRIFT) == 0 and await db.fetchval(CREATOR_DRIFT) == 0

        # A large cluster is relabelled when its size moved by a sixteenth, not on every change.
        large, _ = await members.join("tour merch in berlin?")
        for number in range(labels.RELABEL_ALWAYS_UP_TO + 4):
            await members.join(f"tour merch {number}?", large)
        await labels.refresh_labels(db)
        assert await members.label(large) == "tour merch"
        for _ in range(3):
            await members.join("vinyl!", large)
        assert await labels.refresh_labels(db) == 1
        assert await members.label(large) == "tour merch"
        for _ in range(3):
            await members.join("vinyl please", large)
        await labels.refresh_labels(db)
        assert await members.label(large) == "tour merch vinyl"
        assert not await db.fetchval("SELECT stale FROM cluster_labels WHERE cluster_id = $1", large)

        # The last member leaves: the cluster, its counts and its label go.
        await clusters.remove_members(db, [leaving[2]])
        assert await db.fetchval("SELECT count(*) FROM cluster_labels WHERE cluster_id = $1", refund) == 0
        assert await db.fetchval("SELECT count(*) FROM cluster_terms WHERE cluster_id = $1", refund) == 0
        assert await db.fetchval(CREATOR_DRIFT) == 0


@pytest.mark.integration
async def test_the_counts_equal_the_members_after_random_joins_moves_leaves_and_actions(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    words = ["stream", "tonight", "tickets", "tour", "merch", "vinyl", "guitar", "tabs", "refund", "password", "login",
             "album", "knee", "squats"]  # fmt: skip
    rng = random.Random(5)
    async with tenant_transaction(pool, tenant.id) as db:
        members = Members(db, tenant.id)
        where: dict[UUID, UUID] = {}
        for step in range(150):
            live = [cluster for cluster in set(where.values())]
            action = rng.random()
            if action < 0.45 or len(where) < 4:
                creator = rng.choice([CREATOR, "creator-kim"])
                target = rng.choice([None, *[c for c in live if await _open_of(db, c, creator)]])
                cluster_id, message = await members.join(" ".join(rng.sample(words, 3)), target, creator)
                where[message] = cluster_id
            elif action < 0.7:
                message = rng.choice(list(where))
                await clusters.remove_members(db, [message])
                del where[message]
            elif action < 0.95:
                message = rng.choice(list(where))
                creator = await db.fetchval("SELECT creator_id FROM clusters WHERE id = $1", where[message])
                targets = [c for c in live if c != where[message] and await _open_of(db, c, creator)]
                if targets:
                    target, source = rng.choice(targets), where[message]
                    channel = await db.fetchval(
                        "UPDATE cluster_members SET cluster_id = $2 WHERE message_id = $1 RETURNING channel_cid",
                        message, target,
                    )  # fmt: skip
                    moving = clusters.MemberVector(members.vector, channel)
                    await clusters.update_totals(db, source, left=[moving])
                    await clusters.update_totals(db, target, joined=[moving])
                    where[message] = target
            else:
                await db.execute("UPDATE clusters SET status = 'actioned' WHERE id = $1", rng.choice(live))
            assert await db.fetchval(COUNTS_DRIFT) == 0, f"cluster_terms drifted at step {step}"
            assert await db.fetchval(CREATOR_DRIFT) == 0, f"creator_terms drifted at step {step}"


@pytest.mark.integration
async def test_members_inserted_in_one_statement_are_counted_as_one_at_a_time(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    async with tenant_transaction(pool, tenant.id) as db:
        members = Members(db, tenant.id)
        tour, _ = await members.join("tour dates please")
        actioned, _ = await members.join("vinyl restock")
        await db.execute("UPDATE clusters SET status = 'actioned' WHERE id = $1", actioned)
        fresh = await store.open_cluster(db, tenant.id, CREATOR)
        joining = [("Refunds, refund!", fresh), ("tours dates in berlin?", tour), ("tour merch", tour),
                   ("refund now", fresh), ("vinyl again", actioned), ("tour refund", fresh)]  # fmt: skip
        placed = []
        for text, cluster_id in joining:
            message = await members.message(text)
            placed.append(Placed(message, cluster_id, message.channel_cid, members.vector, b"h", None, stored=False))
        # The cluster service's write: the batch's members in one INSERT.
        await store.write_changes(db, tenant.id, CREATOR, Changes(new_members=placed))
        assert await db.fetchval(COUNTS_DRIFT) == 0
        assert await db.fetchval(CREATOR_DRIFT) == 0
        counts = dict(await db.fetch("SELECT term, members FROM cluster_terms WHERE cluster_id = $1", fresh))
        assert counts == {"refund": 3, "tour": 1}, "a stem counts once a member, however often the member says it"
        assert await db.fetchval("SELECT word FROM cluster_terms WHERE cluster_id = $1 AND term = 'refund'", fresh) == (
            "refunds"
        ), "a new stem is shown in the earliest message's form"
        stale = await db.fetch("SELECT cluster_id FROM cluster_labels WHERE stale AND cluster_id = ANY($1::uuid[])",
                               [tour, actioned, fresh])  # fmt: skip
        assert {row["cluster_id"] for row in stale} == {tour, actioned, fresh}


@pytest.mark.integration
async def test_the_labeller_passes_over_a_label_a_writer_holds_instead_of_waiting(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    async with tenant_transaction(pool, tenant.id) as db:
        cluster_id, _ = await Members(db, tenant.id).join("tour dates please")
    async with tenant_transaction(pool, tenant.id) as writer:
        joining = Members(writer, tenant.id)
        joining.numbers = itertools.count(1)  # the first message was number 0
        await joining.join("tour dates for europe?", cluster_id)  # holds the label's row until the commit
        async with tenant_transaction(pool, tenant.id) as db:
            looked_at = await asyncio.wait_for(labels.refresh_labels(db), timeout=5)
        assert looked_at == 1
    async with tenant_transaction(pool, tenant.id) as db:
        row = await db.fetchrow("SELECT label, stale FROM cluster_labels WHERE cluster_id = $1", cluster_id)
        assert row["stale"] and row["label"] is None, "passed over: labelled in a later round"
        await labels.refresh_labels(db)
        assert await db.fetchval("SELECT label FROM cluster_labels WHERE cluster_id = $1", cluster_id) == "tour dates"


async def _open_of(db: asyncpg.Connection, cluster_id: UUID, creator: str) -> bool:
    found: bool = await db.fetchval(
        "SELECT status = 'open' AND creator_id = $2 FROM clusters WHERE id = $1", cluster_id, creator
    )
    return bool(found)


@pytest.mark.integration
async def test_the_labelled_fan_messages_get_labels_of_their_intent(pipeline: Pipeline) -> None:
    rows = [json.loads(line) for line in INTENTS.read_text().splitlines() if line.strip()]
    chosen = [row for row in rows if row["intent"] in EXPECTED_WORDS]
    random.Random(7).shuffle(chosen)
    for number, row in enumerate(chosen):
        pipeline.dm(f"fan-{number}", f"intent-{number}", row["text"], minute=number)
    await pipeline.settled("SELECT count(*) FROM cluster_members", len(chosen))
    await pipeline.settled("SELECT count(*) FROM cluster_labels WHERE stale OR label IS NULL", 0)

    clusters_of: dict[str, Counter[UUID]] = defaultdict(Counter)
    for number, row in enumerate(chosen):
        cluster_id = await pipeline.cluster_of(f"intent-{number}")
        assert cluster_id is not None
        clusters_of[row["intent"]][cluster_id] += 1
    async with tenant_transaction(pipeline.ingest.pool, pipeline.ingest.tenant.id) as db:
        labelled = await db.fetch("SELECT cluster_id, label FROM cluster_labels")
    found = {row["cluster_id"]: row["label"] for row in labelled}
    named = {intent: found[counts.most_common(1)[0][0]] for intent, counts in clusters_of.items()}
    for intent, label in named.items():
        assert set(label.split()) & EXPECTED_WORDS[intent], f"{intent}: {label!r}"
    assert len(set(named.values())) == len(named), named
