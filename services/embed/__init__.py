"""The embed service: batches documents through an embedding provider into pgvector."""
