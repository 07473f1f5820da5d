"""The embed service's metrics."""

from prometheus_client import Counter, Histogram

from shared.metrics import KNOWN_SOURCES, Bounded

BATCH_SIZE = Histogram(
    "chorus_embed_batch_size", "Documents in a batch.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
PROVIDER_SECONDS = Histogram(
    "chorus_embed_provider_seconds", "Time of one provider call.", ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
PROVIDER_ERRORS = Counter(
    "chorus_embed_provider_errors_total", "Failed provider calls.", ["model", "error_class", "retryable"]
)
RETRIES = Counter("chorus_embed_retries_total", "Provider calls that were tried again.", ["model"])
CACHE_HITS = Counter("chorus_embed_cache_hits_total", "Texts whose vector was reused instead of computed.", ["model"])
TEXTS_EMBEDDED = Counter("chorus_embed_texts_total", "Texts sent to the provider.", ["model"])
ROWS_WRITTEN = Counter("chorus_embed_rows_written_total", "Documents whose vector was written.", ["model"])
DB_WRITE_SECONDS = Histogram(
    "chorus_embed_db_write_seconds", "Time of one batch's database transaction.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)  # fmt: skip
FRESHNESS = Bounded(
    Histogram(
        "chorus_freshness_seconds",
        "Seconds from an event's arrival at ingest to its document being searchable by meaning.",
        # No tenant label: /metrics would list every tenant's id, and a histogram per tenant is
        # 14 series each. One tenant's is in Postgres: documents.updated_at against document_embeddings.embedded_at.
        ["source"],
        buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
    ),
    KNOWN_SOURCES,
)
