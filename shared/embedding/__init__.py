"""Embedding providers behind one interface, chosen by settings."""

from __future__ import annotations

from pathlib import Path

from shared.embedding.provider import Embedding, EmbeddingProvider, ProviderError
from shared.embedding.settings import EmbeddingSettings

__all__ = ["Embedding", "EmbeddingProvider", "EmbeddingSettings", "ProviderError", "create_provider"]


def create_provider(settings: EmbeddingSettings) -> EmbeddingProvider:
    """The provider `settings.embedding_provider` names; a wrong name fails with the valid ones."""
    name = settings.embedding_provider
    if name == "local":
        from shared.embedding.local import DIMENSIONS, LocalEmbedder

        if settings.embedding_dimensions != DIMENSIONS:
            raise ValueError(
                f"the local model makes {DIMENSIONS}-d vectors; set CHORUS_EMBEDDING_DIMENSIONS={DIMENSIONS}"
            )
        return LocalEmbedder(Path(settings.model_cache), settings.local_model_variant, settings.local_model_threads)
    if name == "openai":
        from shared.embedding.openai_provider import OpenAIEmbedder

        return OpenAIEmbedder(
            settings.openai_base_url,
            settings.openai_api_key,
            settings.openai_model,
            settings.embedding_dimensions,
            settings.openai_timeout_seconds,
        )
    if name == "hash":
        from shared.embedding.hashed import HashEmbedder

        return HashEmbedder(settings.embedding_dimensions)
    raise ValueError(f"CHORUS_EMBEDDING_PROVIDER={name!r} is not a provider; choose local, openai or hash")
