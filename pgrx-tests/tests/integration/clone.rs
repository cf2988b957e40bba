//! Schema cloning (issue 5): `tenant.clone_schema` and `tenant.schema_diff` on a fixture template
//! with every object kind and the awkward ones. The clone must compare equal to its template,
//! depend on nothing in it, and bad input must fail with the SPEC's SQLSTATE leaving no schema.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

/// The template (`crates/schema/fixtures/template.sql`, also read by the core crate's tests).
/// %READER% and %OWNER% are replaced by this database's roles (`bi`, `nobody`).
pub(crate) const TEMPLATE: &str = include_str!("../../../crates/schema/fixtures/template.sql");

/// More catalog corner cases, in a source schema whose name needs quoting
/// (`crates/schema/fixtures/awkward.sql`).
pub(crate) const AWKWARD: &str = include_str!("../../../crates/schema/fixtures/awkward.sql");

pub(crate) fn with_roles(db: &TestDb, sql: &str) -> String {
    sql.replace("%READER%", &db.role("bi"))
        .replace("%OWNER%", &db.role("nobody"))
}

pub(crate) fn template_db(label: &str) -> TestDb {
    let db = TestDb::new(label);
    db.superuser()
        .batch_execute(&with_roles(&db, TEMPLATE))
        .expect("template fixture");
    db
}

fn schemas(client: &mut Client) -> Vec<String> {
    one(
        client,
        "SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace",
    )
}

