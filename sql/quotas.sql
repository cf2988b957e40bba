-- Usage and quotas (issue 16): usage per tenant and relation, limits and tier defaults, the storage
-- write-limit, per-table rate limits, the tenant cap. Tables: sql/quota_tables.sql; the C-level
-- parts (the storage guard, counting as a table's owner, the usage worker): src/quota.rs.
--
-- What isolation and pinning install (tenant._quota_attach, one call from each):
--   qft_storage_quota  BEFORE INSERT OR UPDATE FOR EACH STATEMENT  tenant._storage_guard()
--   qft_rate_limit     AFTER INSERT FOR EACH STATEMENT (NEW TABLE)  tenant._rate_guard()   (rate-limited tables only)
-- Both are statement triggers: outside cross-tenant mode row security already confines a
-- statement's rows to the current tenant, so the current tenant's flag (or counter) decides for
-- all of them at once, whatever the number of rows.

-- Every change to tenant.quota_state makes every backend drop its cached storage flags at commit.
CREATE OR REPLACE FUNCTION tenant._quota_changed_trigger() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._quota_changed();
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER quota_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.quota_state
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._quota_changed_trigger();
-- And every change to the rate limits (the executor's list of rate-limited tables where Citus
-- leaves no room for the trigger, and what a Citus coordinator puts in node contexts, src/quota.rs).
CREATE OR REPLACE TRIGGER quota_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.rate_limits
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._quota_changed_trigger();

-- The storage guard (src/quota.rs): refuses INSERT and UPDATE (53400) while the current tenant is
-- over its storage limit, except in cross-tenant mode.
CREATE OR REPLACE FUNCTION tenant._storage_guard() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'storage_guard_wrapper';

-- The rate guard: counts a statement's inserted rows against the current tenant's counter of the
-- day (UTC) for the rate-limited table, and refuses (53400) a statement that would pass the limit.
-- SECURITY DEFINER: application roles cannot touch the counters. It evaluates nothing of the
-- table but the number of rows in the transition table.
CREATE OR REPLACE FUNCTION tenant._rate_guard() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._rate_record(TG_RELID, (SELECT count(*) FROM qft_new_rows));
    RETURN NULL;
END
$$;

-- Counts n rows inserted into rel (a rate-limited table or a partition of one) by the current
-- tenant: the rate guard's work, and the executor's where Citus leaves no room for the trigger
-- (src/quota.rs, a table local to a Citus coordinator). The counter row is the tenant's own, so
-- tenants never wait for each other; inserts of one tenant serialise on it until commit, which is
-- what keeps the count exact (READ COMMITTED re-checks the limit on the row it waited for;
-- REPEATABLE READ fails with 40001 instead). Run as the extension owner.
CREATE OR REPLACE FUNCTION tenant._rate_record(rel regclass, n bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid bigint;
    root regclass;
    lim integer;
    who text;
    total bigint;
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF n = 0 OR tenant.cross_tenant_active() OR tenant._quota_exempt() THEN
        RETURN; -- audited cross-tenant mode, tenant_admin members: neither limited nor counted
    END IF;
    tid := tenant.current_tenant_id();
    IF tid IS NULL THEN
        RETURN; -- row security refuses the write, or the role bypasses it and is no tenant
    END IF;
    SELECT l.counted_as, coalesce(r.max_inserts_per_day, t.max_runs_per_day), t.slug INTO root, lim, who
      FROM tenant.rate_limits l
      JOIN tenant.rate_limits r ON r.relid = l.counted_as
      JOIN tenant.tenants t ON t.id = tid
     WHERE l.relid = rel;
    IF root IS NULL THEN
        RETURN; -- a copy of a rate-limited table (clone_schema) that is not limited itself
    END IF;
    IF lim IS NULL OR n <= lim THEN
        INSERT INTO tenant.rate_counters AS c (relid, tenant_id, day, inserts) VALUES (root, tid, today, n)
        ON CONFLICT (relid, tenant_id, day) DO UPDATE SET inserts = c.inserts + excluded.inserts
            WHERE lim IS NULL OR c.inserts + excluded.inserts <= lim
        RETURNING c.inserts INTO total;
    END IF;
    IF total IS NULL THEN
        SELECT c.inserts INTO total FROM tenant.rate_counters c
         WHERE c.relid = root AND c.tenant_id = tid AND c.day = today;
        PERFORM tenant._rate_refuse(who, lim, root, today, total, n);
    END IF;
    IF total = lim THEN
        PERFORM tenant._audit('rate_limit_reached', who, tid,
                              jsonb_build_object('table', root::text, 'day', today, 'max_inserts_per_day', lim));
    END IF;
END
$$;

-- On a Citus worker (src/quota.rs): counts n rows the node context's tenant tid inserted into a
-- shard of root, the worker's copy of a rate-limited table, against lim, the limit the
-- coordinator put in the node context (NULL: counted, not limited), in this node's counters --
-- the tenant's rows of a table distributed by its tenant column, or of a distributed tenant
-- schema, are all on one node, and every placement of a reference table counts the same inserts.
-- Serialised per tenant on the counter row, as on one node. Counters older than a week go.
CREATE OR REPLACE FUNCTION tenant._node_rate_record(root regclass, tid bigint, who text, lim integer, n bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    IF lim IS NULL OR n <= lim THEN
        INSERT INTO tenant.node_rate_counters AS c (relid, tenant_id, day, inserts) VALUES (root, tid, today, n)
        ON CONFLICT (relid, tenant_id, day) DO UPDATE SET inserts = c.inserts + excluded.inserts
            WHERE lim IS NULL OR c.inserts + excluded.inserts <= lim
        RETURNING c.inserts INTO total;
    END IF;
    IF total IS NULL THEN
        SELECT c.inserts INTO total FROM tenant.node_rate_counters c
         WHERE c.relid = root AND c.tenant_id = tid AND c.day = today;
        PERFORM tenant._rate_refuse(who, lim, root, today, total, n);
    END IF;
    DELETE FROM tenant.node_rate_counters c WHERE c.relid = root AND c.tenant_id = tid AND c.day < today - 7;
END
$$;

-- The refusal of a statement that would take tenant who past lim inserts into root on day.
CREATE OR REPLACE FUNCTION tenant._rate_refuse(who text, lim integer, root regclass, day date, total bigint, n bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'tenant "%" has reached its limit of % inserts per day into %', who, lim, root
        USING ERRCODE = '53400',
              DETAIL = format('%s rows inserted on %s (UTC); this statement would add %s.', coalesce(total, 0), day, n),
              HINT = 'The count starts again at midnight UTC; a tenant_admin can raise it with tenant.limit_rate() or tenant.set_limits(max_runs_per_day => ...).';
END
$$;

-- Counts inserts into tbl against the rate limit of counted_as (tbl itself, or its partitioned table).
CREATE OR REPLACE FUNCTION tenant._rate_attach(tbl regclass, counted_as regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tbl <> counted_as THEN
        INSERT INTO tenant.rate_limits AS l (relid, counted_as) VALUES (tbl, _rate_attach.counted_as)
        ON CONFLICT (relid) DO UPDATE SET counted_as = excluded.counted_as, max_inserts_per_day = NULL;
    END IF;
    -- In a Citus database the executor counts instead (src/quota.rs): Citus refuses triggers on
    -- its tables, and to distribute a table that has one.
    IF NOT tenant._citus_no_triggers() THEN
        EXECUTE format('CREATE OR REPLACE TRIGGER qft_rate_limit AFTER INSERT ON %s REFERENCING NEW TABLE AS qft_new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION tenant._rate_guard()', tbl);
    END IF;
END
$$;

-- The one call isolation (_enable_isolation) and pinning (_pin_table) make: the storage guard on
-- the table, and the rate guard if it is (a partition of) a rate-limited table. Idempotent.
CREATE OR REPLACE FUNCTION tenant._quota_attach(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    root regclass;
BEGIN
    -- Citus refuses triggers on its tables unless citus.enable_unsafe_triggers is on, and to
    -- distribute a table that has one: in a Citus database (any table: a local one may be
    -- distributed later, sql/citus.sql) the executor checks the storage limit and counts rate
    -- limits instead (src/quota.rs); _rate_attach then only records a partition's limit.
    IF NOT tenant._citus_no_triggers() THEN
        EXECUTE format('CREATE OR REPLACE TRIGGER qft_storage_quota BEFORE INSERT OR UPDATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION tenant._storage_guard()', tbl);
    END IF;
    -- (pg_partition_ancestors lists nothing for a table that is no partition)
    SELECT l.counted_as INTO root
      FROM (SELECT tbl AS relid UNION SELECT a.relid FROM pg_partition_ancestors(tbl) a) a
      JOIN tenant.rate_limits l ON l.relid = a.relid
     ORDER BY l.relid = tbl DESC LIMIT 1;
    IF root IS NOT NULL THEN
        PERFORM tenant._rate_attach(tbl, root);
    END IF;
END
$$;

-- Drops one of the extension's triggers from tbl if it is there (DROP TRIGGER IF EXISTS would
-- say NOTICE for every table that has none).
CREATE OR REPLACE FUNCTION tenant._quota_drop_trigger(tbl regclass, trigger_name name) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = tbl AND g.tgname = trigger_name) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, tbl);
    END IF;
END
$$;

-- The one call _disable_isolation makes: removes what _quota_attach and limit_rate put on tbl.
CREATE OR REPLACE FUNCTION tenant._quota_detach(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    PERFORM tenant._quota_drop_trigger(tbl, 'qft_storage_quota');
    PERFORM tenant._quota_drop_trigger(tbl, 'qft_rate_limit');
    FOR r IN DELETE FROM tenant.rate_limits l WHERE l.relid = tbl OR l.counted_as = tbl
             RETURNING l.relid, l.counted_as, l.max_inserts_per_day LOOP
        IF r.relid = tbl AND r.counted_as = tbl THEN
            PERFORM tenant._audit('rate_limit_removed', tbl::text, NULL,
                                  jsonb_build_object('max_inserts_per_day', r.max_inserts_per_day,
                                                     'reason', 'isolation disabled'));
        ELSIF r.relid <> tbl AND EXISTS (SELECT FROM pg_class c WHERE c.oid = r.relid) THEN
            PERFORM tenant._quota_drop_trigger(r.relid, 'qft_rate_limit');
        END IF;
    END LOOP;
END
$$;

-- Whether tbl is governed by the quotas: isolated, or a table of a tenant schema (pinned).
CREATE OR REPLACE FUNCTION tenant._quota_governed(tbl regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = tbl)
        OR EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN tenant.tenants t ON t.schema_name = n.nspname
                    WHERE c.oid = tbl AND c.relkind IN ('r', 'p'))
$$;

-- Usage rows: one per tenant and relation.
--   schema mode: every table and materialized view of the tenant's schema is the tenant's, whole:
--     its exact bytes (heap, indexes, TOAST) and the planner's estimate of its rows (NULL before
--     its first VACUUM or ANALYZE) -- catalog lookups only;
--   shared isolated tables (outside tenant schemas; each partition of a partitioned one): the
--     tenant's exact rows, counted through the tenant index by tenant._table_usage, and the
--     table's bytes apportioned by rows.
-- only_tenant NULL: every tenant; one pass over each shared table, exact totals. A tenant: its
-- range of each tenant index, the table's total estimated (see tenant._table_usage).
CREATE OR REPLACE FUNCTION tenant._usage_rows(only_tenant bigint)
RETURNS TABLE(tenant_id bigint, relation regclass, rows bigint, bytes bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    leaf record;
BEGIN
    -- (A table of a distributed schema has its data on a Citus worker: its bytes are
    -- citus_total_relation_size's, its rows not estimated, sql/citus.sql.)
    RETURN QUERY
        SELECT t.id, c.oid::regclass,
               CASE WHEN k.sharded IS NOT TRUE THEN
                   tenant._estimated_rows(c.reltuples, c.relpages,
                                          pg_relation_size(c.oid) / current_setting('block_size')::bigint) END,
               CASE WHEN k.sharded IS NOT TRUE THEN pg_total_relation_size(c.oid) ELSE tenant._citus_relation_size(c.oid) END
          FROM tenant.tenants t
          JOIN pg_namespace n ON n.nspname = t.schema_name
          JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')
          CROSS JOIN LATERAL (SELECT tenant._citus_kind(c.oid) IN ('distributed', 'reference') AS sharded) k
         WHERE only_tenant IS NULL OR t.id = only_tenant
         ORDER BY t.id, c.oid;
    FOR leaf IN
        SELECT l.oid::regclass AS relid, i.tenant_column, a.atttypid
          FROM tenant.isolated_tables i
          JOIN pg_class c ON c.oid = i.relid AND NOT c.relispartition
          -- (pg_partition_tree lists nothing for a table that is not partitioned)
          CROSS JOIN LATERAL (SELECT i.relid::oid AS oid WHERE c.relkind = 'r'
                              UNION ALL
                              SELECT p.relid::oid FROM pg_partition_tree(i.relid) p WHERE c.relkind = 'p') leaves
          JOIN pg_class l ON l.oid = leaves.oid AND l.relkind = 'r'
          JOIN pg_attribute a ON a.attrelid = l.oid AND a.attname = i.tenant_column AND a.attnum > 0 AND NOT a.attisdropped
         WHERE NOT EXISTS (SELECT FROM tenant.tenants t JOIN pg_namespace n ON n.nspname = t.schema_name
                            WHERE n.oid = l.relnamespace)
         ORDER BY l.oid
    LOOP
        IF tenant._citus_kind(leaf.relid) IN ('distributed', 'reference') THEN
            -- On the Citus workers: every shard counted there as on one node (sql/citus.sql).
            RETURN QUERY
                SELECT t.id, leaf.relid::regclass, x.rows, x.bytes
                  FROM tenant._citus_table_usage(leaf.relid, leaf.tenant_column) x
                  JOIN tenant.tenants t
                    ON x.tenant_key = CASE WHEN leaf.atttypid = 'uuid'::regtype THEN t.uuid::text ELSE t.id::text END
                 WHERE only_tenant IS NULL OR t.id = only_tenant;
        ELSIF leaf.atttypid = 'uuid'::regtype THEN
            -- A uuid tenant column holds the tenant's uuid (issue 15), looked up by name at run time.
            RETURN QUERY EXECUTE
                'SELECT t.id, $1::regclass, x.rows, x.bytes
                   FROM tenant._table_usage($1, $2, (SELECT u.uuid::text FROM tenant.tenants u WHERE u.id = $3)) x
                   JOIN tenant.tenants t ON t.uuid::text = x.tenant_key
                  WHERE $3 IS NULL OR t.id = $3'
                USING leaf.relid, leaf.tenant_column, only_tenant;
        ELSE
            RETURN QUERY
                SELECT t.id, leaf.relid::regclass, x.rows, x.bytes
                  FROM tenant._table_usage(leaf.relid, leaf.tenant_column, only_tenant::text) x
                  JOIN tenant.tenants t ON t.id::text = x.tenant_key;
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION tenant._usage(tenant_arg text)
RETURNS TABLE(slug text, id bigint, rel regclass, n bigint, b bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    only_tenant bigint;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'read tenant usage');
    IF tenant_arg IS NOT NULL THEN
        only_tenant := (tenant._resolve(tenant_arg)).id;
    END IF;
    RETURN QUERY
        SELECT t.slug, u.tenant_id, u.relation, u.rows, u.bytes
          FROM tenant._usage_rows(only_tenant) u JOIN tenant.tenants t ON t.id = u.tenant_id
         ORDER BY t.slug, u.relation::text;
END
$$;

-- A SQL wrapper: the contract's column "tenant" and argument "tenant" cannot be PL/pgSQL names
-- beside the schema of the same name.
CREATE OR REPLACE FUNCTION tenant.usage(tenant text DEFAULT NULL)
RETURNS TABLE(tenant text, tenant_id bigint, relation regclass, rows bigint, bytes bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT u.slug, u.id, u.rel, u.n, u.b FROM tenant._usage($1) u $$;

-- Every tenant's measured bytes now, against its limit.
CREATE OR REPLACE FUNCTION tenant._usage_summary()
RETURNS TABLE(slug text, id bigint, tier text, b bigint, max_mb integer, over boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'read tenant usage');
    RETURN QUERY
        SELECT t.slug, t.id, t.tier, coalesce(s.b, 0)::bigint, t.max_storage_mb,
               tenant._over_storage_limit(coalesce(s.b, 0)::bigint, t.max_storage_mb)
          FROM tenant.tenants t
          LEFT JOIN (SELECT u.tenant_id, sum(u.bytes) AS b FROM tenant._usage_rows(NULL) u GROUP BY u.tenant_id) s
                 ON s.tenant_id = t.id
         ORDER BY t.slug;
END
$$;

CREATE OR REPLACE FUNCTION tenant.usage_summary()
RETURNS TABLE(tenant text, tenant_id bigint, tier text, bytes bigint, max_storage_mb integer, over_quota boolean)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT s.slug, s.id, s.tier, s.b, s.max_mb, s.over FROM tenant._usage_summary() s $$;

-- The sweep: measures every tenant, stores its bytes and flag in tenant.quota_state (which
-- invalidates every backend's cached flags), audits every tenant that crossed its limit either
-- way, prunes rate counters older than a week and the limits of tables that no longer exist.
-- Returns the number of tenants that crossed. One sweep at a time (the lock also keeps
-- set_limits from re-assessing a tenant halfway through one).
CREATE OR REPLACE FUNCTION tenant._refresh_usage() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started timestamptz := clock_timestamp();
    crossed integer;
BEGIN
    LOCK TABLE tenant.quota_state IN SHARE ROW EXCLUSIVE MODE;
    WITH measured AS (
        SELECT t.id, t.slug, t.max_storage_mb, coalesce(s.b, 0)::bigint AS bytes
          FROM tenant.tenants t
          LEFT JOIN (SELECT u.tenant_id, sum(u.bytes) AS b FROM tenant._usage_rows(NULL) u GROUP BY u.tenant_id) s
                 ON s.tenant_id = t.id
    ), judged AS (
        SELECT m.id, m.slug, m.max_storage_mb, m.bytes,
               tenant._over_storage_limit(m.bytes, m.max_storage_mb) AS over,
               coalesce(q.over_quota, false) AS was_over,
               CASE WHEN q.over_quota THEN q.over_since END AS over_since
          FROM measured m LEFT JOIN tenant.quota_state q ON q.tenant_id = m.id
    ), saved AS (
        INSERT INTO tenant.quota_state AS q (tenant_id, bytes, max_storage_mb, over_quota, measured_at, over_since)
        SELECT j.id, j.bytes, j.max_storage_mb, j.over, started, CASE WHEN j.over THEN coalesce(j.over_since, started) END
          FROM judged j
        ON CONFLICT (tenant_id) DO UPDATE
            SET bytes = excluded.bytes, max_storage_mb = excluded.max_storage_mb, over_quota = excluded.over_quota,
                measured_at = excluded.measured_at, over_since = excluded.over_since
        RETURNING q.tenant_id
    )
    SELECT count(*) INTO crossed
      FROM judged j,
           LATERAL (SELECT tenant._audit(CASE WHEN j.over THEN 'storage_quota_exceeded' ELSE 'storage_quota_restored' END,
                                         j.slug, j.id,
                                         jsonb_build_object('bytes', j.bytes, 'max_storage_mb', j.max_storage_mb))) a
     WHERE j.over <> j.was_over;
    DELETE FROM tenant.rate_counters c
     WHERE c.day < (now() AT TIME ZONE 'UTC')::date - 7
        OR NOT EXISTS (SELECT FROM pg_class r WHERE r.oid = c.relid);
    DELETE FROM tenant.rate_limits l WHERE NOT EXISTS (SELECT FROM pg_class r WHERE r.oid = l.relid);
    UPDATE tenant.quota_status
       SET last_refresh_at = clock_timestamp(),
           last_refresh_ms = extract(epoch FROM clock_timestamp() - started) * 1000;
    RETURN crossed;
END
$$;

-- For the usage worker: records the interval it runs with (0: it is stopping), and sweeps. A
-- failed sweep is a WARNING in the server log, and the worker goes on.
CREATE OR REPLACE FUNCTION tenant._refresh_usage_logged(worker_interval integer) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE tenant.quota_status SET worker_interval_s = worker_interval;
    IF worker_interval > 0 THEN
        BEGIN
            PERFORM tenant._refresh_usage();
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'qualityfoundry_tenant: the usage sweep failed: % (SQLSTATE %)', SQLERRM, SQLSTATE;
        END;
    END IF;
END
$$;

CREATE OR REPLACE PROCEDURE tenant.refresh_usage()
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'refresh tenant usage');
    PERFORM tenant._refresh_usage();
END
$$;

-- After a limit changed: the tenant's flag against its new limit, from its last measurement (the
-- sweep's figure, so the two agree), or measured now if it was never measured.
CREATE OR REPLACE FUNCTION tenant._quota_reassess(tid bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
    q tenant.quota_state;
    used bigint;
    measured timestamptz;
    over boolean;
BEGIN
    SELECT * INTO t FROM tenant.tenants x WHERE x.id = tid;
    SELECT * INTO q FROM tenant.quota_state x WHERE x.tenant_id = tid;
    IF q.tenant_id IS NULL THEN
        IF t.max_storage_mb IS NULL THEN
            RETURN;
        END IF;
        SELECT coalesce(sum(u.bytes), 0)::bigint INTO used FROM tenant._usage_rows(tid) u;
        measured := clock_timestamp();
    ELSE
        used := q.bytes;
        measured := q.measured_at;
    END IF;
    over := tenant._over_storage_limit(used, t.max_storage_mb);
    INSERT INTO tenant.quota_state AS s (tenant_id, bytes, max_storage_mb, over_quota, measured_at, over_since)
    VALUES (tid, used, t.max_storage_mb, over, measured, CASE WHEN over THEN clock_timestamp() END)
    ON CONFLICT (tenant_id) DO UPDATE
        SET max_storage_mb = excluded.max_storage_mb, over_quota = excluded.over_quota,
            over_since = CASE WHEN excluded.over_quota THEN coalesce(s.over_since, excluded.over_since) END;
    IF over <> coalesce(q.over_quota, false) THEN
        PERFORM tenant._audit(CASE WHEN over THEN 'storage_quota_exceeded' ELSE 'storage_quota_restored' END,
                              t.slug, t.id, jsonb_build_object('bytes', used, 'max_storage_mb', t.max_storage_mb));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION tenant._quota_check_limit(what text, value integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value <= 0 THEN
        RAISE EXCEPTION '% must be positive, not %', what, value USING ERRCODE = '22023',
            HINT = 'Limits are positive; NULL leaves a limit as it is, tenant.clear_limits() removes one.';
    END IF;
END
$$;

-- Sets the limits flagged (the others stay) for set_limits and clear_limits: under the lock that
-- keeps the sweep out, audited with the values they replace, the tenant's flag re-evaluated at once.
CREATE OR REPLACE FUNCTION tenant._quota_change_limits(tid bigint, set_storage boolean, storage_mb integer,
                                                       set_runs boolean, runs_per_day integer, action text)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before tenant.tenants;
    after tenant.tenants;
BEGIN
    LOCK TABLE tenant.quota_state IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO before FROM tenant.tenants x WHERE x.id = tid FOR UPDATE;
    UPDATE tenant.tenants x
       SET max_storage_mb = CASE WHEN set_storage THEN storage_mb ELSE x.max_storage_mb END,
           max_runs_per_day = CASE WHEN set_runs THEN runs_per_day ELSE x.max_runs_per_day END
     WHERE x.id = tid
    RETURNING x.* INTO after;
    PERFORM tenant._audit(action, after.slug, tid,
                          jsonb_build_object('max_storage_mb', after.max_storage_mb,
                                             'max_runs_per_day', after.max_runs_per_day,
                                             'previous', jsonb_build_object('max_storage_mb', before.max_storage_mb,
                                                                            'max_runs_per_day', before.max_runs_per_day)));
    PERFORM tenant._quota_reassess(tid);
    -- The limits a Citus coordinator puts in node contexts are cached per backend (src/quota.rs).
    PERFORM tenant._quota_changed();
END
$$;

-- NULL leaves a limit as it is (as set_role_rules does); tenant.clear_limits() removes one.
CREATE OR REPLACE FUNCTION tenant.set_limits(tenant text, max_storage_mb integer DEFAULT NULL,
                                             max_runs_per_day integer DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'set the limits of a tenant');
    t := tenant._resolve(tenant);
    IF set_limits.max_storage_mb IS NULL AND set_limits.max_runs_per_day IS NULL THEN
        RAISE EXCEPTION 'no limit given for tenant "%"', t.slug USING ERRCODE = '22023',
            HINT = 'Pass max_storage_mb and/or max_runs_per_day; tenant.clear_limits() removes limits.';
    END IF;
    PERFORM tenant._quota_check_limit('max_storage_mb', set_limits.max_storage_mb);
    PERFORM tenant._quota_check_limit('max_runs_per_day', set_limits.max_runs_per_day);
    PERFORM tenant._quota_change_limits(t.id, set_limits.max_storage_mb IS NOT NULL, set_limits.max_storage_mb,
                                        set_limits.max_runs_per_day IS NOT NULL, set_limits.max_runs_per_day,
                                        'limits_set');
    PERFORM tenant._usage_worker_check();
END
$$;

-- Removes limits (unlimited from now on): both by default.
CREATE OR REPLACE FUNCTION tenant.clear_limits(tenant text, max_storage_mb boolean DEFAULT true,
                                               max_runs_per_day boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'clear the limits of a tenant');
    t := tenant._resolve(tenant);
    IF clear_limits.max_storage_mb IS NULL OR clear_limits.max_runs_per_day IS NULL THEN
        RAISE EXCEPTION 'max_storage_mb and max_runs_per_day must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT (clear_limits.max_storage_mb OR clear_limits.max_runs_per_day) THEN
        RAISE EXCEPTION 'no limit to clear for tenant "%"', t.slug USING ERRCODE = '22023',
            HINT = 'Pass max_storage_mb => true and/or max_runs_per_day => true.';
    END IF;
    PERFORM tenant._quota_change_limits(t.id, clear_limits.max_storage_mb, NULL,
                                        clear_limits.max_runs_per_day, NULL, 'limits_cleared');
END
$$;

-- A tier's defaults for tenants created from now on (NULL: no default for that limit); existing
-- tenants keep theirs.
CREATE OR REPLACE FUNCTION tenant.set_tier_limits(tier text, max_storage_mb integer, max_runs_per_day integer)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev tenant.tiers;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'set the limits of a tier');
    IF set_tier_limits.tier IS NULL THEN
        RAISE EXCEPTION 'tier must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF set_tier_limits.tier NOT IN ('free', 'pro', 'enterprise') THEN
        RAISE EXCEPTION 'invalid tier %', quote_literal(set_tier_limits.tier) USING ERRCODE = '22023',
            HINT = 'Use free, pro or enterprise.';
    END IF;
    PERFORM tenant._quota_check_limit('max_storage_mb', set_tier_limits.max_storage_mb);
    PERFORM tenant._quota_check_limit('max_runs_per_day', set_tier_limits.max_runs_per_day);
    SELECT * INTO prev FROM tenant.tiers x WHERE x.tier = set_tier_limits.tier;
    INSERT INTO tenant.tiers AS x (tier, max_storage_mb, max_runs_per_day)
    VALUES (set_tier_limits.tier, set_tier_limits.max_storage_mb, set_tier_limits.max_runs_per_day)
    ON CONFLICT ON CONSTRAINT tiers_pkey DO UPDATE
        SET max_storage_mb = excluded.max_storage_mb, max_runs_per_day = excluded.max_runs_per_day;
    PERFORM tenant._audit('tier_limits_set', set_tier_limits.tier, NULL,
                          jsonb_build_object('max_storage_mb', set_tier_limits.max_storage_mb,
                                             'max_runs_per_day', set_tier_limits.max_runs_per_day,
                                             'previous', jsonb_build_object('max_storage_mb', prev.max_storage_mb,
                                                                            'max_runs_per_day', prev.max_runs_per_day)));
END
$$;

-- The one call create_tenant makes, right after inserting the tenant's row: the tenant cap
-- (qualityfoundry_tenant.max_tenants; past it 53400, and the error undoes the whole create), then
-- the tier's default limits.
CREATE OR REPLACE FUNCTION tenant._quota_tenant_created(new_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cap integer := tenant._quota_max_tenants();
    n bigint;
    t tenant.tenants;
    d tenant.tiers;
BEGIN
    SELECT * INTO t FROM tenant.tenants x WHERE x.id = new_id;
    IF cap >= 0 THEN
        -- Concurrent creates serialise on this row: under READ COMMITTED the second waits and
        -- then counts the first; under REPEATABLE READ it fails with 40001 rather than count past
        -- the cap (SERIALIZABLE would catch it anyway).
        UPDATE tenant.quota_status SET last_cap_check_at = clock_timestamp();
        SELECT count(*) INTO n FROM tenant.tenants;
        IF n > cap THEN
            RAISE EXCEPTION 'cannot create tenant "%": the database already has its maximum of % tenants', t.slug, cap
                USING ERRCODE = '53400',
                      DETAIL = format('qualityfoundry_tenant.max_tenants is %s; %s tenants exist.', cap, n - 1),
                      HINT = 'Drop a tenant, or ask a superuser to raise qualityfoundry_tenant.max_tenants.';
        END IF;
    END IF;
    SELECT * INTO d FROM tenant.tiers x WHERE x.tier = t.tier;
    IF d.max_storage_mb IS NOT NULL OR d.max_runs_per_day IS NOT NULL THEN
        UPDATE tenant.tenants x
           SET max_storage_mb = coalesce(x.max_storage_mb, d.max_storage_mb),
               max_runs_per_day = coalesce(x.max_runs_per_day, d.max_runs_per_day)
         WHERE x.id = new_id;
        PERFORM tenant._audit('limits_set', t.slug, t.id,
                              jsonb_build_object('max_storage_mb', coalesce(t.max_storage_mb, d.max_storage_mb),
                                                 'max_runs_per_day', coalesce(t.max_runs_per_day, d.max_runs_per_day),
                                                 'tier', t.tier));
    END IF;
    IF n = cap THEN
        PERFORM tenant._audit('tenant_cap_reached', t.slug, t.id, jsonb_build_object('max_tenants', cap));
    END IF;
END
$$;

-- Limits the inserts into tbl (an isolated or pinned table, with its partitions) per tenant per UTC
-- day: max_inserts_per_day, or each tenant's max_runs_per_day when NULL. Calling it again changes
-- the limit; today's count stays.
CREATE OR REPLACE FUNCTION tenant.limit_rate(tbl regclass, max_inserts_per_day integer DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev tenant.rate_limits;
    part regclass;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'set a rate limit');
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'tbl must not be NULL' USING ERRCODE = '22004';
    END IF;
    PERFORM tenant._quota_check_limit('max_inserts_per_day', limit_rate.max_inserts_per_day);
    IF EXISTS (SELECT FROM pg_class c WHERE c.oid = tbl AND c.relispartition) THEN
        RAISE EXCEPTION '% is a partition', tbl USING ERRCODE = '22023',
            HINT = 'Limit its partitioned table: inserts into every partition count against it.';
    END IF;
    IF NOT tenant._quota_governed(tbl) THEN
        RAISE EXCEPTION 'table % is neither isolated nor in a tenant schema', tbl USING ERRCODE = '22023',
            HINT = 'Rate limits count per tenant: call tenant.enable_isolation() first.';
    END IF;
    PERFORM tenant._citus_require_one_node_per_tenant(tbl); -- sql/citus.sql
    SELECT * INTO prev FROM tenant.rate_limits l WHERE l.relid = tbl;
    INSERT INTO tenant.rate_limits AS l (relid, counted_as, max_inserts_per_day)
    VALUES (tbl, tbl, limit_rate.max_inserts_per_day)
    ON CONFLICT (relid) DO UPDATE SET counted_as = excluded.counted_as,
        max_inserts_per_day = excluded.max_inserts_per_day, set_at = now();
    FOR part IN SELECT tbl UNION SELECT p.relid FROM pg_partition_tree(tbl) p LOOP
        PERFORM tenant._rate_attach(part, tbl);
    END LOOP;
    PERFORM tenant._audit('rate_limit_set', tbl::text, NULL,
                          jsonb_build_object('max_inserts_per_day', limit_rate.max_inserts_per_day,
                                             'previous', CASE WHEN prev.relid IS NOT NULL
                                                              THEN jsonb_build_object('max_inserts_per_day', prev.max_inserts_per_day) END));
END
$$;

CREATE OR REPLACE FUNCTION tenant.drop_rate_limit(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev tenant.rate_limits;
    part regclass;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'drop a rate limit');
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'tbl must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO prev FROM tenant.rate_limits l WHERE l.relid = tbl AND l.counted_as = tbl;
    IF prev.relid IS NULL THEN
        RAISE EXCEPTION 'table % has no rate limit', tbl USING ERRCODE = '22023',
            HINT = 'tenant.rate_limits lists them; a partition counts against its partitioned table''s limit.';
    END IF;
    FOR part IN DELETE FROM tenant.rate_limits l WHERE l.counted_as = tbl RETURNING l.relid LOOP
        IF EXISTS (SELECT FROM pg_class c WHERE c.oid = part) THEN
            PERFORM tenant._quota_drop_trigger(part, 'qft_rate_limit');
        END IF;
    END LOOP;
    PERFORM tenant._audit('rate_limit_removed', tbl::text, NULL,
                          jsonb_build_object('max_inserts_per_day', prev.max_inserts_per_day));
END
$$;

REVOKE ALL ON PROCEDURE tenant.refresh_usage() FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tenant.refresh_usage() TO tenant_admin;
GRANT EXECUTE ON FUNCTION
    tenant.usage(text), tenant.usage_summary(),
    tenant.set_limits(text, integer, integer), tenant.clear_limits(text, boolean, boolean),
    tenant.set_tier_limits(text, integer, integer),
    tenant.limit_rate(regclass, integer), tenant.drop_rate_limit(regclass)
TO tenant_admin;
GRANT SELECT ON tenant.tiers, tenant.quota_state, tenant.quota_status, tenant.rate_limits, tenant.rate_counters,
    tenant.node_rate_counters
TO tenant_admin;
