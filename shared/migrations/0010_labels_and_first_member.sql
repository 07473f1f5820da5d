-- A cluster's members in time order, defined once: the first of them gives the cluster its
-- preview text and its representative visitor, the first few its avatars, and the API pages a
-- cluster's messages in this order. Time is StreamChat's created_at; the message id breaks a tie.
-- `after_created_at` and `after_message_id` continue after a member (a page's last; never NULL:
-- the defaults start at the first), `how_many` bounds the rows (NULL: all of them); `ordinal`
-- numbers the rows this call returns, from 1.
-- A plain SQL function is inlined into the query that calls it, so the first member is still one
-- step of the (cluster, time) index, and it runs under row-level security like that query.
CREATE FUNCTION chorus_cluster_members_in_order(
    cluster uuid,
    after_created_at timestamptz DEFAULT '-infinity',
    after_message_id text DEFAULT '',
    how_many integer DEFAULT NULL
)
    RETURNS TABLE (
        cluster_id uuid, message_row_id uuid, message_id text, channel_cid text, similarity real,
        embedding vector, message_created_at timestamptz, visitor_id text, visitor_name text,
        visitor_avatar_url text, text text, ordinal bigint
    )
    LANGUAGE sql STABLE
    AS $$
        SELECT m.cluster_id, s.id, s.message_id, m.channel_cid, m.similarity, m.embedding, m.message_created_at,
               s.visitor_id, s.visitor_name, s.visitor_avatar_url, s.text,
               row_number() OVER (ORDER BY m.message_created_at, s.message_id)
        FROM cluster_members m JOIN streamchat_messages s ON s.id = m.message_id
        WHERE m.cluster_id = cluster
          AND m.message_created_at >= after_created_at  -- the index's range; the row comparison decides
          AND (m.message_created_at, s.message_id) > (after_created_at, after_message_id)
        ORDER BY m.message_created_at, s.message_id
        LIMIT how_many
    $$;
GRANT EXECUTE ON FUNCTION chorus_cluster_members_in_order(uuid, timestamptz, text, integer) TO chorus_service;

-- Cluster labels (docs/cluster.md "Labels"): a few words frequent in a cluster and rare in its
-- creator's other open clusters (class-based TF-IDF). The counts they come from are kept here,
-- by triggers, whichever service adds, moves or removes a member (the cluster service assigns,
-- the search service actions clusters and erases parties), and each change marks the cluster's
-- label stale; the cluster service chooses the words of the stale labels a moment later.

