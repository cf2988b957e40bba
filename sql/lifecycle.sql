-- What happens to isolation over a table's life, beyond enable/disable: partitions and children
-- created or attached later, tables dropped, restores, explicit NULL tenants from ORMs, tables a
-- framework creates (shared by name pattern), and tenant ids that outlive their registry row
-- (DROP EXTENSION ... CASCADE, then CREATE EXTENSION).

-- tenant._restoring(): a session restoring a dump (src/privilege.rs); the event triggers below
-- stand aside in one.

-- Rows a tenant id has in isolated tables, per table, counted through the live catalog: a
-- registry row whose table was dropped is never turned into SQL. Children (partitions, inheritance)
-- of an isolated parent are counted through the parent.
CREATE OR REPLACE FUNCTION tenant._tenant_rows(tenant_id bigint)
RETURNS TABLE(relid regclass, tenant_column name, n bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid, s.nspname, c.relname, i.tenant_column AS col
               FROM tenant.isolated_tables i
               JOIN pg_class c ON c.oid = i.relid::oid
               JOIN pg_namespace s ON s.oid = c.relnamespace
              WHERE EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = i.tenant_column
                              AND a.attnum > 0 AND NOT a.attisdropped)
                AND NOT EXISTS (SELECT FROM pg_inherits h JOIN tenant.isolated_tables p ON p.relid::oid = h.inhparent
                                 WHERE h.inhrelid = c.oid)
              ORDER BY s.nspname, c.relname LOOP
        IF tenant._tenant_key_is_uuid(r.oid, r.col) THEN
            EXECUTE format('SELECT count(*) FROM %I.%I WHERE %I = $1', r.nspname, r.relname, r.col) INTO n
                USING (SELECT t.uuid FROM tenant.tenants t WHERE t.id = tenant_id);
        ELSE
            EXECUTE format('SELECT count(*) FROM %I.%I WHERE %I = $1', r.nspname, r.relname, r.col) INTO n USING tenant_id;
        END IF;
        IF n > 0 THEN
            relid := r.oid;
            tenant_column := r.col;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- ORMs send every column on INSERT, so a model that leaves the tenant unset sends tenant_id = NULL
-- explicitly and the column default never applies; the error would be a puzzling "new row
-- violates row-level security policy". This trigger fills an explicit NULL from the context, as
-- the default would. Without a context it leaves the NULL alone, and row security refuses the row
-- (42501) exactly as it refuses any row then; in cross-tenant mode the context does not say whose
-- row it is, so a NULL stays NULL too. On a table with shared rows a NULL tenant means a system
-- row, so it is not filled there: a tenant is told that it cannot write one.
-- TG_ARGV: the tenant column, and 'shared' for tables with allow_shared_rows.
CREATE OR REPLACE FUNCTION tenant._fill_tenant() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t bigint;
BEGIN
    IF tenant.cross_tenant_active() THEN
        RETURN NEW;
    END IF;
    t := tenant.current_tenant_id();
    IF t IS NULL THEN
        RETURN NEW;
    ELSIF TG_ARGV[1] = 'shared' THEN
        RAISE EXCEPTION 'a NULL % makes a shared row, which tenant % cannot write to %.%',
                        quote_ident(TG_ARGV[0]), t, quote_ident(TG_TABLE_SCHEMA), quote_ident(TG_TABLE_NAME)
            USING ERRCODE = '42501', SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = TG_ARGV[0],
                  DETAIL = 'The table has shared rows: a NULL tenant marks a system row, readable by every tenant and written only in cross-tenant mode.',
                  HINT = 'Leave the column out (it defaults to the current tenant) or give the row the current tenant''s id.';
    END IF;
    -- A uuid tenant column holds the tenant's uuid (tenant._tenant_key_getter, sql/isolation.sql).
    IF (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = TG_RELID AND a.attname = TG_ARGV[0]) = 'uuid'::regtype THEN
        RETURN jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], tenant.current_tenant_uuid()));
    END IF;
    RETURN jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], t));
END
$$;

-- One trigger per ordinary table; none on a partitioned parent, whose rows live in its partitions
-- (a parent's row trigger would be cloned onto every partition and make attaching a table that
-- has its own fail).
CREATE OR REPLACE FUNCTION tenant._add_fill_trigger(tbl regclass, col name, shared boolean) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- With Citus: no trigger (Citus refuses to distribute a table that has one, and refuses NULL
    -- in a distribution column anyway); the column default fills the tenant on the coordinator.
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = tbl) = 'r' AND NOT tenant._citus_no_triggers()
       AND NOT EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = tbl AND g.tgname = 'qft_fill_tenant') THEN
        EXECUTE format('CREATE TRIGGER qft_fill_tenant BEFORE INSERT ON %s FOR EACH ROW WHEN (NEW.%I IS NULL) '
                       'EXECUTE FUNCTION tenant._fill_tenant(%L, %L)',
                       tbl, col, col, CASE WHEN shared THEN 'shared' ELSE 'isolated' END);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION tenant._drop_fill_trigger(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = tbl AND g.tgname = 'qft_fill_tenant' AND g.tgparentid = 0) THEN
        EXECUTE format('DROP TRIGGER qft_fill_tenant ON %s', tbl);
    END IF;
