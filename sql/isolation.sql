-- Row isolation for shared tables.
--
-- Policy shape (every name below is created by enable_isolation and removed by disable_isolation):
--   qft_tenant_isolation  PERMISSIVE  ALL  TO PUBLIC            col = tenant.current_tenant_id()
--   qft_cross_tenant      PERMISSIVE  ALL  TO tenant_superuser  tenant.cross_tenant_active()
--   qft_tenant_guard      RESTRICTIVE ALL  TO PUBLIC            col = current_tenant_id() OR cross_tenant_active()
-- With allow_shared_rows the guard is split per command so NULL-tenant rows are readable by every
-- tenant (qft_shared_read, qft_tenant_guard_select) but never written (insert/update/delete guards).
-- The restrictive guard is what no permissive policy added later can widen; the plain equality in
-- the permissive policy is what the planner turns into an index condition.

-- Drops the extension's own policies on a table (all named qft_*; `names` narrows it to a list)
-- and never anyone else's.
CREATE OR REPLACE FUNCTION tenant._drop_qft_policies(tbl regclass, names name[] DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p name;
BEGIN
    FOR p IN SELECT polname FROM pg_policy
              WHERE polrelid = tbl AND polname LIKE 'qft\_%' AND (names IS NULL OR polname = ANY (names)) LOOP
        EXECUTE format('DROP POLICY %I ON %s', p, tbl);
    END LOOP;
END
$$;

-- The way through for tenant_superuser members in audited cross-tenant mode; the same on isolated
-- tables and on tables pinned in tenant schemas.
CREATE OR REPLACE FUNCTION tenant._cross_tenant_policy(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE POLICY qft_cross_tenant ON %s AS PERMISSIVE FOR ALL TO tenant_superuser '
                   'USING (tenant.cross_tenant_active()) WITH CHECK (tenant.cross_tenant_active())', tbl);
END
$$;

CREATE OR REPLACE FUNCTION tenant._isolation_policies(tbl regclass, col name, shared boolean) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mine text := format('%I OPERATOR(pg_catalog.=) tenant.current_tenant_id()', col);
    guard text := format('(%I OPERATOR(pg_catalog.=) tenant.current_tenant_id() OR tenant.cross_tenant_active())', col);
BEGIN
    PERFORM tenant._drop_qft_policies(tbl);
    EXECUTE format('CREATE POLICY qft_tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)',
                   tbl, mine, mine);
    PERFORM tenant._cross_tenant_policy(tbl);
    IF NOT shared THEN
        EXECUTE format('CREATE POLICY qft_tenant_guard ON %s AS RESTRICTIVE FOR ALL TO PUBLIC USING %s WITH CHECK %s',
                       tbl, guard, guard);
    ELSE
        EXECUTE format('CREATE POLICY qft_shared_read ON %s AS PERMISSIVE FOR SELECT TO PUBLIC USING (%I IS NULL)',
                       tbl, col);
        EXECUTE format('CREATE POLICY qft_tenant_guard_select ON %s AS RESTRICTIVE FOR SELECT TO PUBLIC '
                       'USING (%s OR %I IS NULL)', tbl, guard, col);
        EXECUTE format('CREATE POLICY qft_tenant_guard_insert ON %s AS RESTRICTIVE FOR INSERT TO PUBLIC WITH CHECK %s',
                       tbl, guard);
        EXECUTE format('CREATE POLICY qft_tenant_guard_update ON %s AS RESTRICTIVE FOR UPDATE TO PUBLIC '
                       'USING %s WITH CHECK %s', tbl, guard, guard);
        EXECUTE format('CREATE POLICY qft_tenant_guard_delete ON %s AS RESTRICTIVE FOR DELETE TO PUBLIC USING %s',
                       tbl, guard);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION tenant._enable_isolation(tbl regclass, tenant_column name, allow_shared_rows boolean) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    att record;
    existing tenant.isolated_tables;
    n bigint;
    idx name;
    added_default boolean := false;
    added_not_null boolean := false;
    part regclass;
    unknown bigint;
    unknown_ids bigint[];
BEGIN
    IF tbl IS NULL OR tenant_column IS NULL OR allow_shared_rows IS NULL THEN
        RAISE EXCEPTION 'tbl, tenant_column and allow_shared_rows must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT c.relkind, c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relispartition INTO rel
      FROM pg_class c WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809',
            HINT = 'Isolation applies to ordinary and partitioned tables; views should use security_invoker.';
    END IF;
    SELECT a.attnum, a.atttypid, a.attnotnull, a.atthasdef INTO att
      FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF att.attnum IS NULL THEN
        RAISE EXCEPTION 'column % of table % does not exist', quote_ident(tenant_column), tbl USING ERRCODE = '42703',
            HINT = 'Pass the tenant column''s name, or add one with tenant.add_tenant_column().';
    END IF;
    IF att.atttypid NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        RAISE EXCEPTION 'tenant column % of table % is of type %', quote_ident(tenant_column), tbl, att.atttypid::regtype
            USING ERRCODE = '42804', HINT = 'The tenant column must be smallint, integer or bigint.';
    END IF;

    SELECT * INTO existing FROM tenant.isolated_tables WHERE relid = tbl;
    IF existing.relid IS NOT NULL THEN
        IF existing.tenant_column = tenant_column AND existing.allow_shared_rows = allow_shared_rows THEN
            -- Idempotent: re-assert what may have drifted, change nothing else.
            EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
            PERFORM tenant._isolation_policies(tbl, tenant_column, allow_shared_rows);
            PERFORM tenant._add_fill_trigger(tbl, tenant_column, allow_shared_rows);
            FOR part IN SELECT h.inhrelid::regclass FROM pg_inherits h WHERE h.inhparent = tbl
                           AND NOT EXISTS (SELECT FROM tenant.isolated_tables j WHERE j.relid::oid = h.inhrelid) LOOP
                PERFORM tenant._enable_isolation(part, tenant_column, allow_shared_rows);
            END LOOP;
            PERFORM tenant._quota_attach(tbl); -- usage and quotas (sql/quotas.sql)
            RETURN;
        END IF;
        PERFORM tenant._disable_isolation(tbl);
        SELECT c.relkind, c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relispartition INTO rel
          FROM pg_class c WHERE c.oid = tbl;
        SELECT a.attnum, a.atttypid, a.attnotnull, a.atthasdef INTO att
          FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped;
    END IF;

    -- One scan: NULL tenants, and tenant ids the registry does not know (rows left by DROP
    -- EXTENSION ... CASCADE). Children of an isolated parent were scanned with it.
    EXECUTE format('SELECT count(*) FILTER (WHERE x.%1$I IS NULL),
                           count(*) FILTER (WHERE x.%1$I::bigint NOT IN (SELECT t.id FROM tenant.tenants t)),
                           (array_agg(DISTINCT x.%1$I::bigint) FILTER (WHERE x.%1$I::bigint NOT IN (SELECT t.id FROM tenant.tenants t)))[1:10]
                      FROM %2$s x', tenant_column, tbl) INTO n, unknown, unknown_ids;
    IF NOT allow_shared_rows AND n > 0 THEN
        RAISE EXCEPTION 'table % has % rows with a NULL %', tbl, n, quote_ident(tenant_column) USING ERRCODE = '23502',
            HINT = 'Give those rows a tenant, or pass allow_shared_rows => true if they are system rows.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_inherits h JOIN tenant.isolated_tables p ON p.relid::oid = h.inhparent WHERE h.inhrelid = tbl) THEN
        PERFORM tenant._warn_unknown_tenant_ids(tbl, unknown, unknown_ids);
    END IF;

    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    PERFORM tenant._isolation_policies(tbl, tenant_column, allow_shared_rows);
    IF NOT att.atthasdef THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT tenant.current_tenant_id()', tbl, tenant_column);
        added_default := true;
    END IF;
    IF NOT allow_shared_rows AND NOT att.attnotnull THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, tenant_column);
        added_not_null := true;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = tbl AND i.indkey[0] = att.attnum) THEN
        EXECUTE format('CREATE INDEX ON %s (%I)', tbl, tenant_column);
        SELECT c.relname INTO idx FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = tbl AND i.indkey[0] = att.attnum AND i.indnatts = 1 ORDER BY c.oid DESC LIMIT 1;
    END IF;
    PERFORM tenant._add_fill_trigger(tbl, tenant_column, allow_shared_rows);
    PERFORM tenant._quota_attach(tbl); -- usage and quotas (sql/quotas.sql)
    INSERT INTO tenant.isolated_tables (relid, tenant_column, allow_shared_rows, prior_rls, prior_force,
                                        added_default, added_not_null, added_index)
    VALUES (tbl, tenant_column, allow_shared_rows, rel.relrowsecurity, rel.relforcerowsecurity,
            added_default, added_not_null, idx);
    -- A query naming a partition directly does not see the parent's policies: isolate each.
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = tbl LOOP
        PERFORM tenant._enable_isolation(part, tenant_column, allow_shared_rows);
    END LOOP;
    PERFORM tenant._audit('isolation_enabled', tbl::text, NULL,
                          jsonb_build_object('tenant_column', tenant_column, 'allow_shared_rows', allow_shared_rows));
