"""Hybrid's score fusion and pseudo-relevance feedback, on hand-made lists (no database needed)."""

from __future__ import annotations

import math
from uuid import NAMESPACE_URL, UUID, uuid5

import numpy as np
import pytest
from pgvector import Vector

from services.search.queries import Hit
from services.search.relevance import (
    FEEDBACK_TEMPERATURE,
    FEEDBACK_WEIGHT,
    VECTOR,
    feedback_similarities,
    feedback_weights,
    weighted,
)

NAMES = ("best", "second", "off", "near", "words")
ID: dict[str, UUID] = {name: uuid5(NAMESPACE_URL, name) for name in NAMES}


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_feedback_weights_share_the_weight_by_a_softmax_of_the_scores() -> None:
    best = [Hit({"id": ID["best"]}, score=0.9), Hit({"id": ID["second"]}, score=0.8), Hit({"id": ID["off"]}, score=0.2)]
    weights = feedback_weights(best)
    assert sum(weights.values()) == pytest.approx(FEEDBACK_WEIGHT)
    # 0.1 behind the best: e^-1 as much at the temperature 0.1.
    assert weights[ID["second"]] / weights[ID["best"]] == pytest.approx(math.exp(-0.1 / FEEDBACK_TEMPERATURE))
    assert weights[ID["off"]] < weights[ID["best"]] / 100


def test_feedback_lifts_what_resembles_the_best_results() -> None:
    query = unit(1, 0, 0)
    # "near" is as similar to the query as "off" is, but it points the way the two best do.
    vectors = {"best": unit(1, 0.3, 0), "second": unit(1, 0.35, 0), "off": unit(1, 0, 0.5), "near": unit(1, 0.5, 0)}
    hits = [Hit({"id": ID[name], VECTOR: Vector(vector.tolist())}, semantic_score=float(vector @ query))
            for name, vector in vectors.items()]  # fmt: skip
    keyword_hits = [Hit({"id": ID["best"]}, keyword_score=3.0), Hit({"id": ID["words"]}, keyword_score=1.0)]
    first = weighted(hits, keyword_hits, 0.08)
    assert [hit.row["id"] for hit in first[:2]] == [ID["best"], ID["second"]]
    similarities = feedback_similarities(query, hits, first[:2])
    assert set(similarities) == {ID[name] for name in vectors}  # a keyword-only hit has no vector
    weights = feedback_weights(first[:2])
    towards = query + weights[ID["best"]] * vectors["best"] + weights[ID["second"]] * vectors["second"]
    assert similarities[ID["near"]] == pytest.approx(float(vectors["near"] @ towards), rel=1e-5)
    assert similarities[ID["near"]] > similarities[ID["off"]]
    # A posted query vector need not be unit length: it counts as its direction.
    assert feedback_similarities(3 * query, hits, first[:2]) == pytest.approx(similarities)
    rescored = weighted(hits, keyword_hits, 0.08, similarities)
    order = [hit.row["id"] for hit in rescored]
    assert order.index(ID["near"]) < order.index(ID["off"])
    # The keyword-only hit counts the least similarity of the rest, plus its keyword share.
    words = next(hit for hit in rescored if hit.row["id"] == ID["words"])
    assert words.score == pytest.approx(min(similarities.values()) + 0.08 / 3)
