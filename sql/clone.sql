-- Schema cloning: tenant.clone_schema(source, target, copy_data) and tenant.schema_diff(a, b).
--
-- The clone reads the catalogs of the source schema, plans the DDL in dependency order
-- (tenant._clone_plan, which only reads and can be inspected on its own), executes the plan
-- (tenant._clone_execute) and proves the result equal to the source (tenant.schema_diff) and free
-- of references to the source (tenant._clone_source_refs) before it returns; any difference is an
-- error, so the whole clone rolls back.
--
-- Deparsing: catalog text (pg_get_expr, pg_get_constraintdef, pg_get_viewdef, format_type, ...) is
-- produced with search_path = pg_catalog, <source>, pg_temp, so references to objects of the source
-- schema come out unqualified, and executed with search_path = pg_catalog, <target>, pg_temp, so the
-- same text resolves to the target's objects. Where PostgreSQL always qualifies (index and trigger
-- definitions, function headers) and in function bodies (plain text), qualified references to the
-- source are rewritten to the target by tenant._clone_rewrite, which only touches
-- `<schema>.` at an identifier boundary, in the quoted and unquoted spellings.
-- Every identifier is quoted with format('%I') / quote_ident; values are bound with USING, except in
-- COMMENT, which takes no parameters (quote_literal there).

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
              FROM aclexplode(CASE WHEN acl IS NULL AND kind IS NOT NULL THEN acldefault(kind, owner) ELSE acl END) e
              LEFT JOIN pg_roles r ON r.oid = e.grantee) x
$$;