END
$$;

CREATE OR REPLACE FUNCTION tenant._disable_isolation(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec tenant.isolated_tables;
    p name;
    part regclass;
BEGIN
    SELECT * INTO rec FROM tenant.isolated_tables WHERE relid = tbl;
    IF rec.relid IS NULL THEN
        RAISE EXCEPTION 'table % is not isolated', tbl USING ERRCODE = '22023',
            HINT = 'tenant.isolated_tables lists the isolated tables.';
    END IF;
    FOR part IN SELECT i.inhrelid::regclass FROM pg_inherits i JOIN tenant.isolated_tables t ON t.relid = i.inhrelid
                 WHERE i.inhparent = tbl LOOP
        PERFORM tenant._disable_isolation(part);
    END LOOP;
    PERFORM tenant._drop_qft_policies(tbl);
    PERFORM tenant._drop_fill_trigger(tbl);
    PERFORM tenant._quota_detach(tbl); -- usage and quotas (sql/quotas.sql)
    IF NOT rec.prior_force THEN
        EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', tbl);
    END IF;
    IF NOT rec.prior_rls THEN
        EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
    END IF;
    IF rec.added_default THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, rec.tenant_column);
    END IF;
    IF rec.added_not_null THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', tbl, rec.tenant_column);
    END IF;
    IF rec.added_index IS NOT NULL AND EXISTS (SELECT FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                                WHERE i.indrelid = tbl AND c.relname = rec.added_index) THEN
        EXECUTE format('DROP INDEX %I.%I', (SELECT relnamespace::regnamespace::name FROM pg_class WHERE oid = tbl),
                       rec.added_index);
    END IF;
    DELETE FROM tenant.isolated_tables WHERE relid = tbl;
    PERFORM tenant._audit('isolation_disabled', tbl::text, NULL, jsonb_build_object('tenant_column', rec.tenant_column));
