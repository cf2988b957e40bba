-- Schema cloning: tenant.clone_schema(source, target, copy_data) and tenant.schema_diff(a, b).
--
-- The clone reads the catalogs of the source schema, plans the DDL in dependency order
-- (tenant._clone_plan, which only reads and can be inspected on its own), executes the plan
-- (tenant._clone_execute) and proves the result equal to the source (tenant.schema_diff) and free
-- of references to the source (tenant._clone_source_refs) before it returns; any difference is an
-- error, so the whole clone rolls back.
--
-- Deparsing: catalog text (pg_get_expr, pg_get_constraintdef, pg_get_viewdef, format_type, ...) is
-- produced with search_path = <source>, pg_catalog, pg_temp, so every reference to an object of the
-- source schema comes out unqualified (and a catalog object it shadows comes out as pg_catalog.x),
-- and executed with search_path = <target>, pg_catalog, pg_temp, so the same text resolves to the
-- target's objects. Where PostgreSQL always qualifies (index, trigger and statistics definitions,
-- function headers) the exact qualified name is replaced. Function bodies kept as text are the one
-- place where source-qualified references are rewritten by text (tenant._clone_rewrite: `<schema>.`
-- at an identifier boundary, quoted and unquoted spellings).
-- Every identifier is quoted with format('%I') / quote_ident; values are bound with USING, except in
-- COMMENT, CREATE TYPE ... AS ENUM and similar utility statements, which take no parameters
-- (quote_literal there).

