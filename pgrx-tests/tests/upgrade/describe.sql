-- Everything that makes up the installed extension, one row per object: its identity and a
-- definition that two databases agree on exactly when the objects are the same. Used by the
-- upgrade test to compare an upgraded database with a fresh install. Besides the extension's
-- members it describes what the extension shaped on user tables: row security flags, policies
-- and tenant-column defaults.
WITH ext AS (
    SELECT e.oid, e.extversion, e.extconfig, e.extcondition, e.extnamespace
    FROM pg_catalog.pg_extension e WHERE e.extname = 'qualityfoundry_tenant'
), members AS (
    SELECT d.classid, d.objid, d.objsubid
    FROM pg_catalog.pg_depend d, ext
    WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = ext.oid
      AND d.deptype = 'e'
), rel AS (
    SELECT c.*, c.oid AS reloid FROM pg_catalog.pg_class c
    WHERE c.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
)
SELECT 'extension' AS object,
       pg_catalog.concat_ws(' | ', ext.extversion, 'schema ' || ext.extnamespace::pg_catalog.regnamespace::text,
           (SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) || ' ' || d.deptype::text, ','
                                         ORDER BY 1)
            FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.objid = ext.oid),
           (SELECT pg_catalog.string_agg(x::pg_catalog.regclass::text, ',' ORDER BY x::pg_catalog.regclass::text)
            FROM pg_catalog.unnest(ext.extconfig) x),
           (SELECT pg_catalog.string_agg(x, ',' ORDER BY x) FROM pg_catalog.unnest(ext.extcondition) x)) AS definition
FROM ext
UNION ALL
-- Functions and procedures: the full definition (language, body, SET clauses, security), ACL,
-- comment.
SELECT 'function ' || p.oid::pg_catalog.regprocedure::text,
       pg_catalog.concat_ws(' | ',
           CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_catalog.pg_get_functiondef(p.oid) END,
           'acl ' || COALESCE(p.proacl::text, 'default'),
           pg_catalog.obj_description(p.oid, 'pg_proc'))
FROM pg_catalog.pg_proc p
WHERE p.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_proc'::pg_catalog.regclass)
UNION ALL
-- Relations: kind, options, ACL, row security, comment; then columns, constraints, indexes,
-- triggers and policies as their own rows.
SELECT 'relation ' || r.reloid::pg_catalog.regclass::text,
       pg_catalog.concat_ws(' | ', r.relkind::text, r.relpersistence::text, r.reloptions::text,
                            'acl ' || COALESCE(r.relacl::text, 'default'),
                            'rls ' || r.relrowsecurity::text || '/' || r.relforcerowsecurity::text,
                            pg_catalog.obj_description(r.reloid, 'pg_class'),
                            CASE WHEN r.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(r.reloid) END)
FROM rel r
UNION ALL
SELECT 'column ' || r.reloid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(a.attname),
       pg_catalog.concat_ws(' | ',
           'position ' || (pg_catalog.row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum))::text,
           pg_catalog.format_type(a.atttypid, a.atttypmod),
           CASE WHEN a.attnotnull THEN 'not null' END,
           CASE a.attidentity WHEN 'a' THEN 'identity always' WHEN 'd' THEN 'identity by default' END,
           CASE WHEN a.attgenerated = 's' THEN 'generated' END,
           'default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid),
           'acl ' || a.attacl::text)
FROM rel r
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.reloid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE r.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'constraint ' || pg_catalog.quote_ident(con.conname) || ' on ' || r.reloid::pg_catalog.regclass::text,
       pg_catalog.pg_get_constraintdef(con.oid)
FROM rel r JOIN pg_catalog.pg_constraint con ON con.conrelid = r.reloid
UNION ALL
SELECT 'index ' || i.indexrelid::pg_catalog.regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid)
FROM rel r JOIN pg_catalog.pg_index i ON i.indrelid = r.reloid
UNION ALL
SELECT 'trigger ' || pg_catalog.quote_ident(t.tgname) || ' on ' || r.reloid::pg_catalog.regclass::text,
       pg_catalog.pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