END
$$;

CREATE OR REPLACE FUNCTION tenant.enable_isolation(tbl regclass, tenant_column name DEFAULT 'tenant_id',
                                        allow_shared_rows boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'enable isolation');
    PERFORM tenant._enable_isolation(tbl, tenant_column, allow_shared_rows);
END
$$;

CREATE OR REPLACE FUNCTION tenant.disable_isolation(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'disable isolation');
    PERFORM tenant._disable_isolation(tbl);
END
$$;

CREATE OR REPLACE FUNCTION tenant.enable_isolation_for_schema(schema name, tenant_column name DEFAULT 'tenant_id') RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    n integer := 0;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'enable isolation');
    IF schema IS NULL OR tenant_column IS NULL THEN
        RAISE EXCEPTION 'schema and tenant_column must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = schema) THEN
        RAISE EXCEPTION 'schema % does not exist', quote_ident(schema) USING ERRCODE = '3F000';
    END IF;
    FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
              WHERE s.nspname = schema AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = tenant_column
                              AND a.attnum > 0 AND NOT a.attisdropped)
              ORDER BY c.relname LOOP
        PERFORM tenant._enable_isolation(t, tenant_column, false);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION tenant.add_tenant_column(tbl regclass, backfill_tenant text, tenant_column name DEFAULT 'tenant_id')
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
    kind "char";
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'add a tenant column');
    IF tbl IS NULL OR tenant_column IS NULL THEN
        RAISE EXCEPTION 'tbl and tenant_column must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT relkind INTO kind FROM pg_class WHERE oid = tbl;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
    END IF;
    t := tenant._resolve(backfill_tenant);
    IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = tbl AND attname = tenant_column AND NOT attisdropped) THEN
        RAISE EXCEPTION 'column % of table % already exists', quote_ident(tenant_column), tbl USING ERRCODE = '42701',
            HINT = 'Use tenant.enable_isolation() for a table that already has its tenant column.';
    END IF;
    EXECUTE format('ALTER TABLE %s ADD COLUMN %I bigint', tbl, tenant_column);
    EXECUTE format('UPDATE %s SET %I = $1', tbl, tenant_column) USING t.id;
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL, ADD FOREIGN KEY (%I) REFERENCES tenant.tenants (id)',
                   tbl, tenant_column, tenant_column);
    PERFORM tenant._enable_isolation(tbl, tenant_column, false);
END
$$;

