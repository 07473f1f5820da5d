-- Sealing no longer deadlocks with writers (docs/embed.md "Vectors in segments"). The new growing
-- partition used to get foreign keys of its own before it was attached; attaching then matched
-- them to the parent's and dropped their triggers on documents and tenants, which takes ACCESS
-- EXCLUSIVE on both while the seal already held documents. A writer that had inserted a row
-- referencing tenants and then waited to insert into documents closed the cycle: Postgres broke it
-- after a second, every few seals under load, and every writer queued behind waited that second.
-- Attached bare, the empty partition takes the parent's foreign keys as clones, which need no
-- trigger of documents or tenants dropped. Seal and swap also wait at most 200 ms for a lock, well
-- under the deadlock check's second, and try again at the keeper's next step.

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
    next_id := nextval('chorus_meta.vector_segment_ids');
    PERFORM chorus_vector_table('document_embeddings_s' || next_id, ARRAY[next_id]);
    EXECUTE format('ALTER TABLE document_embeddings ATTACH PARTITION %I FOR VALUES IN (%s)',
                   'document_embeddings_s' || next_id, next_id);
    UPDATE chorus_meta.vector_partitions SET state = 'sealed' WHERE name = growing;
    INSERT INTO chorus_meta.vector_partitions (name, segments, state) VALUES ('document_embeddings_s' || next_id, ARRAY[next_id], 'growing');
    RETURN growing;
END
$$;

ALTER FUNCTION chorus_vector_swap(text) SET lock_timeout = '200ms';