FROM rel r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.reloid AND NOT t.tgisinternal
UNION ALL
SELECT 'sequence ' || r.reloid::pg_catalog.regclass::text,
       pg_catalog.concat_ws(' ', s.seqtypid::pg_catalog.regtype::text, s.seqstart, s.seqincrement, s.seqmax,
                            s.seqmin, s.seqcache, s.seqcycle)
FROM rel r JOIN pg_catalog.pg_sequence s ON s.seqrelid = r.reloid
UNION ALL
SELECT 'event trigger ' || pg_catalog.quote_ident(e.evtname),
       pg_catalog.concat_ws(' | ', e.evtevent, e.evttags::text, e.evtfoid::pg_catalog.regprocedure::text,
                            e.evtenabled::text)
FROM pg_catalog.pg_event_trigger e
WHERE e.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass)
UNION ALL
SELECT 'schema ' || pg_catalog.quote_ident(n.nspname),
       pg_catalog.concat_ws(' | ', 'owner ' || n.nspowner::pg_catalog.regrole::text, 'acl ' || COALESCE(n.nspacl::text, 'default'),
                            pg_catalog.obj_description(n.oid, 'pg_namespace'))
FROM pg_catalog.pg_namespace n
WHERE n.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass)
   OR n.nspname = 'tenant'
UNION ALL
SELECT 'type ' || t.oid::pg_catalog.regtype::text, t.typtype::text
FROM pg_catalog.pg_type t
WHERE t.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_type'::pg_catalog.regclass)
UNION ALL
-- Anything else the extension owns, by identity only.
SELECT 'member ' || (pg_catalog.pg_identify_object(m.classid, m.objid, m.objsubid)).type || ' '
                  || (pg_catalog.pg_identify_object(m.classid, m.objid, m.objsubid)).identity, ''
FROM members m
WHERE m.classid NOT IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_class'::pg_catalog.regclass,
                        'pg_catalog.pg_event_trigger'::pg_catalog.regclass,
                        'pg_catalog.pg_namespace'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass)
UNION ALL
-- What the extension shaped on user tables (isolated and pinned ones): row security, policies,
-- defaults that call the extension.
SELECT 'user relation ' || c.oid::pg_catalog.regclass::text,
       'rls ' || c.relrowsecurity::text || '/' || c.relforcerowsecurity::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenant')
  AND n.nspname !~ '^pg_toast'
UNION ALL
SELECT 'user policy ' || pg_catalog.quote_ident(pol.polname) || ' on ' || pol.polrelid::pg_catalog.regclass::text,
       pg_catalog.concat_ws(' | ', pol.polcmd::text, CASE WHEN pol.polpermissive THEN 'permissive' ELSE 'restrictive' END,
           (SELECT pg_catalog.string_agg(CASE WHEN x = 0 THEN 'public' ELSE x::pg_catalog.regrole::text END, ',' ORDER BY 1)
            FROM pg_catalog.unnest(pol.polroles) x),
           'using ' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
           'check ' || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid))
FROM pg_catalog.pg_policy pol JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname <> 'tenant'
UNION ALL
SELECT 'user trigger ' || pg_catalog.quote_ident(t.tgname) || ' on ' || t.tgrelid::pg_catalog.regclass::text,
       pg_catalog.pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenant') AND t.tgname LIKE 'qft%' AND NOT t.tgisinternal
UNION ALL
SELECT 'user default ' || a.attrelid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(a.attname),
       pg_catalog.pg_get_expr(d.adbin, d.adrelid)
FROM pg_catalog.pg_attrdef d
JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
JOIN pg_catalog.pg_class c ON c.oid = d.adrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenant')
  AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE '%tenant.%'
ORDER BY 1, 2
