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