pub(crate) fn diff(su: &mut Client, a: &str, b: &str) -> Vec<String> {
    su.query(
        "SELECT object || ': ' || difference FROM tenant.schema_diff($1, $2)",
        &[&a, &b],
    )
    .expect("schema_diff")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// pg_depend rows from any object of schema `target` (or a sub-object: default, constraint,
/// trigger, policy, rule) to any object of schema `source`.
pub(crate) fn dependencies_on(su: &mut Client, target: &str, source: &str) -> Vec<String> {
    let objects = "SELECT 'pg_namespace'::regclass::oid, n.oid FROM pg_namespace n WHERE n.nspname = $1
        UNION ALL SELECT 'pg_class'::regclass, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
        UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1
        UNION ALL SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
        UNION ALL SELECT 'pg_constraint'::regclass, k.oid FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = $1
        UNION ALL SELECT 'pg_attrdef'::regclass, d.oid FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
        UNION ALL SELECT 'pg_trigger'::regclass, g.oid FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
        UNION ALL SELECT 'pg_policy'::regclass, p.oid FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
        UNION ALL SELECT 'pg_rewrite'::regclass, r.oid FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
        UNION ALL SELECT 'pg_statistic_ext'::regclass, s.oid FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE n.nspname = $1";
    let sql = format!(
        "WITH t(classid, objid) AS ({tgt}), s(classid, objid) AS ({src})
         SELECT pg_describe_object(d.classid, d.objid, d.objsubid) || ' -> ' || pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
           FROM pg_depend d
          WHERE (d.classid, d.objid) IN (SELECT classid, objid FROM t)
            AND (d.refclassid, d.refobjid) IN (SELECT classid, objid FROM s)",
        tgt = objects,
        src = objects.replace("$1", "$2")
    );
    su.query(&sql, &[&target, &source])
        .expect("dependencies")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn count(client: &mut Client, sql: &str) -> i64 {
    one::<i64>(client, sql)
}

#[test]
fn clone_of_the_template_compares_equal_and_stands_alone() {
    let db = template_db("clone_equal");
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    admin
        .batch_execute("SELECT tenant.clone_schema('tenant_template', 'tenant_copy')")
        .expect("clone as tenant_admin");

    assert_eq!(
        diff(&mut su, "tenant_template", "tenant_copy"),
        Vec::<String>::new()
    );
    assert_eq!(
        dependencies_on(&mut su, "tenant_copy", "tenant_template"),
        Vec::<String>::new()
    );
    // Every kind was copied, not just compared: spot checks on the clone's catalogs.
    for (what, sql, expected) in [
        ("tables", "SELECT count(*) FROM pg_class WHERE relnamespace = 'tenant_copy'::regnamespace AND relkind IN ('r', 'p')", 13),
        ("partitions", "SELECT count(*) FROM pg_inherits WHERE inhparent = 'tenant_copy.events'::regclass", 2),
        ("views", "SELECT count(*) FROM pg_class WHERE relnamespace = 'tenant_copy'::regnamespace AND relkind IN ('v', 'm')", 3),
        ("functions", "SELECT count(*) FROM pg_proc WHERE pronamespace = 'tenant_copy'::regnamespace", 5),
        ("triggers", "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'tenant_copy'::regnamespace AND NOT t.tgisinternal", 2),
        ("policies", "SELECT count(*) FROM pg_policy WHERE polrelid = 'tenant_copy.docs'::regclass", 2),
        ("forced rls without policy", "SELECT count(*) FROM pg_class WHERE oid = 'tenant_copy.locked'::regclass AND relrowsecurity AND relforcerowsecurity", 1),
        ("exclusion constraint", "SELECT count(*) FROM pg_constraint WHERE conrelid = 'tenant_copy.\"order\"'::regclass AND contype = 'x'", 1),
        ("foreign keys", "SELECT count(*) FROM pg_constraint WHERE connamespace = 'tenant_copy'::regnamespace AND contype = 'f' AND confrelid::regclass::text LIKE 'tenant_copy.%'", 4),
        ("identity columns", "SELECT count(*) FROM pg_attribute WHERE attrelid IN ('tenant_copy.customers'::regclass, 'tenant_copy.\"order\"'::regclass) AND attidentity <> ''", 2),
        ("generated column", "SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenant_copy.customers'::regclass AND attgenerated = 's'", 1),
        ("types", "SELECT count(*) FROM pg_type WHERE typnamespace = 'tenant_copy'::regnamespace AND typtype IN ('e', 'd') OR typname = 'address' AND typnamespace = 'tenant_copy'::regnamespace", 4),
        ("comments", "SELECT count(*) FROM pg_description d WHERE d.objoid = 'tenant_copy'::regnamespace OR d.objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'tenant_copy'::regnamespace)", 6),
    ] {
        assert_eq!(count(&mut su, sql), expected, "{what}");
    }
    let reader = db.role("bi");
    assert!(one::<bool>(
        &mut su,
        &format!("SELECT has_table_privilege('{reader}', 'tenant_copy.customers', 'INSERT') AND has_sequence_privilege('{reader}', 'tenant_copy.ticket_seq', 'USAGE WITH GRANT OPTION') AND has_column_privilege('{reader}', 'tenant_copy.\"with space\"', 'a column', 'SELECT') AND NOT has_function_privilege('{}', 'tenant_copy.customer_count()', 'EXECUTE')", db.role("app"))
    ));
    assert_eq!(
        one::<String>(&mut su, "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'tenant_copy.scratch'::regclass"),
        db.role("nobody")
    );

    // No function body (or header, or setting) in the clone names the template.
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'tenant_copy'::regnamespace AND (pg_get_functiondef(oid) ILIKE '%tenant_template%' OR array_to_string(proconfig, ',') ILIKE '%tenant_template%')"),
        0
    );

    // Sequences are the clone's own: nextval there leaves the template's where it was.
    let before: i64 = one(&mut su, "SELECT last_value FROM tenant_template.ticket_seq");
    su.batch_execute(
        "SELECT nextval('tenant_copy.ticket_seq'); SELECT nextval('tenant_copy.ticket_seq');
         INSERT INTO tenant_copy.customers (name) VALUES ('zed');
         INSERT INTO tenant_copy.\"MixedCase\" (\"Value\") VALUES ('m');",
    )
    .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT last_value FROM tenant_template.ticket_seq"),
        before
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT last_value FROM tenant_template.customers_id_seq"
        ),
        102
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT id FROM tenant_copy.customers"),
        100
    );
    assert_eq!(
        one::<i32>(&mut su, "SELECT ticket FROM tenant_copy.customers"),
        30
    );

    // The trigger function writes the clone's log table, not the template's.
    let template_log = count(&mut su, "SELECT count(*) FROM tenant_template.orders_log");
    su.batch_execute("INSERT INTO tenant_copy.\"order\" (customer_id, amount) VALUES (100, 5)")
        .unwrap();
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant_template.orders_log"),
        template_log
    );
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT string_agg(what, ',' ORDER BY id) FROM tenant_copy.orders_log"
        ),
        "touch MixedCase,INSERT"
    );
    // Views and the materialized view work against the clone's tables.
    su.batch_execute("REFRESH MATERIALIZED VIEW tenant_copy.order_totals")
        .unwrap();
    assert_eq!(count(&mut su, "SELECT n FROM tenant_copy.order_totals"), 1);
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant_copy.customer_names"),
        1
    );

    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.audit_log WHERE action = 'schema_cloned' AND target = 'tenant_copy' AND detail = '{\"source\": \"tenant_template\", \"copy_data\": false}'"),
        1
    );
}