END
$$;

-- enable_isolation's warning about rows whose tenant id is not in the registry: nobody can read
-- them, and they would belong to whichever tenant is created with that id.
CREATE OR REPLACE FUNCTION tenant._warn_unknown_tenant_ids(tbl regclass, n bigint, ids text[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF n > 0 THEN
        RAISE WARNING 'table % holds % row(s) of tenant ids that are not in tenant.tenants: %', tbl, n,
                      array_to_string(ids, ', ') || CASE WHEN cardinality(ids) >= 10 THEN ', ...' ELSE '' END
            USING DETAIL = 'No tenant can read them, and a tenant created with one of these ids would own them.',
                  HINT = 'If they belong to tenants lost with DROP EXTENSION ... CASCADE, re-create each with '
                         'tenant.create_tenant(slug, ..., id => <its id>); otherwise delete them.';
    END IF;
END
$$;

-- Partitions and inheritance children created or attached after their parent was isolated are
-- isolated like it: a query naming a child directly does not see the parent's policies.
-- CREATE TABLE reports the new child; ALTER TABLE ... ATTACH PARTITION reports the parent. (For
-- ALTER TABLE only the parent side is followed: enable_isolation's own ALTER TABLE statements on
-- a child it is isolating must not start isolating that child again.)
CREATE OR REPLACE FUNCTION tenant._isolate_new_children() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    -- A Citus worker: every DDL there is Citus's own (shards, shell tables), already complete.
    IF tenant._citus_worker() THEN
        RETURN;
    END IF;
    IF tenant._restoring() THEN
        RETURN;
    END IF;
    FOR r IN SELECT DISTINCT h.inhrelid::regclass AS child, i.tenant_column, i.allow_shared_rows
               FROM pg_event_trigger_ddl_commands() d
               JOIN pg_inherits h ON (CASE WHEN d.command_tag = 'ALTER TABLE' THEN h.inhparent ELSE h.inhrelid END) = d.objid
               JOIN tenant.isolated_tables i ON i.relid::oid = h.inhparent
              WHERE d.classid = 'pg_class'::regclass
                AND NOT EXISTS (SELECT FROM tenant.isolated_tables j WHERE j.relid::oid = h.inhrelid)
              ORDER BY 1 LOOP
        PERFORM tenant._enable_isolation(r.child, r.tenant_column, r.allow_shared_rows);
    END LOOP;
END
$$;
-- Replayable (the upgrade script runs this file again): drop and re-create.
DO $evt$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname OPERATOR(pg_catalog.=) 'qft_isolate_new_children') THEN
        DROP EVENT TRIGGER qft_isolate_new_children;
    END IF;
    CREATE EVENT TRIGGER qft_isolate_new_children ON ddl_command_end
        WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
        EXECUTE FUNCTION tenant._isolate_new_children();
END
$evt$;

-- A dropped table leaves no row behind in tenant.isolated_tables, tenant.shared_tables or
-- tenant.role_limits (DROP TABLE, DROP SCHEMA ... CASCADE, DROP OWNED, `manage.py migrate app zero`).
CREATE OR REPLACE FUNCTION tenant._forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    -- A Citus worker: every DDL there is Citus's own (shards, shell tables), already complete.
    IF tenant._citus_worker() THEN
        RETURN;
    END IF;
    FOR r IN SELECT d.objid, d.object_identity FROM pg_event_trigger_dropped_objects() d
              WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 LOOP
        DELETE FROM tenant.isolated_tables WHERE relid::oid = r.objid;
        IF FOUND THEN
            PERFORM tenant._audit('isolated_table_dropped', r.object_identity, NULL, NULL);
        END IF;
        DELETE FROM tenant.shared_tables WHERE relid::oid = r.objid;
        DELETE FROM tenant.role_limits WHERE relid::oid = r.objid;
    END LOOP;
END
$$;
DO $evt$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname OPERATOR(pg_catalog.=) 'qft_forget_dropped_tables') THEN
        DROP EVENT TRIGGER qft_forget_dropped_tables;
    END IF;
    CREATE EVENT TRIGGER qft_forget_dropped_tables ON sql_drop
        EXECUTE FUNCTION tenant._forget_dropped_tables();