-- Every catalog object that belongs to a schema: its members and their sub-objects (defaults,
-- constraints, triggers, policies, rules), and the schema itself.
CREATE OR REPLACE FUNCTION tenant._clone_objects(nsp oid) RETURNS TABLE(classid oid, objid oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'pg_namespace'::regclass::oid, nsp
    UNION ALL SELECT 'pg_class'::regclass, c.oid FROM pg_class c WHERE c.relnamespace = nsp
    UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t WHERE t.typnamespace = nsp
    UNION ALL SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p WHERE p.pronamespace = nsp
    UNION ALL SELECT 'pg_constraint'::regclass, k.oid FROM pg_constraint k WHERE k.connamespace = nsp
    UNION ALL SELECT 'pg_attrdef'::regclass, d.oid FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid WHERE c.relnamespace = nsp
    UNION ALL SELECT 'pg_trigger'::regclass, g.oid FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid WHERE c.relnamespace = nsp
    UNION ALL SELECT 'pg_policy'::regclass, p.oid FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = nsp
    UNION ALL SELECT 'pg_rewrite'::regclass, r.oid FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = nsp
    UNION ALL SELECT 'pg_statistic_ext'::regclass, s.oid FROM pg_statistic_ext s WHERE s.stxnamespace = nsp
    UNION ALL SELECT 'pg_operator'::regclass, o.oid FROM pg_operator o WHERE o.oprnamespace = nsp
    UNION ALL SELECT 'pg_opclass'::regclass, o.oid FROM pg_opclass o WHERE o.opcnamespace = nsp
    UNION ALL SELECT 'pg_opfamily'::regclass, o.oid FROM pg_opfamily o WHERE o.opfnamespace = nsp
    UNION ALL SELECT 'pg_collation'::regclass, o.oid FROM pg_collation o WHERE o.collnamespace = nsp
    UNION ALL SELECT 'pg_conversion'::regclass, o.oid FROM pg_conversion o WHERE o.connamespace = nsp
    UNION ALL SELECT 'pg_ts_config'::regclass, o.oid FROM pg_ts_config o WHERE o.cfgnamespace = nsp
    UNION ALL SELECT 'pg_ts_dict'::regclass, o.oid FROM pg_ts_dict o WHERE o.dictnamespace = nsp
    UNION ALL SELECT 'pg_ts_parser'::regclass, o.oid FROM pg_ts_parser o WHERE o.prsnamespace = nsp
    UNION ALL SELECT 'pg_ts_template'::regclass, o.oid FROM pg_ts_template o WHERE o.tmplnamespace = nsp
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
      FROM pg_class c WHERE c.relnamespace = nsp AND c.relkind NOT IN ('r', 'p', 'v', 'm', 'S', 'c', 'i', 'I', 't')
    UNION ALL
    SELECT pg_describe_object('pg_proc'::regclass, p.oid, 0)
      FROM pg_proc p WHERE p.pronamespace = nsp AND p.prokind NOT IN ('f', 'p', 'w')
    UNION ALL
    SELECT pg_describe_object('pg_type'::regclass, t.oid, 0)
      FROM pg_type t WHERE t.typnamespace = nsp AND (t.typtype IN ('b', 'p') AND t.typelem = 0 OR NOT t.typisdefined)
    UNION ALL
    SELECT pg_describe_object('pg_type'::regclass, r.rngtypid, 0)
      FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid
     WHERE t.typnamespace = nsp AND (r.rngcanonical <> 0 OR r.rngsubdiff <> 0)
    UNION ALL
    SELECT pg_describe_object('pg_class'::regclass, c.oid, 0) || ' (typed table)'
      FROM pg_class c WHERE c.relnamespace = nsp AND c.reloftype <> 0
    UNION ALL
    SELECT pg_describe_object('pg_class'::regclass, c.oid, 0) || ' (rules)'
      FROM pg_class c WHERE c.relnamespace = nsp AND c.relkind IN ('r', 'p', 'm', 'v')
       AND EXISTS (SELECT FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')
$$;

-- The structure of a schema as (object, detail) rows, deparsed with the schema on the search_path
-- so that its own objects appear unqualified; remaining qualified references to it are replaced
-- by a placeholder. Two schemas with equal rows are structurally equal; a reference from one schema
-- into another shows up qualified, so a clone that still points at its source differs from it.
CREATE OR REPLACE FUNCTION tenant._clone_describe(s name) RETURNS TABLE(object text, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp oid;
BEGIN
    SELECT n.oid INTO nsp FROM pg_namespace n WHERE n.nspname = s;
    IF nsp IS NULL THEN
        RAISE EXCEPTION 'schema % does not exist', coalesce(quote_ident(s), 'NULL') USING ERRCODE = '3F000';
    END IF;
    -- Restored when this function returns (it has a SET clause).
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', s), true);
    RETURN QUERY
    WITH
    rel AS (SELECT c.* FROM pg_class c WHERE c.relnamespace = nsp),
    typ AS (SELECT t.* FROM pg_type t
             WHERE t.typnamespace = nsp AND t.typtype IN ('e', 'd', 'c', 'r')
               AND (t.typtype <> 'c' OR EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))),
    items(object, detail, norm) AS (
        SELECT 'schema', concat_ws('; ', 'owner=' || quote_ident(pg_get_userbyid(n.nspowner)),
                                   'acl=' || tenant._clone_acl_text(n.nspacl, 'n', n.nspowner)), true
          FROM pg_namespace n WHERE n.oid = nsp
        UNION ALL
        SELECT 'type ' || quote_ident(t.typname),
               concat_ws('; ', 'typtype=' || t.typtype::text,
                   CASE t.typtype
                   WHEN 'e' THEN 'labels=' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                 FROM pg_enum e WHERE e.enumtypid = t.oid)
                   WHEN 'd' THEN concat_ws('; ', 'base=' || format_type(t.typbasetype, t.typtypmod),
                                           'notnull=' || t.typnotnull, 'default=' || pg_get_expr(t.typdefaultbin, 0),
                                           'collation=' || t.typcollation::regcollation::text)
                   WHEN 'c' THEN 'attributes=' || (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                                                       || CASE WHEN a.attcollation <> 0 THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END,
                                                       ', ' ORDER BY a.attnum)
                                                     FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
                   WHEN 'r' THEN (SELECT concat_ws('; ', 'subtype=' || format_type(r.rngsubtype, NULL),
                                                   'opclass=' || (SELECT quote_ident(o.opcname) FROM pg_opclass o WHERE o.oid = r.rngsubopc),
                                                   'collation=' || r.rngcollation::regcollation::text,
                                                   'multirange=' || format_type(r.rngmultitypid, NULL))
                                    FROM pg_range r WHERE r.rngtypid = t.oid)
                   END,
                   'owner=' || quote_ident(pg_get_userbyid(t.typowner)),
                   'acl=' || tenant._clone_acl_text(t.typacl, 'T', t.typowner)), true
          FROM typ t
        UNION ALL
        SELECT 'domain constraint ' || quote_ident(t.typname) || '.' || quote_ident(k.conname),
               concat_ws('; ', pg_get_constraintdef(k.oid), 'validated=' || k.convalidated), true
          FROM typ t JOIN pg_constraint k ON k.contypid = t.oid
        UNION ALL
        SELECT CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' WHEN 'S' THEN 'sequence '
                              ELSE 'table ' END || quote_ident(c.relname),
               concat_ws('; ', 'relkind=' || c.relkind::text, 'persistence=' || c.relpersistence::text,
                   'am=' || (SELECT quote_ident(am.amname) FROM pg_am am WHERE am.oid = c.relam),
                   'options=' || array_to_string(c.reloptions, ','),
                   'tablespace=' || (SELECT quote_ident(ts.spcname) FROM pg_tablespace ts WHERE ts.oid = c.reltablespace),
                   'partition by=' || CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
                   'partition of=' || CASE WHEN c.relispartition THEN
                        (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid) || ' '
                        || pg_get_expr(c.relpartbound, c.oid) END,
                   'inherits=' || CASE WHEN NOT c.relispartition THEN
                        (SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid) END,
                   'definition=' || CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
                   CASE WHEN c.relkind = 'S' THEN
                       (SELECT concat_ws('; ', 'as=' || format_type(q.seqtypid, NULL), 'start=' || q.seqstart,
                                         'increment=' || q.seqincrement, 'min=' || q.seqmin, 'max=' || q.seqmax,
                                         'cache=' || q.seqcache, 'cycle=' || q.seqcycle)
                          FROM pg_sequence q WHERE q.seqrelid = c.oid) END,
                   'owned by=' || (SELECT d.deptype::text || ':' || d.refobjid::regclass::text || '.' || quote_ident(a.attname)
                                    FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND c.relkind = 'S'
                                     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')),
                   CASE WHEN c.relkind IN ('r', 'p') THEN concat_ws('; ', 'rls=' || c.relrowsecurity,
                        'force rls=' || c.relforcerowsecurity, 'replica identity=' || c.relreplident::text) END,
                   'owner=' || quote_ident(pg_get_userbyid(c.relowner)),
                   'acl=' || tenant._clone_acl_text(c.relacl, CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner)), true
          FROM rel c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        UNION ALL
        SELECT 'column ' || quote_ident(c.relname) || '.' || quote_ident(a.attname),
               concat_ws('; ', 'position=' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                   'type=' || format_type(a.atttypid, a.atttypmod),
                   'collation=' || CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END,
                   'notnull=' || a.attnotnull,
                   'default=' || CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                   'identity=' || nullif(a.attidentity::text, ''),
                   'generated=' || CASE WHEN a.attgenerated <> '' THEN a.attgenerated::text || ' ' || pg_get_expr(d.adbin, d.adrelid) END,
                   'storage=' || a.attstorage::text, 'compression=' || nullif(a.attcompression::text, ''),
                   'statistics=' || a.attstattarget, 'options=' || array_to_string(a.attoptions, ','),
                   'local=' || a.attislocal, 'inherited=' || a.attinhcount,
                   'acl=' || nullif(tenant._clone_acl_text(a.attacl, NULL, c.relowner), '')), true
          FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
        UNION ALL
        SELECT 'constraint ' || quote_ident(c.relname) || '.' || quote_ident(k.conname),
               concat_ws('; ', 'type=' || k.contype::text, pg_get_constraintdef(k.oid), 'validated=' || k.convalidated,
                   'local=' || k.conislocal, 'inherited=' || k.coninhcount,
                   'parent=' || (SELECT p.conname FROM pg_constraint p WHERE p.oid = k.conparentid)), true
          FROM rel c JOIN pg_constraint k ON k.conrelid = c.oid
        UNION ALL
        SELECT 'index ' || quote_ident(c.relname),
               concat_ws('; ', pg_get_indexdef(x.indexrelid), 'clustered=' || x.indisclustered,
                   'replica identity=' || x.indisreplident, 'valid=' || x.indisvalid,
                   'attached to=' || (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid)), true
          FROM rel c JOIN pg_index x ON x.indexrelid = c.oid
        UNION ALL
        SELECT 'trigger ' || quote_ident(c.relname) || '.' || quote_ident(g.tgname),
               concat_ws('; ', pg_get_triggerdef(g.oid), 'enabled=' || g.tgenabled::text), true
          FROM rel c JOIN pg_trigger g ON g.tgrelid = c.oid AND NOT g.tgisinternal
        UNION ALL
        SELECT 'policy ' || quote_ident(c.relname) || '.' || quote_ident(p.polname),
               concat_ws('; ', 'permissive=' || p.polpermissive, 'command=' || p.polcmd::text,
                   'roles=' || (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ',' ORDER BY 1)
                                  FROM unnest(p.polroles) r),
                   'using=' || pg_get_expr(p.polqual, p.polrelid), 'with check=' || pg_get_expr(p.polwithcheck, p.polrelid)), true
          FROM rel c JOIN pg_policy p ON p.polrelid = c.oid
        UNION ALL
        SELECT 'rule ' || quote_ident(c.relname) || '.' || quote_ident(r.rulename), pg_get_ruledef(r.oid), true
          FROM rel c JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename <> '_RETURN'
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END || quote_ident(p.proname)
                   || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               concat_ws('; ', 'kind=' || p.prokind::text,
                   CASE WHEN p.prokind <> 'a' THEN concat_ws('; ',
                       'arguments=' || pg_get_function_arguments(p.oid), 'result=' || pg_get_function_result(p.oid),
                       'language=' || (SELECT quote_ident(l.lanname) FROM pg_language l WHERE l.oid = p.prolang),
                       'volatility=' || p.provolatile::text, 'strict=' || p.proisstrict, 'security definer=' || p.prosecdef,
                       'leakproof=' || p.proleakproof, 'parallel=' || p.proparallel::text, 'cost=' || p.procost,
                       'rows=' || p.prorows, 'support=' || nullif(p.prosupport, 0)::regproc::text,
                       'config=' || array_to_string(tenant._clone_config(p.proconfig, s, NULL), ','),
                       'body=' || coalesce(pg_get_function_sqlbody(p.oid), p.prosrc), 'bin=' || p.probin) END,
                   'owner=' || quote_ident(pg_get_userbyid(p.proowner)),
                   'acl=' || tenant._clone_acl_text(p.proacl, 'f', p.proowner)), true
          FROM pg_proc p WHERE p.pronamespace = nsp
        UNION ALL
        SELECT 'statistics ' || quote_ident(x.stxname),
               concat_ws('; ', pg_get_statisticsobjdef(x.oid), 'target=' || x.stxstattarget,
                   'owner=' || quote_ident(pg_get_userbyid(x.stxowner))), true
          FROM pg_statistic_ext x WHERE x.stxnamespace = nsp
        UNION ALL
        SELECT 'comment on ' || CASE WHEN o.classid = 'pg_namespace'::regclass THEN 'schema'
                                    ELSE i.type || ' ' || i.identity END,
               d.description, false
          FROM tenant._clone_objects(nsp) o
          JOIN pg_description d ON d.classoid = o.classid AND d.objoid = o.objid
          CROSS JOIN LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) i
    )
    SELECT tenant._clone_normalise(items.object, s),
           CASE WHEN items.norm THEN tenant._clone_normalise(items.detail, s) ELSE items.detail END
      FROM items;
