"""Settings of the embed service."""

from __future__ import annotations

from dataclasses import dataclass

from services.embed.segments import BUILD_MEMORY_MB
from shared.embedding.settings import EmbeddingSettings
from shared.settings import setting


@dataclass(frozen=True)
class EmbedSettings(EmbeddingSettings):
    port: int = setting("CHORUS_EMBED_PORT", 8082, "Port of the embed service's HTTP server.")
    batch_size: int = setting("CHORUS_EMBED_BATCH_SIZE", 64, "Most documents embedded and written in one batch.")
    batch_wait_ms: int = setting(
        "CHORUS_EMBED_BATCH_WAIT_MS", 50, "Longest wait for a batch to fill after its first document arrives."
    )
    max_attempts: int = setting(
        "CHORUS_EMBED_MAX_ATTEMPTS", 10, "Provider attempts per batch before its documents are dead-lettered."
    )
    backoff_seconds: float = setting(
        "CHORUS_EMBED_BACKOFF_SECONDS", 1.0, "First retry delay; it doubles (with jitter) up to the cap."
    )
    backoff_cap_seconds: float = setting(
        "CHORUS_EMBED_BACKOFF_CAP_SECONDS", 60.0, "Longest delay between two provider attempts."
    )
    segment_rows: int = setting(
        "CHORUS_EMBED_SEGMENT_ROWS",
        500,
        "Vectors the growing segment (searched exactly, no index) takes before it is sealed and indexed.",
        minimum=1,
    )
    segment_merge_factor: int = setting(
        "CHORUS_EMBED_SEGMENT_MERGE_FACTOR",
        4,
        "Indexed segments of one tier merged into one of the next tier.",
        minimum=2,
    )
    segment_collapse_share: float = setting(
        "CHORUS_EMBED_SEGMENT_COLLAPSE_SHARE",
        0.25,
        "Share of the largest indexed segment's rows the others must hold for a quiet store to rebuild all as one.",
        minimum=0.0,
    )
    segment_collapse_after_seconds: float = setting(
        "CHORUS_EMBED_SEGMENT_COLLAPSE_AFTER_SECONDS",
        30.0,
        "Seconds with no segment to seal, index or merge before the indexed segments may be rebuilt as one.",
        minimum=0.0,
    )
    segment_build_memory_mb: int = setting(
        "CHORUS_EMBED_SEGMENT_BUILD_MEMORY_MB",
        BUILD_MEMORY_MB,
        "Most memory (MB) one segment build may take in Postgres; a build takes what its graph needs, up to this.",
        minimum=512,
    )
    segment_check_seconds: float = setting(
        "CHORUS_EMBED_SEGMENT_CHECK_SECONDS",
        1.0,
        "How often the embed service checks whether segments need upkeep.",
        minimum=0.05,
    )