#[test]
fn copy_data_copies_rows_and_sequence_positions() {
    let db = template_db("clone_data");
    let mut su = db.superuser();
    // As the superuser: copy_data reads the source with the caller's rights, and the fixture's
    // tables belong to several roles and have row security (tenant_admin members get 42501, below).
    su.batch_execute(
        "SELECT tenant.clone_schema('tenant_template', 'with_data', copy_data => true)",
    )
    .expect("clone with data");
    assert_eq!(
        diff(&mut su, "tenant_template", "with_data"),
        Vec::<String>::new()
    );
    for table in [
        "customers",
        "\"order\"",
        "orders_log",
        "\"MixedCase\"",
        "events",
        "events_2024",
        "a_side",
        "b_side",
        "order_totals",
    ] {
        let q = |schema: &str| format!("SELECT count(*) FROM {schema}.{table}");
        let template = count(&mut su, &q("tenant_template"));
        assert!(
            template > 0 || table == "events_2024",
            "{table} has rows in the fixture"
        );
        assert_eq!(count(&mut su, &q("with_data")), template, "rows of {table}");
    }
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT string_agg(c::text, ';' ORDER BY id) FROM tenant_template.customers c"
        ),
        one::<String>(
            &mut su,
            "SELECT string_agg(c::text, ';' ORDER BY id) FROM with_data.customers c"
        )
    );
    for seq in [
        "ticket_seq",
        "customers_id_seq",
        "order_id_seq",
        "orders_log_id_seq",
        "\"MixedCase_id_seq\"",
    ] {
        let q = |schema: &str| format!("SELECT last_value || '/' || is_called FROM {schema}.{seq}");
        assert_eq!(
            one::<String>(&mut su, &q("with_data")),
            one::<String>(&mut su, &q("tenant_template")),
            "position of {seq}"
        );
    }
    // Identity continues after the copied rows, in the clone only.
    su.batch_execute("INSERT INTO with_data.customers (name) VALUES ('dave')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT max(id) FROM with_data.customers"),
        104
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT max(id) FROM tenant_template.customers"),
        102
    );
}

