-- Row-level security compares each row with the tenant read once per query (docs/architecture.md
-- "Tenancy and row-level security"). The policies compared it with chorus_current_tenant()
-- itself, which the planner evaluates while planning: it then estimated the rows of the
-- transaction's tenant from the column's statistics. A tenant those statistics do not know yet
-- (one created since the table was last analyzed, in the middle of its first import) was estimated
-- at one row, so a lookup of 128 documents by id scanned all of the tenant's documents by
-- `documents_tenant_created` instead of taking the primary key: 11.5 ms a lookup at 20,000
-- documents, two such statements a batch in the embed service, until autovacuum analyzed the
-- table. As a subquery the tenant is a value known only when the query runs: the planner
-- estimates a tenant's share of each table as an average one, whichever tenant it is, and the
-- function runs once per query instead of once per row. What a policy lets through is unchanged.
-- A new table's policy takes the same form (tests/shared/test_row_level_security.py checks).
--
-- The vector partitions' own policies (chorus_vector_table, migration 0013) stay as they are: the
-- partitions are granted to nobody and reached only through document_embeddings, whose policy
-- is the one that applies.

DO $$
DECLARE
    scoped regclass;
    tenant_column text;
BEGIN
    FOR scoped IN
        SELECT p.polrelid::regclass FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        WHERE p.polname = 'tenant_isolation' AND NOT c.relispartition
    LOOP
        tenant_column := CASE WHEN scoped = 'tenants'::regclass THEN 'id' ELSE 'tenant_id' END;
        EXECUTE format(
            'ALTER POLICY tenant_isolation ON %s USING (%I = (SELECT chorus_current_tenant())) '
            'WITH CHECK (%I = (SELECT chorus_current_tenant()))', scoped, tenant_column, tenant_column);
    END LOOP;
END
$$;
