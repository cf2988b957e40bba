-- 0.1.0 -> 0.2.0, hand-written part that runs after every function exists: data carried over
-- from 0.1.0 (e.g. settings that moved into registry tables).

-- The extension's schema is now the control file's `schema = tenant` (\dx shows it there), and a
-- schema holding its extension cannot be one of its members. A 0.1.0 install lives in the schema
-- that was current at CREATE EXTENSION (usually public) and has tenant as a member: make it what
-- a fresh install is. ALTER EXTENSION SET SCHEMA cannot (the extension is not relocatable), so
-- the two catalog rows that say where it lives are rewritten here, as CREATE EXTENSION writes them.
DO $move$
DECLARE
    ext oid := (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'qualityfoundry_tenant');
    nsp oid := (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'tenant');
BEGIN
    IF (SELECT e.extnamespace FROM pg_catalog.pg_extension e WHERE e.oid OPERATOR(pg_catalog.=) ext) OPERATOR(pg_catalog.<>) nsp THEN
        ALTER EXTENSION qualityfoundry_tenant DROP SCHEMA tenant;
        DELETE FROM pg_catalog.pg_depend
         WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass AND objid OPERATOR(pg_catalog.=) ext
           AND refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass AND deptype OPERATOR(pg_catalog.=) 'n';
        INSERT INTO pg_catalog.pg_depend (classid, objid, objsubid, refclassid, refobjid, refobjsubid, deptype)
        VALUES ('pg_catalog.pg_extension'::pg_catalog.regclass, ext, 0, 'pg_catalog.pg_namespace'::pg_catalog.regclass, nsp, 0, 'n');
        UPDATE pg_catalog.pg_extension SET extnamespace = nsp WHERE oid OPERATOR(pg_catalog.=) ext;
    END IF;
END
$move$;

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
