-- Citus support (the node context itself is src/citus.rs): what the SQL side needs on a Citus
-- coordinator.

-- Whether tbl is a Citus table ('distributed', 'reference', 'local' as citus_tables says; NULL
-- when it is not one or Citus is not installed).
CREATE OR REPLACE FUNCTION tenant._citus_kind(tbl regclass) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT CASE WHEN p.partmethod = ''n'' AND p.repmodel = ''t'' THEN ''reference''
                         WHEN p.partmethod = ''n'' THEN ''local'' ELSE ''distributed'' END
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
        INTO kind USING tbl;
    RETURN kind;
END
$$;

-- Whether the extension must put no trigger on a table of this database: Citus is installed and
-- citus.enable_unsafe_triggers is off (Citus then refuses triggers on its tables, and to
-- distribute a table that has one). The fill trigger and the quota triggers stand aside.
CREATE OR REPLACE FUNCTION tenant._citus_no_triggers() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')
       AND coalesce(current_setting('citus.enable_unsafe_triggers', true), 'off') <> 'on'
$$;

-- What tenant.check_isolation() reports about Citus (its kinds 30-33); no rows without Citus.
CREATE OR REPLACE FUNCTION tenant._citus_findings()
RETURNS TABLE(severity text, object text, problem text, fix text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    -- 30. Policies other than the extension's on isolated or pinned Citus tables. Citus drops
    --     AS RESTRICTIVE when it copies policies to the shards (and again on every shard move), so
    --     there the extension's guard is one more permissive policy, and any other policy -- even a
    --     restrictive one on the coordinator -- widens what a tenant sees on the workers.
    RETURN QUERY EXECUTE $q$
        SELECT 'error', format('policy %I on table %s', p.polname, p.polrelid::regclass),
               format('is a policy on Citus %s table %s, which is isolated: Citus copies every policy to the shards as PERMISSIVE, so it widens what a tenant sees beyond its tenant',
                      CASE WHEN d.partmethod = 'n' THEN 'reference' ELSE 'distributed' END, p.polrelid::regclass),
               format('DROP POLICY %I ON %s;', p.polname, p.polrelid::regclass)
          FROM pg_policy p
          JOIN pg_catalog.pg_dist_partition d ON d.logicalrelid = p.polrelid
         WHERE p.polname !~ '^qft_'
           AND (p.polrelid IN (SELECT i.relid FROM tenant.isolated_tables i)
                OR p.polrelid IN (SELECT s.rel FROM tenant.tenants t CROSS JOIN LATERAL tenant._schema_relations(t.schema_name) s
                                   WHERE t.schema_name IS NOT NULL))
         ORDER BY 2 $q$;
    -- 31. Citus's run_command_on_* functions are executable by PUBLIC: an application role can run
    --     any SQL on every worker with them. The workers refuse it every tenant's rows (the node
    --     context), but nothing requires the application to have them.
    RETURN QUERY
        SELECT 'warning', format('function %s', f.oid::regprocedure),
               'can be executed by roles holding tenant_user: they run SQL of their choosing on the Citus workers',
               format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC;', f.oid::regprocedure)
          FROM pg_proc f
         WHERE f.pronamespace = 'pg_catalog'::regnamespace AND f.proname ~ '^run_command_on_'
           AND has_function_privilege('tenant_user', f.oid, 'EXECUTE')
         ORDER BY 2;
    -- 32. Local tables in a distributed tenant schema: Citus distributes only tables made by a
    --     top-level CREATE TABLE there; any other stays on the coordinator, away from the tenant's
    --     placement.
    IF to_regclass('pg_catalog.pg_dist_schema') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT 'warning', format('table %s', c.oid::regclass),
                   format('is a local table in the distributed schema %I of tenant %s: it is not moved with the tenant''s schema', n.nspname, t.slug),
                   format('SELECT citus_schema_undistribute(%L); SELECT citus_schema_distribute(%L);', n.nspname, n.nspname)
              FROM tenant.tenants t
              JOIN pg_namespace n ON n.nspname = t.schema_name
              JOIN pg_catalog.pg_dist_schema s ON s.schemaid = n.oid
              JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p') AND NOT c.relispartition
             WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = c.oid)
             ORDER BY 2 $q$;
    END IF;
    -- 33. No node key: no tenant context is in force anywhere in a Citus database.
    RETURN QUERY
        SELECT 'error', 'table tenant.node_keys',
               'is empty: on a Citus database no tenant context is in force on any node until the workers share a node key',
               'SELECT tenant.citus_sync_keys();  -- as a superuser on the coordinator, after adding the workers'
         WHERE NOT EXISTS (SELECT FROM tenant.node_keys)
           AND NOT tenant._citus_worker();
END
$$;

-- ALTER TABLE tbl ALTER COLUMN col <action> (enable_isolation's default and NOT NULL, and
-- disable_isolation's undoing of them). Citus refuses any ALTER of a distributed table's
-- distribution column; for that column the change is made on the coordinator only, where Citus
-- evaluates column defaults for every INSERT (and it refuses NULL in a distribution column itself).
CREATE OR REPLACE FUNCTION tenant._alter_tenant_column(tbl regclass, col name, action text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dist_column boolean := false;
    prior text;
BEGIN
    IF tenant._citus_kind(tbl) = 'distributed' THEN
        EXECUTE 'SELECT pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) = $2
                   FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
            INTO dist_column USING tbl, col;
    END IF;
    IF coalesce(dist_column, false) THEN
        prior := current_setting('citus.enable_ddl_propagation');
        PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ', tbl, col) || action;
        PERFORM set_config('citus.enable_ddl_propagation', prior, true);
    ELSE
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ', tbl, col) || action;
    END IF;
END
$$;