#[test]
fn awkward_catalog_cases_clone_equal() {
    let db = TestDb::new("clone_awkward");
    let mut su = db.superuser();
    su.batch_execute(&with_roles(&db, AWKWARD))
        .expect("awkward fixture");
    su.batch_execute("SELECT tenant.clone_schema('Edge Case', 'Edge Copy', true)")
        .expect("clone");
    assert_eq!(
        diff(&mut su, "Edge Case", "Edge Copy"),
        Vec::<String>::new()
    );
    assert_eq!(
        dependencies_on(&mut su, "Edge Copy", "Edge Case"),
        Vec::<String>::new()
    );
    // The clone's view calls the clone's lower(), the catalog's where the source did.
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT a || b FROM \"Edge Copy\".v_shadow WHERE b = 'a'"
        ),
        "Aa"
    );
    // ... and its view on a table named pg_class reads the clone's table (the catalog's is pinned,
    // so not in pg_depend: its rows show up instead).
    assert_eq!(
        count(&mut su, "SELECT count(DISTINCT d.refobjid) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                        WHERE r.ev_class = '\"Edge Copy\".v_shadow2'::regclass AND d.refobjid = '\"Edge Copy\".pg_class'::regclass"),
        1
    );
    assert!(count(&mut su, "SELECT count(*) FROM \"Edge Copy\".v_shadow2") > 100);
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM \"Edge Copy\".m_eu_new"),
        1
    );
    assert_eq!(count(&mut su, "SELECT \"Edge Copy\".count_edges()"), 2);
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM \"Edge Copy\".all_edges()"),
        2
    );
    assert_eq!(
        one::<String>(&mut su, "SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = '\"Edge Copy\".parent'::regclass"),
        "D"
    );
    // A NOT VALID domain constraint is copied NOT VALID (the copied data never had to satisfy it).
    assert!(!one::<bool>(
        &mut su,
        "SELECT convalidated FROM pg_constraint WHERE conname = 'even_check' AND contypid = '\"Edge Copy\".even'::regtype"
    ));
}

#[test]
fn a_quoted_but_valid_target_clones() {
    let db = template_db("clone_quoted");
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    admin
        .execute(
            "SELECT tenant.clone_schema($1, $2)",
            &[&"tenant_template", &"Tenant Space"],
        )
        .expect("clone to a mixed-case name with a space");
    assert_eq!(
        diff(&mut su, "tenant_template", "Tenant Space"),
        Vec::<String>::new()
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM \"Tenant Space\".customers"),
        0
    );
}

#[test]
fn hostile_or_invalid_names_fail_cleanly() {
    let db = template_db("clone_hostile");
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    let before = schemas(&mut su);
    let cases: Vec<(Option<&str>, Option<String>, &str)> = vec![
        (
            Some("tenant_template"),
            Some("x; DROP SCHEMA public CASCADE; --".into()),
            "22023",
        ),
        (Some("tenant_template"), Some("a\"b".into()), "22023"),
        (Some("tenant_template"), Some("it's".into()), "22023"),
        (Some("tenant_template"), Some("a".repeat(64)), "22023"),
        (Some("tenant_template"), Some("€".repeat(22)), "22023"), // 66 bytes
        (Some("tenant_template"), Some("pg_evil".into()), "22023"),
        (Some("tenant_template"), Some(String::new()), "22023"),
        (Some("tenant_template"), None, "22023"),
        (Some("tenant_template"), Some("public".into()), "42P06"),
        (
            Some("tenant_template"),
            Some("tenant_template".into()),
            "42P06",
        ),
        (Some("no_such_schema"), Some("fresh".into()), "3F000"),
        (None, Some("fresh".into()), "3F000"),
    ];
    for (source, target, code) in cases {
        let msg = expect_sqlstate(
            admin.execute("SELECT tenant.clone_schema($1, $2)", &[&source, &target]),
            code,
        );
        assert_eq!(schemas(&mut su), before, "{source:?} -> {target:?}: {msg}");
    }
    // The same through literals (the name overload is not chosen for unknown literals).
    expect_sqlstate(
        admin.batch_execute(
            "SELECT tenant.clone_schema('tenant_template', 'x; DROP SCHEMA public CASCADE; --')",
        ),
        "22023",
    );
    assert_eq!(schemas(&mut su), before);
    // 63 bytes of three-byte characters is a valid name.
    admin
        .execute(
            "SELECT tenant.clone_schema($1, $2)",
            &[&"tenant_template", &"€".repeat(21)],
        )
        .expect("63-byte name");
    assert_eq!(
        diff(&mut su, "tenant_template", &"€".repeat(21)),
        Vec::<String>::new()
    );
}

