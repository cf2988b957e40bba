-- @qft-install-only
-- Tables of sql/lifecycle.sql, and what only a fresh CREATE EXTENSION does. Install-only: the
-- upgrade script replays every other SQL file, but tables change only through the prelude in
-- sql/upgrade/.

-- Name patterns of tables that are shared on purpose, applied when such a table is created
-- (tenant.mark_shared_like()).
CREATE TABLE tenant.shared_patterns (
    schema_name name NOT NULL,
    pattern text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (schema_name, pattern)
);
SELECT pg_catalog.pg_extension_config_dump('tenant.shared_patterns', '');

-- CREATE EXTENSION in a database whose tables already carry tenant ids -- the extension was
-- dropped with CASCADE (which leaves every row, and drops the registry) and is being created
-- again: the registry would hand out ids 1, 2, ... again and each new tenant would inherit an old
-- tenant's rows. So new tenants start after the largest id found in any tenant_id column, and a
-- WARNING names the tables; old tenants are re-created with tenant.create_tenant(..., id => n).
-- Only tables of trusted owners count (a superuser, or a tenant_admin member such as the role that
-- runs migrations): anyone else with CREATE could plant a huge id and exhaust the sequence.
-- (A restore creates the extension before any table exists: it finds nothing here.)
DO $reserve$
DECLARE
    r record;
    top bigint;
    highest bigint := 0;
    found text[] := '{}';
BEGIN
    FOR r IN SELECT s.nspname, c.relname
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace s ON s.oid OPERATOR(pg_catalog.=) c.relnamespace
               JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
                AND a.attname OPERATOR(pg_catalog.=) 'tenant_id' AND a.attnum OPERATOR(pg_catalog.>) 0
                AND NOT a.attisdropped
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence OPERATOR(pg_catalog.<>) 't'
                AND a.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype,
                                   'pg_catalog.int8'::pg_catalog.regtype)
                AND s.nspname NOT IN ('pg_catalog', 'information_schema', 'tenant')
                AND s.nspname NOT LIKE 'pg\_%'
                AND (EXISTS (SELECT FROM pg_catalog.pg_roles o WHERE o.oid OPERATOR(pg_catalog.=) c.relowner AND o.rolsuper)
                     OR pg_catalog.pg_has_role(c.relowner, 'tenant_admin', 'MEMBER'))
              ORDER BY 1, 2 LOOP
        EXECUTE pg_catalog.format('SELECT pg_catalog.max(tenant_id)::pg_catalog.int8 FROM %I.%I', r.nspname, r.relname)
            INTO top;
        IF top IS NOT NULL THEN
            highest := GREATEST(highest, top);
            found := found OPERATOR(pg_catalog.||) pg_catalog.format('%I.%I (up to %s)', r.nspname, r.relname, top);
        END IF;
    END LOOP;
    IF highest OPERATOR(pg_catalog.>) 0 THEN
        PERFORM pg_catalog.setval('tenant.tenants_id_seq', highest);
        RAISE WARNING 'tables already hold rows of tenant ids that are not in the new registry: %',
                      pg_catalog.array_to_string(found, ', ')
            USING DETAIL = pg_catalog.format('New tenants get ids from %s on, so none inherits those rows.', highest OPERATOR(pg_catalog.+) 1),
                  HINT = 'Re-create the tenants that own them with tenant.create_tenant(slug, ..., id => <their id>).';
    END IF;
END
$reserve$;
