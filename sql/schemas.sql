-- Schema per tenant: tenant_<slug> schemas cloned from the template, every table in them pinned to
-- the schema's tenant. Pinning does not need a tenant column: the policies (the schema shape of the
-- policy template in sql/isolation.sql) compare the *context* with the schema's tenant id, so
-- another tenant reading this schema (even schema-qualified) sees nothing and cannot write.
--
-- What tenant_user gets in a tenant schema: USAGE on the schema, SELECT/INSERT/UPDATE/DELETE on its
-- tables and its (security_invoker) views — never CREATE, TRUNCATE, REFERENCES or TRIGGER, and
-- nothing in bulk: sequences, functions, types and materialized views keep exactly the ACLs the
-- template gave them (clone_schema copies them). What may not be in a tenant schema at all, because
-- it would escape the pins, is listed by tenant._tenant_schema_problems below.

-- The relations of a schema, found through pg_depend (indexed by referenced object): pg_class has
-- no index on relnamespace, and this runs once per tenant in every migration.
CREATE OR REPLACE FUNCTION tenant._schema_relations(schema name) RETURNS TABLE(rel regclass, relkind "char")
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass, c.relkind
      FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
     WHERE d.refclassid = 'pg_namespace'::regclass
       AND d.refobjid = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema)
       AND d.classid = 'pg_class'::regclass AND d.deptype = 'n'
     ORDER BY c.oid
$$;

-- ENABLE + FORCE row security and the template's policies (tenant._apply_policies) on one table
-- of the schema of tenant tenant_id.
CREATE OR REPLACE FUNCTION tenant._pin_table(tbl regclass, tenant_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = tbl AND c.relrowsecurity AND c.relforcerowsecurity) THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    END IF;
    PERFORM tenant._apply_policies(tbl, NULL, NULL, tenant_id);
    PERFORM tenant._quota_attach(tbl); -- usage and quotas (sql/quotas.sql)
END
$$;

-- Whether a view is security_invoker (reloptions as PostgreSQL's parse_bool reads them).
CREATE OR REPLACE FUNCTION tenant._security_invoker(rel regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(bool_or(lower(split_part(o, '=', 2)) IN ('t', 'tr', 'tru', 'true', 'y', 'ye', 'yes', 'on', '1')), false)
      FROM pg_class c, unnest(c.reloptions) o
     WHERE c.oid = rel AND split_part(o, '=', 1) = 'security_invoker'
$$;

-- Pins what is not pinned yet in a tenant schema, compared by content with the policy template
-- (so a pin altered to USING (true), dropped, or left without FORCE is pinned again), and grants
-- tenant_user DML on tables and security_invoker views that lack it. Only what differs is touched,
-- so the cost follows what a migration or a DDL statement changed, not the size of the schema.
-- One query finds what differs: a table's qft_ policies are compared, as one canonical array, with
-- the schema's pin (the policy template for the tenant, read once); a table the template gives
-- more than the pin (an isolated table, role limits on it or on a table it inherits from) is
-- compared by tenant._policy_differences itself.
CREATE OR REPLACE FUNCTION tenant._pin_unpinned(schema name, owner_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    pin text[] := ARRAY(SELECT jsonb_build_array(t.polname, t.permissive, t.cmd, ARRAY(SELECT x FROM unnest(t.roles) x ORDER BY 1),
                                                 t.qual, t.with_check)::text
                          FROM tenant._policy_template(0::oid::regclass, NULL, NULL, owner_id) t ORDER BY t.polname);
BEGIN
    FOR r IN
        SELECT x.rel, x.repin, x.regrant FROM (
            SELECT c.oid::regclass AS rel,
                   c.relkind IN ('r', 'p')
                   AND (NOT (c.relrowsecurity AND c.relforcerowsecurity)
                        OR CASE WHEN EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = c.oid)
                                  OR EXISTS (SELECT FROM tenant.role_limits l WHERE l.relid = c.oid)
                                  OR EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = c.oid)
                                THEN EXISTS (SELECT FROM tenant._policy_differences(c.oid, NULL, NULL, owner_id))
                                ELSE ARRAY(SELECT jsonb_build_array(p.polname, p.polpermissive, p.polcmd,
                                                      ARRAY(SELECT CASE WHEN g = 0 THEN 'PUBLIC' ELSE coalesce(pg_get_userbyid(g)::text, g::text) END
                                                              FROM unnest(p.polroles) g ORDER BY 1),
                                                      pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))::text
                                             FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname LIKE 'qft\_%'
                                            ORDER BY p.polname) IS DISTINCT FROM pin END) AS repin,
                   -- tables, and views only when security_invoker (evaluated for views alone)
                   CASE WHEN CASE WHEN c.relkind = 'v' THEN tenant._security_invoker(c.oid) ELSE true END
                        THEN NOT (has_table_privilege('tenant_user', c.oid, 'SELECT') AND has_table_privilege('tenant_user', c.oid, 'INSERT')
                                  AND has_table_privilege('tenant_user', c.oid, 'UPDATE') AND has_table_privilege('tenant_user', c.oid, 'DELETE'))
                        ELSE false END AS regrant
              FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
             WHERE d.refclassid = 'pg_namespace'::regclass
               AND d.refobjid = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema)
               AND d.classid = 'pg_class'::regclass AND d.deptype = 'n' AND c.relkind IN ('r', 'p', 'v')
             ORDER BY c.oid) x
         WHERE x.repin OR x.regrant LOOP
        IF r.repin THEN
            PERFORM tenant._pin_table(r.rel, owner_id);
        END IF;
        IF r.regrant THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO tenant_user', r.rel);
        END IF;
    END LOOP;