#[test]
fn only_tenant_admin_may_clone() {
    let db = template_db("clone_acl");
    let mut su = db.superuser();
    let before = schemas(&mut su);
    for role in ["app", "nobody"] {
        let mut c = db.connect(role);
        expect_sqlstate(
            c.batch_execute("SELECT tenant.clone_schema('tenant_template', 'stolen')"),
            "42501",
        );
        expect_sqlstate(
            c.batch_execute("SELECT * FROM tenant.schema_diff('tenant_template', 'public')"),
            "42501",
        );
    }
    assert_eq!(schemas(&mut su), before);
}

#[test]
fn a_failed_clone_leaves_nothing_behind() {
    let db = template_db("clone_fail");
    let mut su = db.superuser();
    // A check constraint that fails while the rows are copied, after most of the clone is built.
    su.batch_execute(
        "CREATE TABLE public.flag (x int);
         CREATE FUNCTION tenant_template.chk(v int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
           $$ BEGIN IF EXISTS (SELECT FROM public.flag) THEN RAISE EXCEPTION 'boom'; END IF; RETURN true; END $$;
         CREATE TABLE tenant_template.zz_checked (x int CHECK (tenant_template.chk(x)));
         INSERT INTO tenant_template.zz_checked VALUES (1);
         INSERT INTO public.flag VALUES (1);",
    )
    .unwrap();
    let before = schemas(&mut su);
    let audit = count(&mut su, "SELECT count(*) FROM tenant.audit_log");
    let mut admin = db.connect("admin");
    let msg = expect_sqlstate(
        su.batch_execute("SELECT tenant.clone_schema('tenant_template', 'half', true)"),
        "P0001",
    );
    assert!(msg.contains("boom"), "{msg}");
    assert_eq!(schemas(&mut su), before);
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.audit_log"),
        audit
    );
    // Without the data the same clone succeeds.
    admin
        .batch_execute("SELECT tenant.clone_schema('tenant_template', 'half', false)")
        .expect("structure only");
}

#[test]
fn schema_diff_reports_what_differs() {
    let db = template_db("clone_diff");
    let mut su = db.superuser();
    su.batch_execute("SELECT tenant.clone_schema('tenant_template', 'drifted')")
        .unwrap();
    su.batch_execute(
        "ALTER TABLE drifted.locked NO FORCE ROW LEVEL SECURITY;
         ALTER TABLE drifted.customers ALTER COLUMN ticket SET DEFAULT nextval('tenant_template.ticket_seq');
         CREATE OR REPLACE FUNCTION drifted.customer_count() RETURNS bigint LANGUAGE sql STABLE
             AS $$ SELECT count(*) FROM tenant_template.customers $$;
         COMMENT ON TABLE drifted.customers IS 'changed';
         DROP INDEX drifted.order_big_idx;",
    )
    .unwrap();
    let objects: Vec<String> = su
        .query(
            "SELECT object FROM tenant.schema_diff('tenant_template', 'drifted')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        objects,
        [
            "column customers.ticket",
            "function customer_count()",
            "index order_big_idx",
            "table customers",
            "table locked",
        ]
    );
    expect_sqlstate(
        su.batch_execute("SELECT * FROM tenant.schema_diff('tenant_template', 'nope')"),
        "3F000",
    );
}

