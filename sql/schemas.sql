-- Schema per tenant: tenant_<slug> schemas cloned from the template, every table in them pinned to
-- the schema's tenant. Pinning does not need a tenant column: the policy compares the *context*
-- with the schema's tenant id, so another tenant reading this schema (even schema-qualified) sees
-- nothing and cannot write.
--   qft_schema_tenant  PERMISSIVE  ALL TO PUBLIC            tenant.current_tenant_id() = <id>
--   qft_cross_tenant   PERMISSIVE  ALL TO tenant_superuser  tenant.cross_tenant_active()
--   qft_schema_guard   RESTRICTIVE ALL TO PUBLIC            tenant.current_tenant_id() = <id> OR cross_tenant_active()

CREATE OR REPLACE FUNCTION tenant._pin_table(tbl regclass, tenant_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mine text := format('tenant.current_tenant_id() OPERATOR(pg_catalog.=) %L::bigint', tenant_id);
    guard text := format('(tenant.current_tenant_id() OPERATOR(pg_catalog.=) %L::bigint OR tenant.cross_tenant_active())', tenant_id);
BEGIN
    PERFORM tenant._drop_qft_policies(tbl, ARRAY['qft_schema_tenant', 'qft_cross_tenant', 'qft_schema_guard']::name[]);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('CREATE POLICY qft_schema_tenant ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)',
                   tbl, mine, mine);
    PERFORM tenant._cross_tenant_policy(tbl);
    EXECUTE format('CREATE POLICY qft_schema_guard ON %s AS RESTRICTIVE FOR ALL TO PUBLIC USING %s WITH CHECK %s',
                   tbl, guard, guard);
    PERFORM tenant._quota_attach(tbl); -- usage and quotas (sql/quotas.sql)
END
$$;

-- Pins every table of a tenant schema and gives tenant_user exactly USAGE and table DML there
-- (never CREATE, TRUNCATE, REFERENCES or TRIGGER). Called at creation, by the event trigger for
-- tables created later, and by migrate_all after each tenant.
CREATE OR REPLACE FUNCTION tenant._pin_schema(schema name, tenant_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c
              WHERE c.oid = ANY ((SELECT tenant._clone_oids((SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema), 'pg_class'::regclass))::oid[])
                AND c.relkind IN ('r', 'p') ORDER BY c.oid LOOP
        PERFORM tenant._pin_table(t, tenant_id);
    END LOOP;
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', schema);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tenant_user', schema);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO tenant_user', schema);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO tenant_user', schema);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO tenant_user', schema);
END
$$;

-- Pins and grants what is not pinned and granted yet in a tenant schema. Only those tables and
-- sequences are touched, so the cost follows what a migration or a DDL statement added, not the
-- size of the schema.
CREATE OR REPLACE FUNCTION tenant._pin_unpinned(schema name, owner_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    -- The schema's relations through pg_depend (indexed by referenced object): pg_class has no
    -- index on relnamespace, and this runs once per tenant in every migration.
    FOR r IN SELECT c.oid::regclass AS rel, c.relkind
               FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
              WHERE d.refclassid = 'pg_namespace'::regclass
                AND d.refobjid = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema)
                AND d.classid = 'pg_class'::regclass AND d.deptype = 'n'
                AND c.relkind IN ('r', 'p', 'S')
                AND CASE WHEN c.relkind = 'S' THEN NOT has_sequence_privilege('tenant_user', c.oid, 'USAGE')
                         ELSE NOT (c.relrowsecurity AND c.relforcerowsecurity)
                              OR (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid
                                     AND p.polname IN ('qft_schema_tenant', 'qft_cross_tenant', 'qft_schema_guard')) < 3
                              OR NOT has_table_privilege('tenant_user', c.oid, 'SELECT') END
              ORDER BY c.oid LOOP
        IF r.relkind = 'S' THEN
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO tenant_user', r.rel);
        ELSE
            PERFORM tenant._pin_table(r.rel, owner_id);
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO tenant_user', r.rel);
        END IF;
    END LOOP;
END
$$;

-- For migrate_all, which runs as the calling tenant_admin member, after each tenant schema
-- (SECURITY DEFINER: pinning is the extension's job, not the caller's).
CREATE OR REPLACE FUNCTION tenant._pin_schema_tables(schema name) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_id bigint;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'pin a tenant schema');
    SELECT id INTO owner_id FROM tenant.tenants WHERE schema_name = schema;
    IF owner_id IS NOT NULL THEN
        PERFORM tenant._pin_unpinned(schema, owner_id);
    END IF;
END
$$;

-- Re-pins a tenant's schema (the checker's fix for an unpinned table).
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

-- Tenant schemas and everything in them belong to tenant_admin (a trusted NOLOGIN role): its
-- members run migrate_all as themselves and must be able to alter every object; application
-- roles are never owners.
CREATE OR REPLACE FUNCTION tenant._own_schema(schema name, owner name) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o record;
    -- Objects are found through indexes (tenant._clone_objects), not namespace-column scans.
    rels oid[] := tenant._clone_oids((SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema), 'pg_class'::regclass);
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
              WHERE p.oid = ANY ((SELECT tenant._clone_oids((SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema), 'pg_proc'::regclass))::oid[]) ORDER BY p.oid LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I', CASE o.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, o.fn, owner);
    END LOOP;
    FOR o IN SELECT t.oid::regtype AS typ FROM pg_type t
              WHERE t.oid = ANY ((SELECT tenant._clone_oids((SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema), 'pg_type'::regclass))::oid[])
                AND t.typtype IN ('e', 'd', 'r', 'c', 'm')
                AND (t.typtype <> 'c' OR EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
                AND t.typtype <> 'm'
              ORDER BY t.oid LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
                       CASE WHEN EXISTS (SELECT FROM pg_type d WHERE d.oid = o.typ AND d.typtype = 'd') THEN 'DOMAIN' ELSE 'TYPE' END,
                       o.typ, owner);
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
    -- The template lock migrate_all takes exclusively (sql/migrate.sql), held shared until commit:
    -- no migration changes the template between the copy and the version recorded for it.
    PERFORM pg_advisory_xact_lock_shared(1363563520, 3);
    PERFORM tenant.clone_schema(template::text, target::text, false);
    -- Registered only now, so the pinning event trigger does not touch the copy while it is being
    -- built (clone_schema compares the copy with the template before returning).
    UPDATE tenant.tenants SET schema_name = target WHERE id = t.id;
    PERFORM tenant._mark_schema_at_template_version(target);
    PERFORM tenant._own_schema(target, 'tenant_admin');
    PERFORM tenant._pin_schema(target, t.id);
    RETURN target;
END
$$;

-- Tables created later in a tenant schema (by migrate_all or by hand) are pinned at once.
CREATE OR REPLACE FUNCTION tenant._pin_new_tenant_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cmd record;
BEGIN
    FOR cmd IN SELECT DISTINCT t.id AS tenant_id, t.schema_name
                 FROM pg_event_trigger_ddl_commands() d
                 JOIN pg_class c ON c.oid = d.objid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN tenant.tenants t ON t.schema_name = n.nspname
                WHERE d.object_type = 'table' AND c.relkind IN ('r', 'p') LOOP
        PERFORM tenant._pin_unpinned(cmd.schema_name, cmd.tenant_id);
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
        WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
        EXECUTE FUNCTION tenant._pin_new_tenant_tables();
END
$evt$;