END
$$;

-- Pins every table of a tenant schema and gives tenant_user exactly USAGE on the schema (never
-- CREATE) and DML on its tables and views. Called at creation and by pin_tenant_schema.
CREATE OR REPLACE FUNCTION tenant._pin_schema(schema name, tenant_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', schema);
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM tenant_user', schema);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tenant_user', schema);
    PERFORM tenant._pin_unpinned(schema, tenant_id);
    PERFORM tenant._schema_check_record(schema, tenant_id, tenant._tenant_schema_problem_keys(schema, false));
END
$$;

-- Re-pins a tenant's schema (the checker's fix for an unpinned or altered table).
CREATE OR REPLACE FUNCTION tenant.pin_tenant_schema(tenant text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'pin a tenant schema');
    t := tenant._resolve(tenant);
    IF t.schema_name IS NULL THEN
        RAISE EXCEPTION 'tenant "%" has no schema', t.slug USING ERRCODE = '22023';
    END IF;
    PERFORM tenant._pin_schema(t.schema_name, t.id);
END
$$;

-- Grantees in acl (NULL: the default ACL of kind for owner) that are PUBLIC, tenant_user, or hold
-- tenant_user, with any of privs: the application roles that can use the object, as a REVOKE
-- names them. The owner is not counted (an owner that holds tenant_user is a problem of its own,
-- and create_tenant hands every object of a new tenant schema to tenant_admin).
CREATE OR REPLACE FUNCTION tenant._app_grantees(acl aclitem[], kind "char", owner oid, privs text[]) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(DISTINCT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, ', ')
      FROM aclexplode(coalesce(acl, acldefault(kind, owner))) g
      LEFT JOIN pg_roles r ON r.oid = g.grantee
     WHERE g.privilege_type = ANY (privs) AND g.grantee <> owner
       AND (g.grantee = 0 OR (NOT r.rolsuper AND pg_has_role(g.grantee, 'tenant_user', 'MEMBER')))
$$;

