"""Settings of the embedding provider, shared by the embed service and the search service's queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.settings import CommonSettings, setting


@dataclass(frozen=True)
class EmbeddingSettings(CommonSettings):
    embedding_provider: Literal["local", "openai", "hash"] = setting(
        "CHORUS_EMBEDDING_PROVIDER", "local", "Embedding provider: local (offline all-MiniLM-L6-v2), openai, or hash."
    )
    embedding_dimensions: int = setting(
        "CHORUS_EMBEDDING_DIMENSIONS", 384, "Vector dimensions; must match the database's vector columns."
    )
    local_model_variant: Literal["int8", "fp32"] = setting(
        "CHORUS_LOCAL_MODEL_VARIANT", "int8", "ONNX variant of the local model: int8 (per-channel) or fp32."
    )
    local_model_threads: int = setting(
        "CHORUS_LOCAL_MODEL_THREADS", 2, "CPU cores the local model may use (a single-threaded session on each)."
    )
    model_cache: str = setting(
        "CHORUS_MODEL_CACHE", ".chorus/models", "Folder where the local model's ONNX files are built and kept."
    )
    openai_base_url: str = setting(
        "CHORUS_OPENAI_BASE_URL", "https://api.openai.com/v1", "Base URL of an OpenAI-compatible /embeddings API."
    )
    openai_api_key: str = setting("CHORUS_OPENAI_API_KEY", "", "API key for the openai provider.", secret=True)
    openai_model: str = setting("CHORUS_OPENAI_MODEL", "text-embedding-3-small", "Model of the openai provider.")
    openai_timeout_seconds: float = setting(
        "CHORUS_OPENAI_TIMEOUT_SECONDS", 30.0, "Seconds before an embeddings request counts as timed out."
    )
