//! The schema engine on the model (issue 13): `clone_schema`, `schema_diff` and `schema_drift`
//! run on it. Every fixture clones and verifies; an independent oracle (pg_dump of the source
//! with the schema renamed equals pg_dump of the copy); one test per defect of issue 13; and
//! the reader's own mutation tests over real catalogs.

use crate::clone::{dependencies_on, diff, with_roles, AWKWARD, TEMPLATE};
use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

const KINDS: &str = include_str!("../../../crates/schema/fixtures/kinds.sql");
const APP: &str = include_str!("../../../crates/schema/fixtures/app.sql");

fn loaded(label: &str, fixtures: &[&str]) -> TestDb {
    let db = TestDb::new(label);
    let mut su = db.superuser();
    for f in fixtures {
        su.batch_execute(&with_roles(&db, f)).expect("fixture");
    }
    db
}

fn clone(su: &mut Client, source: &str, target: &str) {
    su.execute(
        "SELECT tenant.clone_schema($1::text, $2::text)",
        &[&source, &target],
    )
    .unwrap_or_else(|e| {
        panic!(
            "clone of {source}: {}",
            e.as_db_error()
                .map(|d| format!("{} {:?}", d.message(), d.detail()))
                .unwrap_or(e.to_string())
        )
    });
}

fn rust_diff(su: &mut Client, a: &str, b: &str) -> Vec<(String, Option<String>)> {
    su.query(
        "SELECT object, property FROM tenant._schema_diff_rs($1, $2)",
        &[&a, &b],
    )
    .expect("_schema_diff_rs")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// `pg_dump -s -n schema` without what differs between any two dumps (comments, the
/// per-dump \restrict key).
fn dump(db: &TestDb, schema: &str) -> String {
    let out = run(
        {
            let mut c = cluster().command("pg_dump", "postgres", &db.name);
            c.args(["--schema-only", "--no-comments", "-n"]);
            c.arg(format!("\"{}\"", schema.replace('"', "\"\"")));
            c
        },
        "pg_dump",
    );
    out.lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The oracle: the copy's dump with the copy's name written as the source's equals the
/// source's dump. The copy's name must not occur in the source's dump (so renaming cannot make
/// two different dumps equal).
fn assert_dumps_equal(db: &TestDb, source: &str, copy: &str) {
    let a = dump(db, source);
    let b = dump(db, copy);
    let quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    assert!(
        !a.contains(copy),
        "the copy's name {copy} occurs in the source's dump"
    );
    let source_ident = if plain(source) {
        source.to_string()
    } else {
        quoted(source)
    };
    let mut renamed = b
        .replace(&quoted(copy), &quoted(source))
        .replace(&format!("'{copy}'"), &format!("'{source}'"));
    if plain(copy) {
        // Unquoted spellings, at identifier boundaries.
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut out = String::with_capacity(renamed.len());
        let mut rest = renamed.as_str();
        while let Some(i) = rest.find(copy) {
            let before = if i > 0 {
                rest[..i].chars().last()
            } else {
                out.chars().last()
            };
            let after = rest[i + copy.len()..].chars().next();
            out.push_str(&rest[..i]);
            let bounded = !before.is_some_and(word) && !after.is_some_and(word);
            out.push_str(if bounded { &source_ident } else { copy });
            rest = &rest[i + copy.len()..];
        }
        out.push_str(rest);
        renamed = out;
    }
    if a != renamed {
        let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), renamed.lines().collect());
        let first = x
            .iter()
            .zip(&y)
            .position(|(p, q)| p != q)
            .unwrap_or(x.len().min(y.len()));
        panic!(
            "pg_dump of {copy} differs from pg_dump of {source} at line {first}:\n  source: {:?}\n  copy:   {:?}",
            x.get(first),
            y.get(first)
        );
    }
}

