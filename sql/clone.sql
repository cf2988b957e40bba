-- Schema cloning: tenant.clone_schema(source, target, copy_data) and tenant.schema_diff(a, b), on
-- the schema engine in Rust (crates/schema: the model, ordering, rendering, diff; src/catalog:
-- reading the catalogs into the model and running a plan). What stays here is naturally SQL: the
-- argument checks and the audit row of the public functions, the index-only inventory of a
-- schema's catalog objects (used by tenant._own_schema), and the row copy a clone with copy_data
-- runs per table. (The check that a copy depends on nothing of its source is the engine's: on the
-- dependencies the verification's read of the copy returns.)

-- Every catalog object that belongs to a schema: its members and their sub-objects (defaults,
-- constraints, triggers, policies, rules), and the schema itself. Every object of a schema, found through indexes only: the catalogs have no index on their
-- namespace column (a "WHERE relnamespace = ..." scans pg_class whole, and the cost would grow with
-- every schema in the database), but each namespace-level object records a dependency on its schema
-- in pg_depend, which is indexed by referenced object. Per-table objects (indexes, constraints,
-- defaults, triggers, policies, rules) are reached through their own *relid indexes; row types,
-- array and multirange types and composite types' relations, which record their schema elsewhere,
-- are added.
CREATE OR REPLACE FUNCTION tenant._clone_objects(nsp oid) RETURNS TABLE(classid oid, objid oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ns AS MATERIALIZED (
        SELECT d.classid, d.objid FROM pg_depend d
         WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = nsp AND d.refobjsubid = 0 AND d.deptype = 'n'
    ), rels AS MATERIALIZED (
        SELECT c.oid, c.reltype FROM pg_class c
         WHERE c.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_class'::regclass)
        -- a composite type's relation records its schema on the pg_type row, not its own
        UNION SELECT t.typrelid, t.oid FROM pg_type t
         WHERE t.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_type'::regclass) AND t.typrelid <> 0
    ), types AS MATERIALIZED (
        SELECT t.oid FROM pg_type t WHERE t.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_type'::regclass)
        UNION SELECT r.reltype FROM rels r WHERE r.reltype <> 0
        UNION SELECT rg.rngmultitypid FROM pg_range rg
               WHERE rg.rngtypid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_type'::regclass)
    )
    SELECT 'pg_namespace'::regclass::oid, nsp
    UNION ALL SELECT ns.classid, ns.objid FROM ns WHERE ns.classid NOT IN ('pg_type'::regclass, 'pg_class'::regclass)
    UNION ALL SELECT 'pg_class'::regclass, r.oid FROM rels r
    UNION ALL SELECT 'pg_type'::regclass, t.oid FROM types t
    UNION ALL SELECT 'pg_type'::regclass, a.typarray FROM pg_type a WHERE a.oid IN (SELECT oid FROM types) AND a.typarray <> 0
    UNION ALL SELECT 'pg_class'::regclass, i.indexrelid FROM pg_index i WHERE i.indrelid IN (SELECT oid FROM rels)
    UNION ALL SELECT 'pg_constraint'::regclass, k.oid FROM pg_constraint k WHERE k.conrelid IN (SELECT oid FROM rels)
    UNION ALL SELECT 'pg_constraint'::regclass, k.oid FROM pg_constraint k
               WHERE k.conrelid = 0 AND k.contypid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_type'::regclass)
    UNION ALL SELECT 'pg_attrdef'::regclass, d.oid FROM pg_attrdef d WHERE d.adrelid IN (SELECT oid FROM rels)
    UNION ALL SELECT 'pg_trigger'::regclass, g.oid FROM pg_trigger g WHERE g.tgrelid IN (SELECT oid FROM rels)
    UNION ALL SELECT 'pg_policy'::regclass, p.oid FROM pg_policy p WHERE p.polrelid IN (SELECT oid FROM rels)
    UNION ALL SELECT 'pg_rewrite'::regclass, r.oid FROM pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM rels)
$$;

-- The oids of one catalog's objects in a schema, for index lookups in place of namespace-column
-- scans. Callers write "oid = ANY ((SELECT tenant._clone_oids(...))::oid[])": the scalar subquery is an
-- InitPlan, evaluated once per query whatever the plan (a bare call in a filter would run per row).
CREATE OR REPLACE FUNCTION tenant._clone_oids(nsp oid, cls regclass) RETURNS oid[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(o.objid), '{}') FROM tenant._clone_objects(nsp) o WHERE o.classid = cls
$$;

-- Structural differences between schemas a and b: objects matched by name, every property of the
-- model compared (src/catalog, crates/schema: the comparison clone_schema verifies its copy with),
-- each schema's own name normalised, so a clone compares equal to its source. No rows: equal.
-- SECURITY DEFINER: the engine is not granted to anyone; it reads only the catalogs.
CREATE OR REPLACE FUNCTION tenant.schema_diff(a name, b name) RETURNS TABLE(object text, difference text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'compare schemas');
    IF a IS NULL OR NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = a) THEN
        RAISE EXCEPTION 'schema % does not exist', coalesce(quote_ident(a), 'NULL') USING ERRCODE = '3F000';
    END IF;
    IF b IS NULL OR NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = b) THEN
        RAISE EXCEPTION 'schema % does not exist', coalesce(quote_ident(b), 'NULL') USING ERRCODE = '3F000';
    END IF;
    RETURN QUERY SELECT d.object, d.difference FROM tenant._schema_diff_rs(a, b) d;
