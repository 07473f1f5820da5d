-- Maintenance commands (`chorus reembed` over every tenant) need the list of tenants before
-- any tenant is set; this function gives the ids and nothing else.
CREATE FUNCTION chorus_tenant_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id FROM tenants ORDER BY id $$;

REVOKE ALL ON FUNCTION chorus_tenant_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chorus_tenant_ids() TO chorus_service;