CREATE OR REPLACE FUNCTION tenant.mark_shared(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'mark a table shared');
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'tbl must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF EXISTS (SELECT FROM tenant.isolated_tables WHERE relid = tbl) THEN
        RAISE EXCEPTION 'table % is isolated; it cannot also be shared', tbl USING ERRCODE = '22023',
            HINT = 'Call tenant.disable_isolation() first if the table really is global.';
    END IF;
    INSERT INTO tenant.shared_tables (relid) VALUES (tbl) ON CONFLICT DO NOTHING;
    PERFORM tenant._audit('table_marked_shared', tbl::text, NULL, NULL);
END
$$;

-- auto_isolate: isolate every new table that has a tenant_id column; in strict mode, also reject
-- new tables without one in schemas that already hold isolated tables; in add_column mode give
-- such tables a tenant_id column (defaulting to the context) and isolate them instead. New tables
-- matching a shared pattern (tenant.mark_shared_like) are marked shared in every mode.
-- Never touched: the tables of any extension (CREATE EXTENSION runs its script with this trigger
-- in force -- this extension's own ledger has a tenant_id column), schema tenant, partitions (they
-- follow their parent, sql/lifecycle.sql), temporary tables, and the tables of a restore.
-- SECURITY DEFINER: it fires for whoever creates the table, who cannot (and must not) alter policies.
CREATE OR REPLACE FUNCTION tenant._auto_isolate() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mode text;
    cmd record;
    schema_isolated boolean;
BEGIN
    -- Load the library first: a value a non-superuser SET before it loaded is only a placeholder,
    -- and loading discards it. Then the setting can only hold what a superuser chose.
    PERFORM tenant.cross_tenant_active();
    mode := lower(coalesce(current_setting('qualityfoundry_tenant.auto_isolate', true), 'off'));
    IF tenant._restoring() THEN
        RETURN;
    END IF;
    FOR cmd IN SELECT d.objid::regclass AS rel, s.nspname, c.relname, c.relnamespace
                 FROM pg_event_trigger_ddl_commands() d
                 JOIN pg_class c ON c.oid = d.objid
                 JOIN pg_namespace s ON s.oid = c.relnamespace
                WHERE d.object_type = 'table' AND d.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
                  AND NOT d.in_extension AND s.nspname <> 'tenant'
                  AND NOT c.relispartition AND c.relpersistence <> 't'
                  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid
                                    AND e.deptype = 'e')
                  AND NOT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid::oid = c.oid)
                  AND NOT EXISTS (SELECT FROM tenant.shared_tables x WHERE x.relid::oid = c.oid) LOOP
        IF EXISTS (SELECT FROM tenant.shared_patterns p WHERE p.schema_name = cmd.nspname AND cmd.relname LIKE p.pattern) THEN
            INSERT INTO tenant.shared_tables (relid) VALUES (cmd.rel);
            CONTINUE;
        END IF;
        CONTINUE WHEN mode NOT IN ('on', 'strict', 'add_column');
        IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = cmd.rel AND attname = 'tenant_id' AND attnum > 0
                     AND NOT attisdropped) THEN
            PERFORM tenant._enable_isolation(cmd.rel, 'tenant_id', false);
        ELSIF mode IN ('strict', 'add_column') THEN
            SELECT EXISTS (SELECT FROM tenant.isolated_tables i JOIN pg_class c ON c.oid = i.relid
                            WHERE c.relnamespace = cmd.relnamespace)
              INTO schema_isolated;
            CONTINUE WHEN NOT schema_isolated;
            IF mode = 'add_column' THEN
                EXECUTE format('ALTER TABLE %I.%I ADD COLUMN tenant_id bigint DEFAULT tenant.current_tenant_id()',
                               cmd.nspname, cmd.relname);
                PERFORM tenant._enable_isolation(cmd.rel, 'tenant_id', false);
            ELSE
                RAISE EXCEPTION 'table % has no tenant_id column', cmd.rel USING ERRCODE = '42P16',
                    DETAIL = 'qualityfoundry_tenant.auto_isolate is strict and its schema holds isolated tables.',
                    HINT = 'Add a tenant_id column; for a deliberately global table a superuser can SET LOCAL '
                           'qualityfoundry_tenant.auto_isolate = on, create it, then call tenant.mark_shared() '
                           '(or mark its name shared beforehand with tenant.mark_shared_like()).';
            END IF;
        END IF;
    END LOOP;
END
$$;
-- Replayable (the upgrade script runs this file again): drop and re-create.
DO $evt$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname OPERATOR(pg_catalog.=) 'qft_auto_isolate') THEN
        DROP EVENT TRIGGER qft_auto_isolate;
    END IF;
    CREATE EVENT TRIGGER qft_auto_isolate ON ddl_command_end
        WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
        EXECUTE FUNCTION tenant._auto_isolate();
END
$evt$;