#[test]
fn every_fixture_clones_verified_and_independent_of_its_source() {
    for (label, fixtures, source) in [
        ("cat_verify_tpl", vec![TEMPLATE], "tenant_template"),
        ("cat_verify_awk", vec![AWKWARD], "Edge Case"),
        ("cat_verify_kinds", vec![KINDS], "kinds"),
        ("cat_verify_app", vec![APP], "app"),
    ] {
        let db = loaded(label, &fixtures);
        let mut su = db.superuser();
        clone(&mut su, source, "qft_rs_copy");
        // pg_depend, read independently of the extension, shows no reference to the source.
        assert_eq!(
            dependencies_on(&mut su, "qft_rs_copy", source),
            Vec::<String>::new(),
            "{source}"
        );
        assert_eq!(
            diff(&mut su, source, "qft_rs_copy"),
            Vec::<String>::new(),
            "{source}"
        );
    }
}

#[test]
fn pg_dump_oracle() {
    // Structure, and with copy_data (the rows and positions do not show in a schema-only dump,
    // the structure must still be the same once they are in).
    for (label, fixtures, source, copy_data) in [
        ("cat_dump_tpl", vec![TEMPLATE], "tenant_template", false),
        ("cat_dump_tpl_data", vec![TEMPLATE], "tenant_template", true),
        ("cat_dump_awk", vec![AWKWARD], "Edge Case", false),
        ("cat_dump_app", vec![APP], "app", false),
        ("cat_dump_app_data", vec![APP], "app", true),
        ("cat_dump_kinds", vec![KINDS], "kinds", false),
    ] {
        let db = loaded(label, &fixtures);
        let mut su = db.superuser();
        su.execute(
            "SELECT tenant.clone_schema($1::text, 'qft_oracle', $2)",
            &[&source, &copy_data],
        )
        .unwrap_or_else(|e| panic!("clone of {source}: {e}"));
        assert_dumps_equal(&db, source, "qft_oracle");
    }
}

#[test]
fn the_oracle_can_fail() {
    // A copy that differs in one thing fails the oracle.
    let db = loaded("cat_oracle_fails", &[TEMPLATE]);
    let mut su = db.superuser();
    clone(&mut su, "tenant_template", "qft_oracle_rs");
    su.batch_execute("ALTER TABLE qft_oracle_rs.scratch ALTER COLUMN v SET STORAGE MAIN")
        .unwrap();
    let r =
        std::panic::catch_unwind(|| assert_dumps_equal(&db, "tenant_template", "qft_oracle_rs"));
    assert!(r.is_err(), "the oracle missed a changed column storage");
}

// ---- issue 13's defects, each on the Rust path --------------------------------------------

