-- The catalog reader of the schema engine (src/catalog/mod.rs prepares it once per backend and
-- runs it with search_path = pg_catalog, pg_temp, jit = off and a generic plan): each catalog read
-- once for one schema ($1, its oid), the rows returned as one json text, with oids and node trees;
-- the Rust adapter then deparses them (PostgreSQL's pg_get_* functions, with the schema on
-- search_path) into the model. No name in it resolves to anything in the schema it reads.
--
-- Objects of the schema are found through pg_depend (indexed by referenced object), not through
-- namespace columns, which have no index: the cost follows the schema's size, not the database's.
-- jit off: in a database with many schemas the planner's estimates for the catalogs pass
-- jit_above_cost, and compiling this query's ~900 expressions took seconds where running it
-- takes milliseconds (PostgreSQL 15 with LLVM, 200 schemas: 5.8 s against 0.07 s). A kept generic
-- plan: planning it costs about a third of running it, and a clone reads twice (source and copy),
-- schema_drift once per schema.
WITH ns AS MATERIALIZED (
    SELECT d.classid, d.objid FROM pg_depend d
     WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = $1 AND d.refobjsubid = 0 AND d.deptype = 'n'
), rel AS MATERIALIZED (
    SELECT c.* FROM pg_class c
     WHERE c.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_class'::regclass) AND c.relnamespace = $1
), typ AS MATERIALIZED (
    SELECT t.* FROM pg_type t
     WHERE t.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_type'::regclass) AND t.typnamespace = $1
), prc AS MATERIALIZED (
    SELECT p.* FROM pg_proc p
     WHERE p.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_proc'::regclass) AND p.pronamespace = $1
), idx AS MATERIALIZED (
    SELECT x.*, i.relname, i.relkind FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
     WHERE x.indrelid IN (SELECT rel.oid FROM rel)
), con AS MATERIALIZED (
    -- PostgreSQL 18 also lists NOT NULL as constraints (contype n): the model has them as the
    -- column's not-null (their names, NO INHERIT and NOT VALID are not modelled yet).
    SELECT k.* FROM pg_constraint k WHERE k.conrelid IN (SELECT rel.oid FROM rel) AND k.contype <> 'n'
    UNION ALL
    SELECT k.* FROM pg_constraint k WHERE k.conrelid = 0 AND k.contypid IN (SELECT typ.oid FROM typ) AND k.contype <> 'n'
), opf AS MATERIALIZED (
    SELECT f.* FROM pg_opfamily f
     WHERE f.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_opfamily'::regclass) AND f.opfnamespace = $1
), opc AS MATERIALIZED (
    SELECT c.* FROM pg_opclass c
     WHERE c.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_opclass'::regclass) AND c.opcnamespace = $1
), amop AS MATERIALIZED (
    SELECT a.*, (SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_amop'::regclass AND d.objid = a.oid
                    AND d.refclassid = 'pg_opclass'::regclass AND d.deptype = 'i' LIMIT 1) AS class
      FROM pg_amop a WHERE a.amopfamily IN (SELECT opf.oid FROM opf)
), amproc AS MATERIALIZED (
    SELECT a.*, (SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_amproc'::regclass AND d.objid = a.oid
                    AND d.refclassid = 'pg_opclass'::regclass AND d.deptype = 'i' LIMIT 1) AS class
      FROM pg_amproc a WHERE a.amprocfamily IN (SELECT opf.oid FROM opf)
), links AS MATERIALIZED (
    -- Types that stand for another object of the schema: row types (and their arrays) for their
    -- relation, arrays for their element type, multiranges for their range.
    SELECT c.reltype AS oid, 'pg_class' AS to_class, c.oid AS "to" FROM rel c WHERE c.reltype <> 0
    UNION ALL SELECT t.typarray, 'pg_type', t.oid FROM typ t WHERE t.typarray <> 0
    UNION ALL SELECT r.typarray, 'pg_type', r.oid FROM pg_type r WHERE r.oid IN (SELECT c.reltype FROM rel c) AND r.typarray <> 0
    UNION ALL SELECT g.rngmultitypid, 'pg_type', g.rngtypid FROM pg_range g WHERE g.rngtypid IN (SELECT typ.oid FROM typ)
    UNION ALL SELECT m.typarray, 'pg_type', m.oid FROM pg_type m
     WHERE m.oid IN (SELECT g.rngmultitypid FROM pg_range g WHERE g.rngtypid IN (SELECT typ.oid FROM typ)) AND m.typarray <> 0
), objs AS MATERIALIZED (
    SELECT ns.classid, ns.objid FROM ns
    UNION ALL SELECT 'pg_class'::regclass::oid, t.typrelid FROM typ t WHERE t.typrelid <> 0
    UNION ALL SELECT 'pg_class'::regclass::oid, idx.indexrelid FROM idx
    UNION ALL SELECT 'pg_constraint'::regclass::oid, con.oid FROM con
    UNION ALL SELECT 'pg_attrdef'::regclass::oid, d.oid FROM pg_attrdef d WHERE d.adrelid IN (SELECT rel.oid FROM rel)
    UNION ALL SELECT 'pg_rewrite'::regclass::oid, r.oid FROM pg_rewrite r WHERE r.ev_class IN (SELECT rel.oid FROM rel)
    UNION ALL SELECT 'pg_amop'::regclass::oid, amop.oid FROM amop
    UNION ALL SELECT 'pg_amproc'::regclass::oid, amproc.oid FROM amproc
    UNION ALL SELECT 'pg_type'::regclass::oid, l.oid FROM links l
    -- (Only as dependers: a clone checks that none of its copy's objects depends on its source.)
    UNION ALL SELECT 'pg_trigger'::regclass::oid, g.oid FROM pg_trigger g
               WHERE g.tgrelid IN (SELECT rel.oid FROM rel) AND NOT g.tgisinternal
    UNION ALL SELECT 'pg_policy'::regclass::oid, p.oid FROM pg_policy p WHERE p.polrelid IN (SELECT rel.oid FROM rel)
)
SELECT json_build_object(
'schema', (SELECT json_build_object('oid', n.oid, 'name', n.nspname, 'owner', pg_get_userbyid(n.nspowner),
                                     'acl', tenant._catalog_acl(n.nspacl), 'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = n.oid AND ds.classoid = 'pg_namespace'::regclass AND ds.objsubid = 0))
             FROM pg_namespace n WHERE n.oid = $1),
'default_acls', (SELECT coalesce(json_agg(json_build_object('role', pg_get_userbyid(a.defaclrole), 'objtype', a.defaclobjtype,
                                          'acl', tenant._catalog_acl(a.defaclacl)) ORDER BY a.defaclrole, a.defaclobjtype), '[]')
                   FROM pg_default_acl a WHERE a.defaclnamespace = $1),
'relations', (SELECT coalesce(json_agg(json_build_object(
        'oid', c.oid, 'name', c.relname, 'kind', c.relkind, 'persistence', c.relpersistence,
        'am', (SELECT am.amname FROM pg_am am WHERE am.oid = c.relam),
        'options', coalesce(c.reloptions, '{}'),
        'toast_options', coalesce((SELECT t.reloptions FROM pg_class t WHERE t.oid = c.reltoastrelid), '{}'),
        'tablespace', (SELECT ts.spcname FROM pg_tablespace ts WHERE ts.oid = c.reltablespace),
        'is_partition', c.relispartition, 'partbound', c.relpartbound::text,
        'parents', (SELECT coalesce(json_agg(tenant._catalog_ref(p.relnamespace, p.relname, $1) ORDER BY i.inhseqno), '[]')
                      FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhrelid = c.oid),
        'children_elsewhere', (SELECT coalesce(json_agg(tenant._catalog_ref(ch.relnamespace, ch.relname, $1) ORDER BY ch.relname), '[]')
                                 FROM pg_inherits i JOIN pg_class ch ON ch.oid = i.inhrelid
                                WHERE i.inhparent = c.oid AND ch.relnamespace <> $1 AND ch.relispartition),
        'typed', c.reloftype <> 0,
        'row_security', c.relrowsecurity, 'force_row_security', c.relforcerowsecurity, 'replident', c.relreplident,
        'populated', c.relispopulated,
        'owner', pg_get_userbyid(c.relowner), 'acl', tenant._catalog_acl(c.relacl),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = c.oid AND ds.classoid = 'pg_class'::regclass AND ds.objsubid = 0))), '[]') FROM rel c),
-- Relations, attributes, constraints, indexes and sequences in no particular order: the model
-- sorts them by name (Schema::normalize) and the adapter each relation's columns by number, so
-- the aggregates here need not sort thousands of json objects.
'attributes', (SELECT coalesce(json_agg(json_build_object(
        'rel', a.attrelid, 'num', a.attnum, 'name', a.attname, 'typid', a.atttypid, 'typmod', a.atttypmod,
        'collation', a.attcollation, 'type_collation', t.typcollation, 'not_null', a.attnotnull,
        -- PostgreSQL 18: the column's NOT NULL constraint (none before).
        'nn', (SELECT json_build_object('name', k.conname, 'no_inherit', k.connoinherit, 'validated', k.convalidated,
                                         'local', k.conislocal)
                 FROM pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype = 'n' AND k.conkey[1] = a.attnum),
        'default_oid', d.oid, 'default', d.adbin::text, 'identity', a.attidentity, 'generated', a.attgenerated,
        'storage', a.attstorage, 'type_storage', t.typstorage, 'compression', a.attcompression,
        'statistics', coalesce(a.attstattarget::integer, -1), 'options', coalesce(a.attoptions, '{}'), 'local', a.attislocal,
        'inherited', a.attinhcount, 'acl', tenant._catalog_acl(a.attacl),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = a.attrelid AND ds.classoid = 'pg_class'::regclass AND ds.objsubid = a.attnum))), '[]')
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped
       -- One IN over both sets, not an OR of two: an OR makes PostgreSQL 15 scan pg_attribute
       -- (and hash all of pg_attrdef and pg_type) instead of probing its index per relation.
       -- Not a sequence's (its columns are the same for every sequence, and not in the model).
       AND a.attrelid IN (SELECT rel.oid FROM rel WHERE rel.relkind <> 'S'
                          UNION SELECT typ.typrelid FROM typ WHERE typ.typtype = 'c')),
-- (Domain NOT NULL constraints, in pg_constraint from PostgreSQL 17 on, are the domain's typnotnull.)
'constraints', (SELECT coalesce(json_agg(json_build_object(
        'oid', k.oid, 'rel', k.conrelid, 'typ', k.contypid, 'name', k.conname, 'kind', k.contype,
        'validated', k.convalidated, 'local', k.conislocal, 'inherited', k.coninhcount,
        'parent', (SELECT p.conname FROM pg_constraint p WHERE p.oid = k.conparentid),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = k.oid AND ds.classoid = 'pg_constraint'::regclass AND ds.objsubid = 0))), '[]') FROM con k),
'indexes', (SELECT coalesce(json_agg(json_build_object(
        'oid', x.indexrelid, 'rel', x.indrelid, 'name', x.relname, 'unique', x.indisunique, 'partitioned', x.relkind = 'I',
        'constraint', (SELECT k.conname FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid
                          AND k.contype IN ('p', 'u', 'x')),
        'clustered', x.indisclustered, 'replident', x.indisreplident, 'valid', x.indisvalid,
        'parent', (SELECT tenant._catalog_ref(p.relnamespace, p.relname, $1) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                    WHERE i.inhrelid = x.indexrelid),
        'statistics', (SELECT coalesce(json_agg(json_build_object('column', a.attnum, 'target', a.attstattarget::integer) ORDER BY a.attnum), '[]')
                         FROM pg_attribute a WHERE a.attrelid = x.indexrelid AND a.attnum > 0 AND coalesce(a.attstattarget::integer, -1) >= 0),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = x.indexrelid AND ds.classoid = 'pg_class'::regclass AND ds.objsubid = 0))), '[]') FROM idx x),