#[test]
fn concurrent_clones_to_one_target_one_wins() {
    let db = template_db("clone_race");
    let mut first = db.connect("admin");
    first
        .batch_execute("BEGIN; SELECT tenant.clone_schema('tenant_template', 'race')")
        .unwrap();
    let mut second = db.connect("admin");
    let second_pid: i32 = one(&mut second, "SELECT pg_backend_pid()");
    let waiter = std::thread::spawn(move || {
        second.batch_execute("SELECT tenant.clone_schema('tenant_template', 'race')")
    });
    // The second clone must be waiting for the first one's uncommitted schema before the first
    // commits (otherwise this tests nothing): wait for the server to say so.
    wait_for(
        &mut db.superuser(),
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')",
        second_pid,
    );
    first.batch_execute("COMMIT").unwrap();
    expect_sqlstate(waiter.join().unwrap(), "42P06");
    let mut su = db.superuser();
    assert_eq!(
        diff(&mut su, "tenant_template", "race"),
        Vec::<String>::new()
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.audit_log WHERE action = 'schema_cloned' AND target = 'race'"),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// No code the caller controls runs with the extension owner's rights. The attacker is `admin`, a
// NOSUPERUSER tenant_admin member; the template belongs to tenant_admin, as the README
// recommends, so the attacker can put a function of its own into any of its expressions.
// ---------------------------------------------------------------------------------------------

/// A template owned by tenant_admin holding `objects` (made by admin as tenant_admin), with the
/// planted function (also tenant_admin's) ready and its log emptied of what building the
/// template itself ran.
fn planted_template_db(label: &str, objects: &str) -> TestDb {
    let db = TestDb::new(label);
    plant_escalation(&db, "tenant_admin");
    tenant_admin_template(&db, objects);
    db.superuser()
        .batch_execute("DELETE FROM attacker.attempts")
        .unwrap();
    db
}

/// Clones the planted template as admin and checks that the clone worked, equals the template,
/// and that the planted function ran on `path` without gaining anything.
fn clone_gains_nothing(label: &str, objects: &str, copy_data: bool, path: &str) {
    let db = planted_template_db(label, objects);
    let mut admin = db.connect("admin");
    admin
        .execute(
            "SELECT tenant.clone_schema('tenant_template', 'tenant_copy', $1)",
            &[&copy_data],
        )
        .unwrap_or_else(|e| panic!("clone: {e}"));
    assert_escalation_failed(&db, path);
    let mut su = db.superuser();
    assert_eq!(
        diff(&mut su, "tenant_template", "tenant_copy"),
        Vec::<String>::new()
    );
}

macro_rules! planted_clone_path {
    ($name:ident, $copy:expr, $path:expr, $objects:expr) => {
        #[test]
        fn $name() {
            clone_gains_nothing(stringify!($name), $objects, $copy, $path);
        }
    };
}

// The exploit: a CHECK on a table whose rows copy_data copies.
planted_clone_path!(
    planted_check_on_copied_rows,
    true,
    "check",
    "CREATE TABLE tenant_template.checked (x int CHECK (attacker.escalate('check')));
     INSERT INTO tenant_template.checked VALUES (1)"
);
// Without copy_data: ADD CONSTRAINT folds an immutable call with constant arguments. (A table
// whose column needs an ALTER after CREATE TABLE, here its statistics target, gets its checks
// from an ALTER TABLE; the others have them in CREATE TABLE, which evaluates nothing:
// a_check_written_in_create_table_runs_nothing.)
planted_clone_path!(
    planted_check_folded_at_ddl,
    false,
    "check at ddl",
    "CREATE TABLE tenant_template.folded (x int CHECK (attacker.escalate_immutable('check at ddl') OR x > 0));
     ALTER TABLE tenant_template.folded ALTER COLUMN x SET STATISTICS 100"
);

#[test]
fn a_check_written_in_create_table_runs_nothing() {
    let db = planted_template_db(
        "check_in_create_table",
        "CREATE TABLE tenant_template.folded (x int CHECK (attacker.escalate_immutable('check in create') OR x > 0))",
    );
    let mut su = db.superuser();
    // The path under test: the check is in the copy's CREATE TABLE, no ALTER TABLE adds it.
    let plan: Vec<String> = su
        .query(
            "SELECT ddl FROM tenant._clone_plan_rs('tenant_template', 'tenant_copy') ORDER BY step",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|s| s.starts_with("CREATE TABLE tenant_copy.folded (")
                && s.contains("CHECK ((attacker.escalate_immutable(")),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|s| s.contains("ADD CONSTRAINT")),
        "{plan:?}"
    );
    db.connect("admin")
        .execute(
            "SELECT tenant.clone_schema('tenant_template', 'tenant_copy')",
            &[],
        )
        .unwrap_or_else(|e| panic!("clone: {e}"));
    let (attempts, superuser) = escalation_attempts(&db);
    assert!(!superuser, "{attempts:?}");
    assert_eq!(attempts, Vec::<(String, String, String)>::new());
    assert_eq!(
        diff(&mut su, "tenant_template", "tenant_copy"),
        Vec::<String>::new()
    );
}
planted_clone_path!(
    planted_domain_check,
    false,
    "domain",
    "CREATE DOMAIN tenant_template.d AS integer CHECK (attacker.escalate_immutable('domain') OR VALUE > 0)"
);
planted_clone_path!(
    planted_generated_column,
    false,
    "generated",
    "CREATE TABLE tenant_template.gen (x int, ok boolean GENERATED ALWAYS AS (attacker.escalate_immutable('generated') OR x > 0) STORED)"
);
planted_clone_path!(
    planted_exclusion_constraint,
    false,
    "exclusion",
    "CREATE TABLE tenant_template.ex (x int,
         EXCLUDE ((x + CASE WHEN attacker.escalate_immutable('exclusion') THEN 0 END) WITH =))"
);
planted_clone_path!(
    planted_index_expression_on_copied_rows,
    true,
    "index",
    "CREATE TABLE tenant_template.ix (x int);
     INSERT INTO tenant_template.ix VALUES (1);
     CREATE INDEX ix_planted ON tenant_template.ix ((x + CASE WHEN attacker.escalate_immutable('index') THEN 0 END))"
);
planted_clone_path!(
    planted_materialized_view_refresh,
    true,
    "refresh",
    "CREATE MATERIALIZED VIEW tenant_template.mv AS SELECT attacker.escalate('refresh') AS ok"
);