-- The words of a text that can name a cluster: lower case, one per stem (the first way it was
-- written), no stop words (Postgres's English list and chat fillers below), at most 40.
CREATE FUNCTION chorus_label_words(body text) RETURNS text[]
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        WITH tokens AS (
            SELECT w.match[1] AS word, w.first
            FROM regexp_matches(lower(coalesce(body, '')), '[[:alpha:]][[:alnum:]]*', 'g') WITH ORDINALITY AS w(match, first)
            WHERE length(w.match[1]) >= 2 AND w.match[1] <> ALL (ARRAY[
                -- what is left of a contraction split at its apostrophe ("didn't": "didn", "t")
                'ain', 'aren', 'couldn', 'didn', 'doesn', 'don', 'hadn', 'hasn', 'haven', 'isn', 'll', 'mustn',
                're', 'shouldn', 've', 'wasn', 'weren', 'won', 'wouldn',
                -- greetings, fillers and web-address parts of direct messages
                'also', 'anyone', 'anything', 'bro', 'btw', 'com', 'could', 'dont', 'dude', 'even', 'ever', 'fr',
                'get', 'gonna', 'got', 'gotta', 'guys', 'hello', 'hey', 'hi', 'hiya', 'http', 'https', 'idk', 'ill',
                'im', 'imo', 'ive', 'know', 'like', 'lmao', 'lol', 'much', 'nah', 'ngl', 'ok', 'okay', 'omg', 'pls',
                'plz', 'please', 'really', 'rn', 'still', 'tbh', 'thank', 'thanks', 'tho', 'thx', 'ty', 'ur',
                'wanna', 'would', 'www', 'ya', 'yeah', 'yes', 'yo', 'yup'
            ])
        ), stems AS (
            SELECT DISTINCT ON (stem) word, first
            FROM (SELECT word, (ts_lexize('english_stem', word))[1] AS stem, first FROM tokens) stemmed
            WHERE stem IS NOT NULL  -- an English stop word has no stem
            ORDER BY stem, first
        )
        SELECT coalesce(array_agg(word ORDER BY first), '{}') FROM (SELECT word, first FROM stems ORDER BY first LIMIT 40) kept
    $$;

-- The words each member brings to its cluster's counts, computed once when it joins.
ALTER TABLE cluster_members ADD COLUMN words text[] NOT NULL DEFAULT '{}';

-- Per cluster: each stem its members use, written as the first member to use it wrote it, and
-- how many members use it.
CREATE TABLE cluster_terms (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    cluster_id  uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    term        text NOT NULL,
    word        text NOT NULL,
    members     integer NOT NULL CHECK (members >= 0),
    PRIMARY KEY (cluster_id, term)
);

-- Per creator: how many of the creator's open clusters use each stem.
CREATE TABLE creator_terms (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    creator_id  text NOT NULL,
    term        text NOT NULL,
    clusters    integer NOT NULL CHECK (clusters >= 0),
    PRIMARY KEY (tenant_id, creator_id, term)
);

-- Per cluster: its label, and whether its members changed since the label was chosen (and when:
-- a label is written only if no change came after the one it was chosen for). The label lives
-- beside the cluster, not in it: a cluster row is rewritten with its centroid (and its HNSW index
-- entry) on every change, a label row is small.
CREATE TABLE cluster_labels (
    cluster_id      uuid PRIMARY KEY REFERENCES clusters (id) ON DELETE CASCADE,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    label           text,
    labelled_size   integer NOT NULL DEFAULT 0,
    stale           boolean NOT NULL DEFAULT true,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cluster_labels_stale ON cluster_labels (tenant_id, changed_at) WHERE stale;

DO $$
DECLARE
    table_name text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['cluster_terms', 'creator_terms', 'cluster_labels'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = chorus_current_tenant()) '
            'WITH CHECK (tenant_id = chorus_current_tenant())', table_name);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO chorus_service', table_name);
    END LOOP;
END
$$;

-- Count a member's words into its cluster (and into the creator's counts while the cluster is
-- open), or take them out (`change` -1); either way the cluster's label is stale. Rows are
-- written in the order of their keys, so two transactions changing one creator's counts at once
-- wait for each other instead of deadlocking.
CREATE FUNCTION chorus_count_words(tenant uuid, cluster uuid, words text[], change integer) RETURNS void
    LANGUAGE plpgsql
    AS $$
    DECLARE
        creator text;
        is_open boolean;
        stems text[];
        forms text[];
        first_or_last text[];
    BEGIN
        SELECT c.creator_id, c.status = 'open' INTO creator, is_open FROM clusters c WHERE c.id = cluster;
        IF creator IS NULL THEN
            RETURN;  -- the cluster itself is being deleted, and its counts with it
        END IF;
        SELECT coalesce(array_agg(stem ORDER BY stem), '{}'), coalesce(array_agg(word ORDER BY stem), '{}')
        INTO stems, forms
        FROM (SELECT DISTINCT ON (stem) stem, word
              FROM unnest(words) WITH ORDINALITY AS w(word, first),
                   LATERAL (SELECT (ts_lexize('english_stem', word))[1] AS stem) s
              WHERE stem IS NOT NULL
              ORDER BY stem, first) distinct_stems;
        IF change > 0 THEN
            WITH counted AS (
                INSERT INTO cluster_terms AS t (tenant_id, cluster_id, term, word, members)
                SELECT tenant, cluster, stem, form, 1 FROM unnest(stems, forms) AS new(stem, form)
                ON CONFLICT (cluster_id, term) DO UPDATE SET members = t.members + 1
                RETURNING t.term, t.members
            )
            SELECT coalesce(array_agg(term ORDER BY term), '{}') INTO first_or_last FROM counted WHERE members = 1;
        ELSE
            WITH counted AS (
                UPDATE cluster_terms t SET members = t.members - 1
                WHERE t.cluster_id = cluster AND t.term = ANY (stems)
                RETURNING t.term, t.members
            )
            SELECT coalesce(array_agg(term ORDER BY term), '{}') INTO first_or_last FROM counted WHERE members = 0;
            DELETE FROM cluster_terms WHERE cluster_id = cluster AND term = ANY (first_or_last);
        END IF;
        IF is_open AND cardinality(first_or_last) > 0 THEN
            INSERT INTO creator_terms AS t (tenant_id, creator_id, term, clusters)
            SELECT tenant, creator, term, greatest(change, 0) FROM unnest(first_or_last) AS term ORDER BY term
            ON CONFLICT (tenant_id, creator_id, term) DO UPDATE SET clusters = t.clusters + change;
            IF change < 0 THEN
                DELETE FROM creator_terms
                WHERE tenant_id = tenant AND creator_id = creator AND term = ANY (first_or_last) AND clusters <= 0;
            END IF;
        END IF;
        INSERT INTO cluster_labels AS l (cluster_id, tenant_id) VALUES (cluster, tenant)
        ON CONFLICT (cluster_id) DO UPDATE SET stale = true, changed_at = now()
        WHERE NOT l.stale OR l.changed_at <> now();
    END
    $$;

