"""What an embedding provider is: texts in, unit vectors out, and errors that say whether to retry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Embedding:
    """One text's vector; `truncated` when only the start of the text was embedded."""

    vector: np.ndarray
    truncated: bool = False


class ProviderError(Exception):
    """A failed embedding request: `retryable` for 429, 5xx, timeouts and lost connections."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class EmbeddingProvider(Protocol):
    """A model that embeds texts; `model` and `dimensions` are recorded on every row it writes."""

    model: str
    dimensions: int
    max_batch: int

    async def embed(self, texts: Sequence[str]) -> list[Embedding]: ...

    async def close(self) -> None: ...