-- What breaks tenant isolation in a tenant schema (for_template false), or in the template that
-- create_tenant would copy into one (for_template true): one row per problem, with the SQL that
-- fixes it. create_tenant(with_schema => true) refuses a template with any (0A000), migrate_all
-- fails a step that adds one (0A000), tenant.check_isolation() reports them. A template may hold
-- tables (pinned in every copy), security_invoker views, identity columns, SECURITY INVOKER
-- functions, types and domains; what it must not give application roles:
--   * a materialized view they can read: it has no row security;
--   * a view that is not security_invoker: tenant_user gets DML on the schema's views, and such a
--     view reads with its owner's rights (tenant_admin reads the registry and the audit log);
--   * a SECURITY DEFINER function they can execute: it runs as its owner (tenant_admin);
--   * a sequence they can use, or a column default calling nextval() (which needs one): a sequence
--     has no row security, so every tenant would read and advance it; identity columns need no grant;
--   * TRUNCATE, REFERENCES or TRIGGER on a table (TRUNCATE ignores row security; the others probe
--     or watch every tenant's rows);
--   * in a tenant schema, an object owned by a role that holds tenant_user (it could drop the pins).
-- Objects are found through pg_depend and oid indexes, not namespace-column scans.
CREATE OR REPLACE FUNCTION tenant._tenant_schema_problems(schema name, for_template boolean)
RETURNS TABLE(object text, problem text, fix text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema);
BEGIN
    IF nsp IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH rel AS MATERIALIZED (
        SELECT c.oid, c.oid::regclass AS name, c.relkind, c.relacl, c.relowner FROM pg_class c
         WHERE c.oid IN (SELECT s.rel FROM tenant._schema_relations(schema) s)
    ), fn AS MATERIALIZED (
        SELECT p.oid, p.prokind, p.prosecdef, p.prorettype, p.proacl, p.proowner FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
         WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = nsp AND d.classid = 'pg_proc'::regclass AND d.deptype = 'n'
    ), seqdefault AS (
        SELECT a.attrelid, a.attname, a.attnotnull, s.oid AS seq, q.seqstart, q.seqincrement,
               EXISTS (SELECT FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = s.oid
                          AND o.refobjid = a.attrelid AND o.refobjsubid = a.attnum AND o.deptype = 'a') AS owned
          FROM rel t
          JOIN pg_attrdef ad ON ad.adrelid = t.oid
          JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
          JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
          JOIN pg_sequence q ON q.seqrelid = s.oid
         WHERE t.relkind IN ('r', 'p') AND a.attgenerated = ''
    )
    SELECT format('materialized view %s', r.name),
           format('can be read by %s: a materialized view has no row security, so every tenant reads every tenant''s rows',
                  tenant._app_grantees(r.relacl, 'r', r.relowner, ARRAY['SELECT'])),
           format('REVOKE ALL ON %s FROM %s;', r.name, tenant._app_grantees(r.relacl, 'r', r.relowner, ARRAY['SELECT']))
      FROM rel r WHERE r.relkind = 'm' AND tenant._app_grantees(r.relacl, 'r', r.relowner, ARRAY['SELECT']) IS NOT NULL
    UNION ALL
    SELECT format('view %s', r.name),
           'is not security_invoker: it reads its tables with the rights of its owner (tenant_admin, which reads the '
           'registry and the audit log), not through the reading tenant''s pins',
           format('ALTER VIEW %s SET (security_invoker = true);', r.name)
      FROM rel r WHERE r.relkind = 'v' AND NOT tenant._security_invoker(r.name)
    UNION ALL
    SELECT format('%s %s', CASE WHEN f.prokind = 'p' THEN 'procedure' ELSE 'function' END, f.oid::regprocedure),
           format('is SECURITY DEFINER and %s can execute it: it runs with the rights of its owner %I',
                  tenant._app_grantees(f.proacl, 'f', f.proowner, ARRAY['EXECUTE']), pg_get_userbyid(f.proowner)),
           format('REVOKE EXECUTE ON %s %s FROM %s;', CASE WHEN f.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                  f.oid::regprocedure, tenant._app_grantees(f.proacl, 'f', f.proowner, ARRAY['EXECUTE']))
      FROM fn f
     WHERE f.prosecdef AND f.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
       AND tenant._app_grantees(f.proacl, 'f', f.proowner, ARRAY['EXECUTE']) IS NOT NULL
    UNION ALL
    SELECT format('sequence %s', r.name),
           format('can be used by %s: a sequence has no row security, so every tenant can read it (last_value) and '
                  'advance it (nextval); identity columns need no grant',
                  tenant._app_grantees(r.relacl, 's', r.relowner, ARRAY['USAGE', 'SELECT', 'UPDATE'])),
           format('REVOKE ALL ON SEQUENCE %s FROM %s;', r.name,
                  tenant._app_grantees(r.relacl, 's', r.relowner, ARRAY['USAGE', 'SELECT', 'UPDATE']))
      FROM rel r WHERE r.relkind = 'S' AND tenant._app_grantees(r.relacl, 's', r.relowner, ARRAY['USAGE', 'SELECT', 'UPDATE']) IS NOT NULL
    UNION ALL
    SELECT format('column %s.%I', x.attrelid::regclass, x.attname),
           format('has a default that calls nextval(%L): inserting would need USAGE on that sequence, which every tenant '
                  'would share (a sequence has no row security); use an identity column', x.seq::regclass::text),
           format('ALTER TABLE %1$s ALTER COLUMN %2$I DROP DEFAULT;%3$s ALTER TABLE %1$s ALTER COLUMN %2$I %4$sADD GENERATED BY DEFAULT AS IDENTITY (START WITH %5$s);',
                  x.attrelid::regclass, x.attname,
                  CASE WHEN x.owned THEN format(' DROP SEQUENCE %s;', x.seq::regclass) ELSE '' END,
                  CASE WHEN x.attnotnull THEN '' ELSE format('SET NOT NULL, ALTER COLUMN %I ', x.attname) END,
                  coalesce(pg_sequence_last_value(x.seq) + x.seqincrement, x.seqstart))
      FROM seqdefault x
    UNION ALL
    SELECT format('table %s', r.name), g.problem, g.fix
      FROM rel r CROSS JOIN LATERAL tenant._chk_table_grants(r.oid) g
     WHERE r.relkind IN ('r', 'p')
    UNION ALL
    SELECT o.object, format('is owned by %I, which holds tenant_user: it can change or drop what isolates it', w.owner),
           format('ALTER %s %s OWNER TO tenant_admin;', o.kind, o.ident)
      FROM (SELECT CASE r.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                                  ELSE 'table' END || ' ' || r.name AS object,
                   CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                  ELSE 'TABLE' END AS kind, r.name::text AS ident, r.relowner AS ownerid
              FROM rel r WHERE r.relkind IN ('r', 'p', 'v', 'm', 'S')
            UNION ALL
            SELECT format('%s %s', CASE WHEN f.prokind = 'p' THEN 'procedure' ELSE 'function' END, f.oid::regprocedure),
                   CASE WHEN f.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.oid::regprocedure::text, f.proowner
              FROM fn f
            UNION ALL
            SELECT format('type %s', t.oid::regtype), CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                   t.oid::regtype::text, t.typowner
              FROM pg_depend d JOIN pg_type t ON t.oid = d.objid
             WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = nsp AND d.classid = 'pg_type'::regclass
               AND d.deptype = 'n' AND t.typtype IN ('e', 'd', 'r', 'c')
               AND (t.typtype <> 'c' OR EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
            UNION ALL
            SELECT format('statistics %I.%I', schema, x.stxname), 'STATISTICS', format('%I.%I', schema, x.stxname), x.stxowner
              FROM pg_depend d JOIN pg_statistic_ext x ON x.oid = d.objid
             WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = nsp AND d.classid = 'pg_statistic_ext'::regclass
               AND d.deptype = 'n') o(object, kind, ident, ownerid)
      CROSS JOIN LATERAL (SELECT r.rolname AS owner FROM pg_roles r
                           WHERE r.oid = o.ownerid AND NOT r.rolsuper AND pg_has_role(r.oid, 'tenant_user', 'MEMBER')) w
     WHERE NOT for_template
    ORDER BY 1, 2;
END
$$;

-- The problems of a schema as comparable keys (object and problem, not the fix), for migrate_all's
-- before/after comparison of each step.
CREATE OR REPLACE FUNCTION tenant._tenant_schema_problem_keys(schema name, for_template boolean) RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(p.object || ': ' || p.problem ORDER BY 1), '{}')
      FROM tenant._tenant_schema_problems(schema, for_template) p
$$;

-- Raises 0A000 when schema has problems (tenant._tenant_schema_problems) that are not in `before`
-- (NULL: any problem), naming each with its fix. `what` says what would have caused them.
CREATE OR REPLACE FUNCTION tenant._tenant_schema_refuse(schema name, for_template boolean, before text[], what text)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found text;
    n integer;
BEGIN
    SELECT string_agg(p.object || ': ' || p.problem || E'\n  fix: ' || p.fix, E'\n' ORDER BY p.object, p.problem), count(*)
      INTO found, n
      FROM tenant._tenant_schema_problems(schema, for_template) p
     WHERE before IS NULL OR NOT (p.object || ': ' || p.problem = ANY (before));
    IF n > 0 THEN
        RAISE EXCEPTION '% would give application roles % object(s) that escape tenant isolation in %', what, n,
                        CASE WHEN for_template THEN 'template schema ' ELSE 'tenant schema ' END || quote_ident(schema)
            USING ERRCODE = '0A000', DETAIL = found,
                  HINT = 'A tenant schema may hold tables, security_invoker views, identity columns, SECURITY INVOKER '
                         'functions and types; see "What a template may contain" in the README.';
    END IF;
END
$$;

-- What pinning (tenant._pin_unpinned) and the problem inventory (tenant._tenant_schema_problems)
-- of a tenant schema read, in one string: equal strings mean both would find exactly what they
-- found before. Read by content: the schema and its tenant, the extension's version (the code
-- of both checks), each table, view, materialized view and sequence (name, kind, owner, ACL,
-- options, row security, FORCE), each qft_ policy by row version (a policy that is altered,
-- dropped and created again, or rewritten by a superuser's UPDATE of pg_policy is a new version:
-- xmin and ctid of its row), column ACLs, defaults that use a sequence, functions (signature,
-- kind, SECURITY DEFINER, result type, owner, ACL), types, statistics, inheritance, the
-- role_limits and isolated_tables rows of the schema's tables (by row version), and for every
-- role that owns, is granted or is named by a policy there: its name, whether it is a superuser,
-- whether it holds tenant_user and whether tenant_user holds it. Not read: indexes, columns
-- without ACLs, triggers, rules, view bodies, statistics counters — nothing either check reads
-- — so a migration that adds a column or an index leaves it unchanged. Read from the schema's
-- own catalog rows, found through indexes and the system caches: its cost follows the size of
-- the schema, never the number of tenants. NULL when the schema does not exist.
CREATE OR REPLACE FUNCTION tenant._tenant_schema_fingerprint(schema name, tenant_id bigint) RETURNS text
LANGUAGE sql STABLE
-- Read from the catalogs directly (src/fingerprint.rs): a catalog query of these fourteen parts
-- cost more per schema (executor start-up, a lock per catalog in every transaction) than the rest
-- of a small migration step. No SET clause, so this wrapper is inlined; every name is qualified.
AS $$ SELECT tenant._tenant_schema_fingerprint_rs(CAST(schema AS pg_catalog.text), tenant_id) $$;

