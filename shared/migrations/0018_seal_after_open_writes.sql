-- A seal waits for the transactions already writing vectors (docs/embed.md "Vectors in segments").
-- A new row's segment is the growing one as its statement's snapshot sees it
-- (chorus_growing_segment(), the column's default), but the partitions a row can be routed to are
-- the ones its transaction last read from the catalog, which Postgres rereads only when the
-- transaction takes a lock it does not hold yet. A transaction that had written vectors already
-- (the embed service writes a batch of several tenants in one transaction) held every lock its
-- next insert needed: a seal committed in between made that insert name the new growing segment,
-- a partition the transaction did not know, and Postgres refused the batch ("no partition of
-- relation document_embeddings found for row"; seen once in `make bench-vectors` with four
-- writers, reproduced by tests/services/embed/test_segments.py). Holding SHARE on the table (ONLY:
-- its partitions are not locked) until it commits, a seal waits for the open writes to commit, and
-- a write that locks the table after it reads the new partition; vector writes that come meanwhile
-- wait for the seal (a few milliseconds). It first takes what attaching takes of documents and
-- tenants (SHARE ROW EXCLUSIVE, for the foreign keys the new partition clones): ingest stores a
-- document and then deletes its stale vectors, so taking document_embeddings first would make the
-- seal and ingest wait for each other. The seal waits at most its lock_timeout (200 ms) in all, as
-- before, and otherwise tries again at the keeper's next step.

CREATE OR REPLACE FUNCTION chorus_vector_seal(max_rows bigint) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '200ms'
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
    LOCK TABLE documents, tenants IN SHARE ROW EXCLUSIVE MODE;
    LOCK TABLE ONLY document_embeddings IN SHARE MODE;
    next_id := nextval('chorus_meta.vector_segment_ids');
    PERFORM chorus_vector_table('document_embeddings_s' || next_id, ARRAY[next_id]);
    EXECUTE format('ALTER TABLE document_embeddings ATTACH PARTITION %I FOR VALUES IN (%s)',
                   'document_embeddings_s' || next_id, next_id);
    UPDATE chorus_meta.vector_partitions SET state = 'sealed' WHERE name = growing;
    INSERT INTO chorus_meta.vector_partitions (name, segments, state) VALUES ('document_embeddings_s' || next_id, ARRAY[next_id], 'growing');
    RETURN growing;
END
$$;
