"""The openai provider: OpenAI or any OpenAI-compatible /embeddings endpoint, through the official SDK."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openai

from shared.embedding.provider import Embedding, ProviderError
from shared.retry import retry_after_seconds

MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
MAX_TOKENS_PER_INPUT = 8191
# Offline there is no tokenizer for a remote model, so a byte counts as a token: every token
# covers at least one byte, which makes the count an upper bound and the limits safe.


def truncate_to_tokens(text: str, limit: int = MAX_TOKENS_PER_INPUT) -> tuple[str, bool]:
    """`text` cut at a character boundary to at most `limit` bytes; True when it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    return data[:limit].decode(errors="ignore"), True


def request_batches(texts: Sequence[str]) -> list[list[int]]:
    """Indices of `texts` grouped into requests within the input and token limits of the API."""
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index, text in enumerate(texts):
        size = max(len(text.encode()), 1)
        if current and (len(current) == MAX_INPUTS_PER_REQUEST or tokens + size > MAX_TOKENS_PER_REQUEST):
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += size
    if current:
        batches.append(current)
    return batches


class OpenAIEmbedder:
    """Embeds with `model` at `dimensions`; retrying is left to the caller, which knows the stream."""

    def __init__(self, base_url: str, api_key: str, model: str, dimensions: int, timeout: float) -> None:
        self.model = model
        self.dimensions = dimensions
        self.max_batch = MAX_INPUTS_PER_REQUEST
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unset", timeout=timeout, max_retries=0)

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        prepared = [truncate_to_tokens(text) for text in texts]
        results: list[Embedding | None] = [None] * len(texts)
        for batch in request_batches([text for text, _ in prepared]):
            vectors = await self._request([prepared[index][0] or " " for index in batch])
            for index, vector in zip(batch, vectors, strict=True):
                results[index] = Embedding(vector, truncated=prepared[index][1])
        return [result for result in results if result is not None]

    async def _request(self, inputs: list[str]) -> list[np.ndarray]:
        try:
            response = await self._client.embeddings.create(
                model=self.model, input=inputs, dimensions=self.dimensions, encoding_format="float"
            )
        except openai.RateLimitError as error:
            raise ProviderError(
                "the provider answered 429 Too Many Requests", retryable=True, retry_after=_retry_after(error.response)
            ) from error
        except openai.APIStatusError as error:
            retryable = error.status_code >= 500 or error.status_code in (408, 409)
            raise ProviderError(
                f"the provider answered {error.status_code}: {str(error.message)[:300]}",
                retryable=retryable,
                retry_after=_retry_after(error.response),
            ) from error
        except openai.APITimeoutError as error:
            raise ProviderError("the provider did not answer in time", retryable=True) from error
        except openai.APIConnectionError as error:
            raise ProviderError(f"cannot reach the provider: {error}", retryable=True) from error
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(inputs):
            raise ProviderError(f"asked for {len(inputs)} vectors, got {len(ordered)}", retryable=True)
        vectors = [np.asarray(item.embedding, dtype=np.float32) for item in ordered]
        if any(vector.shape != (self.dimensions,) for vector in vectors):
            raise ProviderError(f"the provider returned vectors that are not {self.dimensions}-d", retryable=False)
        return vectors

    async def close(self) -> None:
        await self._client.close()


def _retry_after(response: object) -> float | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    return retry_after_seconds(headers.get("retry-after"))
