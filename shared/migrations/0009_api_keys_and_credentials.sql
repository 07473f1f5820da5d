-- Tenant onboarding from the `chorus` command: when each API key was last used, the list of
-- tenants, and revoking a key named by its id or by the whole key.

ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- The key lookup now also records the key's last use. It runs only when a service's key cache
-- misses (once per key per CHORUS_KEY_CACHE_SECONDS and process), and writes at most once a
-- minute per key; SKIP LOCKED leaves the write to whichever lookup got there first instead of
-- queueing the others behind it. A revoked key still names no tenant.
CREATE OR REPLACE FUNCTION chorus_tenant_for_api_key(hash bytea) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    found uuid;
BEGIN
    SELECT tenant_id INTO found FROM api_keys WHERE key_hash = hash AND revoked_at IS NULL;
    IF found IS NOT NULL THEN
        UPDATE api_keys SET last_used_at = now()
        WHERE id = (
            SELECT id FROM api_keys
            WHERE key_hash = hash AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
            FOR UPDATE SKIP LOCKED
        );
    END IF;
    RETURN found;
END
$$;

-- `chorus tenants list` runs before any tenant is set: names and creation times, nothing else.
CREATE FUNCTION chorus_tenants() RETURNS TABLE (id uuid, name text, created_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id, name, created_at FROM tenants ORDER BY name $$;

-- `chorus keys revoke KEY_OR_ID` knows the key's id or the hash of the whole key, not its tenant:
-- this answers which key and tenant that is, revoked or not; the revoking itself then runs under
-- row-level security.
CREATE FUNCTION chorus_api_key_owner(key_id uuid, hash bytea) RETURNS TABLE (id uuid, tenant_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id, tenant_id FROM api_keys WHERE id = key_id OR key_hash = hash $$;

REVOKE ALL ON FUNCTION chorus_tenants(), chorus_api_key_owner(uuid, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chorus_tenants(), chorus_api_key_owner(uuid, bytea) TO chorus_service;