END
$evt$;

-- Tables marked shared by name, before they exist: for tables a framework creates itself (Django's
-- django_migrations, django_session, auth_*), so auto_isolate neither isolates, rejects nor adds a
-- tenant column to them. Existing tables that match are marked at once.
CREATE OR REPLACE FUNCTION tenant.mark_shared_like(schema name, name_pattern text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    n integer := 0;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'mark tables shared');
    IF schema IS NULL OR name_pattern IS NULL THEN
        RAISE EXCEPTION 'schema and name_pattern must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF btrim(name_pattern) = '' THEN
        RAISE EXCEPTION 'name_pattern must not be empty' USING ERRCODE = '22023',
            HINT = 'A LIKE pattern over table names, e.g. ''django\_%'' (escape _ with a backslash to match it literally).';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = schema) THEN
        RAISE EXCEPTION 'schema % does not exist', quote_ident(schema) USING ERRCODE = '3F000';
    END IF;
    INSERT INTO tenant.shared_patterns (schema_name, pattern) VALUES (schema, name_pattern) ON CONFLICT DO NOTHING;
    FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
              WHERE s.nspname = schema AND c.relname LIKE name_pattern AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND NOT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid::oid = c.oid)
                AND NOT EXISTS (SELECT FROM tenant.shared_tables x WHERE x.relid::oid = c.oid)
              ORDER BY c.relname LOOP
        INSERT INTO tenant.shared_tables (relid) VALUES (t);
        n := n + 1;
    END LOOP;
    PERFORM tenant._audit('shared_pattern_added', format('%I.%s', schema, name_pattern), NULL,
                          jsonb_build_object('tables_marked', n));
    RETURN n;
END
$$;

-- Forgets a pattern; tables it marked stay marked (tenant.shared_tables).
CREATE OR REPLACE FUNCTION tenant.unmark_shared_like(schema name, name_pattern text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'unmark tables shared');
    IF schema IS NULL OR name_pattern IS NULL THEN
        RAISE EXCEPTION 'schema and name_pattern must not be NULL' USING ERRCODE = '22004';
    END IF;
    DELETE FROM tenant.shared_patterns p WHERE p.schema_name = schema AND p.pattern = name_pattern;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no shared pattern % in schema %', quote_literal(name_pattern), quote_ident(schema)
            USING ERRCODE = '22023', HINT = 'tenant.shared_patterns lists them.';
    END IF;
    PERFORM tenant._audit('shared_pattern_removed', format('%I.%s', schema, name_pattern), NULL, NULL);
END
$$;

-- The backup role's reads (Backups and restores in the README): exactly what pg_dump of this
-- database reads, and never a secret. CONNECT, USAGE on every schema but the system ones, SELECT
-- on every table, view, materialized view and sequence in them -- except in schema tenant, where
-- only the configuration tables pg_dump dumps (pg_extension's extconfig) are granted: the signing
-- keys and the used-token table are not, so the role cannot sign a context for anyone. Together
-- with BYPASSRLS on the role (row security would otherwise hide every tenant's rows from it) this
-- is a complete, read-only dump role. Superuser only: it hands out reads of every tenant.
-- Idempotent; objects created later need another call (pg_dump then fails loudly with
-- "permission denied", never silently). Returns the number of relations granted.
CREATE OR REPLACE FUNCTION tenant.grant_backup_reads(role regrole) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    PERFORM tenant._require_superuser('grant a backup role every tenant''s rows');
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF (SELECT rolsuper FROM pg_roles WHERE oid = role) THEN
        RAISE EXCEPTION 'role % is a superuser; it reads everything already', role USING ERRCODE = '22023',
            HINT = 'Create a dedicated NOSUPERUSER LOGIN BYPASSRLS role for backups.';
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %s', current_database(), role);
    FOR r IN SELECT n.nspname FROM pg_namespace n
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
              ORDER BY n.nspname LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', r.nspname, role);
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
                AND (n.nspname <> 'tenant'
                     OR c.oid = ANY ((SELECT e.extconfig FROM pg_extension e WHERE e.extname = 'qualityfoundry_tenant')::oid[]))
              ORDER BY c.oid LOOP
        EXECUTE format('GRANT SELECT ON %s %s TO %s', CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.rel, role);
        n := n + 1;
    END LOOP;
    PERFORM tenant._audit('backup_reads_granted', role::text, NULL, jsonb_build_object('relations', n));
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION tenant.grant_backup_reads(regrole) FROM PUBLIC;