#[test]
fn drift_of_a_fresh_tenant_whose_functions_name_their_schema_is_empty() {
    let db = loaded("cat_drift", &[TEMPLATE]);
    let mut su = db.superuser();
    // create_tenant refuses what the fixture has that would escape the pins (serial columns, a
    // view that is not security_invoker): apply the checker's fixes for the template first.
    let fixes: Vec<String> = su
        .query(
            "SELECT fix FROM tenant.check_isolation() WHERE severity = 'warning' AND problem LIKE 'is in the template schema%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for fix in fixes {
        su.batch_execute(&fix)
            .unwrap_or_else(|e| panic!("{fix}: {e}"));
    }
    su.batch_execute("SELECT tenant.create_tenant('acme', with_schema => true); SELECT tenant.create_tenant('globex', with_schema => true);")
        .unwrap();
    // customer_count() and log_order() name tenant_template in their bodies.
    let drift = |su: &mut Client, s: Option<&str>| -> Vec<String> {
        su.query("SELECT schema::text || ' ' || object || ': ' || difference FROM tenant.schema_drift($1)", &[&s])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(drift(&mut su, Some("tenant_acme")), Vec::<String>::new());
    assert_eq!(drift(&mut su, None), Vec::<String>::new());
    // Real drift is reported, for that schema only.
    su.batch_execute("ALTER TABLE tenant_globex.customers ADD COLUMN extra int; DROP POLICY qft_schema_guard ON tenant_acme.docs")
        .unwrap();
    assert_eq!(
        drift(&mut su, None),
        [
            "tenant_acme policy docs.qft_schema_guard: only in tenant_template",
            "tenant_globex column customers.extra: only in tenant_globex",
        ]
    );
    // Pins are compared by content with the policy template (tenant._policy_template), each
    // property on its own.
    for (alter, property) in [
        (
            "ALTER POLICY qft_schema_tenant ON tenant_globex.docs USING (true)",
            "using",
        ),
        (
            "ALTER POLICY qft_schema_tenant ON tenant_globex.docs WITH CHECK (true)",
            "with check",
        ),
        (
            "ALTER POLICY qft_cross_tenant ON tenant_globex.docs TO PUBLIC",
            "roles",
        ),
        (
            "ALTER TABLE tenant_globex.docs NO FORCE ROW LEVEL SECURITY",
            "force row security",
        ),
    ] {
        su.batch_execute("BEGIN").unwrap();
        su.batch_execute(alter).unwrap();
        let got: Vec<String> = su
            .query(
                "SELECT object || ' ' || difference FROM tenant.schema_drift('tenant_globex') WHERE object <> 'column customers.extra'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        su.batch_execute("ROLLBACK").unwrap();
        assert_eq!(got.len(), 1, "{alter}: {got:?}");
        assert!(
            got[0].contains(&format!(" {property}: ")),
            "{alter}: {got:?}"
        );
    }
    // A registered tenant schema that is gone is one row, not an error.
    su.batch_execute("DROP SCHEMA tenant_globex CASCADE")
        .unwrap();
    assert_eq!(
        drift(&mut su, None),
        [
            "tenant_acme policy docs.qft_schema_guard: only in tenant_template",
            "tenant_globex schema tenant_globex: missing (registered in tenant.tenants)",
        ]
    );
    expect_sqlstate(
        su.query("SELECT * FROM tenant.schema_drift('tenant_globex')", &[]),
        "3F000",
    );
}

#[test]
fn a_view_whose_cte_is_named_like_a_table_is_copied_pointing_at_the_copy() {
    let db = TestDb::new("cat_cte");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY, amount int);
         CREATE VIEW shop.big AS WITH orders AS (SELECT * FROM shop.orders WHERE amount > 100) SELECT id FROM orders;",
    )
    .unwrap();
    clone(&mut su, "shop", "shop_copy");
    assert_eq!(
        one::<String>(&mut su, "SELECT string_agg(DISTINCT d.refobjid::regclass::text, ',') FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                                 WHERE r.ev_class = 'shop_copy.big'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class"),
        "shop_copy.orders"
    );
    su.batch_execute("INSERT INTO shop_copy.orders VALUES (1, 500), (2, 5)")
        .unwrap();
    assert_eq!(one::<i64>(&mut su, "SELECT count(*) FROM shop_copy.big"), 1);
}

#[test]
fn index_column_statistics_are_copied_and_compared() {
    let db = loaded("cat_idxstats", &[KINDS]);
    let mut su = db.superuser();
    clone(&mut su, "kinds", "kinds_copy");
    assert_eq!(
        one::<String>(&mut su, "SELECT string_agg(attnum || '=' || attstattarget, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'kinds_copy.people_lower_idx'::regclass"),
        "1=321,2=55"
    );
    su.batch_execute("ALTER INDEX kinds_copy.people_lower_idx ALTER COLUMN 2 SET STATISTICS 56")
        .unwrap();
    assert_eq!(
        rust_diff(&mut su, "kinds", "kinds_copy"),
        [(
            "index people_lower_idx".to_string(),
            Some("column statistics".to_string())
        )]
    );
}