-- A string with the regular-expression metacharacters escaped.
CREATE OR REPLACE FUNCTION tenant._clone_rx(s text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.regexp_replace(s, '([\\\]\[\.\^\$\*\+\?\(\)\{\}\|\-])', '\\\1', 'g') $$;

-- Replaces schema-qualified references `<schema>.` (at an identifier boundary; the quoted spelling,
-- and, for a schema whose name needs no quotes, also the unquoted one in any letter case) by
-- `replacement.` (replacement is inserted verbatim: a quoted identifier or a placeholder; it must not
-- contain a backslash).
CREATE OR REPLACE FUNCTION tenant._clone_replace_schema(txt text, schema name, replacement text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    quoted text := '"' || replace(schema, '"', '""') || '"';
    r text;
BEGIN
    IF txt IS NULL OR schema IS NULL THEN
        RETURN txt;
    END IF;
    IF strpos(replacement, E'\\') > 0 THEN
        RAISE EXCEPTION 'replacement must not contain a backslash' USING ERRCODE = '22023';
    END IF;
    r := '(^|[^[:alnum:]_$."])' || tenant._clone_rx(quoted) || '([[:space:]]*\.)';
    txt := regexp_replace(txt, r, '\1' || replacement || '\2', 'g');
    IF quote_ident(schema) = schema THEN
        r := '(^|[^[:alnum:]_$."])' || tenant._clone_rx(schema) || '([[:space:]]*\.)';
        txt := regexp_replace(txt, r, '\1' || replacement || '\2', 'gi');
    END IF;
    RETURN txt;
END
$$;

-- Qualified references to source rewritten to target.
CREATE OR REPLACE FUNCTION tenant._clone_rewrite(txt text, source name, target name) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT tenant._clone_replace_schema(txt, source, pg_catalog.quote_ident(target)) $$;

-- Qualified references to schema replaced by a placeholder, for comparisons.
CREATE OR REPLACE FUNCTION tenant._clone_normalise(txt text, schema name) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT tenant._clone_replace_schema(txt, schema, '@schema@') $$;

-- txt with the first occurrence of find (a literal string) replaced by repl; txt unchanged if absent.
CREATE OR REPLACE FUNCTION tenant._clone_replace_first(txt text, find text, repl text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN strpos(txt, find) = 0 THEN txt
                ELSE overlay(txt PLACING repl FROM strpos(txt, find) FOR length(find)) END
$$;

-- The elements of a search_path setting value (`a, "B c", $user`), unquoted.
CREATE OR REPLACE FUNCTION tenant._clone_split_path(path text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    out text[] := '{}';
    m text[];
BEGIN
    FOR m IN SELECT regexp_matches(path, '[[:space:]]*("(?:[^"]|"")*"|[^,]*[^,[:space:]]|)[[:space:]]*(,|$)', 'g') LOOP
        EXIT WHEN m[1] = '' AND m[2] = '';
        IF left(m[1], 1) = '"' THEN
            out := out || replace(substr(m[1], 2, length(m[1]) - 2), '""', '"');
        ELSIF m[1] <> '' THEN
            out := out || lower(m[1]);
        END IF;
    END LOOP;
    RETURN out;
END
$$;

-- A proconfig array with search_path entries naming `schema` replaced: by the quoted `replacement`
-- (a schema name) or, when replacement is NULL, by the placeholder @schema@. Other settings unchanged.
CREATE OR REPLACE FUNCTION tenant._clone_config(config text[], schema name, replacement name) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(CASE WHEN c LIKE 'search\_path=%' THEN
               'search_path=' || (SELECT string_agg(CASE WHEN e = schema THEN coalesce(quote_ident(replacement), '@schema@')
                                                    ELSE quote_ident(e) END, ', ' ORDER BY n)
                                    FROM unnest(tenant._clone_split_path(substr(c, 13))) WITH ORDINALITY AS p(e, n))
             ELSE c END ORDER BY i)
      FROM unnest(config) WITH ORDINALITY AS x(c, i)
$$;

-- An ACL as comparable text: sorted grantee=privilege[*] entries (grantor ignored), the default
-- ACL when acl is NULL.
CREATE OR REPLACE FUNCTION tenant._clone_acl_text(acl aclitem[], kind "char", owner oid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(string_agg(item, ' ' ORDER BY item), '')
      FROM (SELECT coalesce(quote_ident(r.rolname), CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::text END)
                   || '=' || e.privilege_type || CASE WHEN e.is_grantable THEN '*' ELSE '' END AS item
              FROM aclexplode(CASE WHEN acl IS NULL AND kind IS NOT NULL THEN acldefault(kind, owner)
                                   WHEN cardinality(acl) > 0 THEN acl END) e
              LEFT JOIN pg_roles r ON r.oid = e.grantee) x
$$;

-- ---------------------------------------------------------------------------------------------
-- Name resolution in a user schema. Only these three small functions ever run with a search_path
-- that holds a user schema (the source's for deparsing, the target's for the plan's statements);
-- their own code calls nothing but fully qualified built-ins, so objects in that schema cannot
-- capture a name they use (the callers run as superuser). Everything else pins
-- search_path = pg_catalog, pg_temp.
-- ---------------------------------------------------------------------------------------------

-- Catalog text of obj deparsed with search_path = path. what: type (obj a type, sub its typmod),
-- expr (node deparsed for relation obj, or 0), collation, relation, function (regproc), constraint,
-- partkey, view, index, trigger, rule, statistics, functiondef, identity arguments, arguments,
-- argument types, result, sqlbody.
CREATE OR REPLACE FUNCTION tenant._clone_sql(what text, obj oid, path text, sub integer DEFAULT NULL,
                                              node pg_node_tree DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', path, true);
    IF what OPERATOR(pg_catalog.=) 'type' THEN r := pg_catalog.format_type(obj, sub);
    ELSIF what OPERATOR(pg_catalog.=) 'expr' THEN r := pg_catalog.pg_get_expr(node, obj);
    ELSIF what OPERATOR(pg_catalog.=) 'collation' THEN r := obj::pg_catalog.regcollation::pg_catalog.text;
    ELSIF what OPERATOR(pg_catalog.=) 'relation' THEN r := obj::pg_catalog.regclass::pg_catalog.text;
    ELSIF what OPERATOR(pg_catalog.=) 'function' THEN r := obj::pg_catalog.regproc::pg_catalog.text;
    ELSIF what OPERATOR(pg_catalog.=) 'constraint' THEN r := pg_catalog.pg_get_constraintdef(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'partkey' THEN r := pg_catalog.pg_get_partkeydef(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'view' THEN r := pg_catalog.pg_get_viewdef(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'index' THEN r := pg_catalog.pg_get_indexdef(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'trigger' THEN r := pg_catalog.pg_get_triggerdef(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'rule' THEN r := pg_catalog.pg_get_ruledef(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'statistics' THEN r := pg_catalog.pg_get_statisticsobjdef(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'functiondef' THEN r := pg_catalog.pg_get_functiondef(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'identity arguments' THEN r := pg_catalog.pg_get_function_identity_arguments(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'arguments' THEN r := pg_catalog.pg_get_function_arguments(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'argument types' THEN
        r := (SELECT pg_catalog.oidvectortypes(p.proargtypes) FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) obj);
    ELSIF what OPERATOR(pg_catalog.=) 'result' THEN r := pg_catalog.pg_get_function_result(obj);
    ELSIF what OPERATOR(pg_catalog.=) 'sqlbody' THEN r := pg_catalog.pg_get_function_sqlbody(obj);
    ELSE
        RAISE EXCEPTION 'unknown kind %', what USING ERRCODE = '22023';
    END IF;
    RETURN r;
END
$$;

-- The object a name denotes with search_path = path. kind: relation, function (name with argument
-- types), type.
CREATE OR REPLACE FUNCTION tenant._clone_resolve(kind text, name text, path text) RETURNS oid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r oid;
BEGIN
    PERFORM pg_catalog.set_config('search_path', path, true);
    IF kind OPERATOR(pg_catalog.=) 'relation' THEN r := name::pg_catalog.regclass;
    ELSIF kind OPERATOR(pg_catalog.=) 'function' THEN r := name::pg_catalog.regprocedure;
    ELSIF kind OPERATOR(pg_catalog.=) 'type' THEN r := name::pg_catalog.regtype;
    ELSE
        RAISE EXCEPTION 'unknown kind %', kind USING ERRCODE = '22023';
    END IF;
    RETURN r;
END
$$;

-- Runs one statement of a clone plan with search_path = path (the target's), $1 = args if not NULL.
-- Function bodies are not checked at creation (as in pg_dump: they may name objects created later).
CREATE OR REPLACE FUNCTION tenant._clone_run(ddl text, args text[], path text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET check_function_bodies = off
AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', path, true);
    IF args IS NULL THEN
        EXECUTE ddl;
    ELSE
        EXECUTE ddl USING args;
    END IF;
END
$$;

-- Every catalog object that belongs to a schema: its members and their sub-objects (defaults,
-- constraints, triggers, policies, rules), and the schema itself.
-- Every object of a schema, found through indexes only: the catalogs have no index on their
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

-- Objects in a schema that clone_schema cannot copy: members of extensions, and kinds it does not
-- support. clone_schema refuses such a source (0A000) instead of copying it partially.
CREATE OR REPLACE FUNCTION tenant._clone_unsupported(nsp oid) RETURNS TABLE(object text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_describe_object(o.classid, o.objid, 0) || ' (member of extension ' || quote_ident(e.extname) || ')'
      FROM tenant._clone_objects(nsp) o
      JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid
    UNION ALL
    SELECT pg_describe_object(o.classid, o.objid, 0)
      FROM tenant._clone_objects(nsp) o
     WHERE o.classid IN ('pg_operator'::regclass, 'pg_opclass'::regclass, 'pg_opfamily'::regclass,
                         'pg_collation'::regclass, 'pg_conversion'::regclass, 'pg_ts_config'::regclass,
                         'pg_ts_dict'::regclass, 'pg_ts_parser'::regclass, 'pg_ts_template'::regclass)
    UNION ALL
    SELECT pg_describe_object('pg_class'::regclass, c.oid, 0)
      FROM pg_class c WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind NOT IN ('r', 'p', 'v', 'm', 'S', 'c', 'i', 'I', 't')
    UNION ALL
    SELECT pg_describe_object('pg_proc'::regclass, p.oid, 0)
      FROM pg_proc p WHERE p.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_proc'::regclass))::oid[]) AND p.pronamespace = nsp AND p.prokind NOT IN ('f', 'p', 'w')
    UNION ALL
    SELECT pg_describe_object('pg_type'::regclass, t.oid, 0)
      FROM pg_type t WHERE t.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_type'::regclass))::oid[]) AND t.typnamespace = nsp AND (t.typtype IN ('b', 'p') AND t.typelem = 0 OR NOT t.typisdefined)
    UNION ALL
    SELECT pg_describe_object('pg_type'::regclass, r.rngtypid, 0)
      FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid
     WHERE t.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_type'::regclass))::oid[]) AND t.typnamespace = nsp AND r.rngcanonical <> 0
    UNION ALL
    SELECT pg_describe_object('pg_class'::regclass, c.oid, 0) || ' (typed table)'
      FROM pg_class c WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.reloftype <> 0
    UNION ALL
    SELECT pg_describe_object('pg_class'::regclass, c.oid, 0) || ' (rules)'
      FROM pg_class c WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind IN ('r', 'p', 'm', 'v')
       AND EXISTS (SELECT FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')
$$;

-- The structure of a schema as (object, detail) rows, deparsed with the schema first on the
-- search_path so that its own objects appear unqualified; where PostgreSQL qualifies anyway (index,
-- trigger, statistics definitions, comment targets) and in function bodies kept as text, the
-- schema's name is replaced by a placeholder. Two schemas with equal rows are structurally equal; a
-- reference from one schema into another shows up qualified, so a clone that still points at its
-- source differs from it.
CREATE OR REPLACE FUNCTION tenant._clone_describe(s name) RETURNS TABLE(object text, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp oid;
    sp text := format('%I, pg_catalog, pg_temp', s);
BEGIN
    SELECT n.oid INTO nsp FROM pg_namespace n WHERE n.nspname = s;
    IF nsp IS NULL THEN
        RAISE EXCEPTION 'schema % does not exist', coalesce(quote_ident(s), 'NULL') USING ERRCODE = '3F000';
    END IF;
    RETURN QUERY
    WITH
    rel AS (SELECT c.* FROM pg_class c WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp),
    typ AS (SELECT t.* FROM pg_type t
             WHERE t.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_type'::regclass))::oid[]) AND t.typnamespace = nsp AND t.typtype IN ('e', 'd', 'c', 'r')
               AND (t.typtype <> 'c' OR EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))),
    items(object, detail, norm) AS (
        SELECT 'schema', concat_ws('; ', 'owner=' || quote_ident(pg_get_userbyid(n.nspowner)),
                                   'acl=' || tenant._clone_acl_text(n.nspacl, 'n', n.nspowner)), false
          FROM pg_namespace n WHERE n.oid = nsp
        UNION ALL
        SELECT 'default privileges for ' || quote_ident(pg_get_userbyid(a.defaclrole)) || ' on ' || a.defaclobjtype::text,
               tenant._clone_acl_text(a.defaclacl, NULL, a.defaclrole), false
          FROM pg_default_acl a WHERE a.defaclnamespace = nsp
        UNION ALL
        SELECT 'type ' || quote_ident(t.typname),
               concat_ws('; ', 'typtype=' || t.typtype::text,
                   CASE t.typtype
                   WHEN 'e' THEN 'labels=' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                 FROM pg_enum e WHERE e.enumtypid = t.oid)
                   WHEN 'd' THEN concat_ws('; ', 'base=' || tenant._clone_sql('type', t.typbasetype, sp, t.typtypmod),
                                           'notnull=' || t.typnotnull, 'default=' || tenant._clone_sql('expr', 0, sp, NULL, t.typdefaultbin),
                                           'collation=' || tenant._clone_sql('collation', t.typcollation, sp))
                   WHEN 'c' THEN 'attributes=' || (SELECT string_agg(quote_ident(a.attname) || ' ' || tenant._clone_sql('type', a.atttypid, sp, a.atttypmod)
                                                       || CASE WHEN a.attcollation <> 0 THEN ' COLLATE ' || tenant._clone_sql('collation', a.attcollation, sp) ELSE '' END,
                                                       ', ' ORDER BY a.attnum)
                                                     FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
                   WHEN 'r' THEN (SELECT concat_ws('; ', 'subtype=' || tenant._clone_sql('type', r.rngsubtype, sp, NULL),
                                                   'opclass=' || (SELECT quote_ident(o.opcname) FROM pg_opclass o WHERE o.oid = r.rngsubopc),
                                                   'collation=' || tenant._clone_sql('collation', r.rngcollation, sp),
                                                   'subtype diff=' || tenant._clone_sql('function', nullif(r.rngsubdiff, 0), sp),
                                                   'multirange=' || tenant._clone_sql('type', r.rngmultitypid, sp, NULL))
                                    FROM pg_range r WHERE r.rngtypid = t.oid)
                   END,
                   'owner=' || quote_ident(pg_get_userbyid(t.typowner)),
                   'acl=' || tenant._clone_acl_text(t.typacl, 'T', t.typowner)), false
          FROM typ t
        UNION ALL
        SELECT 'domain constraint ' || quote_ident(t.typname) || '.' || quote_ident(k.conname),
               concat_ws('; ', tenant._clone_sql('constraint', k.oid, sp), 'validated=' || k.convalidated), false
          FROM typ t JOIN pg_constraint k ON k.contypid = t.oid
        UNION ALL
        SELECT CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' WHEN 'S' THEN 'sequence '
                              ELSE 'table ' END || quote_ident(c.relname),
               concat_ws('; ', 'relkind=' || c.relkind::text, 'persistence=' || c.relpersistence::text,
                   'am=' || (SELECT quote_ident(am.amname) FROM pg_am am WHERE am.oid = c.relam),
                   'options=' || array_to_string(c.reloptions, ','),
                   'tablespace=' || (SELECT quote_ident(ts.spcname) FROM pg_tablespace ts WHERE ts.oid = c.reltablespace),
                   'partition by=' || CASE WHEN c.relkind = 'p' THEN tenant._clone_sql('partkey', c.oid, sp) END,
                   'partition of=' || CASE WHEN c.relispartition THEN
                        (SELECT tenant._clone_sql('relation', i.inhparent, sp) FROM pg_inherits i WHERE i.inhrelid = c.oid) || ' '
                        || tenant._clone_sql('expr', c.oid, sp, NULL, c.relpartbound) END,
                   'inherits=' || CASE WHEN NOT c.relispartition THEN
                        (SELECT string_agg(tenant._clone_sql('relation', i.inhparent, sp), ', ' ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid) END,
                   'definition=' || CASE WHEN c.relkind IN ('v', 'm') THEN tenant._clone_sql('view', c.oid, sp) END,
                   CASE WHEN c.relkind = 'S' THEN
                       (SELECT concat_ws('; ', 'as=' || tenant._clone_sql('type', q.seqtypid, sp, NULL), 'start=' || q.seqstart,
                                         'increment=' || q.seqincrement, 'min=' || q.seqmin, 'max=' || q.seqmax,
                                         'cache=' || q.seqcache, 'cycle=' || q.seqcycle)
                          FROM pg_sequence q WHERE q.seqrelid = c.oid) END,
                   'owned by=' || (SELECT d.deptype::text || ':' || tenant._clone_sql('relation', d.refobjid, sp) || '.' || quote_ident(a.attname)
                                    FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND c.relkind = 'S'
                                     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')),
                   CASE WHEN c.relkind IN ('r', 'p') THEN concat_ws('; ', 'rls=' || c.relrowsecurity,
                        'force rls=' || c.relforcerowsecurity, 'replica identity=' || c.relreplident::text) END,
                   'owner=' || quote_ident(pg_get_userbyid(c.relowner)),
                   'acl=' || tenant._clone_acl_text(c.relacl, CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner)), false
          FROM rel c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        UNION ALL
        SELECT 'column ' || quote_ident(c.relname) || '.' || quote_ident(a.attname),
               concat_ws('; ', 'position=' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                   'type=' || tenant._clone_sql('type', a.atttypid, sp, a.atttypmod),
                   'collation=' || CASE WHEN a.attcollation <> t.typcollation THEN tenant._clone_sql('collation', a.attcollation, sp) END,
                   'notnull=' || a.attnotnull,
                   'default=' || CASE WHEN a.attgenerated = '' THEN tenant._clone_sql('expr', d.adrelid, sp, NULL, d.adbin) END,
                   'identity=' || nullif(a.attidentity::text, ''),
                   'generated=' || CASE WHEN a.attgenerated <> '' THEN a.attgenerated::text || ' ' || tenant._clone_sql('expr', d.adrelid, sp, NULL, d.adbin) END,
                   'storage=' || a.attstorage::text, 'compression=' || nullif(a.attcompression::text, ''),
                   'statistics=' || a.attstattarget, 'options=' || array_to_string(ARRAY(SELECT o FROM unnest(a.attoptions) o WHERE o NOT LIKE 'pg\_attver=%'), ','),
                   'local=' || a.attislocal, 'inherited=' || a.attinhcount,
                   'acl=' || nullif(tenant._clone_acl_text(a.attacl, NULL, c.relowner), '')), false
          FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
        UNION ALL
        SELECT 'constraint ' || quote_ident(c.relname) || '.' || quote_ident(k.conname),
               concat_ws('; ', 'type=' || k.contype::text, tenant._clone_sql('constraint', k.oid, sp), 'validated=' || k.convalidated,
                   'local=' || k.conislocal, 'inherited=' || k.coninhcount,
                   'parent=' || (SELECT p.conname FROM pg_constraint p WHERE p.oid = k.conparentid)), false
          FROM rel c JOIN pg_constraint k ON k.conrelid = c.oid
        UNION ALL
        SELECT 'index ' || quote_ident(c.relname),
               concat_ws('; ', tenant._clone_replace_first(tenant._clone_sql('index', x.indexrelid, sp),
                                   format(' %I.%I ', s, (SELECT t.relname FROM pg_class t WHERE t.oid = x.indrelid)),
                                   format(' @schema@.%I ', (SELECT t.relname FROM pg_class t WHERE t.oid = x.indrelid))), 'clustered=' || x.indisclustered,
                   'replica identity=' || x.indisreplident, 'valid=' || x.indisvalid,
                   'attached to=' || (SELECT tenant._clone_sql('relation', i.inhparent, sp) FROM pg_inherits i WHERE i.inhrelid = c.oid)), false
          FROM rel c JOIN pg_index x ON x.indexrelid = c.oid
        UNION ALL
        SELECT 'trigger ' || quote_ident(c.relname) || '.' || quote_ident(g.tgname),
               concat_ws('; ', tenant._clone_replace_first(tenant._clone_sql('trigger', g.oid, sp), format(' %I.%I ', s, c.relname),
                                                           format(' @schema@.%I ', c.relname)), 'enabled=' || g.tgenabled::text), false
          FROM rel c JOIN pg_trigger g ON g.tgrelid = c.oid AND NOT g.tgisinternal
        UNION ALL
        SELECT 'policy ' || quote_ident(c.relname) || '.' || quote_ident(p.polname),
               concat_ws('; ', 'permissive=' || p.polpermissive, 'command=' || p.polcmd::text,
                   'roles=' || (SELECT string_agg(x.role, ',' ORDER BY x.role)
                                  FROM (SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END AS role
                                          FROM unnest(p.polroles) r) x),
                   'using=' || tenant._clone_sql('expr', p.polrelid, sp, NULL, p.polqual), 'with check=' || tenant._clone_sql('expr', p.polrelid, sp, NULL, p.polwithcheck)), false
          FROM rel c JOIN pg_policy p ON p.polrelid = c.oid
        UNION ALL
        SELECT 'rule ' || quote_ident(c.relname) || '.' || quote_ident(r.rulename), tenant._clone_sql('rule', r.oid, sp), false
          FROM rel c JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename <> '_RETURN'
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END || quote_ident(p.proname)
                   || '(' || tenant._clone_sql('identity arguments', p.oid, sp) || ')',
               concat_ws('; ', 'kind=' || p.prokind::text,
                   CASE WHEN p.prokind <> 'a' THEN concat_ws('; ',
                       'arguments=' || tenant._clone_sql('arguments', p.oid, sp), 'result=' || tenant._clone_sql('result', p.oid, sp),
                       'language=' || (SELECT quote_ident(l.lanname) FROM pg_language l WHERE l.oid = p.prolang),
                       'volatility=' || p.provolatile::text, 'strict=' || p.proisstrict, 'security definer=' || p.prosecdef,
                       'leakproof=' || p.proleakproof, 'parallel=' || p.proparallel::text, 'cost=' || p.procost,
                       'rows=' || p.prorows, 'support=' || tenant._clone_sql('function', nullif(p.prosupport, 0), sp),
                       'config=' || array_to_string(tenant._clone_config(p.proconfig, s, NULL), ','),
                       'body=' || coalesce(tenant._clone_sql('sqlbody', p.oid, sp), tenant._clone_normalise(p.prosrc, s)), 'bin=' || p.probin) END,
                   'owner=' || quote_ident(pg_get_userbyid(p.proowner)),
                   'acl=' || tenant._clone_acl_text(p.proacl, 'f', p.proowner)), false
          FROM pg_proc p WHERE p.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_proc'::regclass))::oid[]) AND p.pronamespace = nsp
        UNION ALL
        SELECT 'statistics ' || quote_ident(x.stxname),
               concat_ws('; ', tenant._clone_replace_first(tenant._clone_sql('statistics', x.oid, sp), format('CREATE STATISTICS %I.', s),
                                                           'CREATE STATISTICS @schema@.'), 'target=' || x.stxstattarget,
                   'owner=' || quote_ident(pg_get_userbyid(x.stxowner))), false
          FROM pg_statistic_ext x WHERE x.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_statistic_ext'::regclass))::oid[]) AND x.stxnamespace = nsp
        UNION ALL
        SELECT 'comment on ' || CASE WHEN o.classid = 'pg_namespace'::regclass THEN 'schema'
                                    ELSE i.type || ' ' || i.identity END,
               d.description, true
          FROM tenant._clone_objects(nsp) o
          JOIN pg_description d ON d.classoid = o.classid AND d.objoid = o.objid
          CROSS JOIN LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) i
    )
    SELECT CASE WHEN items.norm THEN tenant._clone_normalise(items.object, s) ELSE items.object END, items.detail
      FROM items;
END
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

-- ---------------------------------------------------------------------------------------------
-- DDL generation. The _clone_ddl_* helpers read one source object and return the statements that
-- recreate it in the target. They must run with search_path = <source>, pg_catalog, pg_temp (set by
-- tenant._clone_plan), and their statements must run with search_path = <target>, pg_catalog, pg_temp.
-- ---------------------------------------------------------------------------------------------

-- Sequence parameters as CREATE SEQUENCE / identity options.
-- (Identity columns take the type from the column: with_type false.)
CREATE OR REPLACE FUNCTION tenant._clone_seq_options(seq oid, with_type boolean DEFAULT true) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%sINCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s',
                  CASE WHEN with_type THEN 'AS ' || pg_catalog.format_type(q.seqtypid, NULL) || ' ' ELSE '' END, q.seqincrement, q.seqmin, q.seqmax, q.seqstart, q.seqcache,
                  CASE WHEN q.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
      FROM pg_catalog.pg_sequence q WHERE q.seqrelid = seq
$$;

-- A reloptions array as the inside of WITH (...): names quoted, values as literals; prefix for toast.
CREATE OR REPLACE FUNCTION tenant._clone_reloptions(opts text[], prefix text DEFAULT '') RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(prefix || pg_catalog.quote_ident(pg_catalog.split_part(o, '=', 1)) || '='
                                 || pg_catalog.quote_literal(pg_catalog.substr(o, pg_catalog.strpos(o, '=') + 1)), ', ' ORDER BY n)
      FROM pg_catalog.unnest(opts) WITH ORDINALITY AS x(o, n)
     WHERE o NOT LIKE 'pg\_attver=%'
$$;

-- Types: enum, domain (with its constraints), composite, range.
CREATE OR REPLACE FUNCTION tenant._clone_ddl_type(typ oid, source name, target name) RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sp text := format('%I, pg_catalog, pg_temp', source);
    t record;
    q text;
    body text;
    k record;
BEGIN
    SELECT * INTO t FROM pg_catalog.pg_type WHERE oid = typ;
    q := format('%I.%I', target, t.typname);
    IF t.typtype = 'e' THEN
        SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) INTO body
          FROM pg_catalog.pg_enum e WHERE e.enumtypid = typ;
        RETURN NEXT format('CREATE TYPE %s AS ENUM (%s)', q, coalesce(body, ''));
    ELSIF t.typtype = 'd' THEN
        RETURN NEXT format('CREATE DOMAIN %s AS %s%s%s%s', q, tenant._clone_sql('type', t.typbasetype, sp, t.typtypmod),
            CASE WHEN t.typcollation <> 0 AND t.typcollation IS DISTINCT FROM
                      (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = t.typbasetype)
                 THEN ' COLLATE ' || tenant._clone_sql('collation', t.typcollation, sp) ELSE '' END,
            CASE WHEN t.typdefaultbin IS NOT NULL THEN ' DEFAULT ' || tenant._clone_sql('expr', 0, sp, NULL, t.typdefaultbin) ELSE '' END,
            -- PostgreSQL 18: a NOT NULL catalogued as a named constraint is added by name below.
            CASE WHEN t.typnotnull AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint n WHERE n.contypid = typ AND n.contype = 'n')
                 THEN ' NOT NULL' ELSE '' END);
        -- NOT VALID constraints are added after the data is copied (they still check new rows).
        FOR k IN SELECT c.oid, c.conname FROM pg_catalog.pg_constraint c WHERE c.contypid = typ AND c.convalidated
                  ORDER BY c.conname LOOP
            RETURN NEXT format('ALTER DOMAIN %s ADD CONSTRAINT %I %s', q, k.conname, tenant._clone_sql('constraint', k.oid, sp));
        END LOOP;
    ELSIF t.typtype = 'c' THEN
        SELECT pg_catalog.string_agg(format('%I %s', a.attname, tenant._clone_sql('type', a.atttypid, sp, a.atttypmod))
                   || CASE WHEN a.attcollation <> b.typcollation THEN ' COLLATE ' || tenant._clone_sql('collation', a.attcollation, sp) ELSE '' END,
                   ', ' ORDER BY a.attnum) INTO body
          FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type b ON b.oid = a.atttypid
         WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped;
        RETURN NEXT format('CREATE TYPE %s AS (%s)', q, coalesce(body, ''));
    ELSIF t.typtype = 'r' THEN
        SELECT format('CREATE TYPE %s AS RANGE (SUBTYPE = %s, SUBTYPE_OPCLASS = %I.%I%s%s, MULTIRANGE_TYPE_NAME = %I.%I)', q,
                      tenant._clone_sql('type', r.rngsubtype, sp, NULL), n.nspname, o.opcname,
                      CASE WHEN r.rngcollation <> 0 THEN ', COLLATION = ' || tenant._clone_sql('collation', r.rngcollation, sp) ELSE '' END,
                      CASE WHEN r.rngsubdiff <> 0 THEN ', SUBTYPE_DIFF = ' || tenant._clone_sql('function', r.rngsubdiff, sp) ELSE '' END,
                      target, m.typname) INTO body
          FROM pg_catalog.pg_range r JOIN pg_catalog.pg_opclass o ON o.oid = r.rngsubopc
          JOIN pg_catalog.pg_namespace n ON n.oid = o.opcnamespace
          JOIN pg_catalog.pg_type m ON m.oid = r.rngmultitypid
         WHERE r.rngtypid = typ;
        RETURN NEXT body;
    ELSE
        RAISE EXCEPTION 'cannot clone type %', typ::pg_catalog.regtype USING ERRCODE = '0A000';
    END IF;
    RETURN NEXT format('ALTER %s %s OWNER TO %I', CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, q,
                       pg_catalog.pg_get_userbyid(t.typowner));
END
$$;

-- A sequence that is not owned by a column of the schema.
CREATE OR REPLACE FUNCTION tenant._clone_ddl_sequence(seq oid, target name) RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pg_catalog.pg_class WHERE oid = seq;
    RETURN NEXT format('CREATE %sSEQUENCE %I.%I %s', CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
                       target, c.relname, tenant._clone_seq_options(seq));
    RETURN NEXT format('ALTER SEQUENCE %I.%I OWNER TO %I', target, c.relname, pg_catalog.pg_get_userbyid(c.relowner));
END
$$;

-- An ordinary or partitioned table: owned (serial) sequences, the table with its columns, defaults,
-- identity and generated columns, persistence, partitioning or inheritance, column settings, its
-- check / primary key / unique / exclusion constraints, sequence ownership and the table owner.
-- Foreign keys, indexes, triggers, row security and grants come in later steps of the plan.
CREATE OR REPLACE FUNCTION tenant._clone_ddl_table(rel oid, source name, target name) RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sp text := format('%I, pg_catalog, pg_temp', source);
    c record;
    a record;
    k record;
    s record;
    q text := NULL;
    cols text[] := '{}';
    col text;
    parents text;
    opts text;
    toast_opts text;
    parent_def text;
    parent_notnull boolean;
    parent_storage "char";
    parent_compression "char";
    nn record;
BEGIN
    SELECT * INTO c FROM pg_catalog.pg_class WHERE oid = rel;
    q := format('%I.%I', target, c.relname);

    -- Sequences owned by a column of this table (serial), not identity sequences.
    FOR s IN SELECT d.objid, sc.relname, sc.relpersistence FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
              WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.refobjid = rel AND d.deptype = 'a' AND sc.relnamespace = c.relnamespace
              ORDER BY sc.relname LOOP
        RETURN NEXT format('CREATE %sSEQUENCE %I.%I %s', CASE WHEN s.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
                           target, s.relname, tenant._clone_seq_options(s.objid));
    END LOOP;

    FOR a IN SELECT at.*, ty.typcollation, ty.typstorage, tenant._clone_sql('expr', ad.adrelid, sp, NULL, ad.adbin) AS def,
                    (SELECT d.objid FROM pg_catalog.pg_depend d
                      WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = rel
                        AND d.refobjsubid = at.attnum AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                        AND d.deptype = 'i') AS idseq
               FROM pg_catalog.pg_attribute at
               JOIN pg_catalog.pg_type ty ON ty.oid = at.atttypid
               LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = at.attrelid AND ad.adnum = at.attnum
              WHERE at.attrelid = rel AND at.attnum > 0 AND NOT at.attisdropped AND at.attislocal
              ORDER BY at.attnum LOOP
        CONTINUE WHEN c.relispartition;
        col := format('%I %s', a.attname, tenant._clone_sql('type', a.atttypid, sp, a.atttypmod));
        IF a.attcollation <> a.typcollation THEN
            col := col || ' COLLATE ' || tenant._clone_sql('collation', a.attcollation, sp);
        END IF;
        IF a.attidentity IN ('a', 'd') THEN
            col := col || format(' GENERATED %s AS IDENTITY (SEQUENCE NAME %I.%I %s)',
                                 CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END, target,
                                 (SELECT sc.relname FROM pg_catalog.pg_class sc WHERE sc.oid = a.idseq),
                                 tenant._clone_seq_options(a.idseq, false));
        ELSIF a.attgenerated IN ('s', 'v') THEN  -- PostgreSQL 18: 'v', virtual generated columns
            col := col || format(' GENERATED ALWAYS AS (%s) %s', a.def, CASE a.attgenerated WHEN 's' THEN 'STORED' ELSE 'VIRTUAL' END);
        ELSIF a.def IS NOT NULL THEN
            col := col || ' DEFAULT ' || a.def;
        END IF;
        -- PostgreSQL 18 catalogues NOT NULL as a constraint (contype 'n': a name, NO INHERIT, NOT
        -- VALID, local or only inherited); before 18 attnotnull is all there is. An inherited-only
        -- one comes with the parent, a NOT VALID one after the data.
        SELECT co.conname, co.conislocal, co.connoinherit, co.convalidated INTO nn FROM pg_catalog.pg_constraint co
         WHERE co.conrelid = rel AND co.contype = 'n' AND co.conkey = ARRAY[a.attnum];
        IF NOT FOUND THEN
            IF a.attnotnull THEN
                col := col || ' NOT NULL';
            END IF;
        ELSIF nn.conislocal AND nn.convalidated THEN
            col := col || format(' CONSTRAINT %I NOT NULL', nn.conname) || CASE WHEN nn.connoinherit THEN ' NO INHERIT' ELSE '' END;
        END IF;
        cols := cols || col;
    END LOOP;

    opts := tenant._clone_reloptions(c.reloptions);
    SELECT tenant._clone_reloptions(t.reloptions, 'toast.') INTO toast_opts FROM pg_catalog.pg_class t WHERE t.oid = c.reltoastrelid;
    opts := nullif(concat_ws(', ', opts, toast_opts), '');
    IF c.relispartition THEN
        RETURN NEXT format('CREATE %sTABLE %s PARTITION OF %s %s%s%s%s%s',
            CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END, q,
            (SELECT tenant._clone_sql('relation', i.inhparent, sp) FROM pg_catalog.pg_inherits i WHERE i.inhrelid = rel),
            tenant._clone_sql('expr', rel, sp, NULL, c.relpartbound),
            CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || tenant._clone_sql('partkey', rel, sp) ELSE '' END,
            CASE WHEN c.relkind = 'r' THEN ' USING ' || (SELECT pg_catalog.quote_ident(am.amname) FROM pg_catalog.pg_am am WHERE am.oid = c.relam) ELSE '' END,
            CASE WHEN opts IS NOT NULL THEN ' WITH (' || opts || ')' ELSE '' END,
            CASE WHEN c.reltablespace <> 0 THEN ' TABLESPACE ' || (SELECT pg_catalog.quote_ident(ts.spcname) FROM pg_catalog.pg_tablespace ts WHERE ts.oid = c.reltablespace) ELSE '' END);
    ELSE
        SELECT pg_catalog.string_agg(tenant._clone_sql('relation', i.inhparent, sp), ', ' ORDER BY i.inhseqno) INTO parents
          FROM pg_catalog.pg_inherits i WHERE i.inhrelid = rel;
        RETURN NEXT format('CREATE %sTABLE %s (%s)%s%s%s%s%s',
            CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END, q, array_to_string(cols, ', '),
            CASE WHEN parents IS NOT NULL THEN ' INHERITS (' || parents || ')' ELSE '' END,
            CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || tenant._clone_sql('partkey', rel, sp) ELSE '' END,
            CASE WHEN c.relkind = 'r' THEN ' USING ' || (SELECT pg_catalog.quote_ident(am.amname) FROM pg_catalog.pg_am am WHERE am.oid = c.relam) ELSE '' END,
            CASE WHEN opts IS NOT NULL THEN ' WITH (' || opts || ')' ELSE '' END,
            CASE WHEN c.reltablespace <> 0 THEN ' TABLESPACE ' || (SELECT pg_catalog.quote_ident(ts.spcname) FROM pg_catalog.pg_tablespace ts WHERE ts.oid = c.reltablespace) ELSE '' END);
    END IF;

    -- Column settings; for inherited columns (partitions, inheritance children) also the defaults and
    -- NOT NULL that differ from the parent's.
    FOR a IN SELECT at.*, ty.typstorage, tenant._clone_sql('expr', ad.adrelid, sp, NULL, ad.adbin) AS def
               FROM pg_catalog.pg_attribute at
               JOIN pg_catalog.pg_type ty ON ty.oid = at.atttypid
               LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = at.attrelid AND ad.adnum = at.attnum
              WHERE at.attrelid = rel AND at.attnum > 0 AND NOT at.attisdropped
              ORDER BY at.attnum LOOP
        parent_def := NULL; parent_notnull := NULL; parent_storage := NULL; parent_compression := NULL;
        IF a.attinhcount > 0 THEN
            SELECT tenant._clone_sql('expr', pd.adrelid, sp, NULL, pd.adbin), pa.attnotnull, pa.attstorage, pa.attcompression
              INTO parent_def, parent_notnull, parent_storage, parent_compression
              FROM pg_catalog.pg_inherits i
              JOIN pg_catalog.pg_attribute pa ON pa.attrelid = i.inhparent AND pa.attname = a.attname AND NOT pa.attisdropped
              LEFT JOIN pg_catalog.pg_attrdef pd ON pd.adrelid = pa.attrelid AND pd.adnum = pa.attnum
             WHERE i.inhrelid = rel ORDER BY i.inhseqno LIMIT 1;
            IF a.attgenerated = '' AND a.def IS DISTINCT FROM parent_def AND NOT a.attislocal THEN
                RETURN NEXT format('ALTER TABLE ONLY %s ALTER COLUMN %I %s', q, a.attname,
                                   CASE WHEN a.def IS NULL THEN 'DROP DEFAULT' ELSE 'SET DEFAULT ' || a.def END);
            END IF;
            IF a.attnotnull AND NOT parent_notnull THEN
                -- PostgreSQL 18: the partition's or child's own NOT NULL constraint, by its name.
                SELECT co.conname, co.convalidated INTO nn FROM pg_catalog.pg_constraint co
                 WHERE co.conrelid = rel AND co.contype = 'n' AND co.conkey = ARRAY[a.attnum];
                IF NOT FOUND THEN
                    RETURN NEXT format('ALTER TABLE ONLY %s ALTER COLUMN %I SET NOT NULL', q, a.attname);
                ELSIF nn.convalidated AND NOT a.attislocal THEN
                    RETURN NEXT format('ALTER TABLE ONLY %s ADD CONSTRAINT %I NOT NULL %I', q, nn.conname, a.attname);
                END IF;
            END IF;
        END IF;
        IF a.attstorage <> a.typstorage OR a.attstorage <> coalesce(parent_storage, a.attstorage) THEN
            RETURN NEXT format('ALTER TABLE ONLY %s ALTER COLUMN %I SET STORAGE %s', q, a.attname,
                               CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'm' THEN 'MAIN' WHEN 'e' THEN 'EXTERNAL' ELSE 'EXTENDED' END);
        END IF;
        IF a.attcompression <> '' OR a.attcompression <> coalesce(parent_compression, a.attcompression) THEN
            RETURN NEXT format('ALTER TABLE ONLY %s ALTER COLUMN %I SET COMPRESSION %s', q, a.attname,
                               CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' ELSE 'default' END);
        END IF;
        IF a.attstattarget >= 0 THEN
            RETURN NEXT format('ALTER TABLE ONLY %s ALTER COLUMN %I SET STATISTICS %s', q, a.attname, a.attstattarget);
        END IF;
        opts := tenant._clone_reloptions(a.attoptions);
        IF opts IS NOT NULL THEN
            RETURN NEXT format('ALTER TABLE ONLY %s ALTER COLUMN %I SET (%s)', q, a.attname, opts);
        END IF;
    END LOOP;

    -- Own constraints except foreign keys (those come after every table exists) and NOT VALID ones
    -- (those come after the data).
    FOR k IN SELECT co.oid, co.conname FROM pg_catalog.pg_constraint co
              WHERE co.conrelid = rel AND co.contype IN ('c', 'p', 'u', 'x') AND co.conislocal AND co.conparentid = 0
                AND co.convalidated
              ORDER BY CASE co.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 ELSE 3 END, co.conname LOOP
        RETURN NEXT format('ALTER TABLE %s ADD CONSTRAINT %I %s', q, k.conname,
                           tenant._clone_sql('constraint', k.oid, sp));
    END LOOP;

    FOR s IN SELECT sc.relname, at.attname FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
               JOIN pg_catalog.pg_attribute at ON at.attrelid = d.refobjid AND at.attnum = d.refobjsubid
              WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.refobjid = rel AND d.deptype = 'a' AND sc.relnamespace = c.relnamespace
              ORDER BY sc.relname LOOP
        RETURN NEXT format('ALTER SEQUENCE %I.%I OWNED BY %s.%I', target, s.relname, q, s.attname);
    END LOOP;
    RETURN NEXT format('ALTER TABLE %s OWNER TO %I', q, pg_catalog.pg_get_userbyid(c.relowner));
END
$$;

-- A function or procedure: pg_get_functiondef with the header re-pointed at the target and
-- qualified references to the source in the body rewritten; a search_path setting that named the
-- source names the target instead.
CREATE OR REPLACE FUNCTION tenant._clone_ddl_function(fn oid, source name, target name) RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sp text := format('%I, pg_catalog, pg_temp', source);
    p record;
    def text;
    header text;
    sig text;
    word text;
BEGIN
    SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid = fn;
    IF p.prokind NOT IN ('f', 'p', 'w') THEN
        RAISE EXCEPTION 'cannot clone %', pg_catalog.pg_describe_object('pg_catalog.pg_proc'::pg_catalog.regclass, fn, 0)
            USING ERRCODE = '0A000';
    END IF;
    word := CASE WHEN p.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END;
    def := tenant._clone_sql('functiondef', fn, sp);
    header := format('CREATE OR REPLACE %s %I.%I(', word, source, p.proname);
    IF left(def, length(header)) <> header THEN
        RAISE EXCEPTION 'unexpected definition of %', pg_catalog.pg_describe_object('pg_catalog.pg_proc'::pg_catalog.regclass, fn, 0)
            USING ERRCODE = 'XX000', DETAIL = left(def, 200);
    END IF;
    -- Only a body kept as text can name the source qualified; a SQL-standard body is deparsed.
    def := format('CREATE %s %I.%I(', word, target, p.proname)
           || CASE WHEN p.prosqlbody IS NULL THEN tenant._clone_rewrite(substr(def, length(header) + 1), source, target)
                   ELSE substr(def, length(header) + 1) END;
    RETURN NEXT def;
    sig := format('%s %I.%I(%s)', word, target, p.proname, tenant._clone_sql('identity arguments', fn, sp));
    IF EXISTS (SELECT FROM pg_catalog.unnest(p.proconfig) c
                WHERE c LIKE 'search\_path=%' AND source = ANY (tenant._clone_split_path(substr(c, 13)))) THEN
        RETURN NEXT format('ALTER %s SET search_path TO %s', sig,
            (SELECT substr(c, 13) FROM pg_catalog.unnest(tenant._clone_config(p.proconfig, source, target)) c
              WHERE c LIKE 'search\_path=%' LIMIT 1));
    END IF;
    RETURN NEXT format('ALTER %s OWNER TO %I', sig, pg_catalog.pg_get_userbyid(p.proowner));
END
$$;

-- A view or materialized view (materialized views WITH NO DATA; the plan refreshes them after the
-- data is copied), with its options, column defaults and owner.
CREATE OR REPLACE FUNCTION tenant._clone_ddl_view(v oid, source name, target name) RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sp text := format('%I, pg_catalog, pg_temp', source);
    c record;
    a record;
    q text;
    opts text;
    def text;
BEGIN
    SELECT * INTO c FROM pg_catalog.pg_class WHERE oid = v;
    q := format('%I.%I', target, c.relname);
    opts := tenant._clone_reloptions(c.reloptions);
    def := rtrim(tenant._clone_sql('view', v, sp), E'; \n\t');
    IF c.relkind = 'v' THEN
        RETURN NEXT format('CREATE VIEW %s%s AS %s', q, CASE WHEN opts IS NOT NULL THEN ' WITH (' || opts || ')' ELSE '' END, def);
        FOR a IN SELECT at.attname, tenant._clone_sql('expr', ad.adrelid, sp, NULL, ad.adbin) AS def
                   FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute at ON at.attrelid = ad.adrelid AND at.attnum = ad.adnum
                  WHERE ad.adrelid = v ORDER BY at.attnum LOOP
            RETURN NEXT format('ALTER VIEW %s ALTER COLUMN %I SET DEFAULT %s', q, a.attname, a.def);
        END LOOP;
        RETURN NEXT format('ALTER VIEW %s OWNER TO %I', q, pg_catalog.pg_get_userbyid(c.relowner));
    ELSE
        RETURN NEXT format('CREATE MATERIALIZED VIEW %s%s%s%s AS %s WITH NO DATA', q,
            ' USING ' || (SELECT pg_catalog.quote_ident(am.amname) FROM pg_catalog.pg_am am WHERE am.oid = c.relam),
            CASE WHEN opts IS NOT NULL THEN ' WITH (' || opts || ')' ELSE '' END,
            CASE WHEN c.reltablespace <> 0 THEN ' TABLESPACE ' || (SELECT pg_catalog.quote_ident(ts.spcname) FROM pg_catalog.pg_tablespace ts WHERE ts.oid = c.reltablespace) ELSE '' END,
            def);
        RETURN NEXT format('ALTER MATERIALIZED VIEW %s OWNER TO %I', q, pg_catalog.pg_get_userbyid(c.relowner));
    END IF;
END
$$;

-- The plan node an object of schema nsp belongs to, for dependency ordering: types (enum, domain,
-- composite, range), sequences not owned by a column, tables, views, materialized views and
-- functions are nodes; defaults, constraints (except foreign keys), rules, row types, array types,
-- owned sequences belong to the node of their table or type. NULL: not a node (created later).
CREATE OR REPLACE FUNCTION tenant._clone_node(nsp oid, cls oid, obj oid, OUT node_class oid, OUT node_obj oid)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    owner_rel oid;
BEGIN
    IF cls = 'pg_class'::regclass THEN
        SELECT c.relkind, c.reltype, c.relnamespace INTO r FROM pg_class c WHERE c.oid = obj;
        IF r.relnamespace IS DISTINCT FROM nsp THEN RETURN; END IF;
        IF r.relkind IN ('r', 'p', 'v', 'm') THEN
            node_class := cls; node_obj := obj;
        ELSIF r.relkind = 'S' THEN
            SELECT d.refobjid INTO owner_rel FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
             WHERE d.classid = cls AND d.objid = obj AND d.refclassid = cls AND d.deptype IN ('a', 'i')
               AND t.relnamespace = nsp AND t.relkind IN ('r', 'p');
            node_class := cls; node_obj := coalesce(owner_rel, obj);
        ELSIF r.relkind = 'c' THEN
            node_class := 'pg_type'::regclass; node_obj := r.reltype;
        END IF;
    ELSIF cls = 'pg_type'::regclass THEN
        SELECT t.typtype, t.typrelid, t.typelem, t.typnamespace,
               (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) AS relkind,
               EXISTS (SELECT FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid) AS is_array
          INTO r FROM pg_type t WHERE t.oid = obj;
        IF r.typnamespace IS DISTINCT FROM nsp THEN RETURN; END IF;
        IF r.is_array THEN
            SELECT * INTO node_class, node_obj FROM tenant._clone_node(nsp, cls, r.typelem);
        ELSIF r.typtype = 'm' THEN
            SELECT * INTO node_class, node_obj FROM tenant._clone_node(nsp, cls, (SELECT g.rngtypid FROM pg_range g WHERE g.rngmultitypid = obj));
        ELSIF r.typtype = 'c' AND r.relkind <> 'c' THEN
            SELECT * INTO node_class, node_obj FROM tenant._clone_node(nsp, 'pg_class'::regclass, r.typrelid);
        ELSIF r.typtype IN ('e', 'd', 'c', 'r') THEN
            node_class := cls; node_obj := obj;
        END IF;
    ELSIF cls = 'pg_proc'::regclass THEN
        IF EXISTS (SELECT FROM pg_proc p WHERE p.oid = obj AND p.pronamespace = nsp) THEN
            -- Functions made with their type (range and multirange constructors) belong to the type.
            SELECT d.refobjid INTO owner_rel FROM pg_depend d
             WHERE d.classid = cls AND d.objid = obj AND d.refclassid = 'pg_type'::regclass AND d.deptype = 'i';
            IF owner_rel IS NOT NULL THEN
                SELECT * INTO node_class, node_obj FROM tenant._clone_node(nsp, 'pg_type'::regclass, owner_rel);
            ELSE
                node_class := cls; node_obj := obj;
            END IF;
        END IF;
    ELSIF cls = 'pg_attrdef'::regclass THEN
        SELECT * INTO node_class, node_obj FROM tenant._clone_node(nsp, 'pg_class'::regclass, (SELECT d.adrelid FROM pg_attrdef d WHERE d.oid = obj));
    ELSIF cls = 'pg_constraint'::regclass THEN
        SELECT k.contype, k.conrelid, k.contypid INTO r FROM pg_constraint k WHERE k.oid = obj;
        IF r.contypid <> 0 THEN
            SELECT * INTO node_class, node_obj FROM tenant._clone_node(nsp, 'pg_type'::regclass, r.contypid);
        ELSIF r.conrelid <> 0 AND r.contype <> 'f' THEN
            SELECT * INTO node_class, node_obj FROM tenant._clone_node(nsp, 'pg_class'::regclass, r.conrelid);
        END IF;
    ELSIF cls = 'pg_rewrite'::regclass THEN
        SELECT * INTO node_class, node_obj FROM tenant._clone_node(nsp, 'pg_class'::regclass, (SELECT w.ev_class FROM pg_rewrite w WHERE w.oid = obj));
    END IF;
END
$$;

-- Makes the ACL of a target object equal to `wanted` (NULL: the default ACL for its owner) by
-- granting and revoking the differences. objtype: TABLE, SEQUENCE, FUNCTION, PROCEDURE, TYPE,
-- DOMAIN (obj: a qualified name, functions with their argument types, resolved with search_path =
-- path) or SCHEMA (obj: the name); col: a column of the table (wanted NULL: no column privileges).
-- Grantors are not reproduced.
CREATE OR REPLACE FUNCTION tenant._clone_sync_acl(objtype text, obj text, wanted aclitem[], col name, path text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id oid;
    cur aclitem[];
    own oid;
    kind "char";
    spec text;
    e record;
BEGIN
    IF objtype IN ('TABLE', 'SEQUENCE') THEN
        SELECT c.relacl, c.relowner, CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END INTO cur, own, kind
          FROM pg_catalog.pg_class c WHERE c.oid = tenant._clone_resolve('relation', obj, path);
        SELECT c.oid, objtype || ' ' || c.oid::regclass::text INTO id, spec FROM pg_catalog.pg_class c
         WHERE c.oid = tenant._clone_resolve('relation', obj, path);
        IF col IS NOT NULL THEN
            SELECT a.attacl INTO cur FROM pg_catalog.pg_attribute a WHERE a.attrelid = id AND a.attname = col AND NOT a.attisdropped;
            kind := NULL;
            spec := 'TABLE ' || id::regclass::text;
        END IF;
    ELSIF objtype IN ('FUNCTION', 'PROCEDURE') THEN
        id := tenant._clone_resolve('function', obj, path);
        SELECT p.proacl, p.proowner, 'f' INTO cur, own, kind FROM pg_catalog.pg_proc p WHERE p.oid = id;
        spec := objtype || ' ' || id::regprocedure::text;
    ELSIF objtype IN ('TYPE', 'DOMAIN') THEN
        id := tenant._clone_resolve('type', obj, path);
        SELECT t.typacl, t.typowner, 'T' INTO cur, own, kind FROM pg_catalog.pg_type t WHERE t.oid = id;
        spec := objtype || ' ' || id::regtype::text;
    ELSIF objtype = 'SCHEMA' THEN
        SELECT n.nspacl, n.nspowner, 'n' INTO cur, own, kind FROM pg_catalog.pg_namespace n WHERE n.nspname = obj;
        spec := 'SCHEMA ' || pg_catalog.quote_ident(obj);
    ELSE
        RAISE EXCEPTION 'unknown object type %', objtype USING ERRCODE = '22023';
    END IF;
    IF own IS NULL THEN
        RAISE EXCEPTION '% % does not exist', objtype, obj USING ERRCODE = '42704';
    END IF;
    cur := coalesce(cur, CASE WHEN kind IS NULL THEN '{}'::pg_catalog.aclitem[] ELSE pg_catalog.acldefault(kind, own) END);
    wanted := coalesce(wanted, CASE WHEN kind IS NULL THEN '{}'::pg_catalog.aclitem[] ELSE pg_catalog.acldefault(kind, own) END);
    FOR e IN
        WITH c AS (SELECT x.grantee, x.privilege_type, pg_catalog.bool_or(x.is_grantable) AS g FROM pg_catalog.aclexplode(CASE WHEN pg_catalog.cardinality(cur) > 0 THEN cur END) x GROUP BY 1, 2),
             w AS (SELECT x.grantee, x.privilege_type, pg_catalog.bool_or(x.is_grantable) AS g FROM pg_catalog.aclexplode(CASE WHEN pg_catalog.cardinality(wanted) > 0 THEN wanted END) x GROUP BY 1, 2)
        SELECT coalesce(c.grantee, w.grantee) AS grantee, coalesce(c.privilege_type, w.privilege_type) AS priv,
               c.g AS has, w.g AS want
          FROM c FULL JOIN w ON w.grantee = c.grantee AND w.privilege_type = c.privilege_type
         WHERE c.g IS DISTINCT FROM w.g
         ORDER BY 1, 2
    LOOP
        IF e.want IS NULL THEN
            EXECUTE format('REVOKE %s%s ON %s FROM %s CASCADE', e.priv, CASE WHEN col IS NOT NULL THEN format(' (%I)', col) ELSE '' END,
                           spec, CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(e.grantee)) END);
        ELSIF e.has AND NOT e.want THEN
            EXECUTE format('REVOKE GRANT OPTION FOR %s%s ON %s FROM %s CASCADE', e.priv, CASE WHEN col IS NOT NULL THEN format(' (%I)', col) ELSE '' END,
                           spec, CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(e.grantee)) END);
        ELSE
            EXECUTE format('GRANT %s%s ON %s TO %s%s', e.priv, CASE WHEN col IS NOT NULL THEN format(' (%I)', col) ELSE '' END,
                           spec, CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(e.grantee)) END,
                           CASE WHEN e.want THEN ' WITH GRANT OPTION' ELSE '' END);
        END IF;
    END LOOP;
END
$$;

-- The clone of schema source as target, as an ordered list of statements (only reads the catalogs,
-- and with copy_data the source's sequence positions). Each ddl is run with
-- search_path = <target>, pg_catalog, pg_temp; args, when not NULL, is bound as $1.
-- Phases: objects (types, sequences, tables, functions, views, materialized views; ordered by their
-- pg_depend dependencies), data, materialized view refresh and sequence positions (copy_data),
-- indexes, statistics, foreign keys, triggers, row security, policies, comments, grants, schema owner.
CREATE OR REPLACE FUNCTION tenant._clone_plan(source name, target name, copy_data boolean DEFAULT false)
RETURNS TABLE(step integer, phase text, object text, ddl text, args text[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp oid;
    n record;
    r record;
    stmt text;
    last_value bigint;
    is_called boolean;
    tq text;
    sp text := format('%I, pg_catalog, pg_temp', source);
    tp text := format('%I, pg_catalog, pg_temp', target);
BEGIN
    SELECT oid INTO nsp FROM pg_namespace WHERE nspname = source;
    IF nsp IS NULL THEN
        RAISE EXCEPTION 'schema % does not exist', coalesce(quote_ident(source), 'NULL') USING ERRCODE = '3F000';
    END IF;
    IF target IS NULL OR strpos(target, E'\\') > 0 THEN
        RAISE EXCEPTION 'invalid target schema name' USING ERRCODE = '22023';
    END IF;
    step := 0;

    -- Objects in dependency order.
    IF to_regclass('pg_temp.qft_clone_nodes') IS NOT NULL THEN
        DROP TABLE pg_temp.qft_clone_nodes;
    END IF;
    IF to_regclass('pg_temp.qft_clone_edges') IS NOT NULL THEN
        DROP TABLE pg_temp.qft_clone_edges;
    END IF;
    CREATE TEMP TABLE qft_clone_nodes (cls oid, obj oid, prio integer, name text, done boolean DEFAULT false,
                                       PRIMARY KEY (cls, obj)) ON COMMIT DROP;
    CREATE TEMP TABLE qft_clone_edges (cls oid, obj oid, ref_cls oid, ref_obj oid) ON COMMIT DROP;
    INSERT INTO pg_temp.qft_clone_nodes (cls, obj, prio, name)
    SELECT DISTINCT x.node_class, x.node_obj,
           CASE WHEN x.node_class = 'pg_type'::regclass THEN 1
                WHEN x.node_class = 'pg_proc'::regclass THEN 4
                ELSE (SELECT CASE c.relkind WHEN 'S' THEN 2 WHEN 'v' THEN 5 WHEN 'm' THEN 6 ELSE 3 END
                        FROM pg_class c WHERE c.oid = x.node_obj) END,
           pg_describe_object(x.node_class, x.node_obj, 0)
      FROM tenant._clone_objects(nsp) o, tenant._clone_node(nsp, o.classid, o.objid) x
     WHERE x.node_class IS NOT NULL;
    INSERT INTO pg_temp.qft_clone_edges
    SELECT DISTINCT a.node_class, a.node_obj, b.node_class, b.node_obj
      FROM tenant._clone_objects(nsp) o
      JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid AND d.deptype IN ('n', 'a')
      CROSS JOIN LATERAL tenant._clone_node(nsp, d.classid, d.objid) a
      CROSS JOIN LATERAL tenant._clone_node(nsp, d.refclassid, d.refobjid) b
     WHERE a.node_class IS NOT NULL AND b.node_class IS NOT NULL
       AND (a.node_class, a.node_obj) IS DISTINCT FROM (b.node_class, b.node_obj);
    LOOP
        SELECT q.* INTO n FROM pg_temp.qft_clone_nodes q
         WHERE NOT q.done
           AND NOT EXISTS (SELECT FROM pg_temp.qft_clone_edges e JOIN pg_temp.qft_clone_nodes m ON m.cls = e.ref_cls AND m.obj = e.ref_obj
                            WHERE e.cls = q.cls AND e.obj = q.obj AND NOT m.done)
         ORDER BY q.prio, q.name LIMIT 1;
        EXIT WHEN NOT FOUND;
        UPDATE pg_temp.qft_clone_nodes q SET done = true WHERE q.cls = n.cls AND q.obj = n.obj;
        phase := 'object'; object := n.name; args := NULL;
        FOR stmt IN
            SELECT * FROM tenant._clone_ddl_type(n.obj, source, target) WHERE n.cls = 'pg_type'::regclass
            UNION ALL SELECT * FROM tenant._clone_ddl_function(n.obj, source, target) WHERE n.cls = 'pg_proc'::regclass
            UNION ALL SELECT * FROM tenant._clone_ddl_sequence(n.obj, target) WHERE n.cls = 'pg_class'::regclass AND n.prio = 2
            UNION ALL SELECT * FROM tenant._clone_ddl_table(n.obj, source, target) WHERE n.cls = 'pg_class'::regclass AND n.prio = 3
            UNION ALL SELECT * FROM tenant._clone_ddl_view(n.obj, source, target) WHERE n.cls = 'pg_class'::regclass AND n.prio IN (5, 6)
        LOOP
            step := step + 1; ddl := stmt; RETURN NEXT;
        END LOOP;
    END LOOP;
    SELECT string_agg(q.name, ', ' ORDER BY q.name) INTO stmt FROM pg_temp.qft_clone_nodes q WHERE NOT q.done;
    IF stmt IS NOT NULL THEN
        RAISE EXCEPTION 'cannot order the objects of schema % for cloning: circular dependencies', quote_ident(source)
            USING ERRCODE = '0A000', DETAIL = 'Objects left: ' || stmt;
    END IF;

    IF copy_data THEN
        -- Rows (before indexes, foreign keys and triggers: triggers do not fire on the copy), each
        -- table copied by tenant._copy_rows as the copy's owner in a security-restricted operation.
        FOR r IN SELECT c.oid, c.relname FROM pg_class c WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind = 'r' ORDER BY c.relname LOOP
            step := step + 1; phase := 'data'; object := format('table %I', r.relname);
            ddl := 'SELECT tenant._copy_rows($1[1]::pg_catalog.regclass, $1[2]::pg_catalog.regclass)';
            args := ARRAY[format('%I.%I', source, r.relname), format('%I.%I', target, r.relname)];
            RETURN NEXT;
        END LOOP;
        -- Sequence positions.
        FOR r IN SELECT c.relname FROM pg_class c WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind = 'S' ORDER BY c.relname LOOP
            EXECUTE format('SELECT last_value, is_called FROM %I.%I', source, r.relname) INTO last_value, is_called;
            step := step + 1; phase := 'sequence position'; object := format('sequence %I', r.relname);
            ddl := 'SELECT pg_catalog.setval($1[1]::pg_catalog.regclass, $1[2]::pg_catalog.int8, $1[3]::pg_catalog.bool)';
            args := ARRAY[format('%I.%I', target, r.relname), last_value::text, is_called::text];
            RETURN NEXT;
        END LOOP;
    END IF;
    args := NULL;

    -- Indexes that do not belong to a constraint (partitioned parents first), then their attachments.
    FOR r IN SELECT i.relname, x.indexrelid, c.relname AS tablename FROM pg_index x
               JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
              WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind IN ('r', 'p', 'm')
                AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid
                                   AND k.contype IN ('p', 'u', 'x'))
              ORDER BY i.relkind DESC, i.relname LOOP
        step := step + 1; phase := 'index'; object := format('index %I', r.relname);
        ddl := tenant._clone_replace_first(tenant._clone_sql('index', r.indexrelid, sp), format(' %I.%I ', source, r.tablename),
                                           format(' %I.%I ', target, r.tablename));
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT ci.relname AS child, pi.relname AS parent FROM pg_inherits h
               JOIN pg_class ci ON ci.oid = h.inhrelid JOIN pg_class pi ON pi.oid = h.inhparent
              WHERE ci.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND ci.relnamespace = nsp AND ci.relkind IN ('i', 'I') AND pi.relkind = 'I' AND pi.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND pi.relnamespace = nsp
                AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = ci.oid AND k.contype IN ('p', 'u', 'x'))
              ORDER BY (SELECT count(*) FROM pg_partition_ancestors(ci.oid)) DESC, 2, 1 LOOP
        step := step + 1; phase := 'index'; object := format('index %I', r.child);
        ddl := format('ALTER INDEX %I.%I ATTACH PARTITION %I.%I', target, r.parent, target, r.child);
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT c.relname, c.relreplident, i.relname AS idx, x.indisclustered, x.indisreplident
               FROM pg_class c LEFT JOIN pg_index x ON x.indrelid = c.oid AND (x.indisclustered OR x.indisreplident)
               LEFT JOIN pg_class i ON i.oid = x.indexrelid
              WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind IN ('r', 'p', 'm') AND (c.relreplident <> 'd' OR x.indexrelid IS NOT NULL)
              ORDER BY 1 LOOP
        step := step + 1; phase := 'index'; object := format('table %I', r.relname);
        IF r.indisclustered THEN
            ddl := format('ALTER TABLE %I.%I CLUSTER ON %I', target, r.relname, r.idx);
            RETURN NEXT;
        END IF;
        IF r.relreplident <> 'd' AND (r.relreplident <> 'i' OR r.indisreplident) THEN
            ddl := format('ALTER TABLE %I.%I REPLICA IDENTITY %s', target, r.relname,
                          CASE r.relreplident WHEN 'n' THEN 'NOTHING' WHEN 'f' THEN 'FULL' ELSE format('USING INDEX %I', r.idx) END);
            RETURN NEXT;
        END IF;
    END LOOP;

    -- Extended statistics.
    FOR r IN SELECT x.oid, x.stxname, x.stxstattarget, x.stxowner FROM pg_statistic_ext x WHERE x.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_statistic_ext'::regclass))::oid[]) AND x.stxnamespace = nsp ORDER BY 2 LOOP
        step := step + 1; phase := 'statistics'; object := format('statistics %I', r.stxname);
        ddl := tenant._clone_replace_first(tenant._clone_sql('statistics', r.oid, sp), format('CREATE STATISTICS %I.', source),
                                           format('CREATE STATISTICS %I.', target));
        RETURN NEXT;
        IF r.stxstattarget >= 0 THEN
            step := step + 1; ddl := format('ALTER STATISTICS %I.%I SET STATISTICS %s', target, r.stxname, r.stxstattarget);
            RETURN NEXT;
        END IF;
        step := step + 1; ddl := format('ALTER STATISTICS %I.%I OWNER TO %I', target, r.stxname, pg_get_userbyid(r.stxowner));
        RETURN NEXT;
    END LOOP;

    -- NOT VALID check (and, PostgreSQL 18, not-null) constraints of tables and domains, after the data
    -- they do not cover.
    FOR r IN SELECT k.oid, k.conname, c.relname, t.typname FROM pg_constraint k
               LEFT JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_type t ON t.oid = k.contypid
              WHERE k.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_constraint'::regclass))::oid[]) AND k.connamespace = nsp AND k.contype IN ('c', 'n') AND NOT k.convalidated AND k.conparentid = 0
                AND (k.contypid <> 0 OR k.conislocal)
              ORDER BY 3, 4, 2 LOOP
        step := step + 1; phase := 'constraint'; object := format('constraint %I', r.conname);
        ddl := CASE WHEN r.typname IS NOT NULL
                    THEN format('ALTER DOMAIN %I.%I ADD CONSTRAINT %I %s', target, r.typname, r.conname, tenant._clone_sql('constraint', r.oid, sp))
                    ELSE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', target, r.relname, r.conname, tenant._clone_sql('constraint', r.oid, sp)) END;
        RETURN NEXT;
    END LOOP;

    -- Foreign keys, once every table exists (self-referencing and cyclic ones included).
    FOR r IN SELECT k.oid, k.conname, c.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
              WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND k.contype = 'f' AND k.conparentid = 0 AND k.conislocal
              ORDER BY c.relname, k.conname LOOP
        step := step + 1; phase := 'foreign key'; object := format('constraint %I.%I', r.relname, r.conname);
        ddl := format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', target, r.relname, r.conname,
                      tenant._clone_sql('constraint', r.oid, sp));
        RETURN NEXT;
    END LOOP;

    -- Triggers (those cloned to partitions by their parent's trigger come with it).
    FOR r IN SELECT g.oid, g.tgname, g.tgenabled, c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
              WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND NOT g.tgisinternal AND g.tgparentid = 0
              ORDER BY c.relname, g.tgname LOOP
        step := step + 1; phase := 'trigger'; object := format('trigger %I.%I', r.relname, r.tgname);
        ddl := tenant._clone_replace_first(tenant._clone_sql('trigger', r.oid, sp), format(' %I.%I ', source, r.relname),
                                           format(' %I.%I ', target, r.relname));
        RETURN NEXT;
        IF r.tgenabled <> 'O' THEN
            step := step + 1;
            ddl := format('ALTER TABLE %I.%I %s TRIGGER %I', target, r.relname,
                          CASE r.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END, r.tgname);
            RETURN NEXT;
        END IF;
    END LOOP;

    -- Row security flags and policies.
    FOR r IN SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
              WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind IN ('r', 'p') AND (c.relrowsecurity OR c.relforcerowsecurity)
              ORDER BY 1 LOOP
        phase := 'row security'; object := format('table %I', r.relname);
        IF r.relrowsecurity THEN
            step := step + 1; ddl := format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', target, r.relname);
            RETURN NEXT;
        END IF;
        IF r.relforcerowsecurity THEN
            step := step + 1; ddl := format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', target, r.relname);
            RETURN NEXT;
        END IF;
    END LOOP;
    FOR r IN SELECT p.*, c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
              WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp ORDER BY c.relname, p.polname LOOP
        step := step + 1; phase := 'policy'; object := format('policy %I.%I', r.relname, r.polname);
        ddl := format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s', r.polname, target, r.relname,
                      CASE WHEN r.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                      CASE r.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                      (SELECT string_agg(CASE WHEN g = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g)) END, ', ' ORDER BY o)
                         FROM unnest(r.polroles) WITH ORDINALITY AS u(g, o)),
                      ' USING (' || tenant._clone_sql('expr', r.polrelid, sp, NULL, r.polqual) || ')',
                      ' WITH CHECK (' || tenant._clone_sql('expr', r.polrelid, sp, NULL, r.polwithcheck) || ')');
        RETURN NEXT;
    END LOOP;

    -- Materialized views that are populated in the source, in dependency order: refreshed once the
    -- copy's row security and policies exist (REFRESH reads the tables as the view's owner).
    IF copy_data THEN
        FOR r IN SELECT c.relname FROM pg_temp.qft_clone_nodes q JOIN pg_class c ON c.oid = q.obj
                  WHERE q.cls = 'pg_class'::regclass AND c.relkind = 'm' AND c.relispopulated
                  ORDER BY (SELECT count(*) FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
                             WHERE w.ev_class = c.oid), c.relname LOOP
            step := step + 1; phase := 'refresh'; object := format('materialized view %I', r.relname); args := NULL;
            ddl := format('REFRESH MATERIALIZED VIEW %I.%I', target, r.relname);
            RETURN NEXT;
        END LOOP;
    END IF;

    -- Comments on every object that has one.
    FOR r IN SELECT d.classoid, d.objoid, d.objsubid, d.description FROM tenant._clone_objects(nsp) o
               JOIN pg_description d ON d.classoid = o.classid AND d.objoid = o.objid
              ORDER BY d.classoid, d.objoid, d.objsubid LOOP
        tq := CASE
            WHEN r.classoid = 'pg_namespace'::regclass THEN format('SCHEMA %I', target)
            WHEN r.classoid = 'pg_class'::regclass THEN
                (SELECT CASE WHEN r.objsubid <> 0 THEN format('COLUMN %I.%I.%I', target, c.relname,
                                                              (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = r.objsubid))
                             ELSE format('%s %I.%I', CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE' WHEN 'v' THEN 'VIEW'
                                                     WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'c' THEN 'TYPE'
                                                     WHEN 'i' THEN 'INDEX' WHEN 'I' THEN 'INDEX' ELSE 'TABLE' END, target, c.relname) END
                   FROM pg_class c WHERE c.oid = r.objoid)
            WHEN r.classoid = 'pg_type'::regclass THEN
                (SELECT format('%s %I.%I', CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, target, t.typname)
                   FROM pg_type t WHERE t.oid = r.objoid)
            WHEN r.classoid = 'pg_proc'::regclass THEN
                (SELECT format('%s %I.%I(%s)', CASE WHEN p.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, target, p.proname,
                               tenant._clone_sql('identity arguments', p.oid, sp))
                   FROM pg_proc p WHERE p.oid = r.objoid)
            WHEN r.classoid = 'pg_constraint'::regclass THEN
                (SELECT CASE WHEN k.contypid <> 0 THEN format('CONSTRAINT %I ON DOMAIN %I.%I', k.conname, target, t.typname)
                             ELSE format('CONSTRAINT %I ON %I.%I', k.conname, target, c.relname) END
                   FROM pg_constraint k LEFT JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_type t ON t.oid = k.contypid
                  WHERE k.oid = r.objoid)
            WHEN r.classoid = 'pg_trigger'::regclass THEN
                (SELECT format('TRIGGER %I ON %I.%I', g.tgname, target, c.relname)
                   FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid WHERE g.oid = r.objoid)
            WHEN r.classoid = 'pg_policy'::regclass THEN
                (SELECT format('POLICY %I ON %I.%I', p.polname, target, c.relname)
                   FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.oid = r.objoid)
            WHEN r.classoid = 'pg_rewrite'::regclass THEN
                (SELECT format('RULE %I ON %I.%I', w.rulename, target, c.relname)
                   FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class WHERE w.oid = r.objoid)
            WHEN r.classoid = 'pg_statistic_ext'::regclass THEN
                (SELECT format('STATISTICS %I.%I', target, x.stxname) FROM pg_statistic_ext x WHERE x.oid = r.objoid)
            END;
        IF tq IS NULL THEN
            RAISE EXCEPTION 'cannot clone the comment on %', pg_describe_object(r.classoid, r.objoid, r.objsubid)
                USING ERRCODE = '0A000';
        END IF;
        step := step + 1; phase := 'comment'; object := tq;
        ddl := format('COMMENT ON %s IS %L', tq, r.description);
        RETURN NEXT;
    END LOOP;

    -- Privileges (after the owners, which every object step set).
    phase := 'grant';
    ddl := 'SELECT tenant._clone_sync_acl($1[1], $1[2], $1[3]::pg_catalog.aclitem[], $1[4], $1[5])';
    FOR r IN SELECT c.relname, c.relkind, c.relacl FROM pg_class c
              WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY 1 LOOP
        step := step + 1; object := format('relation %I', r.relname);
        args := ARRAY[CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, format('%I.%I', target, r.relname), r.relacl::text, NULL, tp];
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT c.relname, a.attname, a.attacl FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE c.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_class'::regclass))::oid[]) AND c.relnamespace = nsp AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attacl IS NOT NULL ORDER BY 1, a.attnum LOOP
        step := step + 1; object := format('column %I.%I', r.relname, r.attname);
        args := ARRAY['TABLE', format('%I.%I', target, r.relname), r.attacl::text, r.attname, tp];
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT p.oid, p.proname, p.prokind, p.proacl, p.proargtypes FROM pg_proc p WHERE p.oid = ANY ((SELECT tenant._clone_oids(nsp, 'pg_proc'::regclass))::oid[]) AND p.pronamespace = nsp ORDER BY 2, 1 LOOP
        step := step + 1; object := format('function %I', r.proname);
        args := ARRAY[CASE WHEN r.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                      format('%I.%I(%s)', target, r.proname, tenant._clone_sql('argument types', r.oid, sp)), r.proacl::text, NULL, tp];
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT q.obj, t.typname, t.typtype, t.typacl FROM pg_temp.qft_clone_nodes q JOIN pg_type t ON t.oid = q.obj
              WHERE q.cls = 'pg_type'::regclass ORDER BY 2 LOOP
        step := step + 1; object := format('type %I', r.typname);
        args := ARRAY[CASE WHEN r.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, format('%I.%I', target, r.typname), r.typacl::text, NULL, tp];
        RETURN NEXT;
    END LOOP;
    -- Default privileges for objects created later in the schema.
    phase := 'grant'; args := NULL;
    FOR r IN SELECT a.defaclrole, a.defaclobjtype, e.grantee, e.privilege_type, e.is_grantable
               FROM pg_default_acl a, aclexplode(CASE WHEN cardinality(a.defaclacl) > 0 THEN a.defaclacl END) e
              WHERE a.defaclnamespace = nsp ORDER BY 1, 2, 3, 4 LOOP
        step := step + 1; object := format('default privileges for %I', pg_get_userbyid(r.defaclrole));
        ddl := format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT %s ON %s TO %s%s',
                      pg_get_userbyid(r.defaclrole), target, r.privilege_type,
                      CASE r.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' ELSE 'TYPES' END,
                      CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                      CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        RETURN NEXT;
    END LOOP;

    step := step + 1; phase := 'schema'; object := format('schema %I', target); args := NULL;
    ddl := format('ALTER SCHEMA %I OWNER TO %I', target, (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE oid = nsp));
    RETURN NEXT;
    step := step + 1; phase := 'grant';
    ddl := 'SELECT tenant._clone_sync_acl($1[1], $1[2], $1[3]::pg_catalog.aclitem[], $1[4], $1[5])';
    args := ARRAY['SCHEMA', target::text, (SELECT nspacl::text FROM pg_namespace WHERE oid = nsp), NULL, tp];
    RETURN NEXT;
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

-- Runs the plan of tenant._clone_plan step by step, with automatic isolation of new tables off
-- (the clone copies the source's policies, no more; restored on return). A failing step is
-- reported with its SQLSTATE and statement.
--
-- The copy is built with the caller's rights, never with the extension owner's: the target schema
-- belongs to the caller while it is built (clone_schema creates it so), and every statement that
-- can evaluate a user-shaped expression — CREATE TABLE (generated columns), ADD CONSTRAINT (CHECK
-- validation, index builds), ALTER DOMAIN, CREATE INDEX, REFRESH, setval — runs as the caller in a
-- security-restricted operation (tenant._exec_as), so a function planted in the template gains
-- nothing. Rows are copied as each table's owner (tenant._copy_rows: the caller, until the end).
-- The extension owner runs only what evaluates nothing: the ownership transfers (deferred to the
-- end, since the caller must own what it still alters), foreign keys (the caller may lack
-- REFERENCES on tables outside the schema; the key check runs as the referenced table's owner),
-- grants and the schema's owner.
CREATE OR REPLACE FUNCTION tenant._clone_execute(source name, target name, copy_data boolean) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    n integer := 0;
    tp text := format('%I, pg_catalog, pg_temp', target);
    builder oid := tenant._caller();
    owner_steps text[] := '{}';
    owner_objects text[] := '{}';
    i integer;
BEGIN
    -- Load the library first so that the setting below is its own, not a placeholder it would discard.
    PERFORM tenant.cross_tenant_active();
    PERFORM set_config('qualityfoundry_tenant.auto_isolate', 'off', true);
    -- The plan is computed in full before the first step runs.
    FOR s IN SELECT * FROM tenant._clone_plan(source, target, copy_data) p ORDER BY p.step LOOP
        n := n + 1;
        IF s.ddl ~ '^ALTER (TABLE|VIEW|MATERIALIZED VIEW|SEQUENCE|TYPE|DOMAIN|FUNCTION|PROCEDURE|STATISTICS) .* OWNER TO ("([^"]|"")+"|[^" ]+)$' THEN
            owner_steps := owner_steps || s.ddl;
            owner_objects := owner_objects || s.object;
            CONTINUE;
        END IF;
        IF s.phase IN ('grant', 'schema') THEN
            FOR i IN 1 .. cardinality(owner_steps) LOOP
                PERFORM tenant._clone_step(source, owner_objects[i], 'owner', owner_steps[i], NULL, tp, NULL);
            END LOOP;
            owner_steps := '{}';
            owner_objects := '{}';
        END IF;
        PERFORM tenant._clone_step(source, s.object, s.phase, s.ddl, s.args, tp,
                                   CASE WHEN s.phase NOT IN ('grant', 'schema', 'foreign key', 'data') THEN builder END);
    END LOOP;
    FOR i IN 1 .. cardinality(owner_steps) LOOP
        PERFORM tenant._clone_step(source, owner_objects[i], 'owner', owner_steps[i], NULL, tp, NULL);
    END LOOP;
    RETURN n;
END
$$;

-- One step of a clone: as role run_as in a security-restricted operation, or (run_as NULL) as the
-- extension owner; a failure names the step, its SQLSTATE and its statement.
CREATE OR REPLACE FUNCTION tenant._clone_step(source name, object text, phase text, ddl text, args text[], path text,
                                              run_as oid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    err_state text;
    err_msg text;
BEGIN
    IF run_as IS NULL THEN
        PERFORM tenant._clone_run(ddl, args, path);
    ELSE
        PERFORM tenant._exec_as(run_as, ddl, args, path, true, false);
    END IF;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_msg = MESSAGE_TEXT;
    RAISE EXCEPTION 'clone of % failed at % (%): %', quote_ident(source), object, phase, err_msg
        USING ERRCODE = err_state, DETAIL = 'Statement: ' || ddl;
END
$$;

-- Dependencies recorded in pg_depend from objects of schema target on objects of schema source.
CREATE OR REPLACE FUNCTION tenant._clone_source_refs(source name, target name) RETURNS TABLE(object text, depends_on text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_describe_object(d.classid, d.objid, d.objsubid), pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
      FROM pg_depend d
     WHERE (d.classid, d.objid) IN (SELECT o.classid, o.objid FROM pg_namespace n, tenant._clone_objects(n.oid) o WHERE n.nspname = target)
       AND (d.refclassid, d.refobjid) IN (SELECT o.classid, o.objid FROM pg_namespace n, tenant._clone_objects(n.oid) o WHERE n.nspname = source)
     ORDER BY 1, 2
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
    PERFORM tenant._audit('schema_cloned', target::text, NULL, jsonb_build_object('source', source, 'copy_data', copy_data));
END
$$;

CREATE OR REPLACE FUNCTION tenant.clone_schema(source name, target name, copy_data boolean DEFAULT false)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT tenant.clone_schema(source::text, target::text, copy_data) $$;
