-- 0.1.0 -> 0.2.0, hand-written part that runs after every function exists: data carried over
-- from 0.1.0 (e.g. settings that moved into registry tables).

-- Tenant context (issue 10). 0.1.0 kept a binding twice: in tenant.role_bindings and as
-- ALTER ROLE ... IN DATABASE <this database> SET qualityfoundry_tenant.tenant_id. 0.2.0 reads
-- bindings from the registry only (the setting could be shadowed by a client and did not follow
-- rebinding), so the registry gets any binding it lacks and the role settings are removed.
-- require_signed_context / context_scope set with ALTER ROLE (for this database or all) become
-- registry rules, which no client setting can shadow; the settings stay as they are.
DO $qft_context$
DECLARE
    this_db oid := (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());
    s record;
    v text;
BEGIN
    FOR s IN SELECT r.oid, r.rolname, cfg
               FROM pg_catalog.pg_db_role_setting d
               JOIN pg_catalog.pg_roles r ON r.oid = d.setrole
               CROSS JOIN LATERAL pg_catalog.unnest(d.setconfig) AS cfg
              WHERE d.setdatabase = this_db AND cfg LIKE 'qualityfoundry\_tenant.tenant\_id=%'
    LOOP
        v := pg_catalog.substr(s.cfg, pg_catalog.length('qualityfoundry_tenant.tenant_id=') + 1);
        IF v ~ '^[0-9]{1,18}$' AND EXISTS (SELECT FROM tenant.tenants t WHERE t.id = v::bigint) THEN
            INSERT INTO tenant.role_bindings (role, tenant_id) VALUES (s.oid, v::bigint)
                ON CONFLICT ON CONSTRAINT role_bindings_pkey DO NOTHING;
        END IF;
        EXECUTE pg_catalog.format('ALTER ROLE %I IN DATABASE %I RESET qualityfoundry_tenant.tenant_id',
                                  s.rolname, pg_catalog.current_database());
    END LOOP;
    FOR s IN SELECT d.setrole AS oid,
                    pg_catalog.bool_or(cfg ~* '^qualityfoundry_tenant\.require_signed_context=(on|true|yes|1|t|y)$') AS signed,
                    pg_catalog.bool_or(cfg ~* '^qualityfoundry_tenant\.context_scope=transaction$') AS tx
               FROM pg_catalog.pg_db_role_setting d
               CROSS JOIN LATERAL pg_catalog.unnest(d.setconfig) AS cfg
              WHERE d.setrole <> 0 AND d.setdatabase IN (0, this_db)
                AND EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = d.setrole)
              GROUP BY d.setrole
    LOOP
        IF s.signed OR s.tx THEN
            INSERT INTO tenant.role_rules AS r (role, require_signed_context, context_scope)
            VALUES (s.oid, CASE WHEN s.signed THEN true END, CASE WHEN s.tx THEN 'transaction' END)
            ON CONFLICT ON CONSTRAINT role_rules_pkey DO UPDATE
                SET require_signed_context = COALESCE(excluded.require_signed_context, r.require_signed_context),
                    context_scope = COALESCE(excluded.context_scope, r.context_scope);
        END IF;
    END LOOP;
END
$qft_context$;
-- Registry rows of tables dropped under 0.1.0 (which had no sql_drop trigger).
DELETE FROM tenant.isolated_tables i
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) i.relid::pg_catalog.oid);
DELETE FROM tenant.shared_tables s
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) s.relid::pg_catalog.oid);

-- 0.1.0's auto_isolate isolated the extension's own tables when it was on during CREATE EXTENSION
-- (tenant.schema_migrations has a tenant_id column): undo exactly what enable_isolation added.
DO $own$
DECLARE
    t pg_catalog.regclass;
BEGIN
    FOR t IN SELECT i.relid FROM tenant.isolated_tables i JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.relid::pg_catalog.oid
              WHERE c.relnamespace OPERATOR(pg_catalog.=) 'tenant'::pg_catalog.regnamespace LOOP
        PERFORM tenant._disable_isolation(t);
    END LOOP;
END
$own$;

-- What 0.2.0 gives every isolated table: partitions and children attached after their parent was
-- isolated are isolated too, and an explicit NULL tenant is filled from the context. A table that
-- cannot be brought there is named, not allowed to stop the upgrade.
DO $isolated$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT h.inhrelid::pg_catalog.regclass AS child, i.tenant_column, i.allow_shared_rows
               FROM tenant.isolated_tables i JOIN pg_catalog.pg_inherits h ON h.inhparent OPERATOR(pg_catalog.=) i.relid::pg_catalog.oid
              WHERE NOT EXISTS (SELECT FROM tenant.isolated_tables j WHERE j.relid::pg_catalog.oid OPERATOR(pg_catalog.=) h.inhrelid)
              ORDER BY h.inhrelid LOOP
        BEGIN
            PERFORM tenant._enable_isolation(r.child, r.tenant_column, r.allow_shared_rows);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'could not isolate %, a child of an isolated table: %', r.child, SQLERRM
                USING HINT = pg_catalog.format('Fix it, then run SELECT tenant.enable_isolation(%L);', r.child::text);
        END;
    END LOOP;
    FOR r IN SELECT i.relid, i.tenant_column, i.allow_shared_rows FROM tenant.isolated_tables i ORDER BY i.relid::pg_catalog.oid LOOP
        PERFORM tenant._add_fill_trigger(r.relid, r.tenant_column, r.allow_shared_rows);
    END LOOP;
END
$isolated$;

-- Usage and quotas (issue 16): the storage guard on every table isolated or pinned before the
-- upgrade (isolation and pinning install it on every table from now on).
DO $qft_quotas$
DECLARE
    r regclass;
BEGIN
    FOR r IN SELECT i.relid FROM tenant.isolated_tables i
              WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = i.relid)
             UNION
             SELECT c.oid::regclass FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN tenant.tenants t ON t.schema_name = n.nspname
              WHERE c.relkind IN ('r', 'p')
    LOOP
        PERFORM tenant._quota_attach(r);
    END LOOP;
END
$qft_quotas$;