'triggers', (SELECT coalesce(json_agg(json_build_object(
        'oid', g.oid, 'rel', g.tgrelid, 'name', g.tgname, 'enabled', g.tgenabled, 'from_parent', g.tgparentid <> 0,
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = g.oid AND ds.classoid = 'pg_trigger'::regclass AND ds.objsubid = 0)) ORDER BY g.tgrelid, g.tgname), '[]')
      FROM pg_trigger g WHERE g.tgrelid IN (SELECT rel.oid FROM rel) AND NOT g.tgisinternal
       AND g.tgname !~~ 'qft\_%'),  -- the extension's own (quota guards): isolation and pinning add them, as the pins
'policies', (SELECT coalesce(json_agg(json_build_object(
        'rel', p.polrelid, 'name', p.polname, 'permissive', p.polpermissive, 'command', p.polcmd,
        'roles', (SELECT coalesce(json_agg(CASE WHEN r = 0 THEN NULL ELSE pg_get_userbyid(r) END ORDER BY r), '[]') FROM unnest(p.polroles) r),
        'using', p.polqual::text, 'with_check', p.polwithcheck::text,
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = p.oid AND ds.classoid = 'pg_policy'::regclass AND ds.objsubid = 0)) ORDER BY p.polrelid, p.polname), '[]')
      FROM pg_policy p WHERE p.polrelid IN (SELECT rel.oid FROM rel)),