#[test]
fn partitions_in_another_schema_are_refused() {
    let db = TestDb::new("cat_partitions");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE SCHEMA src; CREATE SCHEMA archive;
         CREATE TABLE src.events (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE src.events_now PARTITION OF src.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE archive.events_old PARTITION OF src.events FOR VALUES FROM ('2000-01-01') TO ('2025-01-01');
         CREATE SCHEMA part; CREATE TABLE part.p_2000 PARTITION OF src.events FOR VALUES FROM ('1990-01-01') TO ('2000-01-01');",
    )
    .unwrap();
    let before: Vec<String> = one(
        &mut su,
        "SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace",
    );
    let err = su
        .execute("SELECT tenant.clone_schema('src', 'src_copy')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    let detail = err
        .as_db_error()
        .and_then(|d| d.detail())
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("archive.events_old") && detail.contains("part.p_2000"),
        "{detail}"
    );
    // A partition of a table elsewhere: its schema is refused too.
    let err = su
        .execute("SELECT tenant.clone_schema('part', 'part_copy')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    assert!(err
        .as_db_error()
        .and_then(|d| d.detail())
        .unwrap_or_default()
        .contains("src.events"));
    let after: Vec<String> = one(
        &mut su,
        "SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace",
    );
    assert_eq!(after, before, "nothing created");
}

#[test]
fn aggregates_operators_classes_collations_and_text_search_are_copied() {
    let db = loaded("cat_kinds", &[KINDS]);
    let mut su = db.superuser();
    clone(&mut su, "kinds", "k2");
    su.batch_execute("INSERT INTO k2.people SELECT * FROM kinds.people; INSERT INTO k2.orders SELECT * FROM kinds.orders;")
        .unwrap();
    for (what, sql, expected) in [
        ("aggregate", "SELECT k2.group_concat(name ORDER BY name) FROM k2.people", "Alice,bob"),
        ("moving aggregate", "SELECT string_agg(s::text, ',') FROM (SELECT k2.msum(id) OVER (ORDER BY id ROWS 1 PRECEDING) s FROM k2.people) x", "1,3"),
        ("operator", "SELECT ('ABC' OPERATOR(k2.===) 'abc')::text", "true"),
        ("prefix operator", "SELECT (OPERATOR(k2.~~~) 5)::text", "-5"),
        ("operator class", "SELECT opcname::text FROM pg_opclass c JOIN pg_index i ON c.oid = i.indclass[0] WHERE i.indexrelid = 'k2.people_name_hash'::regclass", "ci_ops"),
        ("operator class schema", "SELECT opcnamespace::regnamespace::text FROM pg_opclass WHERE opcname = 'ci_ops' AND opcnamespace = 'k2'::regnamespace", "k2"),
        ("collation", "SELECT c.collnamespace::regnamespace::text || '.' || c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation WHERE a.attrelid = 'k2.people'::regclass AND a.attname = 'name'", "k2.ci"),
        ("text search", "SELECT to_tsvector('k2.docs', 'the quick fox')::text", "'fox':3 'quick':2"),
        ("function reads the copy", "SELECT count(*)::text FROM k2.search('alice')", "1"),
        ("view on the aggregate", "SELECT all_names FROM k2.names", "Alice,bob"),
    ] {
        assert_eq!(one::<String>(&mut su, sql), expected, "{what}");
    }
}

#[test]
fn the_lock_table_hint_survives_a_failed_clone() {
    // A cluster whose lock table is small (64 locks per transaction, few backends): a clone that
    // needs more locks fails with 53200 and PostgreSQL's hint to raise max_locks_per_transaction.
    let c = Cluster::start(
        &format!("locks-{}", std::process::id()),
        PgInstall::from_env(),
        "max_locks_per_transaction = 64\nmax_connections = 5\nmax_worker_processes = 0\nmax_wal_senders = 0\nautovacuum_max_workers = 1\n",
    );
    let mut su =
        postgres::Client::connect(&c.conninfo("postgres", "postgres"), postgres::NoTls).unwrap();
    su.batch_execute("CREATE EXTENSION qualityfoundry_tenant; CREATE SCHEMA wide")
        .unwrap();
    // Enough tables that the source's lock fits and a plan step's does not. PostgreSQL 18's lock
    // table holds more for the same settings (fast-path slots grow with
    // max_locks_per_transaction), so it needs more tables.
    let tables = if PgInstall::from_env().major >= 18 {
        1000
    } else {
        200
    };
    su.batch_execute(&format!(
        "DO $$ BEGIN FOR i IN 1..{tables} LOOP \
           EXECUTE format('CREATE TABLE wide.t%s (id serial PRIMARY KEY, v text)', i); \
           IF i % 50 = 0 THEN COMMIT; END IF; END LOOP; END $$"
    ))
    .unwrap();
    let err = su
        .execute("SELECT tenant.clone_schema('wide', 'wide_copy')", &[])
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(sqlstate(&err), "53200", "{}", db.message());
    // Inside a plan step (the source lock fits): the step wrapper keeps the hint (the PL/pgSQL
    // executor of 0.1.0 dropped it).
    assert!(db.message().contains("failed at"), "{}", db.message());
    assert!(
        db.hint()
            .unwrap_or_default()
            .contains("max_locks_per_transaction"),
        "{:?}",
        db.hint()
    );
    let n: i64 = one(
        &mut su,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'wide_copy'",
    );
    assert_eq!(n, 0);
    c.pg_ctl("stop");
}