CREATE FUNCTION chorus_cluster_members_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.cluster_id = NEW.cluster_id AND OLD.words = NEW.words THEN
            RETURN NULL;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            PERFORM chorus_count_words(OLD.tenant_id, OLD.cluster_id, OLD.words, -1);
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            PERFORM chorus_count_words(NEW.tenant_id, NEW.cluster_id, NEW.words, 1);
        END IF;
        RETURN NULL;
    END
    $$;

-- An actioned cluster takes no members: its words leave the creator's counts of open clusters.
CREATE FUNCTION chorus_cluster_closed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        UPDATE creator_terms c SET clusters = c.clusters - 1
        FROM cluster_terms t
        WHERE t.cluster_id = NEW.id AND c.tenant_id = NEW.tenant_id AND c.creator_id = NEW.creator_id AND c.term = t.term;
        DELETE FROM creator_terms c
        WHERE c.tenant_id = NEW.tenant_id AND c.creator_id = NEW.creator_id AND c.clusters = 0
          AND c.term IN (SELECT term FROM cluster_terms WHERE cluster_id = NEW.id);
        RETURN NULL;
    END
    $$;

-- The words of the members there are now; the labeller labels their clusters once it runs.
UPDATE cluster_members m SET words = chorus_label_words(s.text) FROM streamchat_messages s WHERE s.id = m.message_id;
INSERT INTO cluster_terms (tenant_id, cluster_id, term, word, members)
SELECT DISTINCT ON (cluster_id, term) tenant_id, cluster_id, term, word, count(*) OVER (PARTITION BY cluster_id, term)
FROM (SELECT m.tenant_id, m.cluster_id, w.word, (ts_lexize('english_stem', w.word))[1] AS term, m.message_created_at
      FROM cluster_members m, unnest(m.words) AS w(word)) member_words
WHERE term IS NOT NULL
ORDER BY cluster_id, term, message_created_at;
INSERT INTO creator_terms (tenant_id, creator_id, term, clusters)
SELECT t.tenant_id, c.creator_id, t.term, count(*)
FROM cluster_terms t JOIN clusters c ON c.id = t.cluster_id
WHERE c.status = 'open'
GROUP BY t.tenant_id, c.creator_id, t.term;
INSERT INTO cluster_labels (cluster_id, tenant_id) SELECT id, tenant_id FROM clusters;

-- The cluster service's labeller runs before any tenant is set: this function names the tenants
-- that have stale labels, and nothing else; their labels are then chosen under row-level security.
CREATE FUNCTION chorus_tenants_with_stale_labels() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT DISTINCT tenant_id FROM cluster_labels WHERE stale ORDER BY tenant_id $$;
REVOKE ALL ON FUNCTION chorus_tenants_with_stale_labels() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chorus_tenants_with_stale_labels() TO chorus_service;

CREATE TRIGGER cluster_members_words AFTER INSERT OR UPDATE OF cluster_id, words OR DELETE ON cluster_members
    FOR EACH ROW EXECUTE FUNCTION chorus_cluster_members_changed();
CREATE TRIGGER clusters_closed AFTER UPDATE OF status ON clusters
    FOR EACH ROW WHEN (OLD.status = 'open' AND NEW.status <> 'open') EXECUTE FUNCTION chorus_cluster_closed();

-- The API lists a creator's open clusters largest first (or newest first) and pages them by that
-- order and the id.
CREATE INDEX clusters_by_size ON clusters (tenant_id, creator_id, status, size DESC, id);
CREATE INDEX clusters_by_age ON clusters (tenant_id, creator_id, status, created_at DESC, id);
