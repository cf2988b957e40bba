//! `tenant._tenant_schema_fingerprint` (read from the catalogs in Rust, src/fingerprint.rs)
//! against an independent oracle: the catalog query it replaced (0.2.0 before the rewrite, kept
//! here verbatim as `public.sql_fingerprint`). migrate_all skips pinning and the problem
//! inventory of a schema whose fingerprint is the one recorded, so the fingerprint must change
//! whenever anything either check reads changes: for each change below, by every route, the new
//! fingerprint changes exactly when the old query's does.

use qft_integration_tests::*;

/// The 0.2.0 catalog query of the fingerprint, as it was before src/fingerprint.rs.
const SQL_FINGERPRINT: &str = r#"CREATE FUNCTION public.sql_fingerprint(schema name, tenant_id bigint) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    nsp oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = schema);
BEGIN
    IF nsp IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN (
    WITH obj AS MATERIALIZED (
        SELECT d.classid, d.objid FROM pg_depend d
         WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = nsp AND d.deptype = 'n'
           AND d.classid IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass, 'pg_statistic_ext'::regclass)
    ), rel AS MATERIALIZED (
        SELECT c.oid, c.relname, c.relkind, c.relowner, c.relacl, c.reloptions, c.relrowsecurity, c.relforcerowsecurity
          FROM obj o JOIN pg_class c ON c.oid = o.objid
         WHERE o.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
    ), fn AS MATERIALIZED (
        SELECT p.oid, p.oid::regprocedure::text AS ident, p.prokind, p.prosecdef, p.prorettype, p.proowner, p.proacl
          FROM obj o JOIN pg_proc p ON p.oid = o.objid WHERE o.classid = 'pg_proc'::regclass
    ), typ AS MATERIALIZED (
        SELECT t.oid, t.oid::regtype::text AS ident, t.typtype, t.typowner,
               (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) AS relkind
          FROM obj o JOIN pg_type t ON t.oid = o.objid
         WHERE o.classid = 'pg_type'::regclass AND t.typtype IN ('e', 'd', 'r', 'c')
    ), stx AS MATERIALIZED (
        SELECT x.oid, x.stxname, x.stxowner FROM obj o JOIN pg_statistic_ext x ON x.oid = o.objid
         WHERE o.classid = 'pg_statistic_ext'::regclass
    ), pol AS MATERIALIZED (
        SELECT p.oid, p.xmin, p.ctid, p.polroles
          FROM rel r JOIN pg_policy p ON p.polrelid = r.oid
         WHERE r.relkind IN ('r', 'p') AND p.polname LIKE 'qft\_%'
    ), col AS MATERIALIZED (
        SELECT a.attrelid, a.attnum, a.attname, a.attacl FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid
         WHERE r.relkind IN ('r', 'p') AND a.attnum > 0 AND a.attacl IS NOT NULL
    ), seqdef AS MATERIALIZED (
        SELECT ad.adrelid, ad.adnum, a.attname, a.attgenerated, d.refobjid::regclass::text AS seq
          FROM rel r
          JOIN pg_attrdef ad ON ad.adrelid = r.oid
          JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
          JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
         WHERE r.relkind IN ('r', 'p')
    ), anc AS MATERIALIZED (
        WITH RECURSIVE a(relid, parent) AS (
            SELECT h.inhrelid, h.inhparent FROM rel r JOIN pg_inherits h ON h.inhrelid = r.oid WHERE r.relkind IN ('r', 'p')
            UNION
            SELECT a.relid, h.inhparent FROM a JOIN pg_inherits h ON h.inhrelid = a.parent
        ) SELECT * FROM a
    ), roles AS MATERIALIZED (
        -- owners, grantees (each distinct ACL exploded once) and policy roles
        SELECT x.role FROM (
            SELECT r.relowner FROM rel r
            UNION SELECT f.proowner FROM fn f
            UNION SELECT t.typowner FROM typ t
            UNION SELECT x.stxowner FROM stx x
            UNION SELECT g.grantee FROM (SELECT r.relacl FROM rel r UNION SELECT c.attacl FROM col c
                                         UNION SELECT f.proacl FROM fn f) a(acl), aclexplode(a.acl) g
            UNION SELECT u.role FROM (SELECT DISTINCT p.polroles FROM pol p) p, unnest(p.polroles) u(role)
        ) x(role) WHERE x.role <> 0
    )
    SELECT concat_ws(E'\n', ROW(nsp, schema, tenant_id, (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'qualityfoundry_tenant'))::text,
        (SELECT string_agg(ROW(r.oid, r.relname, r.relkind, r.relowner, r.relacl, r.reloptions, r.relrowsecurity,
                               r.relforcerowsecurity)::text, ',' ORDER BY r.oid) FROM rel r),
        -- policies by row version: a changed policy is a new version (xmin, ctid) of its row
        (SELECT string_agg(ROW(p.oid, p.xmin, p.ctid)::text, ',' ORDER BY p.oid) FROM pol p),
        (SELECT string_agg(ROW(c.attrelid, c.attnum, c.attname, c.attacl)::text, ',' ORDER BY c.attrelid, c.attnum) FROM col c),
        (SELECT string_agg(ROW(s.adrelid, s.adnum, s.attname, s.attgenerated, s.seq)::text, ',' ORDER BY s.adrelid, s.adnum, s.seq) FROM seqdef s),
        (SELECT string_agg(ROW(f.oid, f.ident, f.prokind, f.prosecdef, f.prorettype, f.proowner, f.proacl)::text, ',' ORDER BY f.oid) FROM fn f),
        (SELECT string_agg(ROW(t.oid, t.ident, t.typtype, t.typowner, t.relkind)::text, ',' ORDER BY t.oid) FROM typ t),
        (SELECT string_agg(ROW(x.oid, x.stxname, x.stxowner)::text, ',' ORDER BY x.oid) FROM stx x),
        (SELECT string_agg(ROW(a.relid, a.parent)::text, ',' ORDER BY a.relid, a.parent) FROM anc a),
        (SELECT string_agg(ROW(l.relid::oid, l.xmin, l.ctid)::text, ',' ORDER BY l.relid::oid, l.command)
           FROM tenant.role_limits l WHERE l.relid::oid IN (SELECT r.oid FROM rel r UNION SELECT a.parent FROM anc a)),
        (SELECT string_agg(ROW(i.relid::oid, i.xmin, i.ctid)::text, ',' ORDER BY i.relid::oid)
           FROM tenant.isolated_tables i WHERE i.relid::oid IN (SELECT r.oid FROM rel r)),
        (SELECT string_agg(ROW(a.oid, a.rolname, a.rolsuper, pg_has_role(a.oid, 'tenant_user', 'MEMBER'),
                               pg_has_role('tenant_user', a.oid, 'USAGE'))::text, ',' ORDER BY a.oid)
           FROM roles x JOIN pg_authid a ON a.oid = x.role))
    );