-- Records what was verified about a tenant schema that has just been pinned: its fingerprint now
-- and its problems (tenant.schema_checks).
CREATE OR REPLACE FUNCTION tenant._schema_check_record(schema name, tenant_id bigint, problems text[]) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tenant.schema_checks AS c (tenant_id, fingerprint, problems)
    VALUES (tenant_id, tenant._tenant_schema_fingerprint(schema, tenant_id), problems)
    ON CONFLICT (tenant_id) DO UPDATE
        SET fingerprint = excluded.fingerprint, problems = excluded.problems, checked_at = excluded.checked_at
$$;

-- migrate_all, before a tenant schema's step (tenant._migration_apply): the fingerprint recorded
-- when the schema was last pinned and checked (tenant.schema_checks; NULL: never), and the
-- schema's problems now — read in full only when the record does not say "none": a schema with
-- recorded problems, or never checked. NULL problems: the record says none, and the inventory is
-- left for the unlikely case that the step leaves some (tenant._schema_check_after).
CREATE OR REPLACE FUNCTION tenant._schema_check_before(schema name, OUT fingerprint text, OUT problems text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c tenant.schema_checks;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    SELECT x.* INTO c FROM tenant.schema_checks x JOIN tenant.tenants t ON t.id = x.tenant_id
     WHERE t.schema_name = _schema_check_before.schema;
    fingerprint := c.fingerprint;
    IF c.problems IS NULL OR c.problems <> '{}' THEN
        problems := tenant._tenant_schema_problem_keys(schema, false);
    END IF;
END
$$;

-- migrate_all, after a tenant schema's step, in its transaction. When the schema's fingerprint is
-- the one recorded when it was last pinned and checked, and that check found no problems, the
-- schema is in a state that was verified pinned and clean: nothing to do. Otherwise its tables
-- are pinned again (tenant._pin_unpinned), a step that added problems to `problems` (the schema's
-- problems before the step) fails with 0A000 (tenant._tenant_schema_refuse), and what was
-- verified is recorded for the next run. Returns false, having changed nothing, when the schema
-- has problems and `problems` is NULL (not read before the step): the caller then rolls the
-- step back, reads them, and runs the step again.
CREATE OR REPLACE FUNCTION tenant._schema_check_after(schema name, fingerprint text, problems text[], what text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid bigint;
    found text[];
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    SELECT t.id INTO tid FROM tenant.tenants t WHERE t.schema_name = _schema_check_after.schema;
    IF problems IS NULL AND tenant._tenant_schema_fingerprint(schema, tid) = fingerprint THEN
        RETURN true;
    END IF;
    IF tid IS NOT NULL THEN
        PERFORM tenant._pin_unpinned(schema, tid);
    END IF;
    found := tenant._tenant_schema_problem_keys(schema, false);
    IF problems IS NULL AND found <> '{}' THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT FROM unnest(found) k WHERE NOT k = ANY (problems)) THEN
        PERFORM tenant._tenant_schema_refuse(schema, false, problems, what);
    END IF;
    IF tid IS NOT NULL THEN
        PERFORM tenant._schema_check_record(schema, tid, found);
    END IF;
    RETURN true;
END
$$;

-- Tenant schemas and everything in them belong to tenant_admin (a trusted NOLOGIN role): its
-- members run migrate_all as themselves and must be able to alter every object; application
-- roles are never owners (an object the template gave an application role, statistics included,
-- is handed over too).
CREATE OR REPLACE FUNCTION tenant._own_schema(schema name, owner name) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o record;
    nsp oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema);
    -- Objects are found through indexes (tenant._clone_objects), not namespace-column scans.
    rels oid[] := tenant._clone_oids(nsp, 'pg_class'::regclass);
