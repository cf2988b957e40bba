-- tenant.check_isolation(): the database-wide isolation lint.
--
-- Every row names one problem and carries, in `fix`, SQL that a DBA (a superuser, or the object's
-- owner) can run to remove exactly that problem. A database with nothing to report returns no rows.
-- Severity 'error': rows of one tenant can be read, written or probed by another (or isolation can
-- be switched off by an application role). 'warning': not a leak by itself, but a gap the DBA
-- should close (an unmarked global table, a missing tenant index, a definer that keeps RLS).
--
-- The helpers below run inside the SECURITY DEFINER checker only (finalize.sql revokes them from
-- PUBLIC); they read catalogs, never write.

-- Relations the lint looks at: not in a system schema, not temporary, not belonging to an
-- extension, and (unless with_tenant_schema, used for views) not in schema tenant, whose tables are
-- the extension's own business.
CREATE OR REPLACE FUNCTION tenant._chk_user_relation(rel oid, with_tenant_schema boolean DEFAULT false) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = $1
           AND c.relpersistence <> 't'
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
           AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
           AND ($2 OR n.nspname <> 'tenant')
           -- Tenant schemas and the template are pinned per schema, checked by kind 14 below.
           AND NOT EXISTS (SELECT FROM tenant.tenants t WHERE t.schema_name = n.nspname)
           AND n.nspname <> tenant._template_schema()
           AND NOT EXISTS (SELECT FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))
$$;

-- reloptions boolean, as PostgreSQL's parse_bool reads it (security_invoker=on/true/yes/1/...).
CREATE OR REPLACE FUNCTION tenant._chk_reloption_on(opts text[], opt text) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(bool_or(lower(split_part(o, '=', 2)) IN ('t', 'tr', 'tru', 'true', 'y', 'ye', 'yes', 'on', '1')), false)
      FROM unnest($1) AS o
     WHERE split_part(o, '=', 1) = $2
$$;