END
$$;
"#;

#[test]
fn the_fingerprint_changes_exactly_when_the_catalog_query_it_replaced_changes() {
    let db = TestDb::new("fp_oracle");
    let app = db.role("app");
    let admin = db.role("admin");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE ROLE {app}_fp_owner NOLOGIN;
         SELECT tenant.create_tenant('a');
         CREATE SCHEMA tenant_a;
         CREATE TABLE tenant_a.items (id integer PRIMARY KEY, qty integer NOT NULL DEFAULT 0, label text);
         UPDATE tenant.tenants SET schema_name = 'tenant_a' WHERE slug = 'a';
         SELECT tenant.pin_tenant_schema('a');
         {SQL_FINGERPRINT}"
    ))
    .expect("fixture");
    let both = |su: &mut postgres::Client| -> (String, String) {
        let r = su
            .query_one(
                "SELECT tenant._tenant_schema_fingerprint('tenant_a', t.id), public.sql_fingerprint('tenant_a', t.id)
                   FROM tenant.tenants t WHERE t.slug = 'a'",
                &[],
            )
            .expect("fingerprints");
        (r.get(0), r.get(1))
    };
    // (what, SQL run as the superuser, whether it changes what the checks read)
    let steps: Vec<(&str, String, bool)> = vec![
        ("nothing", "SELECT 1".into(), false),
        ("a column", "ALTER TABLE tenant_a.items ADD COLUMN extra integer".into(), false),
        ("an index", "CREATE INDEX ON tenant_a.items (qty)".into(), false),
        ("rows", "INSERT INTO tenant_a.items VALUES (1, 1, 'x')".into(), false),
        ("a table grant", format!("GRANT SELECT ON tenant_a.items TO {app}"), true),
        ("a column grant", format!("GRANT UPDATE (label) ON tenant_a.items TO {app}"), true),
        ("no FORCE", "ALTER TABLE tenant_a.items NO FORCE ROW LEVEL SECURITY".into(), true),
        ("FORCE again", "ALTER TABLE tenant_a.items FORCE ROW LEVEL SECURITY".into(), true),
        (
            "a pin altered",
            "DO $$ DECLARE p name; BEGIN SELECT polname INTO p FROM pg_policy WHERE polrelid = 'tenant_a.items'::regclass
                                 AND polname LIKE 'qft\\_%' ORDER BY polname LIMIT 1;
                   EXECUTE format('ALTER POLICY %I ON tenant_a.items USING (true)', p); END $$".into(),
            true,
        ),
        (
            "a pin rewritten in the catalog",
            "UPDATE pg_policy SET polqual = polqual WHERE polrelid = 'tenant_a.items'::regclass".into(),
            true,
        ),
        ("a sequence", "CREATE SEQUENCE tenant_a.counter".into(), true),
        (
            "a default using it",
            "ALTER TABLE tenant_a.items ALTER COLUMN extra SET DEFAULT nextval('tenant_a.counter')".into(),
            true,
        ),
        ("the default dropped", "ALTER TABLE tenant_a.items ALTER COLUMN extra DROP DEFAULT".into(), true),
        ("a function", "CREATE FUNCTION tenant_a.f() RETURNS int LANGUAGE sql AS 'SELECT 1'".into(), true),
        ("SECURITY DEFINER", "ALTER FUNCTION tenant_a.f() SECURITY DEFINER".into(), true),
        ("a function grant", format!("REVOKE EXECUTE ON FUNCTION tenant_a.f() FROM PUBLIC; GRANT EXECUTE ON FUNCTION tenant_a.f() TO {app}"), true),
        ("an enum", "CREATE TYPE tenant_a.mood AS ENUM ('ok')".into(), true),
        ("a domain", "CREATE DOMAIN tenant_a.pos AS integer CHECK (VALUE > 0)".into(), true),
        ("statistics", "CREATE STATISTICS tenant_a.st ON qty, label FROM tenant_a.items".into(), true),
        ("a view", "CREATE VIEW tenant_a.v AS SELECT id FROM tenant_a.items".into(), true),
        ("security_invoker", "ALTER VIEW tenant_a.v SET (security_invoker = true)".into(), true),
        ("a materialized view", "CREATE MATERIALIZED VIEW tenant_a.mv AS SELECT id FROM tenant_a.items".into(), true),
        ("a child table", "CREATE TABLE tenant_a.child () INHERITS (tenant_a.items)".into(), true),
        (
            "a role limit",
            "SELECT tenant.limit_tenant_roles('tenant_a.items', 'SELECT', ARRAY['viewer'])".into(),
            true,
        ),
        (
            "a role limit rewritten in place",
            "UPDATE tenant.role_limits SET roles = roles WHERE relid = 'tenant_a.items'::regclass".into(),
            true,
        ),
        ("an owner", format!("ALTER TABLE tenant_a.items OWNER TO {app}_fp_owner"), true),
        ("the owner's membership", format!("GRANT tenant_user TO {app}_fp_owner"), true),
        ("the owner's name", format!("ALTER ROLE {app}_fp_owner RENAME TO {app}_fp_renamed"), true),
        ("a renamed table", "ALTER TABLE tenant_a.child RENAME TO kid".into(), true),
        ("a dropped function", "DROP FUNCTION tenant_a.f()".into(), true),
        ("a table of another schema", format!("CREATE TABLE public.elsewhere (id int); GRANT SELECT ON public.elsewhere TO {admin}"), false),
    ];
    let mut before = both(&mut su);
    for (what, sql, changes) in steps {
        su.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{what}: {sql}: {e:?}"));
        let after = both(&mut su);
        let (new_changed, old_changed) = (after.0 != before.0, after.1 != before.1);
        assert_eq!(
            new_changed, old_changed,
            "{what}: the fingerprint changed {new_changed}, the catalog query {old_changed}"
        );
        assert_eq!(new_changed, changes, "{what}");
        before = after;
    }
    // A schema that does not exist has none.
    assert_eq!(
        one::<Option<String>>(
            &mut su,
            "SELECT tenant._tenant_schema_fingerprint('no_such_schema', 1)"
        ),
        None
    );
}