'rules', (SELECT coalesce(json_agg(json_build_object(
        'oid', r.oid, 'rel', r.ev_class, 'name', r.rulename, 'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = r.oid AND ds.classoid = 'pg_rewrite'::regclass AND ds.objsubid = 0)) ORDER BY r.ev_class, r.rulename), '[]')
      FROM pg_rewrite r WHERE r.ev_class IN (SELECT rel.oid FROM rel) AND r.rulename <> '_RETURN'),
'view_rules', (SELECT coalesce(json_agg(json_build_object('oid', r.oid, 'rel', r.ev_class)), '[]')
      FROM pg_rewrite r WHERE r.ev_class IN (SELECT rel.oid FROM rel) AND r.rulename = '_RETURN'),
'sequences', (SELECT coalesce(json_agg(json_build_object(
        'rel', q.seqrelid, 'typid', q.seqtypid, 'start', q.seqstart, 'increment', q.seqincrement, 'min', q.seqmin,
        'max', q.seqmax, 'cache', q.seqcache, 'cycle', q.seqcycle,
        'owned_by', (SELECT json_build_object('rel', d.refobjid, 'table', t.relname, 'same_schema', t.relnamespace = $1,
                                               'column', a.attname, 'identity', d.deptype = 'i')
                       FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = q.seqrelid AND d.refclassid = 'pg_class'::regclass
                        AND d.deptype IN ('a', 'i') LIMIT 1))), '[]')
      FROM pg_sequence q WHERE q.seqrelid IN (SELECT rel.oid FROM rel)),
'types', (SELECT coalesce(json_agg(json_build_object(
        'oid', t.oid, 'name', t.typname, 'kind', t.typtype, 'defined', t.typisdefined, 'relid', t.typrelid,
        'relkind', (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid),
        'elem', t.typelem, 'is_array', EXISTS (SELECT FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid),
        'basetype', t.typbasetype, 'typmod', t.typtypmod, 'not_null', t.typnotnull,
        'not_null_name', (SELECT k.conname FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'n'),
        'default', t.typdefaultbin::text,
        'collation', t.typcollation, 'base_collation', (SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype),
        'labels', (SELECT coalesce(json_agg(e.enumlabel ORDER BY e.enumsortorder), '[]') FROM pg_enum e WHERE e.enumtypid = t.oid),
        'range', (SELECT json_build_object('subtype', r.rngsubtype, 'collation', r.rngcollation,
                                            'opclass', (SELECT tenant._catalog_ref(o.opcnamespace, o.opcname, $1) FROM pg_opclass o WHERE o.oid = r.rngsubopc),
                                            'canonical', r.rngcanonical::oid, 'subdiff', r.rngsubdiff::oid,
                                            'multirange', (SELECT m.typname FROM pg_type m WHERE m.oid = r.rngmultitypid))
                    FROM pg_range r WHERE r.rngtypid = t.oid),
        'multirange_of', (SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = t.oid),
        'owner', pg_get_userbyid(t.typowner), 'acl', tenant._catalog_acl(t.typacl),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = t.oid AND ds.classoid = 'pg_type'::regclass AND ds.objsubid = 0)) ORDER BY t.typname), '[]') FROM typ t),
'type_links', (SELECT coalesce(json_agg(json_build_object('oid', l.oid, 'to_class', l.to_class, 'to', l."to")), '[]') FROM links l),
'functions', (SELECT coalesce(json_agg(json_build_object(
        'oid', p.oid, 'name', p.proname, 'kind', p.prokind,
        'language', (SELECT l.lanname FROM pg_language l WHERE l.oid = p.prolang),
        'volatility', p.provolatile, 'strict', p.proisstrict, 'security_definer', p.prosecdef, 'leakproof', p.proleakproof,
        'parallel', p.proparallel, 'cost', p.procost::text, 'rows', p.prorows::text, 'support', p.prosupport::oid,
        'config', coalesce(p.proconfig, '{}'), 'src', p.prosrc, 'bin', p.probin, 'sqlbody', p.prosqlbody IS NOT NULL,
        'transforms', p.protrftypes IS NOT NULL,
        'type_owner', (SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.refclassid = 'pg_type'::regclass AND d.deptype = 'i' LIMIT 1),
        'aggregate', (SELECT json_build_object('kind', g.aggkind, 'direct', g.aggnumdirectargs,
                          'transfn', g.aggtransfn::oid, 'finalfn', g.aggfinalfn::oid, 'combinefn', g.aggcombinefn::oid,
                          'serialfn', g.aggserialfn::oid, 'deserialfn', g.aggdeserialfn::oid, 'mtransfn', g.aggmtransfn::oid,
                          'minvtransfn', g.aggminvtransfn::oid, 'mfinalfn', g.aggmfinalfn::oid, 'finalextra', g.aggfinalextra,
                          'mfinalextra', g.aggmfinalextra, 'finalmodify', g.aggfinalmodify, 'mfinalmodify', g.aggmfinalmodify,
                          'sortop', (SELECT json_build_object('schema', n.nspname, 'name', o.oprname) FROM pg_operator o
                                       JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE o.oid = g.aggsortop),
                          'transtype', g.aggtranstype, 'transspace', g.aggtransspace,
                          'mtranstype', g.aggmtranstype, 'mtransspace', g.aggmtransspace,
                          'initval', g.agginitval, 'minitval', g.aggminitval)
                        FROM pg_aggregate g WHERE g.aggfnoid = p.oid),
        'owner', pg_get_userbyid(p.proowner), 'acl', tenant._catalog_acl(p.proacl),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = p.oid AND ds.classoid = 'pg_proc'::regclass AND ds.objsubid = 0)) ORDER BY p.proname, p.oid), '[]') FROM prc p),
'operators', (SELECT coalesce(json_agg(json_build_object(
        'oid', o.oid, 'name', o.oprname, 'left', o.oprleft, 'right', o.oprright, 'result', o.oprresult,
        'function', o.oprcode::oid, 'restrict', o.oprrest::oid, 'join', o.oprjoin::oid,
        'commutator', (SELECT json_build_object('schema', n.nspname, 'name', c.oprname) FROM pg_operator c
                         JOIN pg_namespace n ON n.oid = c.oprnamespace WHERE c.oid = o.oprcom),
        'negator', (SELECT json_build_object('schema', n.nspname, 'name', c.oprname) FROM pg_operator c
                      JOIN pg_namespace n ON n.oid = c.oprnamespace WHERE c.oid = o.oprnegate),
        'hashes', o.oprcanhash, 'merges', o.oprcanmerge, 'owner', pg_get_userbyid(o.oprowner),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = o.oid AND ds.classoid = 'pg_operator'::regclass AND ds.objsubid = 0)) ORDER BY o.oprname, o.oid), '[]')
      FROM pg_operator o WHERE o.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_operator'::regclass) AND o.oprnamespace = $1),
'operator_families', (SELECT coalesce(json_agg(json_build_object(
        'oid', f.oid, 'name', f.opfname, 'method', (SELECT am.amname FROM pg_am am WHERE am.oid = f.opfmethod),
        'owner', pg_get_userbyid(f.opfowner), 'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = f.oid AND ds.classoid = 'pg_opfamily'::regclass AND ds.objsubid = 0)) ORDER BY f.opfname), '[]') FROM opf f),
'operator_classes', (SELECT coalesce(json_agg(json_build_object(
        'oid', c.oid, 'name', c.opcname, 'method', (SELECT am.amname FROM pg_am am WHERE am.oid = c.opcmethod),
        'type', c.opcintype, 'default', c.opcdefault, 'keytype', c.opckeytype,
        'family', (SELECT tenant._catalog_ref(f.opfnamespace, f.opfname, $1) FROM pg_opfamily f WHERE f.oid = c.opcfamily),
        'owner', pg_get_userbyid(c.opcowner), 'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = c.oid AND ds.classoid = 'pg_opclass'::regclass AND ds.objsubid = 0)) ORDER BY c.opcname), '[]') FROM opc c),
'amops', (SELECT coalesce(json_agg(json_build_object(
        'oid', a.oid, 'family', a.amopfamily, 'class', a.class, 'strategy', a.amopstrategy, 'left', a.amoplefttype, 'right', a.amoprighttype,
        'operator', (SELECT json_build_object('schema', n.nspname, 'name', o.oprname) FROM pg_operator o
                       JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE o.oid = a.amopopr),
        'order_family', (SELECT tenant._catalog_ref(f.opfnamespace, f.opfname, $1) FROM pg_opfamily f
                          WHERE f.oid = a.amopsortfamily AND a.amoppurpose = 'o')) ORDER BY a.amopfamily, a.amopstrategy, a.oid), '[]') FROM amop a),
'amprocs', (SELECT coalesce(json_agg(json_build_object(
        'oid', a.oid, 'family', a.amprocfamily, 'class', a.class, 'number', a.amprocnum, 'left', a.amproclefttype, 'right', a.amprocrighttype,
        'function', a.amproc::oid) ORDER BY a.amprocfamily, a.amprocnum, a.oid), '[]') FROM amproc a),
'collations', (SELECT coalesce(json_agg(json_build_object(
        'oid', c.oid, 'name', c.collname, 'provider', c.collprovider, 'deterministic', c.collisdeterministic,
        -- colliculocale (15, 16) is colllocale from 17 on.
        'collate', c.collcollate, 'ctype', c.collctype,
        'icu_locale', coalesce(to_jsonb(c) ->> 'colliculocale', to_jsonb(c) ->> 'colllocale'),
        'owner', pg_get_userbyid(c.collowner), 'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = c.oid AND ds.classoid = 'pg_collation'::regclass AND ds.objsubid = 0)) ORDER BY c.collname), '[]')
      FROM pg_collation c WHERE c.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_collation'::regclass) AND c.collnamespace = $1),
'ts_dictionaries', (SELECT coalesce(json_agg(json_build_object(
        'oid', d.oid, 'name', d.dictname,
        'template', (SELECT json_build_object('schema', n.nspname, 'name', t.tmplname) FROM pg_ts_template t
                       JOIN pg_namespace n ON n.oid = t.tmplnamespace WHERE t.oid = d.dicttemplate),
        'template_nsp', (SELECT t.tmplnamespace FROM pg_ts_template t WHERE t.oid = d.dicttemplate),
        'options', d.dictinitoption, 'owner', pg_get_userbyid(d.dictowner),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = d.oid AND ds.classoid = 'pg_ts_dict'::regclass AND ds.objsubid = 0)) ORDER BY d.dictname), '[]')
      FROM pg_ts_dict d WHERE d.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_ts_dict'::regclass) AND d.dictnamespace = $1),
'ts_configs', (SELECT coalesce(json_agg(json_build_object(
        'oid', c.oid, 'name', c.cfgname,
        'parser', (SELECT json_build_object('schema', n.nspname, 'name', p.prsname) FROM pg_ts_parser p
                     JOIN pg_namespace n ON n.oid = p.prsnamespace WHERE p.oid = c.cfgparser),
        'mappings', (SELECT coalesce(json_agg(json_build_object('token', m.alias, 'dictionaries', m.dicts) ORDER BY m.tokid), '[]')
                       FROM (SELECT t.tokid, t.alias,
                                    (SELECT json_agg(tenant._catalog_ref(d.dictnamespace, d.dictname, $1) ORDER BY cm.mapseqno)
                                       FROM pg_ts_config_map cm JOIN pg_ts_dict d ON d.oid = cm.mapdict
                                      WHERE cm.mapcfg = c.oid AND cm.maptokentype = t.tokid) AS dicts
                               FROM ts_token_type(c.cfgparser) t) m WHERE m.dicts IS NOT NULL),
        'owner', pg_get_userbyid(c.cfgowner), 'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = c.oid AND ds.classoid = 'pg_ts_config'::regclass AND ds.objsubid = 0)) ORDER BY c.cfgname), '[]')
      FROM pg_ts_config c WHERE c.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_ts_config'::regclass) AND c.cfgnamespace = $1),
'statistics', (SELECT coalesce(json_agg(json_build_object(
        'oid', x.oid, 'name', x.stxname, 'rel', x.stxrelid, 'table', c.relname, 'same_schema', c.relnamespace = $1,
        'target', coalesce(x.stxstattarget::integer, -1), 'owner', pg_get_userbyid(x.stxowner),
        'comment', (SELECT ds.description FROM pg_description ds WHERE ds.objoid = x.oid AND ds.classoid = 'pg_statistic_ext'::regclass AND ds.objsubid = 0)) ORDER BY x.stxname), '[]')
      FROM pg_statistic_ext x JOIN pg_class c ON c.oid = x.stxrelid
     WHERE x.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_statistic_ext'::regclass) AND x.stxnamespace = $1),
'depends', (SELECT coalesce(json_agg(json_build_object(
        -- The catalogs by oid (the adapter knows theirs): printing regclass looks each name up.
        'class', d.classid, 'obj', d.objid, 'ref_class', d.refclassid, 'ref', d.refobjid)), '[]')
      -- Every dependency of the schema's objects but those on the schema itself; the adapter
      -- keeps those on objects it read (a filter on objs here became a nested loop over objs per
      -- dependency when the estimates were low: quadratic in the schema's size).
      FROM (SELECT DISTINCT d.classid, d.objid, d.refclassid, d.refobjid FROM objs o
              JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid
             WHERE d.deptype IN ('n', 'a') AND d.refclassid <> 'pg_namespace'::regclass) d),
'unsupported', (SELECT coalesce(json_agg(json_build_object('object', u.object, 'reason', u.reason) ORDER BY u.object), '[]') FROM (
        SELECT pg_describe_object(o.classid, o.objid, 0) AS object,
               'a member of extension ' || quote_ident(e.extname) || ': create the extension in the copy instead' AS reason
          FROM ns o JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid
        UNION ALL
        SELECT pg_describe_object(o.classid, o.objid, 0),
               CASE o.classid WHEN 'pg_conversion'::regclass THEN 'encoding conversions are not copied'
                              ELSE 'text search parsers and templates are C code: they belong in an extension' END
          FROM ns o WHERE o.classid IN ('pg_conversion'::regclass, 'pg_ts_parser'::regclass, 'pg_ts_template'::regclass)
        UNION ALL
        SELECT pg_describe_object('pg_class'::regclass, c.oid, 0),
               CASE WHEN c.relkind = 'f' THEN 'foreign tables are not copied (their server and user mappings are database objects)'
                    WHEN c.reloftype <> 0 THEN 'typed tables are not copied'
                    ELSE 'relation kind ' || c.relkind::text || ' is not copied' END
          FROM rel c WHERE c.relkind NOT IN ('r', 'p', 'v', 'm', 'S') OR c.reloftype <> 0
        UNION ALL
        SELECT pg_describe_object('pg_type'::regclass, t.oid, 0),
               CASE WHEN NOT t.typisdefined THEN 'a shell type (never defined)'
                    ELSE 'base and pseudo types are defined by C functions: they belong in an extension' END
          FROM typ t WHERE (t.typtype IN ('b', 'p') AND NOT EXISTS (SELECT FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid))
                        OR NOT t.typisdefined
        UNION ALL
        SELECT pg_describe_object('pg_proc'::regclass, p.oid, 0), 'functions with TRANSFORM FOR TYPE are not copied'
          FROM prc p WHERE p.protrftypes IS NOT NULL
        UNION ALL
        SELECT pg_describe_object('pg_class'::regclass, q.seqrelid, 0), 'owned by a column of a table in another schema'
          FROM pg_sequence q JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = q.seqrelid
                                          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
          JOIN pg_class t ON t.oid = d.refobjid
         WHERE q.seqrelid IN (SELECT rel.oid FROM rel) AND t.relnamespace <> $1
        UNION ALL
        SELECT pg_describe_object('pg_statistic_ext'::regclass, x.oid, 0), 'statistics on a table in another schema'
          FROM pg_statistic_ext x JOIN pg_class c ON c.oid = x.stxrelid
         WHERE x.oid IN (SELECT ns.objid FROM ns WHERE ns.classid = 'pg_statistic_ext'::regclass) AND c.relnamespace <> $1
    ) u)
)::text