BEGIN
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', schema, owner);
    FOR o IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c
              WHERE c.oid = ANY (rels) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                AND NOT c.relispartition
                -- sequences owned by a column follow their table
                AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                                       AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
              ORDER BY c.oid LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
                       CASE o.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, o.rel, owner);
    END LOOP;
    -- Partitions are owned separately from their parent.
    FOR o IN SELECT c.oid::regclass AS rel FROM pg_class c
              WHERE c.oid = ANY (rels) AND c.relkind IN ('r', 'p') AND c.relispartition ORDER BY c.oid LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO %I', o.rel, owner);
    END LOOP;
    FOR o IN SELECT p.oid::regprocedure AS fn, p.prokind FROM pg_proc p
              WHERE p.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_proc'::regclass))::oid[]) ORDER BY p.oid LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I', CASE o.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, o.fn, owner);
    END LOOP;
    FOR o IN SELECT t.oid::regtype AS typ FROM pg_type t
              WHERE t.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_type'::regclass))::oid[])
                AND t.typtype IN ('e', 'd', 'r', 'c', 'm')
                AND (t.typtype <> 'c' OR EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
                AND t.typtype <> 'm'
              ORDER BY t.oid LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
                       CASE WHEN EXISTS (SELECT FROM pg_type d WHERE d.oid = o.typ AND d.typtype = 'd') THEN 'DOMAIN' ELSE 'TYPE' END,
                       o.typ, owner);
    END LOOP;
    FOR o IN SELECT x.stxname FROM pg_statistic_ext x
              WHERE x.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_statistic_ext'::regclass))::oid[]) ORDER BY x.oid LOOP
        EXECUTE format('ALTER STATISTICS %I.%I OWNER TO %I', schema, o.stxname, owner);
    END LOOP;
