-- Citus support (the node context itself is src/citus.rs): what the SQL side needs on a Citus
-- coordinator.

-- Whether tbl is a Citus table ('distributed', 'reference', 'local' as citus_tables says --
-- a single-shard table of a distributed schema is 'distributed'; NULL when it is not one or Citus
-- is not installed). 'distributed' and 'reference' tables keep their rows in shards on the
-- workers; a 'local' one on the coordinator.
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
                         WHEN p.partmethod = ''n'' AND p.colocationid = 0 THEN ''local'' ELSE ''distributed'' END
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

-- Rate limits on Citus are counted where a tenant's rows are stored (src/quota.rs): by the node
-- holding them, in its own counters. That is exact when all of a tenant's rows of the table are
-- on one node: a table distributed by its tenant column, a table of a distributed tenant schema,
-- a reference table (every placement counts the same inserts), a local table. A table distributed
-- by another column spreads a tenant's rows over nodes, each of which would count only its part:
-- refused (0A000) rather than limited by a fraction.
CREATE OR REPLACE FUNCTION tenant._citus_require_one_node_per_tenant(tbl regclass) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dist_column name;
    tenant_column name;
BEGIN
    IF tenant._citus_kind(tbl) IS DISTINCT FROM 'distributed' THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1 AND p.partmethod = ''h'''
        INTO dist_column USING tbl;
    SELECT i.tenant_column INTO tenant_column FROM tenant.isolated_tables i WHERE i.relid = tbl;
    IF dist_column IS NOT NULL AND dist_column IS DISTINCT FROM tenant_column THEN
        RAISE EXCEPTION 'table % is distributed by %, not by its tenant column: a tenant''s rows are on several nodes', tbl, dist_column
            USING ERRCODE = '0A000',
                  DETAIL = 'Citus counts rate limits on the node holding a tenant''s rows; each node would count only its part.',
                  HINT = format('Distribute it by %s (colocated with the other tenant tables), then set the limit.', coalesce(tenant_column, 'its tenant column'));
    END IF;
END
$$;

-- citus_total_relation_size(tbl): what a distributed or reference table holds on the workers
-- (every shard's heap, indexes and TOAST).
CREATE OR REPLACE FUNCTION tenant._citus_relation_size(tbl regclass) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bytes bigint;
BEGIN
    EXECUTE 'SELECT pg_catalog.citus_total_relation_size($1)' INTO bytes USING tbl;
    RETURN bytes;
END
$$;

-- Rows per tenant key of an isolated Citus table (distributed or reference), counted on the
-- workers, and its bytes apportioned by rows as on one node. Each shard is measured once, on one
-- placement (a reference table's on a worker): pg_total_relation_size of the shard (so a
-- distributed table's bytes are citus_total_relation_size's, a reference table's those of one
-- replica), and its rows per tenant counted by tenant._table_usage on the node holding it -- as
-- the shard's owner in a security-restricted operation that lifts FORCE ROW LEVEL SECURITY, as
-- on one node: the coordinator's lift does not reach the workers, and there the shards' policies
-- would hide every other tenant's rows. The commands go to the nodes over master_run_on_worker
-- (what run_command_on_* use), as the caller (the extension owner: tenant._table_usage is for
-- superusers); the only values in them are the shard's name and the column's, quoted by
-- format(%L). One pass over every shard, whatever the number of tenants.
CREATE OR REPLACE FUNCTION tenant._citus_table_usage(tbl regclass, tenant_column name)
RETURNS TABLE(tenant_key text, rows bigint, bytes bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nodes text[];
    ports integer[];
    commands text[];
    r record;
    failed text[] := '{}';
    counts jsonb := '[]';
    total bigint;
    size bigint := 0;
BEGIN
    EXECUTE $q$
        SELECT array_agg(p.nodename ORDER BY p.shardid), array_agg(p.nodeport ORDER BY p.shardid),
               array_agg(format('SELECT pg_catalog.jsonb_build_array(pg_catalog.pg_total_relation_size(%1$L::pg_catalog.regclass), '
                                'COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(x.tenant_key, x.rows)) '
                                'FROM tenant._table_usage(%1$L::pg_catalog.regclass::pg_catalog.oid, %2$L, NULL) x), ''[]''::pg_catalog.jsonb))::text',
                                p.shard, $2) ORDER BY p.shardid)
          FROM (SELECT DISTINCT ON (s.shardid) s.shardid, CASE WHEN n.nspname = 'public' THEN 'public.' ELSE '' END
                           || pg_catalog.shard_name(s.logicalrelid, s.shardid) AS shard,
                       d.nodename, d.nodeport
                  FROM pg_catalog.pg_dist_shard s
                  JOIN pg_class c ON c.oid = s.logicalrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = s.shardid AND pl.shardstate = 1
                  JOIN pg_catalog.pg_dist_node d ON d.groupid = pl.groupid AND d.noderole = 'primary' AND d.isactive
                 WHERE s.logicalrelid = $1
                 ORDER BY s.shardid, d.groupid = 0, pl.placementid) p $q$
        INTO nodes, ports, commands USING tbl, tenant_column;
    IF commands IS NULL THEN
        RETURN;
    END IF;
    FOR r IN EXECUTE 'SELECT m.node_name, m.node_port, m.success, m.result
                        FROM pg_catalog.master_run_on_worker($1, $2, $3, true) m'
             USING nodes, ports, commands LOOP
        IF r.success THEN
            size := size + (r.result::jsonb->>0)::bigint;
            counts := counts || (r.result::jsonb->1);
        ELSE
            failed := failed || format('%s:%s: %s', r.node_name, r.node_port, r.result);
        END IF;
    END LOOP;
    IF cardinality(failed) > 0 THEN
        RAISE EXCEPTION 'could not count the rows of % on the Citus workers', tbl
            USING ERRCODE = '08006', DETAIL = array_to_string(failed, '; '),
                  HINT = 'Check that every worker is up and has the extension, then measure again.';
    END IF;
    SELECT sum((e->>1)::bigint) INTO total FROM jsonb_array_elements(counts) e;
    RETURN QUERY
        SELECT k.key, k.n, floor(size::numeric * k.n / total)::bigint
          FROM (SELECT e->>0 AS key, sum((e->>1)::bigint)::bigint AS n
                  FROM jsonb_array_elements(counts) e GROUP BY 1) k
         ORDER BY 1;
END
$$;

-- What tenant.check_isolation() reports about Citus (its kinds 30-34); no rows without Citus.
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
    -- 34. A rate-limited table distributed by a column other than its tenant column (distributed
    --     after its limit was set; limit_rate refuses such a table): a tenant's rows are on
    --     several nodes, each of which counts only its part, so the limit holds per node.
    RETURN QUERY EXECUTE $q$
        SELECT 'error', format('table %s', l.relid),
               format('is rate-limited and distributed by %s, not by its tenant column %I: each node counts only the inserts it stores, so a tenant may insert up to the limit on every node',
                      pg_catalog.column_to_column_name(d.logicalrelid, d.partkey), i.tenant_column),
               format('SELECT alter_distributed_table(%L, distribution_column := %L);', l.relid::text, i.tenant_column)
          FROM tenant.rate_limits l
          JOIN pg_catalog.pg_dist_partition d ON d.logicalrelid = l.relid AND d.partmethod = 'h'
          JOIN tenant.isolated_tables i ON i.relid = l.relid
         WHERE l.relid = l.counted_as
           AND pg_catalog.column_to_column_name(d.logicalrelid, d.partkey) IS DISTINCT FROM i.tenant_column::text
         ORDER BY 2 $q$;
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

-- The owner of tenant schemas: qualityfoundry_tenant.schema_owner, else tenant_admin. Citus
-- connects to the workers as a table's owner for shard and schema moves, so on Citus it must be
-- a role that can log in (tenant_admin cannot); it must hold neither tenant_user nor be an
-- application role (the checker reports owners holding tenant_user, kind 17).
CREATE OR REPLACE FUNCTION tenant._schema_owner() RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner name := nullif(current_setting('qualityfoundry_tenant.schema_owner', true), '');
BEGIN
    IF owner IS NULL THEN
        RETURN 'tenant_admin';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = owner) THEN
        RAISE EXCEPTION 'qualityfoundry_tenant.schema_owner names role %, which does not exist', quote_ident(owner)
            USING ERRCODE = '42704';
    END IF;
    IF pg_has_role(owner, 'tenant_user', 'USAGE') AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = owner) THEN
        RAISE EXCEPTION 'role % holds tenant_user and cannot own tenant schemas', quote_ident(owner)
            USING ERRCODE = '42501', HINT = 'Owners bypass row security: give tenant schemas a role no application uses.';
    END IF;
    RETURN owner;
END
$$;

-- Whether schema is a Citus distributed schema.
CREATE OR REPLACE FUNCTION tenant._citus_schema_distributed(schema name) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_schema') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_schema s JOIN pg_namespace n ON n.oid = s.schemaid
                             WHERE n.nspname = $1)' INTO found USING schema;
    RETURN found;
END
$$;

-- create_tenant(with_schema => true) on a Citus coordinator with schema-based sharding on
-- (citus.enable_schema_based_sharding): Citus would make the new schema distributed when
-- clone_schema creates it but leave the tables clone_schema makes in it local (they are not made by
-- a top-level CREATE TABLE), and a distributed schema with local tables can be neither moved nor
-- undistributed. So schema-based sharding is paused for the clone (_citus_pause_sharding, which
-- says whether it was on), and the finished schema is distributed whole (_citus_distribute_schema).
CREATE OR REPLACE FUNCTION tenant._citus_pause_sharding() RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')
       OR coalesce(current_setting('citus.enable_schema_based_sharding', true), 'off') <> 'on' THEN
        RETURN false;
    END IF;
    PERFORM set_config('citus.enable_schema_based_sharding', 'off', true);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION tenant._citus_distribute_schema(schema name, sharding boolean) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT sharding THEN
        RETURN;
    END IF;
    PERFORM set_config('citus.enable_schema_based_sharding', 'on', true);
    EXECUTE 'SELECT pg_catalog.citus_schema_distribute($1)' USING schema::regnamespace;
END
$$;

-- Tables made in a distributed tenant schema by anything but a top-level CREATE TABLE (migrate_all's
-- steps, functions) stay local in Citus: distribute them into the schema's colocation group.
CREATE OR REPLACE FUNCTION tenant._citus_distribute_new_tables(schema name) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    peer regclass;
BEGIN
    IF NOT tenant._citus_schema_distributed(schema) THEN
        RETURN;
    END IF;
    -- A CREATE TABLE the client sent itself: Citus distributes that table after the statement
    -- (and refuses to if it is distributed already).
    IF tenant._citus_converts_new_tables() THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT p.logicalrelid FROM pg_catalog.pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 LIMIT 1' INTO peer USING schema;
    FOR rel IN EXECUTE 'SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND c.relkind IN (''r'', ''p'') AND NOT c.relispartition
                           AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = c.oid)
                         ORDER BY c.oid' USING schema LOOP
        -- As the table's owner: Citus refuses colocated placements touched by two users in one
        -- transaction (the migration goes on as that owner).
        PERFORM tenant._citus_distribute_as_owner(rel, peer);
        peer := coalesce(peer, rel);
    END LOOP;
END
$$;

-- Data residency: moves a tenant's (distributed) schema to a Citus node and records it.
-- After place_tenant moved a tenant schema from node from_name:from_port: the day's counts of
-- its rate-limited tables go with it. Each node counts the inserts it stores (src/quota.rs), so
-- without this the move would start the tenant's day again on the new node. The count read on the
-- old node replaces a lower one on the new node (an earlier stay there left one, which the count
-- carried away since includes). Over master_run_on_worker as the caller (the extension owner,
-- place_tenant's definer); the only values in the commands are the tenant id, the schema's name
-- and the counts read, through format(%s of an integer, %L).
CREATE OR REPLACE FUNCTION tenant._citus_carry_rate_counts(tid bigint, schema name, from_name text, from_port integer,
                                                         to_name text, to_port integer) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    counts text;
BEGIN
    IF from_name IS NULL OR NOT EXISTS (SELECT FROM tenant.rate_limits l JOIN pg_class c ON c.oid = l.relid
                                         WHERE c.relnamespace = schema::regnamespace) THEN
        RETURN;
    END IF;
    counts := tenant._citus_run_on(from_name, from_port,
        format('SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(c.relid::pg_catalog.oid::pg_catalog.regclass::text, c.day, c.inserts)), ''[]'')::text '
               'FROM tenant.node_rate_counters c WHERE c.tenant_id OPERATOR(pg_catalog.=) %s '
               'AND c.day OPERATOR(pg_catalog.=) (pg_catalog.now() AT TIME ZONE ''UTC'')::date '
               'AND pg_catalog.starts_with(c.relid::pg_catalog.oid::pg_catalog.regclass::text, %L)',
               tid, quote_ident(schema) || '.'),
        format('read the rate counts of tenant %s', tid));
    IF counts = '[]' THEN
        RETURN;
    END IF;
    PERFORM tenant._citus_run_on(to_name, to_port,
        format('INSERT INTO tenant.node_rate_counters AS c (relid, tenant_id, day, inserts) '
               'SELECT pg_catalog.to_regclass(e->>0), %s, (e->>1)::date, (e->>2)::bigint '
               'FROM pg_catalog.jsonb_array_elements(%L::pg_catalog.jsonb) e WHERE pg_catalog.to_regclass(e->>0) IS NOT NULL '
               'ON CONFLICT (relid, tenant_id, day) DO UPDATE SET inserts = GREATEST(c.inserts, excluded.inserts)',
               tid, counts),
        format('carry the rate counts of tenant %s', tid));
END
$$;

-- One command on one node over master_run_on_worker, as the caller; its result, or 08006 naming
-- the node and what could not be done.
CREATE OR REPLACE FUNCTION tenant._citus_run_on(node_name text, node_port integer, command text, what text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    EXECUTE 'SELECT m.success, m.result FROM pg_catalog.master_run_on_worker($1, $2, $3, true) m'
       INTO r USING ARRAY[node_name], ARRAY[node_port], ARRAY[command];
    IF NOT r.success THEN
        RAISE EXCEPTION 'could not % on %:%', what, node_name, node_port
            USING ERRCODE = '08006', DETAIL = r.result,
                  HINT = 'Check that the node is up and has the extension, then try again.';
    END IF;
    RETURN r.result;
END
$$;

CREATE OR REPLACE FUNCTION tenant.place_tenant(tenant text, node_name text, node_port integer) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
    from_name text;
    from_port integer;
    from_node text;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'place a tenant');
    IF tenant IS NULL OR node_name IS NULL OR node_port IS NULL THEN
        RAISE EXCEPTION 'tenant, node_name and node_port must not be NULL' USING ERRCODE = '22004';
    END IF;
    t := tenant._resolve(tenant);
    IF t.schema_name IS NULL THEN
        RAISE EXCEPTION 'tenant % has no schema', t.slug USING ERRCODE = '22023',
            HINT = 'place_tenant moves a tenant schema (schema-based sharding); rows of shared tables follow their distribution column.';
    END IF;
    IF NOT tenant._citus_schema_distributed(t.schema_name) THEN
        RAISE EXCEPTION 'schema % of tenant % is not a Citus distributed schema', quote_ident(t.schema_name), t.slug
            USING ERRCODE = '55000',
                  HINT = 'Create tenants with citus.enable_schema_based_sharding = on, or run SELECT citus_schema_distribute(...) as a superuser.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_node d
                    WHERE d.nodename = place_tenant.node_name AND d.nodeport = place_tenant.node_port
                      AND d.isactive AND d.noderole = 'primary') THEN
        RAISE EXCEPTION 'no active Citus node %:%', node_name, node_port USING ERRCODE = '22023',
            HINT = 'SELECT nodename, nodeport FROM pg_dist_node lists them.';
    END IF;
    SELECT s.nodename, s.nodeport INTO from_name, from_port
      FROM pg_catalog.citus_shards s JOIN pg_class c ON c.oid = s.table_name
     WHERE c.relnamespace = t.schema_name::regnamespace LIMIT 1;
    from_node := from_name || ':' || from_port;
    IF from_node IS DISTINCT FROM node_name || ':' || node_port THEN
        -- block_writes: no logical replication needed (wal_level may be replica).
        PERFORM pg_catalog.citus_schema_move(t.schema_name::regnamespace, node_name, node_port,
                                             shard_transfer_mode => 'block_writes');
        PERFORM tenant._citus_carry_rate_counts(t.id, t.schema_name, from_name, from_port, node_name, node_port);
    END IF;
    INSERT INTO tenant.placements (tenant_id, node_name, node_port)
    VALUES (t.id, node_name, node_port)
    ON CONFLICT (tenant_id) DO UPDATE SET node_name = EXCLUDED.node_name, node_port = EXCLUDED.node_port,
                                          placed_at = pg_catalog.now(), placed_by = CURRENT_USER;
    PERFORM tenant._audit('tenant_placed', t.slug, t.id,
                          jsonb_build_object('node', node_name || ':' || node_port, 'from', from_node));
END
$$;

-- Where each schema tenant's data is: the node Citus has its schema on, and what place_tenant recorded.
CREATE OR REPLACE FUNCTION tenant.tenant_placements()
RETURNS TABLE(tenant text, schema_name name, node_name text, node_port integer, placed_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'list tenant placements');
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT t.slug, t.schema_name, s.nodename, s.nodeport, p.placed_at
          FROM tenant.tenants t
          LEFT JOIN LATERAL (SELECT cs.nodename, cs.nodeport FROM pg_catalog.citus_shards cs
                               JOIN pg_class c ON c.oid = cs.table_name
                              WHERE c.relnamespace = t.schema_name::regnamespace LIMIT 1) s ON true
          LEFT JOIN tenant.placements p ON p.tenant_id = t.id
         WHERE t.schema_name IS NOT NULL
         ORDER BY t.slug $q$;
END
$$;

GRANT EXECUTE ON FUNCTION tenant.place_tenant(text, text, integer), tenant.tenant_placements() TO tenant_admin;
GRANT SELECT ON tenant.placements TO tenant_admin;
