-- A statement's new members have their words counted at once (docs/cluster.md "Throughput"): the
-- cluster service inserts a batch's members in one statement, and counting each row on its own
-- (migration 0010's row trigger: four statements a member) was most of that insert's time.
-- Updates and deletes of members are still counted a row at a time, as before.
--
-- The same counts as the row trigger: each member adds 1 to each distinct stem of its words in its
-- cluster; a stem new to an open cluster adds 1 to the creator's count of clusters that have it;
-- every cluster a member joined is stale. A stem new to a cluster is shown in the form the earliest
-- message used (the row trigger kept the form of whichever row came first). Rows are written in
-- the order of their keys, as the row trigger did, so two writers of one creator's counts wait for
-- each other instead of deadlocking.

CREATE FUNCTION chorus_cluster_members_added() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        WITH member_stems AS (
            SELECT DISTINCT ON (a.message_id, s.stem)
                   a.tenant_id, a.cluster_id, a.message_id, a.message_created_at, s.stem, w.word
            FROM added a,
                 unnest(a.words) WITH ORDINALITY AS w(word, place),
                 LATERAL (SELECT (ts_lexize('english_stem', w.word))[1] AS stem) s
            WHERE s.stem IS NOT NULL
            ORDER BY a.message_id, s.stem, w.place
        ),
        per_term AS (
            SELECT tenant_id, cluster_id, stem, count(*) AS members,
                   (array_agg(word ORDER BY message_created_at, message_id))[1] AS word
            FROM member_stems
            GROUP BY tenant_id, cluster_id, stem
        ),
        counted AS (
            INSERT INTO cluster_terms AS t (tenant_id, cluster_id, term, word, members)
            SELECT tenant_id, cluster_id, stem, word, members FROM per_term ORDER BY cluster_id, stem
            ON CONFLICT (cluster_id, term) DO UPDATE SET members = t.members + excluded.members
            RETURNING t.tenant_id, t.cluster_id, t.term, t.members
        ),
        -- Stems the cluster did not have before this statement: their count is all this statement's.
        new_to_cluster AS (
            SELECT c.tenant_id, c.cluster_id, c.term
            FROM counted c JOIN per_term p ON p.cluster_id = c.cluster_id AND p.stem = c.term
            WHERE c.members = p.members
        ),
        creators AS (
            INSERT INTO creator_terms AS t (tenant_id, creator_id, term, clusters)
            SELECT n.tenant_id, k.creator_id, n.term, count(*)
            FROM new_to_cluster n JOIN clusters k ON k.id = n.cluster_id
            WHERE k.status = 'open'
            GROUP BY n.tenant_id, k.creator_id, n.term
            ORDER BY n.tenant_id, k.creator_id, n.term
            ON CONFLICT (tenant_id, creator_id, term) DO UPDATE SET clusters = t.clusters + excluded.clusters
        )
        INSERT INTO cluster_labels AS l (cluster_id, tenant_id)
        SELECT DISTINCT cluster_id, tenant_id FROM added ORDER BY cluster_id
        ON CONFLICT (cluster_id) DO UPDATE SET stale = true, changed_at = now()
        WHERE NOT l.stale OR l.changed_at <> now();
        RETURN NULL;
    END
    $$;

DROP TRIGGER cluster_members_words ON cluster_members;
CREATE TRIGGER cluster_members_words AFTER UPDATE OF cluster_id, words OR DELETE ON cluster_members
    FOR EACH ROW EXECUTE FUNCTION chorus_cluster_members_changed();
CREATE TRIGGER cluster_members_words_added AFTER INSERT ON cluster_members
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION chorus_cluster_members_added();
