-- Erasure that holds (docs/security.md "Erasure"): what an erasure deleted is remembered as keyed
-- hashes (tombstones), so a replay or redelivery of it from Kafka or from its sender is dropped by
-- the ingest agents instead of being stored and made searchable again.

-- Each tenant's key for its tombstones, made by its first erasure. The key lives in the database,
-- not in a setting: ingest (which checks) and search (which erases) then always agree on it, with
-- no secret that could differ between them and silently make every tombstone miss; the hashes are
-- of no use without the key, and deleting a tenant deletes its key with its tombstones.
CREATE TABLE erasure_keys (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    key         bytea NOT NULL CHECK (length(key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- HMAC-SHA256 of what was erased, under the tenant's key: the party itself ('party'), and the
-- StreamChat message ids ('message') and webhook ids ('webhook'), the Tavus conversation ids
-- ('conversation') and the raw events' source and external id ('event') that went with it.
CREATE TABLE erasure_tombstones (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('party', 'message', 'webhook', 'conversation', 'event')),
    digest      bytea NOT NULL,
    request_id  uuid REFERENCES privacy_requests (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, digest)
);

DO $$
DECLARE
    table_name text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['erasure_keys', 'erasure_tombstones'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = chorus_current_tenant()) '
            'WITH CHECK (tenant_id = chorus_current_tenant())', table_name);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO chorus_service', table_name);
    END LOOP;
END
$$;

-- Whether any string anywhere in `payload` (nested objects and arrays included) is `party`: a
-- user id, email, phone or name in whatever field a producer put it. One jsonpath walk of the
-- document, in the statement that scans the rows, so no payload is loaded to decide.
CREATE FUNCTION chorus_names_party(payload jsonb, party text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT jsonb_path_exists(payload, 'lax $.** ? (@ == $party)', jsonb_build_object('party', party)) $$;
GRANT EXECUTE ON FUNCTION chorus_names_party(jsonb, text) TO chorus_service;
