"""The search service: serves semantic, keyword and hybrid search, clusters and conversations over HTTP."""