END
$$;

-- Structural differences between schemas a and b, names of b's objects compared with the schema
-- part normalised, so a clone compares equal to its source. No rows: equal.
CREATE OR REPLACE FUNCTION tenant.schema_diff(a name, b name) RETURNS TABLE(object text, difference text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF a IS NULL OR NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = a) THEN
        RAISE EXCEPTION 'schema % does not exist', coalesce(quote_ident(a), 'NULL') USING ERRCODE = '3F000';
    END IF;
    IF b IS NULL OR NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = b) THEN
        RAISE EXCEPTION 'schema % does not exist', coalesce(quote_ident(b), 'NULL') USING ERRCODE = '3F000';
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS pg_temp.qft_clone_describe_a (object text, detail text) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS pg_temp.qft_clone_describe_b (object text, detail text) ON COMMIT DROP;
    DELETE FROM pg_temp.qft_clone_describe_a;
    DELETE FROM pg_temp.qft_clone_describe_b;
    INSERT INTO pg_temp.qft_clone_describe_a SELECT * FROM tenant._clone_describe(a);
    INSERT INTO pg_temp.qft_clone_describe_b SELECT * FROM tenant._clone_describe(b);
    RETURN QUERY
    SELECT coalesce(x.object, y.object),
           CASE WHEN y.object IS NULL THEN format('only in %I: %s', a, x.detail)
                WHEN x.object IS NULL THEN format('only in %I: %s', b, y.detail)
                ELSE format('%I: %s | %I: %s', a, x.detail, b, y.detail) END
      FROM pg_temp.qft_clone_describe_a x
      FULL JOIN pg_temp.qft_clone_describe_b y ON y.object = x.object
     WHERE x.detail IS DISTINCT FROM y.detail OR x.object IS NULL OR y.object IS NULL
     ORDER BY 1, 2;
END
$$;
