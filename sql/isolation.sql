-- Row isolation for shared tables, and the policy template every tenant policy comes from.
--
-- ---------------------------------------------------------------------------------------------
-- The policy template. Every policy the extension puts on a table is defined once, as data, by
-- tenant._policy_shape (the structure) and tenant._policy_template (which shape a table gets):
-- name, command, permissive or restrictive, roles, and USING / WITH CHECK exactly as pg_get_expr
-- renders them under search_path = pg_catalog, pg_temp (the path of every extension function).
-- The same text creates the policy (tenant._apply_policies) and is what the existing policy is
-- compared with (tenant._policy_differences: enable_isolation, pinning, migrate_all's re-pinning,
-- tenant.check_isolation()), so a policy altered to USING (true) is recognised by its content,
-- not accepted by its name. To change a policy, change it here; existing tables then differ from
-- the template, and the upgrade postlude must re-apply it (tenant._apply_policies) to them.
--
-- A "match" expression says which rows belong to the context's tenant:
--   isolated table:  <tenant column> = tenant.current_tenant_id()
--   tenant schema:   tenant.current_tenant_id() = '<the schema's tenant id>'::bigint
-- and every table gets
--   <isolation>       PERMISSIVE  ALL  TO PUBLIC            match
--   qft_cross_tenant  PERMISSIVE  ALL  TO tenant_superuser  tenant.cross_tenant_active()
--   <guard>           RESTRICTIVE ALL  TO PUBLIC            match OR tenant.cross_tenant_active()
-- (<isolation>/<guard>: qft_tenant_isolation/qft_tenant_guard on isolated tables,
-- qft_schema_tenant/qft_schema_guard in tenant schemas). The restrictive guard is what no
-- permissive policy added later can widen; the plain equality is what the planner turns into an
-- index condition. With allow_shared_rows the guard is split per command (<guard>_select, _insert,
-- _update, _delete) and qft_shared_read lets every tenant read rows whose tenant is NULL; nobody
-- can write them.
--
-- Planner support: tenant._cross_tenant_support (src/context.rs) folds cross_tenant_active() to
-- false at plan time while the backend holds no cross-tenant entry, so outside the mode the guard
-- is the bare equality (one index condition, no Filter) and a tenant_superuser member's
-- qft_cross_tenant policy does not OR the index condition away; entering or leaving the mode
-- resets the backend's plan cache. The fold only ever says false, so a stale plan can only hide.
--
-- Roles inside a tenant (tenant.limit_tenant_roles, sql/tenant_roles.sql): every row of
-- tenant.role_limits for the table (or a table it inherits from: partitions follow their parent)
-- adds one policy, tenant._role_limit_shape:
--   qft_role_<command>  RESTRICTIVE  <command>  TO PUBLIC
--       (tenant._tenant_role_in('{<roles>}'::text[]) OR tenant.cross_tenant_active())
-- A context without a role is in no list. No column in it. Planner support
-- (tenant._tenant_role_in_support, src/context.rs "Folding the tenant role") answers the call at
-- plan time for the role in force, and keys the plan's tenant getters to that role
-- (tenant._current_tenant_id_as('<role>')), so a plan made for one role returns nothing for
-- another; the plan cache is reset when the role in force changes. That needs a tenant getter in
-- a policy every row must pass: isolated tables without shared rows and pinned tables get this
-- form; tables with shared rows (qft_shared_read has no getter) and template-schema tables get
--       ((tenant.current_tenant_role() = ANY ('{<roles>}'::text[])) OR tenant.cross_tenant_active())
-- evaluated per execution.
-- ---------------------------------------------------------------------------------------------

ALTER FUNCTION tenant.cross_tenant_active() SUPPORT tenant._cross_tenant_support;
-- And for a session bound by tenant.role_bindings (its login role, no superuser), the tenant
-- getters fold to the bound tenant's id/uuid (NULL when suspended); every registry change resets
-- the backend's plan cache (src/context.rs, bound_fold).
ALTER FUNCTION tenant.current_tenant_id() SUPPORT tenant._current_tenant_support;
ALTER FUNCTION tenant.current_tenant_uuid() SUPPORT tenant._current_tenant_uuid_support;
ALTER FUNCTION tenant._tenant_role_in(text[]) SUPPORT tenant._tenant_role_in_support;