#[test]
fn copy_data_reads_the_source_with_the_callers_rights_and_fails_cleanly_without_them() {
    // The template is the superuser's and admin may not read it: copy_data cannot copy it, and
    // nothing is left behind; the structure alone still clones.
    let db = template_db("clone_unreadable");
    let mut su = db.superuser();
    let before = schemas(&mut su);
    let mut admin = db.connect("admin");
    let msg = expect_sqlstate(
        admin.batch_execute("SELECT tenant.clone_schema('tenant_template', 'stolen', true)"),
        "42501",
    );
    assert!(msg.contains("permission denied"), "{msg}");
    assert_eq!(schemas(&mut su), before);
    admin
        .batch_execute("SELECT tenant.clone_schema('tenant_template', 'stolen', false)")
        .expect("structure only");
    assert_eq!(count(&mut su, "SELECT count(*) FROM stolen.customers"), 0);
}

#[test]
fn copy_data_refreshes_materialized_views_only_once_the_copys_policies_exist() {
    // The template's owner sees none of t's rows through its (forced) policy, so its materialized
    // view counts 0; the copy's must not count the rows copied before its policies existed.
    let db = TestDb::new("clone_refresh");
    tenant_admin_template(
        &db,
        "CREATE TABLE tenant_template.t (x int);
         INSERT INTO tenant_template.t VALUES (1), (2), (3);
         ALTER TABLE tenant_template.t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
         CREATE POLICY nothing ON tenant_template.t USING (x < 0);
         CREATE MATERIALIZED VIEW tenant_template.counted AS SELECT count(*) AS n FROM tenant_template.t",
    );
    let mut su = db.superuser();
    assert_eq!(count(&mut su, "SELECT n FROM tenant_template.counted"), 0);
    db.connect("admin")
        .batch_execute("SELECT tenant.clone_schema('tenant_template', 'tenant_copy', true)")
        .unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant_copy.t"), 3);
    assert_eq!(count(&mut su, "SELECT n FROM tenant_copy.counted"), 0);
}
