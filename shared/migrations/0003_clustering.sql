-- Online clustering: each membership keeps the vector it joined with and the text hash it
-- was computed from, so a cluster's centroid and size can always be recomputed from its
-- members, and a replayed record is recognised as already applied.
ALTER TABLE cluster_members
    ADD COLUMN embedding     vector({{embedding_dim}}) NOT NULL,
    ADD COLUMN content_hash  bytea NOT NULL,
    ADD COLUMN message_created_at timestamptz NOT NULL;
CREATE INDEX cluster_members_channel ON cluster_members (tenant_id, channel_cid, message_created_at DESC);

-- The centroid is the plain mean of the members' unit vectors: its inner product with a new
-- vector is that vector's average cosine similarity to the members (average linkage).
-- Only open clusters take members, so only they are indexed.
CREATE INDEX clusters_open_centroid ON clusters USING hnsw (centroid vector_ip_ops) WHERE status = 'open';