-- Views and materialized views that read an isolated table, directly or through other views
-- (pg_depend of their rewrite rules, followed recursively). base = the isolated table reached.
CREATE OR REPLACE FUNCTION tenant._chk_readers() RETURNS TABLE(relid oid, base oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE r(relid, base) AS (
        SELECT c.oid, c.oid FROM tenant.isolated_tables i JOIN pg_class c ON c.oid = i.relid
        UNION
        SELECT w.ev_class, r.base
          FROM r
          JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = r.relid
                          AND d.classid = 'pg_rewrite'::regclass
          JOIN pg_rewrite w ON w.oid = d.objid
         WHERE w.ev_class <> r.relid
    )
    SELECT DISTINCT r.relid, r.base FROM r WHERE r.relid <> r.base
$$;

-- The tenant column of a table: the one recorded for an isolated table, else tenant_id.
CREATE OR REPLACE FUNCTION tenant._chk_tenant_attnum(rel oid) RETURNS smallint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.attnum FROM pg_attribute a
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname = COALESCE((SELECT i.tenant_column FROM tenant.isolated_tables i WHERE i.relid = $1::regclass),
                                'tenant_id')
$$;

CREATE OR REPLACE FUNCTION tenant._chk_grantee(r oid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN $1 = 0 THEN 'PUBLIC'
                ELSE COALESCE((SELECT quote_ident(rolname) FROM pg_roles WHERE oid = $1), quote_ident($1::text)) END
$$;

-- Column names of attnums (in the given order), quoted and joined as pg_get_constraintdef does.
CREATE OR REPLACE FUNCTION tenant._chk_cols(rel oid, attnums smallint[]) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
      FROM unnest($2) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = $1 AND a.attnum = k.attnum
$$;

-- TRUNCATE (ignores RLS), REFERENCES (a foreign key into the table probes every tenant's keys) and
-- TRIGGER (a trigger sees every tenant's writes) on a table, granted to anyone but its owner, at
-- table or column level: (problem, fix) per grant. Used for isolated (kind 8) and pinned tables.
CREATE OR REPLACE FUNCTION tenant._chk_table_grants(rel oid) RETURNS TABLE(problem text, fix text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('grants %s to %s%s', g.privilege_type, tenant._chk_grantee(g.grantee),
                  CASE g.privilege_type WHEN 'TRUNCATE' THEN ': TRUNCATE ignores row level security and empties every tenant'
                       WHEN 'REFERENCES' THEN ': a foreign key into it tells which keys exist in other tenants'
                       ELSE ': a trigger on it sees every tenant''s writes' END),
           format('%sREVOKE %s ON %s FROM %s%s;%s',
                  CASE WHEN g.grantor <> c.relowner THEN format('SET ROLE %s; ', tenant._chk_grantee(g.grantor)) ELSE '' END,
                  g.privilege_type, c.oid::regclass, tenant._chk_grantee(g.grantee),
                  CASE WHEN g.is_grantable THEN ' CASCADE' ELSE '' END,
                  CASE WHEN g.grantor <> c.relowner THEN ' RESET ROLE;' ELSE '' END)
      FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) g
     WHERE c.oid = rel AND g.privilege_type IN ('TRUNCATE', 'REFERENCES', 'TRIGGER') AND g.grantee <> c.relowner
    UNION ALL
    SELECT format('grants REFERENCES (%I) to %s: a foreign key into it tells which keys exist in other tenants',
                  a.attname, tenant._chk_grantee(g.grantee)),
           format('%sREVOKE REFERENCES (%I) ON %s FROM %s%s;%s',
                  CASE WHEN g.grantor <> c.relowner THEN format('SET ROLE %s; ', tenant._chk_grantee(g.grantor)) ELSE '' END,
                  a.attname, c.oid::regclass, tenant._chk_grantee(g.grantee),
                  CASE WHEN g.is_grantable THEN ' CASCADE' ELSE '' END,
                  CASE WHEN g.grantor <> c.relowner THEN ' RESET ROLE;' ELSE '' END)
      FROM pg_class c
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
      CROSS JOIN LATERAL aclexplode(a.attacl) g
     WHERE c.oid = rel AND g.privilege_type = 'REFERENCES' AND g.grantee <> c.relowner
$$;

-- Who could read a key table (tenant.signing_keys, tenant.jwt_keys) that row security with FORCE
-- and no policy keeps from everyone but superusers, also pg_read_all_data members: BYPASSRLS roles
-- with SELECT on it (directly or through pg_read_all_data), members of its owner (they can switch
-- row security off), and row security switched off. Roles are reported when some login role that
-- may connect here has their privileges. For check kinds 16 and 40; what: what the keys are.
CREATE OR REPLACE FUNCTION tenant._chk_key_readers(tbl regclass, what text)
RETURNS TABLE(severity text, object text, problem text, fix text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
        SELECT 'error', format('role %I', r.rolname),
               CASE WHEN pg_has_role(r.oid, c.relowner, 'MEMBER')
                    THEN format('is a member of %I, the owner of %s: it can switch its row level security off and read %s', o.rolname, tbl, what)
                    ELSE format('has BYPASSRLS and SELECT on %s (e.g. through pg_read_all_data): it can read %s', tbl, what) END,
               CASE WHEN pg_has_role(r.oid, c.relowner, 'MEMBER') THEN format('REVOKE %I FROM %I;', o.rolname, r.rolname)
                    ELSE format('ALTER ROLE %I NOBYPASSRLS;', r.rolname) END
          FROM pg_class c
          JOIN pg_roles o ON o.oid = c.relowner
          CROSS JOIN pg_roles r
         WHERE c.oid = tbl
           AND NOT r.rolsuper AND r.oid <> c.relowner
           AND (pg_has_role(r.oid, c.relowner, 'MEMBER')
                OR (r.rolbypassrls AND has_table_privilege(r.oid, c.oid, 'SELECT')))
           -- (superusers are members of every role: they do not count)
           AND EXISTS (SELECT FROM pg_roles l
                        WHERE l.rolcanlogin AND NOT l.rolsuper AND pg_has_role(l.oid, r.oid, 'MEMBER')
                          AND has_database_privilege(l.oid, current_database(), 'CONNECT'))
        UNION ALL
        SELECT 'error', format('table %s', tbl),
               format('row level security is off or not forced: roles with SELECT on it (e.g. pg_read_all_data members) can read %s', what),
               format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;', tbl)
          FROM pg_class c
         WHERE c.oid = tbl AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
         ORDER BY 2, 3
$$;

CREATE OR REPLACE FUNCTION tenant.check_isolation()
RETURNS TABLE(severity text, object text, problem text, fix text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r record;
    n bigint;
    tenant_owner name := (SELECT r.rolname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = 'tenant');
    ptc smallint;
    ctc smallint;
    pos integer;
    new_cols smallint[];
    new_refcols smallint[];
    prefix text;
    rest text;
    def text;
    idx_fix text;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'check isolation');

    -- 1. Tables with a tenant column that are not isolated (neither shared on purpose).
    --    A partition is reported only when its parent is isolated (enable_isolation on a parent
    --    isolates its partitions; one attached later is not).
    FOR r IN
        SELECT c.oid::regclass AS rel, c.relrowsecurity, c.relforcerowsecurity, a.attnotnull,
               a.atttypid::regtype AS typ, a.attname
          FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relkind IN ('r', 'p') AND tenant._chk_user_relation(c.oid)
           AND NOT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = c.oid)
           AND NOT EXISTS (SELECT FROM tenant.shared_tables s WHERE s.relid = c.oid)
           AND NOT (c.relispartition AND EXISTS (
                   SELECT FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent
                    WHERE h.inhrelid = c.oid AND tenant._chk_user_relation(pc.oid)
                      AND NOT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = pc.oid)
                      AND NOT EXISTS (SELECT FROM tenant.shared_tables s WHERE s.relid = pc.oid)))
         ORDER BY c.oid::regclass::text
    LOOP
        severity := CASE WHEN r.relrowsecurity AND r.relforcerowsecurity THEN 'warning' ELSE 'error' END;
        object := format('table %s', r.rel);
        problem := CASE
            WHEN NOT r.relrowsecurity THEN
                'has a tenant column tenant_id but row level security is not enabled: every role with SELECT sees every tenant''s rows'
            WHEN NOT r.relforcerowsecurity THEN
                'has a tenant column tenant_id and row level security without FORCE: its owner sees every tenant''s rows; it is not isolated by tenant.enable_isolation()'
            ELSE
                'has a tenant column tenant_id and its own row level security, but is not isolated by tenant.enable_isolation(), so its policies are not checked'
        END;
        fix := format('SELECT tenant.enable_isolation(%L);', r.rel::text);
        IF r.typ NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
            problem := problem || format(' (the column is of type %s; isolation needs smallint, integer or bigint)', r.typ);
            fix := format('ALTER TABLE %s ALTER COLUMN tenant_id TYPE bigint USING tenant_id::bigint; ', r.rel) || fix;
        ELSIF NOT r.attnotnull THEN
            EXECUTE format('SELECT count(*) FROM %s WHERE tenant_id IS NULL', r.rel) INTO n;
            IF n > 0 THEN
                problem := problem || format(' (%s row(s) have a NULL tenant_id: they become system rows, readable by every tenant and writable by none; give them a tenant first if they are not)', n);
                fix := format('SELECT tenant.enable_isolation(%L, ''tenant_id'', allow_shared_rows => true);', r.rel::text);
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;

    -- 2. Isolated tables: registry entry, row security flags, tenant column.
    RETURN QUERY
        SELECT 'warning', format('table %s', i.relid::oid),
               'is listed in tenant.isolated_tables but no longer exists',
               format('DELETE FROM tenant.isolated_tables WHERE relid = %s;', i.relid::oid)
          FROM tenant.isolated_tables i
         WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = i.relid)
        UNION ALL
        SELECT 'warning', format('table %s', s.relid::oid),
               'is listed in tenant.shared_tables but no longer exists',
               format('DELETE FROM tenant.shared_tables WHERE relid = %s;', s.relid::oid)
          FROM tenant.shared_tables s
         WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = s.relid)
        ORDER BY 2;

    RETURN QUERY
        SELECT 'error', format('table %s', c.oid::regclass),
               'is isolated but row level security is disabled: its tenant policies are not applied',
               format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY;', c.oid::regclass)
          FROM tenant.isolated_tables i JOIN pg_class c ON c.oid = i.relid
         WHERE NOT c.relrowsecurity
        UNION ALL
        SELECT 'error', format('table %s', c.oid::regclass),
               'is isolated but row level security is not forced: the table owner bypasses the tenant policies',
               format('ALTER TABLE %s FORCE ROW LEVEL SECURITY;', c.oid::regclass)
          FROM tenant.isolated_tables i JOIN pg_class c ON c.oid = i.relid
         WHERE NOT c.relforcerowsecurity
        ORDER BY 2, 3;

    FOR r IN
        SELECT c.oid::regclass AS rel, i.tenant_column,
               (SELECT a.attname FROM pg_policy p
                  JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid > 0
                  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
                 WHERE p.polrelid = c.oid AND p.polname = 'qft_tenant_isolation' LIMIT 1) AS renamed_to
          FROM tenant.isolated_tables i JOIN pg_class c ON c.oid = i.relid
         WHERE NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = i.tenant_column
                             AND a.attnum > 0 AND NOT a.attisdropped)
         ORDER BY 1
    LOOP
        severity := 'error';
        object := format('table %s', r.rel);
        IF r.renamed_to IS NOT NULL THEN
            problem := format('is isolated on column %I, which has been renamed to %I', r.tenant_column, r.renamed_to);
            fix := format('ALTER TABLE %s RENAME COLUMN %I TO %I;', r.rel, r.renamed_to, r.tenant_column);
        ELSE
            problem := format('is isolated on column %I, which no longer exists (its policies are gone with it)', r.tenant_column);
            fix := format('DELETE FROM tenant.isolated_tables WHERE relid = %L::regclass;', r.rel::text);
        END IF;
        RETURN NEXT;
    END LOOP;

    -- 3. The qft_ policies of every isolated table, compared by content (kind, command, roles,
    --    USING and WITH CHECK as pg_get_expr renders them) with the policy template
    --    (tenant._policy_template, sql/isolation.sql) that enable_isolation creates them from.
    --    Other (non-qft_) policies are not reported: the RESTRICTIVE guard bounds whatever they allow.
    RETURN QUERY
        SELECT 'error', format('policy %I on table %s', d.polname, c.oid::regclass),
               format('tenant policy %s', d.difference),
               format('SELECT tenant.enable_isolation(%L, %L%s);', c.oid::regclass::text, i.tenant_column,
                      CASE WHEN i.allow_shared_rows THEN ', allow_shared_rows => true' ELSE '' END)
          FROM tenant.isolated_tables i JOIN pg_class c ON c.oid = i.relid
          CROSS JOIN LATERAL tenant._policy_differences(c.oid) d
         WHERE EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = i.tenant_column
                         AND a.attnum > 0 AND NOT a.attisdropped)
         ORDER BY c.oid::regclass::text, d.polname;

    -- 4. Views over isolated tables (directly or through other views) without security_invoker:
    --    they read the tables with their owner's rights (a superuser owner bypasses RLS).
    RETURN QUERY
        SELECT CASE WHEN o.rolsuper OR o.rolbypassrls THEN 'error' ELSE 'warning' END,
               format('view %s', v.oid::regclass),
               format('reads isolated table%s %s with the rights of its owner %I%s, because security_invoker is not set',
                      CASE WHEN count(*) > 1 THEN 's' ELSE '' END,
                      string_agg(x.base::regclass::text, ', ' ORDER BY x.base::regclass::text), o.rolname,
                      CASE WHEN o.rolsuper THEN ' (a superuser: row level security does not apply to it)'
                           WHEN o.rolbypassrls THEN ' (BYPASSRLS: row level security does not apply to it)' ELSE '' END),
               format('ALTER VIEW %s SET (security_invoker = true);', v.oid::regclass)
          FROM tenant._chk_readers() x
          JOIN pg_class v ON v.oid = x.relid AND v.relkind = 'v'
          JOIN pg_roles o ON o.oid = v.relowner
         WHERE tenant._chk_user_relation(v.oid, true)
           AND NOT tenant._chk_reloption_on(v.reloptions, 'security_invoker')
         GROUP BY v.oid, o.rolname, o.rolsuper, o.rolbypassrls
         ORDER BY 2;

    -- 5. Materialized views over isolated tables: a snapshot of every tenant's rows, without RLS.
    RETURN QUERY
        SELECT 'error', format('materialized view %s', m.oid::regclass),
               format('stores the rows of isolated table%s %s for every tenant; materialized views cannot have row level security',
                      CASE WHEN count(*) > 1 THEN 's' ELSE '' END,
                      string_agg(x.base::regclass::text, ', ' ORDER BY x.base::regclass::text)),
               format('DROP MATERIALIZED VIEW %1$s; CREATE VIEW %1$s WITH (security_invoker = true) AS %2$s',
                      m.oid::regclass, btrim(pg_get_viewdef(m.oid)))
          FROM tenant._chk_readers() x
          JOIN pg_class m ON m.oid = x.relid AND m.relkind = 'm'
         WHERE tenant._chk_user_relation(m.oid, true)
         GROUP BY m.oid
         ORDER BY 2;

    -- 6. SECURITY DEFINER functions reading isolated tables (or views over them). SQL-standard
    --    bodies by pg_depend; other languages by a conservative, case-insensitive search of the
    --    source for the relation's name as a word.
    RETURN QUERY
        WITH targets AS (
            SELECT c.oid AS relid, c.relname,
                   '(^|[^[:alnum:]_$])' || regexp_replace(c.relname, '([^[:alnum:]_])', '\\\1', 'g') || '($|[^[:alnum:]_$])' AS pattern
              FROM pg_class c
             WHERE c.oid IN (SELECT i.relid FROM tenant.isolated_tables i UNION SELECT x.relid FROM tenant._chk_readers() x)
        ), defs AS (
            SELECT p.oid, p.prokind, p.prosqlbody, p.prosrc, o.rolname, o.rolsuper, o.rolbypassrls
              FROM pg_proc p
              JOIN pg_namespace n ON n.oid = p.pronamespace
              JOIN pg_language l ON l.oid = p.prolang
              JOIN pg_roles o ON o.oid = p.proowner
             WHERE p.prosecdef
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND l.lanname NOT IN ('c', 'internal')
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                 AND d.deptype = 'e')
        )
        SELECT CASE WHEN f.rolsuper OR f.rolbypassrls THEN 'error' ELSE 'warning' END,
               format('%s %s', CASE WHEN f.prokind = 'p' THEN 'procedure' ELSE 'function' END, f.oid::regprocedure),
               format('is SECURITY DEFINER and %s %s, which it reads with the rights of its owner %I%s',
                      CASE WHEN f.prosqlbody IS NOT NULL THEN 'depends on' ELSE 'names in its source' END,
                      string_agg(DISTINCT t.relid::regclass::text, ', '), f.rolname,
                      CASE WHEN f.rolsuper THEN ' (a superuser: row level security does not apply to it)'
                           WHEN f.rolbypassrls THEN ' (BYPASSRLS: row level security does not apply to it)' ELSE '' END),
               format('ALTER %s %s SECURITY INVOKER;', CASE WHEN f.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                      f.oid::regprocedure)
          FROM defs f
          JOIN targets t ON CASE WHEN f.prosqlbody IS NOT NULL THEN
                                 EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = f.oid
                                           AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid)
                             ELSE f.prosrc ~* t.pattern END
         GROUP BY f.oid, f.prokind, f.prosqlbody IS NOT NULL, f.rolname, f.rolsuper, f.rolbypassrls
         ORDER BY 2;

    -- 7. Roles holding tenant_user (directly or through other roles, and tenant_user itself) that
    --    escape row level security: superusers, BYPASSRLS, owners of isolated tables (an owner can
    --    switch RLS off), and members of a superuser or BYPASSRLS role (SET ROLE).
    RETURN QUERY
        WITH RECURSIVE holders(roleid) AS (
            SELECT oid FROM pg_roles WHERE rolname = 'tenant_user'
            UNION
            SELECT m.member FROM pg_auth_members m JOIN holders h ON m.roleid = h.roleid
        ), up(holder, member, roleid) AS (
            SELECT h.roleid, m.member, m.roleid FROM holders h JOIN pg_auth_members m ON m.member = h.roleid
            UNION
            SELECT up.holder, m.member, m.roleid FROM up JOIN pg_auth_members m ON m.member = up.roleid
        )
        SELECT 'error', format('role %I', r.rolname),
               'holds tenant_user and is a superuser: row level security does not apply to it',
               CASE WHEN r.oid = 10 THEN format('REVOKE tenant_user FROM %I;', r.rolname)
                    ELSE format('ALTER ROLE %I NOSUPERUSER;', r.rolname) END
          FROM holders h JOIN pg_roles r ON r.oid = h.roleid
         WHERE r.rolsuper
        UNION ALL
        SELECT 'error', format('role %I', r.rolname),
               'holds tenant_user and has BYPASSRLS: row level security does not apply to it',
               format('ALTER ROLE %I NOBYPASSRLS;', r.rolname)
          FROM holders h JOIN pg_roles r ON r.oid = h.roleid
         WHERE r.rolbypassrls AND NOT r.rolsuper
        UNION ALL
        SELECT 'error', format('role %I', r.rolname),
               format('holds tenant_user and %s isolated table %s, so it can switch its row level security off',
                      CASE WHEN c.relowner = r.oid THEN 'owns' ELSE format('is a member of %I, the owner of', o.rolname) END,
                      c.oid::regclass),
               format('ALTER TABLE %s OWNER TO %I;', c.oid::regclass, tenant_owner)
          FROM holders h
          JOIN pg_roles r ON r.oid = h.roleid
          JOIN tenant.isolated_tables i ON true
          JOIN pg_class c ON c.oid = i.relid
          JOIN pg_roles o ON o.oid = c.relowner
         WHERE NOT r.rolsuper AND pg_has_role(r.oid, c.relowner, 'MEMBER')
        UNION ALL
        SELECT 'error', format('role %I', r.rolname),
               format('holds tenant_user and is a member of %I, which is %s: SET ROLE %I escapes row level security',
                      b.rolname, CASE WHEN b.rolsuper THEN 'a superuser' ELSE 'BYPASSRLS' END, b.rolname),
               string_agg(DISTINCT format('REVOKE %I FROM %I;', b.rolname, mr.rolname), ' ')
          FROM up
          JOIN pg_roles r ON r.oid = up.holder
          JOIN pg_roles b ON b.oid = up.roleid
          JOIN pg_roles mr ON mr.oid = up.member
         WHERE (b.rolsuper OR b.rolbypassrls) AND NOT r.rolsuper AND NOT r.rolbypassrls
           AND NOT EXISTS (SELECT FROM holders h WHERE h.roleid = b.oid)
         GROUP BY r.rolname, b.rolname, b.rolsuper
        ORDER BY 2, 3;

    -- 8. TRUNCATE (ignores RLS), REFERENCES (foreign keys probe every tenant's keys) and TRIGGER
    --    (a trigger sees other tenants' writes) on isolated tables, granted to anyone but the owner.
    --    (Pinned tables: kind 17.)
    RETURN QUERY
        SELECT 'error', format('table %s', c.oid::regclass), g.problem, g.fix
          FROM tenant.isolated_tables i
          JOIN pg_class c ON c.oid = i.relid
          CROSS JOIN LATERAL tenant._chk_table_grants(c.oid) g
         ORDER BY 2, 3;

    -- 9. Foreign keys into isolated tables that do not pair the referenced table's tenant column
    --    with the referencing table's own tenant column: the key check ignores RLS, so inserting a
    --    referencing row tells whether a key exists in another tenant.
    FOR r IN
        SELECT k.oid, k.conname, k.conrelid, k.confrelid, k.conkey, k.confkey, k.confdeltype, k.confdelsetcols,
               pg_get_constraintdef(k.oid) AS def
          FROM pg_constraint k
          JOIN tenant.isolated_tables i ON i.relid = k.confrelid
         WHERE k.contype = 'f' AND k.conparentid = 0
         ORDER BY k.conrelid::regclass::text, k.conname
    LOOP
        ptc := tenant._chk_tenant_attnum(r.confrelid);
        CONTINUE WHEN ptc IS NULL;  -- reported above (tenant column gone)
        ctc := tenant._chk_tenant_attnum(r.conrelid);
        pos := array_position(r.confkey, ptc);
        CONTINUE WHEN pos IS NOT NULL AND ctc IS NOT NULL AND r.conkey[pos] = ctc;
        severity := 'error';
        object := format('constraint %I on table %s', r.conname, r.conrelid::regclass);
        IF ctc IS NULL THEN
            problem := format('references isolated table %s without its tenant column, and %s has no tenant column to pair it with: '
                              'inserting a row tells whether a key exists in another tenant',
                              r.confrelid::regclass, r.conrelid::regclass);
            fix := format('ALTER TABLE %s DROP CONSTRAINT %I;', r.conrelid::regclass, r.conname);
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF pos IS NOT NULL THEN
            problem := format('pairs the tenant column of isolated table %s with %s.%I instead of its own tenant column %I: '
                              'inserting a row tells whether a key exists in another tenant',
                              r.confrelid::regclass, r.conrelid::regclass,
                              (SELECT attname FROM pg_attribute WHERE attrelid = r.conrelid AND attnum = r.conkey[pos]),
                              (SELECT attname FROM pg_attribute WHERE attrelid = r.conrelid AND attnum = ctc));
            new_cols := r.conkey;
            new_cols[pos] := ctc;
            new_refcols := r.confkey;
        ELSE
            problem := format('references isolated table %s without its tenant column: inserting a row tells whether a key '
                              'exists in another tenant', r.confrelid::regclass);
            new_cols := ARRAY[ctc] || r.conkey;
            new_refcols := ARRAY[ptc] || r.confkey;
        END IF;
        -- Keep MATCH/ON UPDATE/ON DELETE/DEFERRABLE as written; a SET NULL/SET DEFAULT on delete keeps
        -- touching only the original columns, never the tenant column.
        prefix := format('FOREIGN KEY (%s) REFERENCES %s(%s)', tenant._chk_cols(r.conrelid, r.conkey),
                         r.confrelid::regclass, tenant._chk_cols(r.confrelid, r.confkey));
        rest := CASE WHEN left(r.def, length(prefix)) = prefix THEN substr(r.def, length(prefix) + 1) ELSE '' END;
        IF r.confdeltype IN ('n', 'd') AND r.confdelsetcols IS NULL THEN
            rest := regexp_replace(rest, '(ON DELETE SET (NULL|DEFAULT))',
                                   '\1 (' || replace(tenant._chk_cols(r.conrelid, r.conkey), '\', '\\') || ')');
        END IF;
        def := format('FOREIGN KEY (%s) REFERENCES %s(%s)%s', tenant._chk_cols(r.conrelid, new_cols), r.confrelid::regclass,
                      tenant._chk_cols(r.confrelid, new_refcols), rest);
        idx_fix := '';
        IF NOT EXISTS (SELECT FROM pg_index x
                        WHERE x.indrelid = r.confrelid AND x.indisunique AND x.indimmediate AND x.indisvalid
                          AND x.indpred IS NULL AND x.indexprs IS NULL AND x.indnkeyatts = cardinality(new_refcols)
                          AND (x.indkey::smallint[])[0:x.indnkeyatts - 1] @> new_refcols
                          AND (x.indkey::smallint[])[0:x.indnkeyatts - 1] <@ new_refcols) THEN
            idx_fix := format('CREATE UNIQUE INDEX ON %s (%s); ', r.confrelid::regclass, tenant._chk_cols(r.confrelid, new_refcols));
        END IF;
        fix := idx_fix || format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I %s;', r.conrelid::regclass,
                                 r.conname, r.conname, def);
        RETURN NEXT;
    END LOOP;

    -- 10. Unique and primary-key constraints, and unique indexes, on isolated tables whose key does
    --     not include the tenant column: a duplicate-key error tells whether a key exists in another
    --     tenant. (Indexes of partitions attached to a partitioned index are fixed at the parent.)
    --     A key of one column whose values come from a sequence (identity, serial) is a warning: the
    --     sequence is shared by every tenant, so each tenant already sees which values were handed
    --     out (the gaps between its own keys); the probe adds little, but a tenant can still take a
    --     value another tenant's insert is about to get, making that insert fail.
    RETURN QUERY
        SELECT CASE WHEN tenant._chk_sequence_key(c.oid, x.indkey, x.indnkeyatts) THEN 'warning' ELSE 'error' END,
               CASE WHEN k.oid IS NOT NULL THEN format('constraint %I on table %s', k.conname, c.oid::regclass)
                    ELSE format('index %s', x.indexrelid::regclass) END,
               format('is a %s on isolated table %s without its tenant column %I: %s',
                      CASE WHEN x.indisprimary THEN 'primary key' WHEN k.oid IS NOT NULL THEN 'unique constraint' ELSE 'unique index' END,
                      c.oid::regclass, i.tenant_column,
                      CASE WHEN tenant._chk_sequence_key(c.oid, x.indkey, x.indnkeyatts)
                           THEN 'its values come from a sequence that every tenant draws from, so a duplicate-key error only '
                                'confirms what the gaps in a tenant''s own keys already show (which values were handed out); '
                                'but a tenant that inserts a value explicitly can make another tenant''s next insert fail'
                           ELSE 'a duplicate-key error tells whether a key exists in another tenant' END),
               CASE WHEN k.oid IS NOT NULL THEN
                        -- Where the tenant column may be NULL (shared rows) a primary key cannot hold
                        -- it: the key becomes UNIQUE NULLS NOT DISTINCT, which keeps shared rows unique too.
                        format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I %s;', c.oid::regclass, k.conname, k.conname,
                               regexp_replace(
                                   CASE WHEN i.allow_shared_rows OR NOT a.attnotnull
                                        THEN regexp_replace(pg_get_constraintdef(k.oid),
                                                            '^(PRIMARY KEY|UNIQUE)( NULLS NOT DISTINCT)? \(',
                                                            'UNIQUE NULLS NOT DISTINCT (')
                                        ELSE pg_get_constraintdef(k.oid) END,
                                   '\(', '(' || replace(quote_ident(i.tenant_column), '\', '\\') || ', '))
                    ELSE format('DROP INDEX %s; %s;', x.indexrelid::regclass,
                                regexp_replace(pg_get_indexdef(x.indexrelid), ' USING (\w+) \(',
                                               ' USING \1 (' || replace(quote_ident(i.tenant_column), '\', '\\') || ', '))
               END
          FROM tenant.isolated_tables i
          JOIN pg_class c ON c.oid = i.relid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = i.tenant_column AND a.attnum > 0 AND NOT a.attisdropped
          JOIN pg_index x ON x.indrelid = c.oid AND x.indisunique
          LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = c.oid AND k.contype IN ('p', 'u')
         WHERE NOT (a.attnum = ANY ((x.indkey::smallint[])[0:x.indnkeyatts - 1]))
           AND NOT EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = x.indexrelid)
           AND (k.oid IS NULL OR k.conparentid = 0)
         ORDER BY 2;

    -- 11. Isolated tables without an index leading with the tenant column: every query filters on it.
    RETURN QUERY
        SELECT 'warning', format('table %s', c.oid::regclass),
               format('is isolated but has no index leading with its tenant column %I: every query filters on it', i.tenant_column),
               format('CREATE INDEX ON %s (%I);', c.oid::regclass, i.tenant_column)
          FROM tenant.isolated_tables i
          JOIN pg_class c ON c.oid = i.relid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = i.tenant_column AND a.attnum > 0 AND NOT a.attisdropped
         WHERE NOT EXISTS (SELECT FROM pg_index x WHERE x.indrelid = c.oid AND x.indkey[0] = a.attnum)
         ORDER BY 2;

    -- 12. Tables without a tenant column that are neither isolated nor marked shared. Partitions are
    --     judged by their parent.
    RETURN QUERY
        SELECT 'warning', format('table %s', c.oid::regclass),
               'has no tenant column and is not marked shared: every tenant sees all its rows',
               format('SELECT tenant.mark_shared(%L);', c.oid::regclass::text)
          FROM pg_class c
         WHERE c.relkind IN ('r', 'p') AND tenant._chk_user_relation(c.oid)
           AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                             AND a.attnum > 0 AND NOT a.attisdropped)
           AND NOT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = c.oid)
           AND NOT EXISTS (SELECT FROM tenant.shared_tables s WHERE s.relid = c.oid)
           AND NOT (c.relispartition AND EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = c.oid
                                                    AND (tenant._chk_user_relation(h.inhparent)
                                                         OR EXISTS (SELECT FROM tenant.shared_tables s WHERE s.relid = h.inhparent))))
         ORDER BY 2;

    -- 13. GRANT SET / ALTER SYSTEM ON PARAMETER for the extension's settings: the tenant context is
    --     a superuser-only setting precisely so that nobody else can select a tenant with SET.
    RETURN QUERY
        SELECT 'error', format('parameter %s', p.parname),
               format('grants %s on it to %s: that role can set it directly, bypassing the sanctioned functions',
                      g.privilege_type, tenant._chk_grantee(g.grantee)),
               format('REVOKE %s ON PARAMETER %s FROM %s%s;', g.privilege_type, p.parname, tenant._chk_grantee(g.grantee),
                      CASE WHEN g.is_grantable THEN ' CASCADE' ELSE '' END)
          FROM pg_parameter_acl p
          CROSS JOIN LATERAL aclexplode(p.paracl) g
         WHERE lower(p.parname) LIKE 'qualityfoundry\_tenant.%'
           AND NOT (g.grantee = 10 AND g.grantor = 10)
         ORDER BY 2, 3;

    -- 14. Tables in a tenant schema that are not pinned to the schema's tenant: row security off
    --     or not forced, or pins that differ from the policy template by content (altered — e.g.
    --     to USING (true) —, dropped, widened to other roles, made PERMISSIVE). migrate_all re-pins
    --     such tables after each step; pin_tenant_schema() does it at once.
    RETURN QUERY
        SELECT 'error', format('table %s', s.rel),
               CASE WHEN NOT c.relrowsecurity
                    THEN format('is in the schema of tenant %s but row level security is disabled: every tenant reads it', t.slug)
                    ELSE format('is in the schema of tenant %s but row level security is not forced: its owner bypasses the pins', t.slug) END,
               format('SELECT tenant.pin_tenant_schema(%L);', t.slug)
          FROM tenant.tenants t
          CROSS JOIN LATERAL tenant._schema_relations(t.schema_name) s
          JOIN pg_class c ON c.oid = s.rel
         WHERE t.schema_name IS NOT NULL AND s.relkind IN ('r', 'p') AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
        UNION ALL
        SELECT 'error', format('policy %I on table %s', d.polname, s.rel),
               format('pins the table to tenant %s, but %s', t.slug, d.difference),
               format('SELECT tenant.pin_tenant_schema(%L);', t.slug)
          FROM tenant.tenants t
          CROSS JOIN LATERAL tenant._schema_relations(t.schema_name) s
          CROSS JOIN LATERAL tenant._policy_differences(s.rel) d
         WHERE t.schema_name IS NOT NULL AND s.relkind IN ('r', 'p')
           AND NOT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = s.rel)  -- kind 3 reports those
        ORDER BY 2, 3;

    -- 15. Login roles holding tenant_user or tenant_superuser (that may connect to this database)
    --     which can hold a session-scope context or cross-tenant mode: behind a transaction-pooling
    --     PgBouncer the next client of the same server connection inherits it. A registry rule
    --     context_scope = 'transaction' makes every switch local; an explicit 'session' rule records
    --     that the role never goes through a transaction pooler. Bound roles are exempt (their
    --     tenant is their binding, whoever uses the connection). Only the registry rule counts:
    --     it is what pg_dump carries to a restored database of any name.
    RETURN QUERY
        WITH RECURSIVE holders(roleid) AS (
            SELECT oid FROM pg_roles WHERE rolname IN ('tenant_user', 'tenant_superuser')
            UNION
            SELECT m.member FROM pg_auth_members m JOIN holders h ON m.roleid = h.roleid
        )
        SELECT 'warning', format('role %I', r.rolname),
               'can hold a session-scope tenant context or cross-tenant mode: behind a transaction-pooling PgBouncer the next client of its server connection inherits it',
               format('SELECT tenant.set_role_rules(%L, context_scope => ''transaction'');', r.rolname)
          FROM (SELECT DISTINCT roleid FROM holders) h
          JOIN pg_roles r ON r.oid = h.roleid
         WHERE r.rolcanlogin AND NOT r.rolsuper
           AND has_database_privilege(r.oid, current_database(), 'CONNECT')
           AND NOT EXISTS (SELECT FROM tenant.role_rules rr WHERE rr.role = r.oid AND rr.context_scope IS NOT NULL)
           AND NOT EXISTS (SELECT FROM tenant.role_bindings b WHERE b.role = r.oid)
         ORDER BY 2;

    -- 16. Whoever could read the signing keys could sign a context for any tenant. Row security
    --     (FORCE, no policy) keeps every role but superusers out, also pg_read_all_data members;
    --     what is left: BYPASSRLS roles with SELECT on the table (directly or through
    --     pg_read_all_data), members of its owner (they can switch row security off), and row
    --     security switched off. Roles are reported when some login role that may connect here
    --     has their privileges.
    RETURN QUERY SELECT * FROM tenant._chk_key_readers('tenant.signing_keys', 'the keys that sign tenant contexts');

    -- 17. Objects of tenant schemas that escape the pins (tenant._tenant_schema_problems): a
    --     materialized view, sequence or SECURITY DEFINER function application roles can use, a view
    --     that is not security_invoker, a nextval() default, TRUNCATE/REFERENCES/TRIGGER grants, an
    --     owner that holds tenant_user. In the template the same problems are warnings:
    --     create_tenant(with_schema => true) refuses such a template.
    RETURN QUERY
        SELECT 'error', p.object, format('is in the schema of tenant %s and %s', t.slug, p.problem), p.fix
          FROM tenant.tenants t CROSS JOIN LATERAL tenant._tenant_schema_problems(t.schema_name, false) p
         WHERE t.schema_name IS NOT NULL
        UNION ALL
        SELECT 'warning', p.object,
               format('is in the template schema %I and %s; create_tenant(with_schema => true) refuses this template',
                      tenant._template_schema(), p.problem), p.fix
          FROM tenant._tenant_schema_problems(tenant._template_schema(), true) p
        ORDER BY 2, 3;

    -- 18. Rules on isolated or pinned tables: a rule's actions run with the rights of the table's
    --     owner, so one can copy every tenant's rows elsewhere (into another table, or a NOTIFY
    --     payload) whenever a tenant touches the table.
    RETURN QUERY
        SELECT 'error', format('rule %I on table %s', w.rulename, c.oid::regclass),
               format('is a rule on %s table %s: its actions run with the rights of the table''s owner and can copy '
                      'other tenants'' rows out (into another table or a NOTIFY payload)',
                      CASE WHEN EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = c.oid) THEN 'isolated' ELSE 'pinned' END,
                      c.oid::regclass),
               format('DROP RULE %I ON %s;', w.rulename, c.oid::regclass)
          FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class
         WHERE w.rulename <> '_RETURN'
           AND (c.oid IN (SELECT i.relid FROM tenant.isolated_tables i)
                OR c.oid IN (SELECT s.rel FROM tenant.tenants t CROSS JOIN LATERAL tenant._schema_relations(t.schema_name) s
                              WHERE t.schema_name IS NOT NULL))
         ORDER BY 2;

    -- 30-34. Citus (sql/citus.sql): other policies on isolated Citus tables, run_command_on_*
    --     executable by tenant_user, local tables in a distributed tenant schema, no node key,
    --     rate-limited tables distributed by another column than their tenant column.
    RETURN QUERY SELECT * FROM tenant._citus_findings();

    -- 40. The same for the JWT verification keys (tenant.add_jwt_key) while one of them is an HS*
    --     key: that is the shared secret itself, with which a reader signs a JWT for any tenant,
    --     user and tenant role (RS/PS/ES/EdDSA keys are public keys: reading them gives nothing).
    --     A backup role (tenant.grant_backup_reads) is reported too: pg_dump reads the keys to dump them.
    IF EXISTS (SELECT FROM tenant.jwt_keys k WHERE k.alg LIKE 'HS%') THEN
        RETURN QUERY SELECT * FROM tenant._chk_key_readers('tenant.jwt_keys',
            'the JWT verification keys, among them HS256/HS384/HS512 shared secrets that sign a JWT for any tenant and role');
    END IF;

    -- 41. Role limits (tenant.limit_tenant_roles) on tables kinds 3 and 14 do not compare: tables
    --     of the template schema, whose limits every tenant cloned from it inherits, and limits of
    --     tables that are no longer isolated or in a tenant or template schema (they limit nothing
    --     the extension keeps).
    RETURN QUERY
        SELECT 'error', format('policy %I on table %s', d.polname, t.relid),
               format('limits tenant roles on a table of the template schema, but %s', d.difference),
               CASE WHEN l.relid IS NOT NULL
                    THEN format('SELECT tenant.limit_tenant_roles(%L, %L, %L);', t.relid::text, l.command, l.roles::text)
                    ELSE format('DROP POLICY %I ON %s;', d.polname, t.relid) END
          FROM (SELECT DISTINCT x.relid FROM tenant.role_limits x) t
          JOIN pg_class c ON c.oid = t.relid
          CROSS JOIN LATERAL tenant._policy_differences(t.relid) d
          LEFT JOIN tenant.role_limits l ON l.relid = t.relid AND 'qft_role_' || lower(l.command) = d.polname
         WHERE c.relnamespace::regnamespace::name = tenant._template_schema()
           AND NOT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = t.relid)
        UNION ALL
        SELECT 'warning', format('table %s', l.relid),
               format('has a %s limit to tenant roles %s but is neither isolated nor in a tenant or template schema', l.command, l.roles::text),
               format('SELECT tenant.limit_tenant_roles(%L, %L, NULL);', l.relid::text, l.command)
          FROM tenant.role_limits l JOIN pg_class c ON c.oid = l.relid
         WHERE NOT tenant._role_limitable(l.relid)
         ORDER BY 2, 3;
END
$$;

REVOKE ALL ON FUNCTION tenant.check_isolation() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant._chk_user_relation(oid, boolean), tenant._chk_reloption_on(text[], text), tenant._chk_readers(),
    tenant._chk_tenant_attnum(oid), tenant._chk_grantee(oid), tenant._chk_cols(oid, smallint[]), tenant._chk_table_grants(oid),
    tenant._chk_key_readers(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.check_isolation() TO tenant_admin;

-- Whether a unique key is a single column whose values come from a sequence: an identity column,
-- or a default that calls nextval() of a sequence (serial, bigserial). For check kind 10.
CREATE OR REPLACE FUNCTION tenant._chk_sequence_key(rel oid, indkey int2vector, nkeys smallint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT $3 = 1 AND (
        EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum = $2[0] AND a.attidentity IN ('a', 'd'))
        OR EXISTS (SELECT FROM pg_attrdef d
                     JOIN pg_depend p ON p.classid = 'pg_attrdef'::regclass AND p.objid = d.oid
                                     AND p.refclassid = 'pg_class'::regclass
                     JOIN pg_class s ON s.oid = p.refobjid AND s.relkind = 'S'
                    WHERE d.adrelid = $1 AND d.adnum = $2[0]))
$$;
