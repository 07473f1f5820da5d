"""Passages of long texts: where they start and end, and how their vectors are asked for."""

from __future__ import annotations

import numpy as np

from shared.embedding import Embedding
from shared.embedding.chunks import (
    MAX_PASSAGES,
    OVERLAP_WORDS,
    PASSAGE_WORDS,
    document_vector,
    embed_passages,
    passage_spans,
    passages,
)


def _words(count: int, start: int = 0) -> str:
    return " ".join(f"w{n}" for n in range(start, start + count))


def test_a_text_within_the_window_is_one_passage_itself() -> None:
    text = "  " + _words(PASSAGE_WORDS) + "\n"
    assert passages(text) == [text]
    assert passages("") == [""]


def test_a_long_text_is_cut_into_overlapping_passages_that_cover_every_word() -> None:
    text = _words(400)
    cut = passages(text)
    assert [len(part.split()) for part in cut] == [160, 160, 144]
    assert [part.split()[0] for part in cut] == ["w0", f"w{PASSAGE_WORDS - OVERLAP_WORDS}", "w256"]
    assert cut[0].split()[-OVERLAP_WORDS:] == cut[1].split()[:OVERLAP_WORDS]
    assert {word for part in cut for word in part.split()} == set(text.split())
    assert all(text[start:end] == part for (start, end), part in zip(passage_spans(text), cut, strict=True))


def test_a_text_one_word_past_the_window_gets_a_second_passage() -> None:
    cut = passages(_words(PASSAGE_WORDS + 1))
    assert len(cut) == 2 and cut[1].split()[-1] == f"w{PASSAGE_WORDS}"


def test_the_passages_of_one_text_are_bounded() -> None:
    assert len(passages(_words(PASSAGE_WORDS * MAX_PASSAGES * 2))) == MAX_PASSAGES


async def test_passages_of_all_texts_share_the_provider_calls_and_come_back_to_their_text() -> None:
    calls: list[list[str]] = []

    async def embed(texts: list[str]) -> list[Embedding]:
        calls.append(texts)
        # A passage's "vector": its word count and the number of its first word.
        return [Embedding(np.array([len(text.split()), int(text.split()[0][1:])], np.float32)) for text in texts]

    texts = ["w7 short", _words(400, start=1000), "w9 also short"]
    embedded = await embed_passages(texts, embed, max_batch=2)
    assert [len(call) for call in calls] == [2, 2, 1]  # 5 passages, 2 a call
    assert [[list(e.vector) for e in parts] for parts in embedded] == [
        [[2.0, 7.0]],
        [[160.0, 1000.0], [160.0, 1128.0], [144.0, 1256.0]],
        [[3.0, 9.0]],
    ]


def test_a_document_vector_is_the_normalized_mean_of_its_passages() -> None:
    one = np.array([1.0, 0.0], np.float32)
    assert document_vector([one]) is one
    both = document_vector([one, np.array([0.0, 1.0], np.float32)])
    assert np.allclose(both, [2**-0.5, 2**-0.5]) and both.dtype == np.float32