-- The policies of one shape. roles: role names, 'PUBLIC' for every role. shared_col: the quoted
-- tenant column when rows with a NULL tenant are shared, else NULL.
CREATE OR REPLACE FUNCTION tenant._policy_shape(isolation name, guard name, match text, shared_col text)
RETURNS TABLE(polname name, permissive boolean, cmd "char", roles text[], qual text, with_check text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH g(expr) AS (SELECT '(' || match || ' OR tenant.cross_tenant_active())')
    SELECT p.* FROM g, LATERAL (VALUES
        (isolation, true, '*'::"char", ARRAY['PUBLIC'], match, match),
        ('qft_cross_tenant'::name, true, '*'::"char", ARRAY['tenant_superuser'],
         'tenant.cross_tenant_active()', 'tenant.cross_tenant_active()'),
        (guard, false, '*'::"char", ARRAY['PUBLIC'], g.expr, g.expr)
    ) AS p(polname, permissive, cmd, roles, qual, with_check)
    WHERE shared_col IS NULL OR p.polname <> guard
    UNION ALL
    SELECT p.* FROM g, LATERAL (VALUES
        ('qft_shared_read'::name, true, 'r'::"char", ARRAY['PUBLIC'], '(' || shared_col || ' IS NULL)', NULL::text),
        ((guard || '_select')::name, false, 'r'::"char", ARRAY['PUBLIC'],
         '(' || match || ' OR tenant.cross_tenant_active() OR (' || shared_col || ' IS NULL))', NULL),
        ((guard || '_insert')::name, false, 'a'::"char", ARRAY['PUBLIC'], NULL, g.expr),
        ((guard || '_update')::name, false, 'w'::"char", ARRAY['PUBLIC'], g.expr, g.expr),
        ((guard || '_delete')::name, false, 'd'::"char", ARRAY['PUBLIC'], g.expr, NULL)
    ) AS p(polname, permissive, cmd, roles, qual, with_check)
    WHERE shared_col IS NOT NULL
$$;

-- What a tenant column holds, as the getter of the context's value of it: a uuid column holds the
-- tenant's uuid (tenant.current_tenant_uuid()), an integer column its id (tenant.current_tenant_id()).
CREATE OR REPLACE FUNCTION tenant._tenant_key_is_uuid(tbl regclass, col name) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = col
                     AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid = 'uuid'::regtype)
$$;
CREATE OR REPLACE FUNCTION tenant._tenant_key_getter(tbl regclass, col name) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN tenant._tenant_key_is_uuid(tbl, col) THEN 'tenant.current_tenant_uuid()' ELSE 'tenant.current_tenant_id()' END
$$;

