-- Vectors in segments (docs/embed.md): document_embeddings becomes a table list-partitioned by
-- `segment`. New vectors go to the one growing partition, which has no vector index (an insert
-- pays no graph maintenance; searches read it exactly); the embed service's maintenance seals it
-- at a size, builds a sealed partition's HNSW index aside in bulk and swaps it in, and merges
-- small indexed partitions into larger ones, so that a search visits a bounded number of indexes.
-- A document may have several vectors (`chunk`); the key leaves room for them.
--
-- The services' role owns nothing, so the steps that create, index and swap partitions are the
-- SECURITY DEFINER functions below; the partitions are granted to nobody and are reached only
-- through document_embeddings, under its row-level security. The bookkeeping tables hold no
-- tenant's data and live in chorus_meta.

-- The table of 0001, its rows and its HNSW index become the first partition, segment 1.
ALTER TABLE document_embeddings RENAME TO document_embeddings_s1;
ALTER TABLE document_embeddings_s1 RENAME CONSTRAINT document_embeddings_pkey TO document_embeddings_s1_pkey;
ALTER INDEX document_embeddings_hnsw RENAME TO document_embeddings_s1_hnsw;
ALTER INDEX document_embeddings_reuse RENAME TO document_embeddings_s1_reuse;
REVOKE ALL ON document_embeddings_s1 FROM chorus_service;
ALTER TABLE document_embeddings_s1
    ADD COLUMN segment bigint NOT NULL DEFAULT 1 CHECK (segment IN (1)),
    ADD COLUMN chunk smallint NOT NULL DEFAULT 0,
    DROP CONSTRAINT document_embeddings_s1_pkey,
    ADD PRIMARY KEY (document_id, chunk, segment);