END
$$;

-- Copies the rows of table src into table dst (a clone of it) as dst's owner, in a
-- security-restricted operation (tenant._exec_as): every expression the copy evaluates — CHECK
-- and domain constraints, generated columns, index expressions, type input functions — runs with
-- that owner's rights, never with the extension owner's, and the owner reads all its own rows
-- (row security does not hide any; a policy that would filter rows it does not own is an error,
-- not a silent partial copy). Columns match by name; values of types that differ between the two
-- tables (the source schema's own enums, domains, composites, ranges and their arrays) are
-- converted through their text form. Generated columns are computed again.
CREATE OR REPLACE FUNCTION tenant._copy_rows(src regclass, dst regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cols text;
    vals text;
BEGIN
    SELECT string_agg(quote_ident(d.attname), ', ' ORDER BY d.attnum),
           string_agg(CASE WHEN s.atttypid = d.atttypid THEN quote_ident(d.attname)
                           ELSE format('%I::pg_catalog.text::%s', d.attname, format_type(d.atttypid, d.atttypmod)) END,
                      ', ' ORDER BY d.attnum)
      INTO cols, vals
      FROM pg_attribute d
      JOIN pg_attribute s ON s.attrelid = src AND s.attname = d.attname AND s.attnum > 0 AND NOT s.attisdropped
     WHERE d.attrelid = dst AND d.attnum > 0 AND NOT d.attisdropped AND d.attgenerated = '';
    IF cols IS NULL THEN
        RETURN;
    END IF;
    PERFORM tenant._exec_as((SELECT c.relowner FROM pg_class c WHERE c.oid = dst),
                            format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM ONLY %s', dst, cols, vals, src),
                            NULL, 'pg_catalog, pg_temp', false, true);
END
$$;

-- A complete, verified copy of schema source as a new schema target; with copy_data also the rows
-- and sequence positions. Differences between source and clone, or dependencies of the clone on the
-- source, are an error and nothing is left behind.
-- Takes text so that names longer than 63 bytes are rejected rather than silently truncated (an
-- argument of type name is truncated before the function sees it); a name overload delegates here.
-- The schema engine in Rust (tenant._clone_schema_rs, src/catalog/execute.rs) reads the source's
-- catalogs once into the model, refuses what it cannot copy (0A000, each object named), builds
-- the copy with the caller's rights (every statement that can evaluate a user-shaped expression
-- runs as the caller in a security-restricted operation) and verifies it against the model.
CREATE OR REPLACE FUNCTION tenant.clone_schema(source text, target text, copy_data boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'clone a schema');
    IF source IS NULL THEN
        RAISE EXCEPTION 'source schema must not be NULL' USING ERRCODE = '3F000';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = source) THEN
        RAISE EXCEPTION 'schema % does not exist', quote_ident(source) USING ERRCODE = '3F000';
    END IF;
    IF source LIKE 'pg\_%' OR source = 'information_schema' THEN
        RAISE EXCEPTION 'cannot clone system schema %', quote_ident(source) USING ERRCODE = '22023';
    END IF;
    IF target IS NULL THEN
        RAISE EXCEPTION 'target schema name must not be NULL or empty' USING ERRCODE = '22023';
    END IF;
    IF copy_data IS NULL THEN
        RAISE EXCEPTION 'copy_data must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- The target's name (empty, too long, pg_, quotes: 22023; exists: 42P06), the refusals, the
    -- copy and its verification.
    PERFORM tenant._clone_schema_rs(source, target, copy_data);
    -- Roles inside a tenant (sql/tenant_roles.sql): the copy's tables get the source's limits
    -- (their policies are copied with the tables).
    PERFORM tenant._clone_role_limits(source, target);
    PERFORM tenant._audit('schema_cloned', target::text, NULL, jsonb_build_object('source', source, 'copy_data', copy_data));
END
$$;

CREATE OR REPLACE FUNCTION tenant.clone_schema(source name, target name, copy_data boolean DEFAULT false)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT tenant.clone_schema(source::text, target::text, copy_data) $$;