#[test]
fn an_empty_template_schema_setting_is_one_error_everywhere() {
    // Issue 13: '' was the default in two files and an error in a third. It is an error (22023)
    // for every reader of the setting, and nothing is created.
    let db = loaded("cat_tpl_setting", &[TEMPLATE]);
    let mut su = db.superuser();
    su.batch_execute("SET qualityfoundry_tenant.template_schema = ''")
        .unwrap();
    for sql in [
        "SELECT * FROM tenant.schema_drift()",
        "SELECT tenant.create_tenant('acme', with_schema => true)",
        "SELECT * FROM tenant.check_isolation()",
        "SELECT * FROM tenant.outdated_schemas()",
    ] {
        let err = su.query(sql, &[]).unwrap_err();
        assert_eq!(sqlstate(&err), "22023", "{sql}: {err}");
        assert!(
            err.as_db_error()
                .is_some_and(|d| d.message().contains("template_schema is empty")),
            "{sql}: {err}"
        );
    }
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.tenants"),
        0
    );
    su.batch_execute("RESET qualityfoundry_tenant.template_schema")
        .unwrap();
    su.query("SELECT * FROM tenant.schema_drift()", &[])
        .expect("the default template");
}

#[test]
fn the_core_crates_pin_is_the_policy_template() {
    // The extension reads the pin from tenant._policy_template; the core crate's unit tests run
    // on its own copy (qft_schema::pin::schema_pin), which must be the same template.
    use qft_schema::model::Grantee;
    let db = TestDb::new("cat_pin_copy");
    let mut su = db.superuser();
    let sql: Vec<String> = su
        .query(
            "SELECT concat_ws(' | ', polname, permissive::text, cmd, array_to_string(roles, ','), qual, with_check)
               FROM tenant._policy_template(0::oid::regclass, NULL, NULL, 42) ORDER BY polname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let core: Vec<String> = qft_schema::pin::schema_pin()
        .policies(&[("tenant_id".into(), "42".into())])
        .into_iter()
        .map(|p| {
            let cmd = p.command.polcmd().to_string();
            let roles: Vec<String> = p
                .roles
                .iter()
                .map(|g| match g {
                    Grantee::Public => "PUBLIC".to_string(),
                    Grantee::Role(r) => r.clone(),
                })
                .collect();
            [
                Some(p.name),
                Some(p.permissive.to_string()),
                Some(cmd),
                Some(roles.join(",")),
                p.using.map(|u| u.to_string()),
                p.with_check.map(|w| w.to_string()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" | ")
        })
        .collect();
    assert_eq!(core, sql);
}

// ---- the reader: mutations over real catalogs, hostile objects, privileges -----------------

#[test]
fn each_altered_property_is_one_difference() {
    let db = loaded("cat_mutations", &[TEMPLATE, KINDS]);
    let mut su = db.superuser();
    clone(&mut su, "tenant_template", "c");
    clone(&mut su, "kinds", "k");
    let reader = db.role("bi");
    let cases: Vec<(&str, &str, &str, String)> = vec![
        ("tenant_template", "column customers.notes", "storage", "ALTER TABLE c.customers ALTER COLUMN notes SET STORAGE MAIN".into()),
        ("tenant_template", "column customers.name", "not null", "ALTER TABLE c.customers ALTER COLUMN name DROP NOT NULL".into()),
        ("tenant_template", "column customers.mood", "default", "ALTER TABLE c.customers ALTER COLUMN mood SET DEFAULT 'sad'".into()),
        ("tenant_template", "column customers.notes", "statistics", "ALTER TABLE c.customers ALTER COLUMN notes SET STATISTICS 7".into()),
        ("tenant_template", "column customers.notes", "options", "ALTER TABLE c.customers ALTER COLUMN notes SET (n_distinct = 5)".into()),
        ("tenant_template", "column customers.notes", "comment", "COMMENT ON COLUMN c.customers.notes IS 'x'".into()),
        ("tenant_template", "column customers.notes", "acl", format!("GRANT SELECT (notes) ON c.customers TO {reader}")),
        ("tenant_template", "table customers", "options", "ALTER TABLE c.customers SET (fillfactor = 60)".into()),
        ("tenant_template", "table customers", "replica identity", "ALTER TABLE c.customers REPLICA IDENTITY FULL".into()),
        ("tenant_template", "table locked", "force row security", "ALTER TABLE c.locked NO FORCE ROW LEVEL SECURITY".into()),
        ("tenant_template", "table locked", "owner", format!("ALTER TABLE c.locked OWNER TO {reader}")),
        ("tenant_template", "table customers", "acl", format!("REVOKE INSERT ON c.customers FROM {reader}")),
        ("tenant_template", "constraint a_side.a_side_b_fk", "definition", "ALTER TABLE c.a_side DROP CONSTRAINT a_side_b_fk, ADD CONSTRAINT a_side_b_fk FOREIGN KEY (b_id) REFERENCES c.b_side(id)".into()),
        ("tenant_template", "index customers_lower_name_idx", "definition", "DROP INDEX c.customers_lower_name_idx; CREATE INDEX customers_lower_name_idx ON c.customers (upper(name))".into()),
        ("tenant_template", "index customers_lower_name_idx", "clustered", "ALTER TABLE c.customers CLUSTER ON customers_lower_name_idx".into()),
        ("tenant_template", "trigger \"order\".order_log", "enabled", "ALTER TABLE c.\"order\" DISABLE TRIGGER order_log".into()),
        ("tenant_template", "policy docs.docs_all", "with check", "ALTER POLICY docs_all ON c.docs WITH CHECK (id > 1)".into()),
        ("tenant_template", "policy docs.docs_all", "roles", format!("ALTER POLICY docs_all ON c.docs TO {reader}")),
        ("tenant_template", "view customer_names", "options", "ALTER VIEW c.customer_names RESET (security_invoker)".into()),
        ("tenant_template", "function customer_count()", "body", "CREATE OR REPLACE FUNCTION c.customer_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) + 1 FROM c.customers $$".into()),
        ("tenant_template", "function customer_count()", "volatility", "ALTER FUNCTION c.customer_count() VOLATILE".into()),
        ("tenant_template", "function touch()", "config", "ALTER FUNCTION c.touch() RESET search_path".into()),
        ("tenant_template", "sequence ticket_seq", "increment", "ALTER SEQUENCE c.ticket_seq INCREMENT BY 7".into()),
        ("tenant_template", "type mood", "labels", "ALTER TYPE c.mood ADD VALUE 'ecstatic'".into()),
        ("tenant_template", "domain constraint posint.posint_positive", "validated", "ALTER DOMAIN c.posint DROP CONSTRAINT posint_positive; ALTER DOMAIN c.posint ADD CONSTRAINT posint_positive CHECK (VALUE > 0) NOT VALID".into()),
        ("tenant_template", "statistics st1", "target", "ALTER STATISTICS c.st1 SET STATISTICS 9".into()),
        ("tenant_template", "schema", "comment", "COMMENT ON SCHEMA c IS 'changed'".into()),
        ("kinds", "aggregate group_concat(text)", "comment", "COMMENT ON AGGREGATE k.group_concat(text) IS 'x'".into()),
        ("kinds", "operator ===(text, text)", "comment", "COMMENT ON OPERATOR k.===(text, text) IS 'x'".into()),
        ("kinds", "collation ci", "comment", "COMMENT ON COLLATION k.ci IS 'x'".into()),
        ("kinds", "text search configuration docs", "mappings", "ALTER TEXT SEARCH CONFIGURATION k.docs DROP MAPPING FOR email".into()),
        ("kinds", "index people_lower_idx", "column statistics", "ALTER INDEX k.people_lower_idx ALTER COLUMN 1 SET STATISTICS 1".into()),
    ];
    for (source, object, property, sql) in cases {
        let copy = if source == "kinds" { "k" } else { "c" };
        su.batch_execute("BEGIN").unwrap();
        su.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let got = rust_diff(&mut su, source, copy);
        su.batch_execute("ROLLBACK").unwrap();
        assert_eq!(
            got,
            [(object.to_string(), Some(property.to_string()))],
            "{sql}"
        );
    }
}

#[test]
fn objects_planted_in_the_schema_capture_no_name_the_reader_uses() {
    // The deparsers run with the schema on search_path (after pg_catalog); an operator or function
    // the schema's owner planted under a catalog name must not be called.
    let db = TestDb::new("cat_hostile");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE SCHEMA evil; CREATE TABLE public.trap_fired (x int);
         CREATE FUNCTION evil.trap(oid, oid) RETURNS boolean LANGUAGE sql AS $$ INSERT INTO public.trap_fired VALUES (1) RETURNING true $$;
         CREATE OPERATOR evil.= (FUNCTION = evil.trap, LEFTARG = oid, RIGHTARG = oid);
         CREATE FUNCTION evil.trap_name(name, name) RETURNS boolean LANGUAGE sql AS $$ INSERT INTO public.trap_fired VALUES (2) RETURNING true $$;
         CREATE OPERATOR evil.= (FUNCTION = evil.trap_name, LEFTARG = name, RIGHTARG = name);
         CREATE FUNCTION evil.pg_get_viewdef(oid) RETURNS text LANGUAGE sql AS $$ INSERT INTO public.trap_fired VALUES (3) RETURNING 'x' $$;
         CREATE TABLE evil.t (id int PRIMARY KEY, v text CHECK (v <> ''));
         CREATE VIEW evil.v AS SELECT id FROM evil.t WHERE v IS NOT NULL;
         CREATE RULE r AS ON INSERT TO evil.v DO INSTEAD NOTHING;",
    )
    .unwrap();
    // (The rule makes the schema refused, after it was read.)
    su.query_one("SELECT tenant._schema_describe_rs('evil')::text", &[])
        .expect("describe");
    expect_sqlstate(
        su.query("SELECT * FROM tenant._clone_plan_rs('evil', 'e2')", &[]),
        "0A000",
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM public.trap_fired"),
        0
    );
}

#[test]
fn the_internal_functions_are_not_for_applications() {
    let db = loaded("cat_acl", &[TEMPLATE]);
    for role in ["app", "nobody", "support"] {
        let mut c = db.connect(role);
        for sql in [
            "SELECT * FROM tenant._clone_plan_rs('tenant_template', 'x')",
            "SELECT tenant._schema_describe_rs('tenant_template')",
            "SELECT * FROM tenant._schema_diff_rs('tenant_template', 'public')",
            "SELECT * FROM tenant._schema_drift_rs()",
            "SELECT tenant._clone_schema_rs('tenant_template', 'x')",
        ] {
            expect_sqlstate(c.batch_execute(sql), "42501");
        }
    }
    let mut su = db.superuser();
    expect_sqlstate(
        su.query("SELECT * FROM tenant._clone_plan_rs('no_such', 'x')", &[]),
        "3F000",
    );
    expect_sqlstate(
        su.query(
            "SELECT tenant._clone_schema_rs('tenant_template', 'public')",
            &[],
        ),
        "42P06",
    );
    for bad in ["pg_x", "a\"b", "", "x;y"] {
        expect_sqlstate(
            su.query(
                "SELECT tenant._clone_schema_rs('tenant_template', $1)",
                &[&bad],
            ),
            "22023",
        );
    }
}