END
$$;

-- Clones the template into tenant_<slug>, pins it, and records it. Runs inside create_tenant's
-- transaction: any failure leaves neither the schema nor the registry row.
CREATE OR REPLACE FUNCTION tenant._create_tenant_schema(tenant_id bigint) RETURNS name
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
    template name := tenant._template_schema();
    target name;
    sharding boolean;
BEGIN
    SELECT * INTO t FROM tenant.tenants WHERE id = tenant_id;
    target := 'tenant_' || t.slug;
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = template) THEN
        RAISE EXCEPTION 'template schema % does not exist', quote_ident(template) USING ERRCODE = '3F000',
            HINT = 'Create it, or set qualityfoundry_tenant.template_schema to the schema to clone.';
    END IF;
    IF EXISTS (SELECT FROM pg_namespace WHERE nspname = target) THEN
        RAISE EXCEPTION 'schema % already exists', quote_ident(target) USING ERRCODE = '42P06',
            HINT = 'A tenant schema is created by create_tenant; drop or rename the existing schema first.';
    END IF;
    -- The template lock migrate_all takes exclusively (src/migrate.rs), held shared until commit:
    -- no migration changes the template between this check, the copy and the version recorded.
    PERFORM tenant._migration_template_lock(false);
    PERFORM tenant._tenant_schema_refuse(template, true, NULL, format('cloning template %I', template));
    sharding := tenant._citus_pause_sharding(); -- Citus schema-based sharding (sql/citus.sql)
    PERFORM tenant.clone_schema(template::text, target::text, false);
    -- Registered only now, so the pinning event trigger does not touch the copy while it is being
    -- built (clone_schema compares the copy with the template before returning).
    UPDATE tenant.tenants SET schema_name = target WHERE id = t.id;
    PERFORM tenant._mark_schema_at_template_version(target);
    PERFORM tenant._own_schema(target, tenant._schema_owner());
    PERFORM tenant._pin_schema(target, t.id);
    PERFORM tenant._citus_distribute_schema(target, sharding);
    RETURN target;