CREATE TABLE chorus_meta.vector_partitions (
    name        text PRIMARY KEY,
    segments    bigint[] NOT NULL,
    state       text NOT NULL CHECK (state IN ('growing', 'sealed', 'indexed')),
    tier        smallint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX vector_partitions_one_growing ON chorus_meta.vector_partitions ((true)) WHERE state = 'growing';
-- A row here is a partition built aside (its rows and indexes complete, committed with this row)
-- that is to replace `sources`; a build that was cut short left neither the table nor the row.
CREATE TABLE chorus_meta.vector_builds (
    name      text PRIMARY KEY,
    sources   text[] NOT NULL,
    segments  bigint[] NOT NULL,
    tier      smallint NOT NULL,
    built_at  timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE chorus_meta.vector_segment_ids START 2;

CREATE FUNCTION chorus_growing_segment() RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT segments[1] FROM chorus_meta.vector_partitions WHERE state = 'growing' $$;

CREATE TABLE document_embeddings (
    segment       bigint NOT NULL DEFAULT chorus_growing_segment(),
    document_id   uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    chunk         smallint NOT NULL DEFAULT 0,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model         text NOT NULL,
    dimensions    integer NOT NULL,
    content_hash  bytea NOT NULL,
    truncated     boolean NOT NULL DEFAULT false,
    embedding     vector({{embedding_dim}}) NOT NULL,
    embedded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, chunk, segment)
) PARTITION BY LIST (segment);
CREATE INDEX document_embeddings_reuse ON document_embeddings (tenant_id, model, content_hash);
ALTER TABLE document_embeddings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON document_embeddings
    USING (tenant_id = chorus_current_tenant()) WITH CHECK (tenant_id = chorus_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON document_embeddings TO chorus_service;
GRANT USAGE ON SCHEMA chorus_meta TO chorus_service;
GRANT SELECT ON chorus_meta.vector_partitions, chorus_meta.vector_builds TO chorus_service;

CREATE FUNCTION chorus_vector_columns() RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = public, pg_temp
    AS $$ SELECT 'segment, document_id, chunk, tenant_id, model, dimensions, content_hash, truncated, embedding, embedded_at'::text $$;

-- A standalone table shaped like a partition holding `segments`, with every index and constraint
-- the parent asks of a partition, so that attaching it neither scans it nor builds anything.
CREATE FUNCTION chorus_vector_table(table_name text, segments bigint[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE document_embeddings INCLUDING DEFAULTS, '
                   'CHECK (segment IN (%s)), PRIMARY KEY (document_id, chunk, segment))',
                   table_name, array_to_string(segments, ','));
    EXECUTE format('CREATE INDEX ON %I (tenant_id, model, content_hash)', table_name);
    -- Only the table's own policy applies to a query of document_embeddings; this one guards
    -- the partition should it ever be granted to anyone.
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = chorus_current_tenant()) '
                   'WITH CHECK (tenant_id = chorus_current_tenant())', table_name);
END
$$;

CREATE FUNCTION chorus_vector_foreign_keys(table_name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    -- NOT VALID and then validated: adding takes a lock on documents that stops its writes, so
    -- it is taken only for a moment, and the check of the rows runs under a lock that does not.
    EXECUTE format('ALTER TABLE %1$I ADD CONSTRAINT %2$I FOREIGN KEY (document_id) REFERENCES documents (id) '
                   'ON DELETE CASCADE NOT VALID, ADD CONSTRAINT %3$I FOREIGN KEY (tenant_id) REFERENCES tenants (id) '
                   'ON DELETE CASCADE NOT VALID', table_name, table_name || '_document_fk', table_name || '_tenant_fk');
    EXECUTE format('ALTER TABLE %I VALIDATE CONSTRAINT %I', table_name, table_name || '_document_fk');
    EXECUTE format('ALTER TABLE %I VALIDATE CONSTRAINT %I', table_name, table_name || '_tenant_fk');
END
$$;

CREATE FUNCTION chorus_vector_index(table_name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    EXECUTE format('CREATE INDEX %I ON %I USING hnsw (embedding vector_cosine_ops) '
                   'WITH (m = 12, ef_construction = 40)', table_name || '_hnsw', table_name);
END
$$;

-- The first growing partition. Attaching takes SHARE UPDATE EXCLUSIVE on document_embeddings:
-- reads and writes go on.
SELECT chorus_vector_table('document_embeddings_s2', ARRAY[nextval('chorus_meta.vector_segment_ids')]);
SELECT chorus_vector_foreign_keys('document_embeddings_s2');
ALTER TABLE document_embeddings ATTACH PARTITION document_embeddings_s1 FOR VALUES IN (1);
ALTER TABLE document_embeddings ATTACH PARTITION document_embeddings_s2 FOR VALUES IN (2);
-- The rows of 0001 (all an existing database had) keep their index, never merged (tier 100).
INSERT INTO chorus_meta.vector_partitions (name, segments, state, tier) VALUES
    ('document_embeddings_s1', '{1}', 'indexed', 100), ('document_embeddings_s2', '{2}', 'growing', 0);

-- Seal the growing partition once it holds `max_rows`: a new empty one takes the writes from the
-- commit on. Returns the sealed partition's name, or NULL when it is not full yet.
CREATE FUNCTION chorus_vector_seal(max_rows bigint) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '2s'
    AS $$
DECLARE
    growing text;
    stored bigint;
    next_id bigint;
BEGIN
    SELECT name INTO growing FROM chorus_meta.vector_partitions WHERE state = 'growing' FOR UPDATE;
    EXECUTE format('SELECT count(*) FROM %I', growing) INTO stored;
    IF stored < max_rows THEN
        RETURN NULL;
    END IF;
    next_id := nextval('chorus_meta.vector_segment_ids');
    PERFORM chorus_vector_table('document_embeddings_s' || next_id, ARRAY[next_id]);
    PERFORM chorus_vector_foreign_keys('document_embeddings_s' || next_id);
    EXECUTE format('ALTER TABLE document_embeddings ATTACH PARTITION %I FOR VALUES IN (%s)',
                   'document_embeddings_s' || next_id, next_id);
    UPDATE chorus_meta.vector_partitions SET state = 'sealed' WHERE name = growing;
    INSERT INTO chorus_meta.vector_partitions (name, segments, state) VALUES ('document_embeddings_s' || next_id, ARRAY[next_id], 'growing');
    RETURN growing;
END
$$;

-- Build, aside, one indexed partition holding the rows of `sources` (sealed or indexed
-- partitions): copy, HNSW index in bulk, foreign keys checked once. Nothing reads or writes the
-- new table until chorus_vector_swap; the sources take reads and writes meanwhile. Everything
-- commits together with its chorus_meta.vector_builds row, or nothing does.
CREATE FUNCTION chorus_vector_build(sources text[], new_tier smallint) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET maintenance_work_mem = '512MB' SET lock_timeout = '2s'
    AS $$
DECLARE
    built text := 'document_embeddings_s' || nextval('chorus_meta.vector_segment_ids');
    held bigint[];
    free bigint;
    source text;
BEGIN
    SELECT array_agg(s ORDER BY s), count(DISTINCT p.name) INTO held, free
    FROM chorus_meta.vector_partitions p, unnest(p.segments) s
    WHERE p.name = ANY(sources) AND p.state IN ('sealed', 'indexed')
        AND NOT EXISTS (SELECT FROM chorus_meta.vector_builds b WHERE p.name = ANY(b.sources));
    IF held IS NULL OR free <> cardinality(sources) THEN
        RAISE EXCEPTION 'partitions % are not all sealed and free', sources;
    END IF;
    PERFORM chorus_vector_table(built, held);
    -- Autovacuum would find the new table full of fresh rows and hold a lock on it that the swap
    -- must wait for; it is analyzed here and left to autovacuum once attached.
    EXECUTE format('ALTER TABLE %I SET (autovacuum_enabled = false)', built);
    FOREACH source IN ARRAY sources LOOP
        EXECUTE format('INSERT INTO %1$I (%3$s) SELECT %3$s FROM %2$I', built, source, chorus_vector_columns());
    END LOOP;
    PERFORM chorus_vector_index(built);
    PERFORM chorus_vector_foreign_keys(built);
    EXECUTE format('ANALYZE %I', built);
    INSERT INTO chorus_meta.vector_builds (name, sources, segments, tier) VALUES (built, sources, held, new_tier);
    RETURN built;
END
$$;

-- Put a built partition in the place of its sources, in one short transaction: under an
-- exclusive lock on document_embeddings (at most `lock_timeout` of waiting, so a long reader
-- makes the swap wait, never the queries behind it), the rows the sources lost or gained since
-- the copy are applied to it, the sources dropped and it attached.
CREATE FUNCTION chorus_vector_swap(built text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '500ms'
    AS $$
DECLARE
    build chorus_meta.vector_builds;
    source text;
BEGIN
    SELECT * INTO build FROM chorus_meta.vector_builds WHERE name = built FOR UPDATE;
    -- ONLY: the partitions that are not swapped (the growing one, which autovacuum visits often)
    -- need no lock of this step's.
    LOCK TABLE ONLY document_embeddings IN ACCESS EXCLUSIVE MODE;
    FOREACH source IN ARRAY build.sources LOOP
        -- Rows are never updated in place (a new vector is a delete and an insert), so a row's
        -- key and embedded_at say whether the copy still holds it.
        EXECUTE format('DELETE FROM %1$I b WHERE b.segment IN (SELECT unnest(segments) FROM chorus_meta.vector_partitions '
                       'WHERE name = %2$L) AND NOT EXISTS (SELECT FROM %2$I s WHERE s.document_id = b.document_id '
                       'AND s.chunk = b.chunk AND s.segment = b.segment AND s.embedded_at = b.embedded_at)',
                       built, source);
        EXECUTE format('INSERT INTO %1$I (%3$s) SELECT %3$s FROM %2$I s WHERE NOT EXISTS (SELECT FROM %1$I b '
                       'WHERE b.document_id = s.document_id AND b.chunk = s.chunk AND b.segment = s.segment '
                       'AND b.embedded_at = s.embedded_at)', built, source, chorus_vector_columns());
        EXECUTE format('ALTER TABLE document_embeddings DETACH PARTITION %I', source);
        EXECUTE format('DROP TABLE %I', source);
    END LOOP;
    EXECUTE format('ALTER TABLE document_embeddings ATTACH PARTITION %I FOR VALUES IN (%s)',
                   built, array_to_string(build.segments, ','));
    EXECUTE format('ALTER TABLE %I RESET (autovacuum_enabled)', built);
    DELETE FROM chorus_meta.vector_partitions WHERE name = ANY(build.sources);
    INSERT INTO chorus_meta.vector_partitions (name, segments, state, tier) VALUES (built, build.segments, 'indexed', build.tier);
    DELETE FROM chorus_meta.vector_builds WHERE name = built;
END
$$;

-- Give up a built partition (its sources stay as they are).
CREATE FUNCTION chorus_vector_discard(built text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    DELETE FROM chorus_meta.vector_builds WHERE name = built;
    EXECUTE format('DROP TABLE IF EXISTS %I', built);
END
$$;

REVOKE ALL ON FUNCTION chorus_growing_segment(), chorus_vector_columns(), chorus_vector_table(text, bigint[]),
    chorus_vector_foreign_keys(text), chorus_vector_index(text), chorus_vector_seal(bigint),
    chorus_vector_build(text[], smallint), chorus_vector_swap(text), chorus_vector_discard(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chorus_growing_segment(), chorus_vector_seal(bigint), chorus_vector_build(text[], smallint),
    chorus_vector_swap(text), chorus_vector_discard(text) TO chorus_service;
