-- Schema per tenant: tenant_<slug> schemas cloned from the template, every table in them pinned to
-- the schema's tenant. Pinning does not need a tenant column: the policy compares the *context*
-- with the schema's tenant id, so another tenant reading this schema (even schema-qualified) sees
-- nothing and cannot write.
--   qft_schema_tenant  PERMISSIVE  ALL TO PUBLIC            tenant.current_tenant_id() = <id>
--   qft_cross_tenant   PERMISSIVE  ALL TO tenant_superuser  tenant.cross_tenant_active()
--   qft_schema_guard   RESTRICTIVE ALL TO PUBLIC            tenant.current_tenant_id() = <id> OR cross_tenant_active()

CREATE FUNCTION tenant._pin_table(tbl regclass, tenant_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mine text := format('tenant.current_tenant_id() OPERATOR(pg_catalog.=) %L::bigint', tenant_id);
    guard text := format('(tenant.current_tenant_id() OPERATOR(pg_catalog.=) %L::bigint OR tenant.cross_tenant_active())', tenant_id);
    p name;
BEGIN
    FOR p IN SELECT polname FROM pg_policy WHERE polrelid = tbl AND polname IN ('qft_schema_tenant', 'qft_cross_tenant', 'qft_schema_guard') LOOP
        EXECUTE format('DROP POLICY %I ON %s', p, tbl);
    END LOOP;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('CREATE POLICY qft_schema_tenant ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)',
                   tbl, mine, mine);
    EXECUTE format('CREATE POLICY qft_cross_tenant ON %s AS PERMISSIVE FOR ALL TO tenant_superuser '
                   'USING (tenant.cross_tenant_active()) WITH CHECK (tenant.cross_tenant_active())', tbl);
    EXECUTE format('CREATE POLICY qft_schema_guard ON %s AS RESTRICTIVE FOR ALL TO PUBLIC USING %s WITH CHECK %s',
                   tbl, guard, guard);
END
$$;

-- Pins every table of a tenant schema and gives tenant_user exactly USAGE and table DML there
-- (never CREATE, TRUNCATE, REFERENCES or TRIGGER). Called at creation, by the event trigger for
-- tables created later, and by migrate_all after each tenant.
CREATE FUNCTION tenant._pin_schema(schema name, tenant_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = schema AND c.relkind IN ('r', 'p') ORDER BY c.oid LOOP
        PERFORM tenant._pin_table(t, tenant_id);
    END LOOP;
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', schema);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tenant_user', schema);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO tenant_user', schema);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO tenant_user', schema);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO tenant_user', schema);
END
$$;

-- For migrate_all: pins whatever a migration created in a tenant schema.
CREATE FUNCTION tenant._pin_schema_tables(schema name) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_id bigint;
BEGIN
    SELECT id INTO owner_id FROM tenant.tenants WHERE schema_name = schema;
    IF owner_id IS NOT NULL THEN
        PERFORM tenant._pin_schema(schema, owner_id);
    END IF;
END
$$;

-- Re-pins a tenant's schema (the checker's fix for an unpinned table).
CREATE FUNCTION tenant.pin_tenant_schema(tenant text) RETURNS void
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

-- Clones the template into tenant_<slug>, pins it, and records it. Runs inside create_tenant's
-- transaction: any failure leaves neither the schema nor the registry row.
CREATE FUNCTION tenant._create_tenant_schema(tenant_id bigint) RETURNS name
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
    template name := coalesce(nullif(current_setting('qualityfoundry_tenant.template_schema', true), ''), 'tenant_template');
    target name;
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
    PERFORM tenant.clone_schema(template, target, false);
    -- Tenant schemas belong to the registry owner (a trusted role), not to whoever created them.
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', target,
                   (SELECT nspowner::regrole::name FROM pg_namespace WHERE nspname = 'tenant'));
    PERFORM tenant._pin_schema(target, t.id);
    UPDATE tenant.tenants SET schema_name = target WHERE id = t.id;
    IF to_regprocedure('tenant._mark_schema_at_template_version(name)') IS NOT NULL THEN
        EXECUTE 'SELECT tenant._mark_schema_at_template_version($1)' USING target;
    END IF;
    RETURN target;
END
$$;

-- Tables created later in a tenant schema (by migrate_all or by hand) are pinned at once.
CREATE FUNCTION tenant._pin_new_tenant_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cmd record;
BEGIN
    FOR cmd IN SELECT d.objid::regclass AS rel, t.id AS tenant_id, t.schema_name
                 FROM pg_event_trigger_ddl_commands() d
                 JOIN pg_class c ON c.oid = d.objid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN tenant.tenants t ON t.schema_name = n.nspname
                WHERE d.object_type = 'table' AND c.relkind IN ('r', 'p') LOOP
        PERFORM tenant._pin_table(cmd.rel, cmd.tenant_id);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO tenant_user', cmd.rel);
    END LOOP;
END
$$;
CREATE EVENT TRIGGER qft_pin_tenant_tables ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION tenant._pin_new_tenant_tables();
