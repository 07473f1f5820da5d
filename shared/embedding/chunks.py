"""Passages of a long text, each embedded on its own: the model sees a document whole.

The local model reads 256 tokens and ignores the rest; a transcript or a vCon analysis runs far
past that. A text of up to PASSAGE_WORDS words is one passage, itself. A longer one is cut into
passages of PASSAGE_WORDS words, each starting OVERLAP_WORDS before the previous one ends, so a
sentence at a cut is whole in one of them. The embed service stores a vector per passage
(document_embeddings.chunk is the passage's number); search names a document's nearest passage
and shows it as the snippet. Both compute the passages with this function, so changing the
constants means re-embedding every long document: stored chunk numbers would point elsewhere.

160 words is about 210 of the model's tokens in English prose, leaving room for longer words and
the two special tokens. MAX_PASSAGES bounds one document's vectors (and provider calls): a text at
the 200,000-character cap has about 250 passages; those past the bound are found by keyword search only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from shared.embedding.provider import Embedding

PASSAGE_WORDS = 160
OVERLAP_WORDS = 32
MAX_PASSAGES = 64

_WORD = re.compile(r"\S+")


def passage_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the text's passages, in order; one span for a short text."""
    words = [match.span() for match in _WORD.finditer(text)]
    if len(words) <= PASSAGE_WORDS:
        return [(0, len(text))]
    spans = []
    step = PASSAGE_WORDS - OVERLAP_WORDS
    for first in range(0, len(words), step):
        last = min(first + PASSAGE_WORDS, len(words)) - 1
        spans.append((words[first][0], words[last][1]))
        if last == len(words) - 1 or len(spans) == MAX_PASSAGES:
            break
    return spans


def passages(text: str) -> list[str]:
    """The text of each passage: what the model embeds."""
    return [text[start:end] for start, end in passage_spans(text)]


async def embed_passages(
    texts: Sequence[str], embed: Callable[[list[str]], Awaitable[list[Embedding]]], max_batch: int
) -> list[list[Embedding]]:
    """Each text's passages embedded, in order: the passages of all texts go to `embed` together,
    at most `max_batch` in a call, so a long text does not cost a call of its own."""
    owned = [(owner, text) for owner, whole in enumerate(texts) for text in passages(whole)]
    embedded: list[list[Embedding]] = [[] for _ in texts]
    for start in range(0, len(owned), max_batch):
        part = owned[start : start + max_batch]
        for (owner, _), embedding in zip(part, await embed([text for _, text in part]), strict=True):
            embedded[owner].append(embedding)
    return embedded


def document_vector(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """One unit vector for a whole document (what the cluster service compares): its passages'
    mean, normalized; a one-passage document's own vector."""
    if len(vectors) == 1:
        return vectors[0]
    mean = np.mean(np.stack(vectors), axis=0)
    norm = float(np.linalg.norm(mean))
    unit: np.ndarray = (mean / norm if norm > 0 else mean).astype(np.float32)
    return unit
