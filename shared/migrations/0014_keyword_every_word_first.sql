-- Keyword ranking that stays fast on frequent words (docs/search.md "Relevance"): when 50 or more
-- of the tenant's documents have every word of the query, only those match and are ranked,
-- instead of every document with any of the words; for searches without filters (which pass
-- `how_many`). A number of its own, not the page's depth: every page of one search must rank
-- the same documents.
-- A document with every word ranks above most with some of them anyway; among documents that
-- all have every word, the candidates give each word the same document frequency, so they rank
-- by how often they have the words and by their length (BM25's other two parts). Where fewer
-- have them all (most natural-language questions), every document with any word is ranked by
-- BM25 as in migration 0011. Ranking a candidate costs about 10 microseconds: a query of three
-- words each in ~300 of 100,000 documents (bench/search.py) had 759 candidates and took 9.2 ms.

CREATE OR REPLACE FUNCTION chorus_ranked_matches(query text, cap integer, likeness real, how_many integer)
    RETURNS TABLE (document_id uuid, rank real)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    -- Two letters swapped in a word of eight leave it about 0.55 similar to the right one: pg_trgm's
    -- default of 0.6 would miss it (bench/relevance.py's typo set).
    SET pg_trgm.word_similarity_threshold = 0.4
    -- PL/pgSQL keeps the statement's plan for the connection; an SQL function with SET clauses
    -- is planned again on every call (3 ms of this statement's planning, measured).
    AS $$
    BEGIN
        RETURN QUERY
        WITH words AS (
            SELECT DISTINCT word, lexeme, quote_literal(lexeme)::tsquery AS q
            FROM regexp_split_to_table(lower(query), '[^[:alnum:]]+') AS word,
                 unnest(tsvector_to_array(to_tsvector('english', word))) AS lexeme
            WHERE word <> ''
        ),
        -- Words the planner's statistics call common across all tenants are counted here, up
        -- to `cap`; the others are counted among the candidates they find (every document with
        -- such a word is one), which costs no scan of its own.
        common AS (
            SELECT w.lexeme, f.df
            FROM words w
            JOIN (
                SELECT e.lexeme, e.frequency * greatest(c.reltuples, 0) AS documents
                FROM pg_stats s, pg_class c,
                     unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(lexeme, frequency)
                WHERE s.schemaname = 'public' AND s.tablename = 'documents' AND s.attname = 'search_tsv'
                  AND c.oid = 'public.documents'::regclass
            ) global ON global.lexeme = w.lexeme AND global.documents >= cap,
            LATERAL (
                SELECT count(*) AS df FROM (
                    SELECT 1 FROM documents d
                    WHERE d.search_tsv @@ w.q AND d.tenant_id = chorus_current_tenant() AND d.deleted_at IS NULL
                    LIMIT cap
                ) s
            ) f
        ),
        missing AS (
            SELECT w.word, w.lexeme FROM words w
            WHERE NOT EXISTS (
                SELECT 1 FROM documents d
                WHERE d.search_tsv @@ w.q AND d.tenant_id = chorus_current_tenant() AND d.deleted_at IS NULL
            )
        ),
        corrected AS (
            SELECT best.lexeme, best.similarity
            FROM (
                -- At most five unknown words a query, the longest: each costs a trigram index scan.
                SELECT * FROM missing WHERE length(word) BETWEEN 4 AND 32
                ORDER BY length(word) DESC, word LIMIT 5
            ) m, LATERAL (
                SELECT u.lexeme, similarity(u.lexeme, m.lexeme) AS similarity
                FROM (
                    SELECT d.search_tsv FROM documents d
                    WHERE m.word <% d.text AND d.tenant_id = chorus_current_tenant() AND d.deleted_at IS NULL
                    LIMIT 20
                ) d, unnest(d.search_tsv) u
                ORDER BY similarity DESC, u.lexeme
                LIMIT 1
            ) best
            WHERE best.similarity >= likeness
        ),
        terms AS (
            SELECT lexeme, max(similarity) AS similarity, quote_literal(lexeme)::tsquery AS q,
                   bool_or(finds) AS finds
            FROM (
                SELECT lexeme, 1.0::float8 AS similarity, lexeme NOT IN (
                    SELECT lexeme FROM common WHERE df >= cap
                ) AS finds
                FROM words WHERE lexeme NOT IN (SELECT lexeme FROM missing)
                UNION ALL
                SELECT lexeme, similarity, true FROM corrected
            ) t
            GROUP BY lexeme
        ),
        queries AS (
            SELECT coalesce(
                       string_agg(quote_literal(lexeme), ' | ') FILTER (WHERE finds),
                       string_agg(quote_literal(lexeme), ' & ')
                   )::tsquery AS any_word,
                   string_agg(quote_literal(lexeme), ' & ')::tsquery AS every_word
            FROM terms
        ),
        matcher AS MATERIALIZED (
            -- Every word first: when 50 documents have them all, those are the candidates.
            SELECT CASE WHEN every_word_fills THEN every_word ELSE any_word END AS q
            FROM (
                SELECT q.*, how_many IS NOT NULL AND (
                    SELECT count(*) FROM (
                        SELECT 1 FROM documents d
                        WHERE d.search_tsv @@ q.every_word AND d.tenant_id = chorus_current_tenant()
                          AND d.deleted_at IS NULL
                        LIMIT 50
                    ) s
                ) >= 50 AS every_word_fills
                FROM queries q
            ) chosen
        ),
        candidates AS MATERIALIZED (
            SELECT d.id, d.search_tsv, length(d.search_tsv)::float8 AS size
            FROM documents d, matcher m
            WHERE d.search_tsv @@ m.q AND d.tenant_id = chorus_current_tenant() AND d.deleted_at IS NULL
        ),
        hits AS MATERIALIZED (
            -- ts_rank_cd of one word is 0.1 an occurrence (the stored vector has no weights).
            SELECT c.id, c.size, t.lexeme, ts_rank_cd(c.search_tsv, t.q) * 10 AS tf
            FROM candidates c JOIN terms t ON c.search_tsv @@ t.q
        ),
        weights AS (
            SELECT t.lexeme, t.similarity, coalesce(c.df, h.df, 0) AS df
            FROM terms t
            LEFT JOIN common c ON c.lexeme = t.lexeme
            LEFT JOIN (SELECT lexeme, count(*) AS df FROM hits GROUP BY lexeme) h ON h.lexeme = t.lexeme
        ),
        total AS (
            -- Deleted documents count too: then the (tenant, created_at) index alone answers.
            SELECT greatest(count(*), (SELECT max(df) FROM weights), 1)::float8 AS n FROM (
                SELECT 1 FROM documents WHERE tenant_id = chorus_current_tenant() LIMIT cap
            ) s
        ),
        average AS (SELECT greatest(avg(size), 1) AS size FROM candidates)
        -- BM25 with k1 = 1.2 and b = 0.5; sizes are distinct words, the average the candidates'. The usual b = 0.75 put short
        -- commit messages above the issue they quote (the demo data); on the labelled DMs, all
        -- short, it was 0.01 better in nDCG@10.
        SELECT h.id, sum(
            w.similarity * ln(1 + (n - least(w.df, n) + 0.5) / (w.df + 0.5))
            * h.tf * 2.2 / (h.tf + 1.2 * (0.5 + 0.5 * h.size / a.size))
        )::real
        FROM hits h JOIN weights w ON w.lexeme = h.lexeme, total, average a
        GROUP BY h.id
        -- The best `how_many` (NULL: all): joining every candidate back to `documents` outside
        -- cost more than ranking them (a search without filters passes its page size).
        ORDER BY 2 DESC, 1
        LIMIT how_many;
    END
    $$;

REVOKE ALL ON FUNCTION chorus_ranked_matches(text, integer, real, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chorus_ranked_matches(text, integer, real, integer) TO chorus_service;