-- The policy of one tenant.role_limits row: command SELECT|INSERT|UPDATE|DELETE|ALL, roles the
-- tenant roles allowed (sorted, distinct, validated by tenant.limit_tenant_roles: no backslash and
-- no double quote, so the array's text has no backslash and quote_literal writes the literal
-- exactly as pg_get_expr renders it); foldable: the table has a tenant getter in a policy every
-- row passes (see the template's comment above).
CREATE OR REPLACE FUNCTION tenant._role_limit_shape(command text, roles text[], foldable boolean)
RETURNS TABLE(polname name, permissive boolean, cmd "char", roles text[], qual text, with_check text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH e(expr) AS (
        SELECT CASE WHEN foldable
                    THEN '(tenant._tenant_role_in(' || quote_literal(roles::text) || '::text[]) OR tenant.cross_tenant_active())'
                    ELSE '((tenant.current_tenant_role() = ANY (' || quote_literal(roles::text) || '::text[])) OR tenant.cross_tenant_active())'
               END
    )
    SELECT ('qft_role_' || lower(command))::name, false, c.cmd, ARRAY['PUBLIC'],
           CASE WHEN c.cmd <> 'a' THEN e.expr END, CASE WHEN c.cmd IN ('a', 'w', '*') THEN e.expr END
      FROM e, (VALUES ('SELECT', 'r'::"char"), ('INSERT', 'a'), ('UPDATE', 'w'), ('DELETE', 'd'), ('ALL', '*')) AS c(word, cmd)
     WHERE c.word = command
$$;

-- The policies table tbl must have: its isolation (iso_column/iso_shared, or what
-- tenant.isolated_tables records when iso_column is NULL) and, in a tenant schema, its pin
-- (pin_tenant, or the schema's tenant in tenant.tenants when NULL), and the role limits recorded
-- for it or a table it inherits from (tenant.role_limits). Empty for any other table.
CREATE OR REPLACE FUNCTION tenant._policy_template(tbl regclass, iso_column name DEFAULT NULL, iso_shared boolean DEFAULT NULL,
                                                   pin_tenant bigint DEFAULT NULL)
RETURNS TABLE(polname name, permissive boolean, cmd "char", roles text[], qual text, with_check text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE ancestors(relid, depth) AS (
        SELECT tbl::oid, 0
        UNION ALL
        SELECT h.inhparent, a.depth + 1 FROM pg_inherits h JOIN ancestors a ON h.inhrelid = a.relid
    ), iso AS (
        SELECT iso_column AS col, coalesce(iso_shared, false) AS shared WHERE iso_column IS NOT NULL
        UNION ALL
        SELECT i.tenant_column, i.allow_shared_rows FROM tenant.isolated_tables i
         WHERE iso_column IS NULL AND i.relid = tbl
    ), pin AS (
        SELECT pin_tenant AS id WHERE pin_tenant IS NOT NULL
        UNION ALL
        SELECT t.id FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN tenant.tenants t ON t.schema_name = n.nspname
         WHERE pin_tenant IS NULL AND c.oid = tbl
    ), rows AS (
        SELECT s.*, 0 AS depth FROM iso, tenant._policy_shape('qft_tenant_isolation', 'qft_tenant_guard',
                                                  '(' || quote_ident(iso.col) || ' = ' || tenant._tenant_key_getter(tbl, iso.col) || ')',
                                                  CASE WHEN iso.shared THEN quote_ident(iso.col) END) s
        UNION ALL
        SELECT s.*, 0 FROM pin, tenant._policy_shape('qft_schema_tenant', 'qft_schema_guard',
                                                  '(tenant.current_tenant_id() = ' || quote_literal(pin.id::text) || '::bigint)',
                                                  NULL) s
        UNION ALL
        -- Role limits of the table or of the nearest table it inherits from that has one.
        SELECT s.*, a.depth FROM ancestors a JOIN tenant.role_limits l ON l.relid::oid = a.relid,
               tenant._role_limit_shape(l.command, l.roles,
                                        EXISTS (SELECT FROM pin) OR EXISTS (SELECT FROM iso WHERE NOT iso.shared)) s
    )
    -- qft_cross_tenant is the same in both shapes: one of it.
    SELECT DISTINCT ON (r.polname) r.polname, r.permissive, r.cmd, r.roles, r.qual, r.with_check
      FROM rows r ORDER BY r.polname, r.depth
$$;

-- How the extension's policies on tbl (those named qft_*) differ from the template: one row per
-- policy that is missing, is not in the template, or differs in kind, command, roles, USING or
-- WITH CHECK. No rows: the table has exactly the template's policies.
CREATE OR REPLACE FUNCTION tenant._policy_differences(tbl regclass, iso_column name DEFAULT NULL, iso_shared boolean DEFAULT NULL,
                                                      pin_tenant bigint DEFAULT NULL)
RETURNS TABLE(polname name, difference text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH expected AS (
        SELECT * FROM tenant._policy_template(tbl, iso_column, iso_shared, pin_tenant)
    ), actual AS (
        SELECT p.polname, p.polpermissive AS permissive, p.polcmd AS cmd,
               ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE coalesce(pg_get_userbyid(r)::text, r::text) END
                       FROM unnest(p.polroles) r ORDER BY 1) AS roles,
               pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
          FROM pg_policy p WHERE p.polrelid = tbl AND p.polname LIKE 'qft\_%'
    ), cmd(c, word) AS (
        VALUES ('*'::"char", 'ALL'), ('r', 'SELECT'), ('a', 'INSERT'), ('w', 'UPDATE'), ('d', 'DELETE')
    )
    SELECT coalesce(e.polname, a.polname),
           CASE WHEN a.polname IS NULL THEN 'is missing'
                WHEN e.polname IS NULL THEN 'is not one that the extension creates for this table'
                ELSE concat_ws('; ',
                    CASE WHEN a.permissive <> e.permissive THEN
                        format('is %s instead of %s', CASE WHEN a.permissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                               CASE WHEN e.permissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END) END,
                    CASE WHEN a.cmd <> e.cmd THEN
                        format('applies to %s instead of %s', (SELECT word FROM cmd WHERE c = a.cmd),
                               (SELECT word FROM cmd WHERE c = e.cmd)) END,
                    CASE WHEN a.roles <> ARRAY(SELECT x FROM unnest(e.roles) x ORDER BY 1) THEN
                        format('is TO %s instead of TO %s', array_to_string(a.roles, ', '), array_to_string(e.roles, ', ')) END,
                    CASE WHEN a.qual IS DISTINCT FROM e.qual THEN
                        format('has USING %s instead of %s', coalesce(a.qual, '(none)'), coalesce(e.qual, '(none)')) END,
                    CASE WHEN a.with_check IS DISTINCT FROM e.with_check THEN
                        format('has WITH CHECK %s instead of %s', coalesce(a.with_check, '(none)'), coalesce(e.with_check, '(none)')) END)
           END
      FROM expected e FULL JOIN actual a ON a.polname = e.polname
     WHERE a.polname IS NULL OR e.polname IS NULL
        OR a.permissive <> e.permissive OR a.cmd <> e.cmd OR a.roles <> ARRAY(SELECT x FROM unnest(e.roles) x ORDER BY 1)
        OR a.qual IS DISTINCT FROM e.qual OR a.with_check IS DISTINCT FROM e.with_check
     ORDER BY 1
$$;

-- Makes tbl's qft_ policies exactly the template's: drops those that differ or do not belong,
-- creates what is missing, leaves matching ones alone. Returns the number of policies created.
-- Never touches a policy whose name does not start with qft_.
CREATE OR REPLACE FUNCTION tenant._apply_policies(tbl regclass, iso_column name DEFAULT NULL, iso_shared boolean DEFAULT NULL,
                                                  pin_tenant bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    p record;
    n integer := 0;
BEGIN
    FOR d IN SELECT * FROM tenant._policy_differences(tbl, iso_column, iso_shared, pin_tenant) LOOP
        IF d.difference <> 'is missing' THEN
            EXECUTE format('DROP POLICY %I ON %s', d.polname, tbl);
        END IF;
        SELECT * INTO p FROM tenant._policy_template(tbl, iso_column, iso_shared, pin_tenant) t WHERE t.polname = d.polname;
        CONTINUE WHEN NOT FOUND;
        EXECUTE format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, tbl,
                       CASE WHEN p.permissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                       CASE p.cmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                       (SELECT string_agg(CASE WHEN r = 'PUBLIC' THEN r ELSE quote_ident(r) END, ', ') FROM unnest(p.roles) r),
                       ' USING (' || p.qual || ')', ' WITH CHECK (' || p.with_check || ')');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

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

-- The isolation policies of an isolated table (and its pin, if it is in a tenant schema).
CREATE OR REPLACE FUNCTION tenant._isolation_policies(tbl regclass, col name, shared boolean) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT tenant._apply_policies(tbl, col, shared) $$;

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
    unknown_keys text[];
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
    IF att.atttypid NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'uuid'::regtype) THEN
        RAISE EXCEPTION 'tenant column % of table % is of type %', quote_ident(tenant_column), tbl, att.atttypid::regtype
            USING ERRCODE = '42804',
                  HINT = 'The tenant column must be smallint, integer or bigint (the tenant''s id) or uuid (the tenant''s uuid).';
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
    IF att.atttypid = 'uuid'::regtype THEN
        EXECUTE format('SELECT count(*) FILTER (WHERE x.%1$I IS NULL),
                               count(*) FILTER (WHERE x.%1$I NOT IN (SELECT t.uuid FROM tenant.tenants t)),
                               (array_agg(DISTINCT x.%1$I::text) FILTER (WHERE x.%1$I NOT IN (SELECT t.uuid FROM tenant.tenants t)))[1:10]
                          FROM %2$s x', tenant_column, tbl) INTO n, unknown, unknown_keys;
    ELSE
        EXECUTE format('SELECT count(*) FILTER (WHERE x.%1$I IS NULL),
                               count(*) FILTER (WHERE x.%1$I::bigint NOT IN (SELECT t.id FROM tenant.tenants t)),
                               (array_agg(DISTINCT x.%1$I::bigint) FILTER (WHERE x.%1$I::bigint NOT IN (SELECT t.id FROM tenant.tenants t)))[1:10]::text[]
                          FROM %2$s x', tenant_column, tbl) INTO n, unknown, unknown_keys;
    END IF;
    IF NOT allow_shared_rows AND n > 0 THEN
        RAISE EXCEPTION 'table % has % rows with a NULL %', tbl, n, quote_ident(tenant_column) USING ERRCODE = '23502',
            HINT = 'Give those rows a tenant, or pass allow_shared_rows => true if they are system rows.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_inherits h JOIN tenant.isolated_tables p ON p.relid::oid = h.inhparent WHERE h.inhrelid = tbl) THEN
        PERFORM tenant._warn_unknown_tenant_ids(tbl, unknown, unknown_keys);
    END IF;

    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    PERFORM tenant._isolation_policies(tbl, tenant_column, allow_shared_rows);
    IF NOT att.atthasdef THEN
        PERFORM tenant._alter_tenant_column(tbl, tenant_column, 'SET DEFAULT ' || tenant._tenant_key_getter(tbl, tenant_column));
        added_default := true;
    END IF;
    IF NOT allow_shared_rows AND NOT att.attnotnull THEN
        PERFORM tenant._alter_tenant_column(tbl, tenant_column, 'SET NOT NULL');
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
    -- Out of the registry before the ALTER TABLE statements below: the partition event trigger
    -- (tenant._isolate_new_children) would otherwise isolate the children again.
    DELETE FROM tenant.isolated_tables WHERE relid = tbl;
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
        PERFORM tenant._alter_tenant_column(tbl, rec.tenant_column, 'DROP DEFAULT');
    END IF;
    IF rec.added_not_null THEN
        PERFORM tenant._alter_tenant_column(tbl, rec.tenant_column, 'DROP NOT NULL');
    END IF;
    IF rec.added_index IS NOT NULL AND EXISTS (SELECT FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                                WHERE i.indrelid = tbl AND c.relname = rec.added_index) THEN
        EXECUTE format('DROP INDEX %I.%I', (SELECT relnamespace::regnamespace::name FROM pg_class WHERE oid = tbl),
                       rec.added_index);
    END IF;
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
    PERFORM tenant._forget_role_limits(tbl); -- roles inside a tenant (sql/tenant_roles.sql)
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

-- column_type: bigint (the tenant's id, a foreign key to tenant.tenants (id)) or uuid (the
-- tenant's uuid, a foreign key to tenant.tenants (uuid)).
CREATE OR REPLACE FUNCTION tenant.add_tenant_column(tbl regclass, backfill_tenant text, tenant_column name DEFAULT 'tenant_id',
                                                    column_type regtype DEFAULT 'bigint')
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
    kind "char";
    is_uuid boolean;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'add a tenant column');
    IF tbl IS NULL OR tenant_column IS NULL OR column_type IS NULL THEN
        RAISE EXCEPTION 'tbl, tenant_column and column_type must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF column_type NOT IN ('bigint'::regtype, 'uuid'::regtype) THEN
        RAISE EXCEPTION 'a tenant column cannot be of type %', column_type USING ERRCODE = '42804',
            HINT = 'Pass column_type => ''bigint'' (the tenant''s id) or ''uuid'' (the tenant''s uuid).';
    END IF;
    is_uuid := column_type = 'uuid'::regtype;
    SELECT relkind INTO kind FROM pg_class WHERE oid = tbl;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
    END IF;
    t := tenant._resolve(backfill_tenant);
    IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = tbl AND attname = tenant_column AND NOT attisdropped) THEN
        RAISE EXCEPTION 'column % of table % already exists', quote_ident(tenant_column), tbl USING ERRCODE = '42701',
            HINT = 'Use tenant.enable_isolation() for a table that already has its tenant column.';
    END IF;
    EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', tbl, tenant_column, column_type);
    -- The backfill runs as the table's owner in a security-restricted operation: its triggers,
    -- CHECK constraints and generated columns never run with the extension owner's rights.
    PERFORM tenant._exec_as((SELECT c.relowner FROM pg_class c WHERE c.oid = tbl),
                            format('UPDATE %s SET %I = $1[1]::%s', tbl, tenant_column,
                                   CASE WHEN is_uuid THEN 'pg_catalog.uuid' ELSE 'pg_catalog.int8' END),
                            ARRAY[CASE WHEN is_uuid THEN t.uuid::text ELSE t.id::text END], 'pg_catalog, pg_temp', false, true);
    IF tenant._citus_kind(tbl) IS NULL THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL, ADD FOREIGN KEY (%I) REFERENCES tenant.tenants (%I)',
                       tbl, tenant_column, tenant_column, CASE WHEN is_uuid THEN 'uuid' ELSE 'id' END);
    ELSE
        -- Citus: one subcommand per ALTER TABLE, and no foreign key from a Citus table into the
        -- registry (a local table of the coordinator).
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, tenant_column);
    END IF;
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
    -- A Citus worker: every DDL there is Citus's own (shards, shell tables), already complete.
    IF tenant._citus_worker() THEN
        RETURN;
    END IF;
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
