-- A segment's HNSW index is built by its size (docs/embed.md, "A million vectors"):
-- * A partition of more than 150,000 vectors (a collapse, a merge of the top tiers) gets a wider
--   graph, m 16 and ef_construction 128. Built with 0013's m 12 and ef_construction 40, one
--   index of a million clustered vectors found 0.60 of the true ten nearest at ef_search 64 and
--   no more than 0.85 at 1,000; the wider graph finds 0.97 at 64, for three times the build (12
--   minutes on two cores). Smaller partitions keep the narrow graph: 0.97 at 100,000.
-- * The build takes the memory its graph needs, up to the session's maintenance_work_mem or
--   512 MB, whichever is more (the embed service sets CHORUS_EMBED_SEGMENT_BUILD_MEMORY_MB, at
--   least 512, for its builds). pgvector builds the graph in maintenance_work_mem and, once the graph outgrows it,
--   goes on by inserting into the index it has written, several times slower. 0013 fixed 512 MB,
--   which holds about 250,000 vectors of 384 dimensions.

ALTER FUNCTION chorus_vector_build(text[], smallint) RESET maintenance_work_mem;

CREATE OR REPLACE FUNCTION chorus_vector_index(table_name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    vectors bigint;
    vector_bytes bigint;
    wide boolean;
    allowed_kb bigint := greatest(pg_size_bytes(current_setting('maintenance_work_mem')), pg_size_bytes('512MB')) / 1024;
BEGIN
    EXECUTE format('SELECT count(*), coalesce(max(pg_column_size(embedding)), 0) FROM %I', table_name)
        INTO vectors, vector_bytes;
    -- chorus.wide_graph_vectors moves the bound (the tests build small partitions both ways).
    wide := vectors > coalesce(nullif(current_setting('chorus.wide_graph_vectors', true), '')::bigint, 150000);
    -- Measured with pgvector 0.8: the graph holds each vector and about 580 bytes of links and
    -- bookkeeping at m 12, 710 at m 16 (2,124 and 2,253 bytes per vector of 384 dimensions).
    PERFORM set_config('maintenance_work_mem',
                       least(allowed_kb, vectors * (vector_bytes + CASE WHEN wide THEN 768 ELSE 640 END) / 1024
                                         + 16384)::text || 'kB',
                       true);  -- until the build's transaction ends
    EXECUTE format('CREATE INDEX %I ON %I USING hnsw (embedding vector_cosine_ops) WITH (%s)',
                   table_name || '_hnsw', table_name,
                   CASE WHEN wide THEN 'm = 16, ef_construction = 128' ELSE 'm = 12, ef_construction = 40' END);
END
$$;
