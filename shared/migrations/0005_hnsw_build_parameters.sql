-- The HNSW index of document vectors, rebuilt with m 12 and ef_construction 40 (pgvector's
-- defaults are 16 and 64). Every embedded document pays the index insert, and on this project's
-- 2-core reference machine it was the embed pipeline's limit. Measured there on 33,000 clustered
-- 384-dimension unit vectors: 247 inserts/s and recall@10 0.995 with the defaults, 437 inserts/s
-- and recall@10 0.987 with these (ef_search 40); m 8 gave 1,036 inserts/s but recall 0.90.
SET LOCAL maintenance_work_mem = '1GB';  -- the graph of a large table builds in memory
DROP INDEX document_embeddings_hnsw;
CREATE INDEX document_embeddings_hnsw ON document_embeddings
    USING hnsw (embedding vector_cosine_ops) WITH (m = 12, ef_construction = 40);