END
$$;

-- Tables and views created later in a tenant schema (by migrate_all or by hand) are pinned and
-- granted at once.
CREATE OR REPLACE FUNCTION tenant._pin_new_tenant_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cmd record;
BEGIN
    -- A Citus worker: every DDL there is Citus's own (shards, shell tables), already complete.
    IF tenant._citus_worker() THEN
        RETURN;
    END IF;
    FOR cmd IN SELECT DISTINCT t.id AS tenant_id, t.schema_name
                 FROM pg_event_trigger_ddl_commands() d
                 JOIN pg_class c ON c.oid = d.objid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN tenant.tenants t ON t.schema_name = n.nspname
                WHERE d.object_type IN ('table', 'view') AND c.relkind IN ('r', 'p', 'v') LOOP
        PERFORM tenant._pin_unpinned(cmd.schema_name, cmd.tenant_id);
        PERFORM tenant._citus_distribute_new_tables(cmd.schema_name); -- sql/citus.sql
    END LOOP;
END
$$;
-- Replayable (the upgrade script runs this file again): drop and re-create.
DO $evt$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname OPERATOR(pg_catalog.=) 'qft_pin_tenant_tables') THEN
        DROP EVENT TRIGGER qft_pin_tenant_tables;
    END IF;
    CREATE EVENT TRIGGER qft_pin_tenant_tables ON ddl_command_end
        WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW', 'ALTER VIEW')
        EXECUTE FUNCTION tenant._pin_new_tenant_tables();
END
$evt$;

GRANT EXECUTE ON FUNCTION tenant._tenant_schema_problem_keys(name, boolean),
    tenant._tenant_schema_refuse(name, boolean, text[], text), tenant._schema_check_before(name),
    tenant._schema_check_after(name, text, text[], text) TO tenant_admin;
