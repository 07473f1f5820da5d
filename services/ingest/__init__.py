"""The ingest service: receives webhooks and producer events, verifies, normalizes and dedupes them."""
