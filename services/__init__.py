"""The four Chorus services: ingest, embed, cluster and search."""
