"""Search's SQL building and rank fusion, without a database: filters become bind parameters, lists fuse by rank."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.search.queries import Filters, Hit, fuse, has_search_syntax

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 2, 1, tzinfo=UTC)


def test_no_filter_still_hides_deleted_documents() -> None:
    assert Filters().where(4) == ("d.deleted_at IS NULL", [])


def test_each_filter_is_a_numbered_parameter_in_a_fixed_order() -> None:
    filters = Filters(
        source="streamchat",
        content_type="message",
        creator_id="creator-jay",
        since=SINCE,
        until=UNTIL,
        tags={"topic": "tour"},
        metadata={"vip": True},
    )
    where, values = filters.where(3)
    assert where == (
        "d.deleted_at IS NULL AND d.source = $3 AND d.content_type = $4 AND d.creator_id = $5"
        " AND coalesce(d.occurred_at, d.created_at) >= $6 AND coalesce(d.occurred_at, d.created_at) < $7"
        " AND d.tags @> $8::jsonb AND d.metadata @> $9::jsonb"
    )
    assert values == ["streamchat", "message", "creator-jay", SINCE, UNTIL, {"topic": "tour"}, {"vip": True}]


def test_only_the_given_filters_take_parameters_numbered_from_the_first() -> None:
    where, values = Filters(creator_id="creator-jay", tags={"topic": "tour"}).where(1)
    assert where == "d.deleted_at IS NULL AND d.creator_id = $1 AND d.tags @> $2::jsonb"
    assert values == ["creator-jay", {"topic": "tour"}]


def test_a_value_is_never_written_into_the_sql() -> None:
    hostile = "x' OR 1=1; DROP TABLE documents; --"
    where, values = Filters(source=hostile, creator_id=hostile, tags={hostile: hostile}).where(2)
    assert hostile not in where
    assert values == [hostile, hostile, {hostile: hostile}]


def test_empty_tags_and_metadata_add_no_condition() -> None:
    assert Filters(tags={}, metadata={}).where(1) == ("d.deleted_at IS NULL", [])


@pytest.mark.parametrize(
    ("query", "syntax"),
    [('"exact phrase"', True), ("tour -vinyl", True), ("-vinyl", True), ("tour or vinyl", False),
     ("well-known tour", False), ("tour dates", False)],
)  # fmt: skip
def test_quotes_and_minus_words_are_search_syntax(query: str, syntax: bool) -> None:
    assert has_search_syntax(query) is syntax


def hit(name: str, semantic: float | None = None, keyword: float | None = None) -> Hit:
    return Hit(row={"id": name}, semantic_score=semantic, keyword_score=keyword)  # type: ignore[arg-type]


def test_fusion_adds_one_over_k_plus_rank_from_each_list() -> None:
    semantic_hits = [hit("a", semantic=0.9), hit("b", semantic=0.8)]
    keyword_hits = [hit("b", keyword=3.0), hit("c", keyword=1.0)]
    fused = fuse(semantic_hits, keyword_hits, k=10, limit=10)
    scores = {entry.row["id"]: entry.score for entry in fused}
    assert scores == pytest.approx({"a": 1 / 11, "b": 1 / 12 + 1 / 11, "c": 1 / 12})
    assert [entry.row["id"] for entry in fused] == ["b", "a", "c"]


def test_fusion_keeps_each_lists_score_and_place() -> None:
    fused = fuse([hit("a", semantic=0.9), hit("b", semantic=0.8)], [hit("b", keyword=3.0)], k=60, limit=10)
    by_id = {entry.row["id"]: entry for entry in fused}
    assert (by_id["b"].semantic_score, by_id["b"].semantic_rank) == (0.8, 2)
    assert (by_id["b"].keyword_score, by_id["b"].keyword_rank) == (3.0, 1)
    assert (by_id["a"].keyword_score, by_id["a"].keyword_rank) == (None, None)


def test_the_keyword_weight_scales_the_keyword_lists_share() -> None:
    semantic_hits = [hit("s", semantic=0.9)]
    keyword_hits = [hit("k", keyword=2.0)]
    assert [entry.row["id"] for entry in fuse(semantic_hits, keyword_hits, k=60, limit=2, keyword_weight=2.0)] == [
        "k", "s"
    ]  # fmt: skip
    light = fuse(semantic_hits, keyword_hits, k=60, limit=2, keyword_weight=0.5)
    assert [entry.row["id"] for entry in light] == ["s", "k"]
    assert light[1].score == pytest.approx(0.5 / 61)


def test_equal_scores_are_ordered_by_id_and_the_limit_cuts_the_tail() -> None:
    fused = fuse([hit("m", semantic=0.5)], [hit("d", keyword=0.5)], k=60, limit=1)
    assert [entry.row["id"] for entry in fused] == ["d"]
    assert fuse([], [], k=60, limit=5) == []
