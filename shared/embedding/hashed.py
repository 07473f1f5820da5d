"""The hash provider: a vector derived from the text's SHA-256, no model at all.

For measuring the pipeline's own capacity (`make bench-embed`) and for running Chorus where no
model is wanted; equal texts get equal vectors, unrelated texts near-orthogonal ones, and
nothing about meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.embedding.provider import Embedding
from shared.hashing import text_hash


class HashEmbedder:
    def __init__(self, dimensions: int) -> None:
        self.model = "sha256-hash"
        self.dimensions = dimensions
        self.max_batch = 4096

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        return [Embedding(self.vector(text)) for text in texts]

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(text_hash(text)[:8], "big")
        vector = np.random.default_rng(seed).standard_normal(self.dimensions).astype(np.float32)
        return vector / np.linalg.norm(vector)

    async def close(self) -> None:
        return None
