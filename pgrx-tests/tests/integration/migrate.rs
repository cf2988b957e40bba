//! `migrate_all` and its ledger, run as `admin` (a tenant_admin login role that owns the template
//! and tenant schemas, as a migration role would). Schemas are made by hand here: the template,
//! then per tenant `create_tenant` + a copy of the template's tables + `schema_name`.
//!
//! Concurrency is synchronised on what the server reports (pg_locks, pg_stat_activity), never on
//! sleeps: a migration is held up by a table lock the test holds.

use qft_integration_tests::postgres::{Client, Config, NoTls};
use qft_integration_tests::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHECK_QTY: &str = "ALTER TABLE items ADD CONSTRAINT items_qty_nonneg CHECK (qty >= 0)";
const ADD_EVENTS: &str = "CREATE TABLE events (id bigserial PRIMARY KEY, item integer REFERENCES items (id), \
                          at timestamptz NOT NULL DEFAULT now()); CREATE INDEX events_item_idx ON events (item)";
const ADD_COLUMN: &str = "ALTER TABLE items ADD COLUMN extra integer NOT NULL DEFAULT 7";

/// The template `tenant_template` with one table, owned by `admin`.
fn template(db: &TestDb) {
    let admin = db.role("admin");
    db.superuser()
        .batch_execute(&format!(
            "CREATE SCHEMA tenant_template AUTHORIZATION {admin};
             SET ROLE {admin};
             CREATE TABLE tenant_template.items (id integer PRIMARY KEY, qty integer NOT NULL DEFAULT 0,
                                                 label text);
             RESET ROLE;"
        ))
        .expect("template");
}

/// A tenant `slug` with schema `tenant_<slug>`: a copy of the template's tables as they are now,
/// owned by `admin`, holding one row with quantity `qty`.
fn tenant(db: &TestDb, su: &mut Client, slug: &str, qty: i32) {
    let admin = db.role("admin");
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('{slug}');
         CREATE SCHEMA tenant_{slug} AUTHORIZATION {admin};
         SET ROLE {admin};
         CREATE TABLE tenant_{slug}.items (LIKE tenant_template.items INCLUDING ALL);
         INSERT INTO tenant_{slug}.items (id, qty, label) VALUES (1, {qty}, '{slug}');
         RESET ROLE;
         UPDATE tenant.tenants SET schema_name = 'tenant_{slug}' WHERE slug = '{slug}';"
    ))
    .expect("tenant schema");
}

/// Template plus one tenant per (slug, qty).
fn fixture(label: &str, tenants: &[(&str, i32)]) -> TestDb {
    let db = TestDb::new(label);
    template(&db);
    let mut su = db.superuser();
    for (slug, qty) in tenants {
        tenant(&db, &mut su, slug, *qty);
    }
    db
}

/// Connects as `short` and collects every NOTICE and WARNING the server sends.
fn connect_noticed(db: &TestDb, short: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let user = if short == "postgres" {
        "postgres".to_string()
    } else {
        db.role(short)
    };
    let mut cfg: Config = cluster()
        .conninfo(&user, &db.name)
        .parse()
        .expect("conninfo");
    cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    (cfg.connect(NoTls).expect("connect"), notices)
}

fn migrate(client: &mut Client, version: &str, sql: &str) -> Result<(), postgres::Error> {
    client
        .execute("CALL tenant.migrate_all($1, $2)", &[&version, &sql])
        .map(|_| ())
}

/// Everything about a schema that a migration could change: relations (with their storage, so a
/// rolled-back rewrite would show), columns, constraints, indexes, and the rows of `items`.
fn shape(client: &mut Client, schema: &str) -> Vec<String> {
    let mut out: Vec<String> = client
        .query(
            "SELECT format('rel %s %s %s', c.relname, c.relkind, c.relfilenode) FROM pg_class c
              WHERE c.relnamespace = $1::text::regnamespace
             UNION ALL
             SELECT format('col %s.%s %s notnull=%s default=%s', c.relname, a.attname,
                           format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE c.relnamespace = $1::text::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
             UNION ALL
             SELECT format('con %s %s', conname, pg_get_constraintdef(oid)) FROM pg_constraint
              WHERE connamespace = $1::text::regnamespace
             UNION ALL
             SELECT format('idx %s', pg_get_indexdef(indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE c.relnamespace = $1::text::regnamespace
             ORDER BY 1",
            &[&schema],
        )
        .expect("shape")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rows: Vec<String> = client
        .query(
            &format!("SELECT i::text FROM {schema}.items i ORDER BY id"),
            &[],
        )
        .expect("rows")
        .iter()
        .map(|r| format!("row {}", r.get::<_, String>(0)))
        .collect();
    out.extend(rows);
    out
}

/// Like `shape`, without storage identities (for comparing two databases).
fn portable_shape(client: &mut Client, schema: &str) -> Vec<String> {
    shape(client, schema)
        .into_iter()
        .map(|s| {
            if let Some(rest) = s.strip_prefix("rel ") {
                let mut parts: Vec<&str> = rest.split(' ').collect();
                parts.pop();
                format!("rel {}", parts.join(" "))
            } else {
                s
            }
        })
        .collect()
}

/// (schema, version, status, sqlstate) for every ledger row.
fn ledger(client: &mut Client) -> Vec<(String, String, String, Option<String>)> {
    client
        .query(
            "SELECT schema_name::text, version, status, sqlstate FROM tenant.schema_migrations ORDER BY 1, 2",
            &[],
        )
        .expect("ledger")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn row_of(
    client: &mut Client,
    schema: &str,
    version: &str,
) -> (String, Option<String>, Option<String>) {
    let r = client
        .query_one(
            "SELECT status, sqlstate, error FROM tenant.schema_migrations WHERE schema_name = $1 AND version = $2",
            &[&schema, &version],
        )
        .unwrap_or_else(|e| panic!("ledger row {schema} {version}: {e}"));
    (r.get(0), r.get(1), r.get(2))
}

fn started_at(client: &mut Client, schema: &str, version: &str) -> String {
    client
        .query_one(
            "SELECT started_at::text FROM tenant.schema_migrations WHERE schema_name = $1 AND version = $2",
            &[&schema, &version],
        )
        .expect("started_at")
        .get(0)
}

/// Every piece of state migrate_all may touch, for "nothing changed" checks.
fn everything(su: &mut Client, schemas: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = su
        .query(
            "SELECT 'migration ' || m::text FROM tenant.migrations m
             UNION ALL SELECT 'ledger ' || s::text FROM tenant.schema_migrations s
             UNION ALL SELECT 'run ' || r::text FROM tenant.migration_runs r
             UNION ALL SELECT 'tenant ' || t::text FROM tenant.tenants t
             UNION ALL SELECT 'audit ' || count(*)::text FROM tenant.audit_log
             UNION ALL SELECT 'schemas ' || string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace
             ORDER BY 1",
            &[],
        )
        .expect("state")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for s in schemas {
        out.extend(shape(su, s));
    }
    out
}

/// Polls `sql` (a boolean query, $1 = pid) until it is true; fails after a minute.
#[track_caller]
fn wait_until(client: &mut Client, sql: &str, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok: bool = client.query_one(sql, &[&pid]).expect("poll").get(0);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {sql} (pid {pid})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const WAITS_ON_ITEMS_OF_B: &str =
    "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $1 AND NOT granted \
                                   AND relation = 'tenant_b.items'::regclass)";
const WAITS_ON_RUN_LOCK: &str =
    "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $1 AND NOT granted \
                                 AND locktype = 'advisory' AND classid = 1363563520 AND objid = 1)";
const GONE: &str = "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)";

/// What schema_drift reports (for one schema or all) as "schema | object | difference", with
/// the server's message on failure.
#[track_caller]
fn drift(client: &mut Client, schema: Option<&str>) -> Vec<String> {
    match client.query(
        "SELECT format('%s | %s | %s', schema, object, difference) FROM tenant.schema_drift($1)",
        &[&schema],
    ) {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) => panic!("schema_drift: {:?}", e.as_db_error()),
    }
}

const NO_DRIFT: [String; 0] = [];

fn notices_contain(notices: &Arc<Mutex<Vec<String>>>, needle: &str) -> bool {
    notices.lock().unwrap().iter().any(|n| n.contains(needle))
}

#[test]
fn a_failing_tenant_is_rolled_back_alone_recorded_and_retried_after_the_fix() {
    let db = fixture("mig_fail", &[("a", 1), ("b", -5), ("c", 3)]);
    let mut su = db.superuser();
    let b_before = shape(&mut su, "tenant_b");
    let (mut admin, notices) = connect_noticed(&db, "admin");

    migrate(&mut admin, "v1", CHECK_QTY).expect("a tenant's failure does not fail the call");

    assert_eq!(
        ledger(&mut su),
        [
            ("tenant_a".into(), "v1".into(), "applied".into(), None),
            (
                "tenant_b".into(),
                "v1".into(),
                "failed".into(),
                Some("23514".into())
            ),
            ("tenant_c".into(), "v1".into(), "applied".into(), None),
            (
                "tenant_template".into(),
                "v1".into(),
                "applied".into(),
                None
            ),
        ]
    );
    let (_, _, error) = row_of(&mut su, "tenant_b", "v1");
    assert!(error.unwrap().contains("items_qty_nonneg"));
    // The failed tenant is exactly as before; the others and the template have the constraint.
    assert_eq!(shape(&mut su, "tenant_b"), b_before);
    for s in ["tenant_template", "tenant_a", "tenant_c"] {
        assert!(
            shape(&mut su, s)
                .iter()
                .any(|l| l.contains("items_qty_nonneg")),
            "{s} not migrated"
        );
    }
    assert_eq!(
        one::<String>(&mut su, "SELECT string_agg(slug || '=' || coalesce(schema_version, '-'), ',' ORDER BY slug) FROM tenant.tenants"),
        "a=v1,b=-,c=v1"
    );
    // Progress while it ran, the failure as a warning, a summary, and one audit entry.
    for n in [
        "1/3 tenants, 0 failed",
        "2/3 tenants, 1 failed",
        "3/3 tenants, 1 failed",
        "failed on schema tenant_b",
        "2 of 3 tenant schemas applied, 1 failed, 0 not attempted",
    ] {
        assert!(
            notices_contain(&notices, n),
            "no notice {n:?} in {:?}",
            notices.lock().unwrap()
        );
    }
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.audit_log WHERE action = 'migration_run' AND target = 'v1' AND (detail->>'failed')::int = 1"),
        1
    );
    // The status functions agree.
    let status = admin
        .query_one("SELECT template_status, applied, failed, running, pending FROM tenant.migration_status() WHERE version = 'v1'", &[])
        .unwrap();
    assert_eq!(
        (
            status.get::<_, String>(0),
            status.get::<_, i64>(1),
            status.get::<_, i64>(2),
            status.get::<_, i64>(3),
            status.get::<_, i64>(4)
        ),
        ("applied".to_string(), 2, 1, 0, 0)
    );
    assert_eq!(
        one::<String>(&mut admin, "SELECT string_agg(schema_name || ':' || array_to_string(missing, ','), ';') FROM tenant.outdated_schemas()"),
        "tenant_b:v1"
    );

    // Fix the data; the same call again migrates only tenant_b.
    let untouched: Vec<String> = ["tenant_template", "tenant_a", "tenant_c"]
        .iter()
        .map(|s| started_at(&mut su, s, "v1"))
        .collect();
    su.batch_execute("UPDATE tenant_b.items SET qty = 0")
        .unwrap();
    notices.lock().unwrap().clear();
    migrate(&mut admin, "v1", CHECK_QTY).unwrap();
    assert_eq!(
        row_of(&mut su, "tenant_b", "v1"),
        ("applied".into(), None, None)
    );
    let after: Vec<String> = ["tenant_template", "tenant_a", "tenant_c"]
        .iter()
        .map(|s| started_at(&mut su, s, "v1"))
        .collect();
    assert_eq!(after, untouched, "a re-run touched an applied schema");
    assert!(
        notices_contain(&notices, "1 of 1 tenant schemas applied"),
        "{:?}",
        notices.lock().unwrap()
    );
    assert_eq!(
        one::<i32>(
            &mut su,
            "SELECT attempts FROM tenant.schema_migrations WHERE schema_name = 'tenant_b'"
        ),
        2
    );
    assert_eq!(
        one::<i64>(&mut admin, "SELECT count(*) FROM tenant.outdated_schemas()"),
        0
    );
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT schema_version FROM tenant.tenants WHERE slug = 'b'"
        ),
        "v1"
    );
}

#[test]
fn a_killed_run_leaves_no_tenant_half_migrated_and_the_next_run_finishes() {
    let db = fixture("mig_kill", &[("a", 1), ("b", 2), ("c", 3)]);
    let mut su = db.superuser();
    let before_b = shape(&mut su, "tenant_b");
    let before_c = shape(&mut su, "tenant_c");

    // Hold tenant_b's table: the migration applies tenant_a, then waits on tenant_b.
    let mut holder = db.superuser();
    holder
        .batch_execute("BEGIN; LOCK TABLE tenant_b.items IN ACCESS SHARE MODE")
        .unwrap();
    let mut migrator = db.connect("admin");
    let pid: i32 = one(&mut migrator, "SELECT pg_backend_pid()");
    let run = std::thread::spawn(move || migrate(&mut migrator, "v1", ADD_COLUMN));
    wait_until(&mut su, WAITS_ON_ITEMS_OF_B, pid);
    assert_eq!(row_of(&mut su, "tenant_a", "v1").0, "applied");
    assert_eq!(row_of(&mut su, "tenant_b", "v1").0, "running");

    assert!(one::<bool>(
        &mut su,
        &format!("SELECT pg_terminate_backend({pid})")
    ));
    wait_until(&mut su, GONE, pid);
    holder.batch_execute("COMMIT").unwrap();
    assert!(
        run.join().unwrap().is_err(),
        "the killed call reported success"
    );

    // tenant_a committed; tenant_b rolled back (still marked running), tenant_c never reached.
    assert_eq!(row_of(&mut su, "tenant_b", "v1").0, "running");
    assert_eq!(row_of(&mut su, "tenant_c", "v1").0, "pending");
    assert_eq!(shape(&mut su, "tenant_b"), before_b);
    assert_eq!(shape(&mut su, "tenant_c"), before_c);
    assert!(shape(&mut su, "tenant_a")
        .iter()
        .any(|l| l.starts_with("col items.extra")));
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.migration_runs WHERE finished_at IS NULL"
        ),
        1
    );
    let a_started = started_at(&mut su, "tenant_a", "v1");

    // The next run takes over the running row and finishes the rest (the killed session's run
    // lock went with it).
    let (mut admin, notices) = connect_noticed(&db, "admin");
    migrate(&mut admin, "v1", ADD_COLUMN).unwrap();
    assert!(
        notices_contain(
            &notices,
            "taking over 1 schema(s) left running by an interrupted run: tenant_b (v1)"
        ),
        "{:?}",
        notices.lock().unwrap()
    );
    assert!(
        ledger(&mut su).iter().all(|r| r.2 == "applied"),
        "{:?}",
        ledger(&mut su)
    );
    assert_eq!(started_at(&mut su, "tenant_a", "v1"), a_started);
    for s in ["tenant_b", "tenant_c"] {
        assert!(shape(&mut su, s)
            .iter()
            .any(|l| l.starts_with("col items.extra")));
    }
}

#[test]
fn a_second_run_waits_for_the_first_and_lock_timeout_makes_it_fail_instead() {
    let db = fixture("mig_lock", &[("a", 1), ("b", 2)]);
    let mut su = db.superuser();
    let mut holder = db.superuser();
    holder
        .batch_execute("BEGIN; LOCK TABLE tenant_b.items IN ACCESS SHARE MODE")
        .unwrap();
    let mut first = db.connect("admin");
    let first_pid: i32 = one(&mut first, "SELECT pg_backend_pid()");
    let first_run = std::thread::spawn(move || migrate(&mut first, "v1", ADD_COLUMN));
    wait_until(&mut su, WAITS_ON_ITEMS_OF_B, first_pid);

    // A second run waits on the run lock before touching anything.
    let (mut second, second_notices) = connect_noticed(&db, "admin");
    let second_pid: i32 = one(&mut second, "SELECT pg_backend_pid()");
    let second_run = std::thread::spawn(move || migrate(&mut second, "v2", ADD_EVENTS));
    wait_until(&mut su, WAITS_ON_RUN_LOCK, second_pid);
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.migrations WHERE version = 'v2'"
        ),
        0
    );

    // With lock_timeout a third run fails clearly (55P03) and changes nothing.
    let state = everything(&mut su, &["tenant_template", "tenant_a"]);
    let mut third = db.connect("admin");
    third.batch_execute("SET lock_timeout = '50ms'").unwrap();
    expect_sqlstate(migrate(&mut third, "v3", ADD_EVENTS), "55P03");
    assert_eq!(everything(&mut su, &["tenant_template", "tenant_a"]), state);

    holder.batch_execute("COMMIT").unwrap();
    first_run.join().unwrap().expect("first run");
    second_run.join().unwrap().expect("second run");
    assert!(
        notices_contain(
            &second_notices,
            &format!("waiting for the migration run in backend {first_pid} to finish")
        ),
        "{:?}",
        second_notices.lock().unwrap()
    );
    // No interleaving: v2 started on the template after v1 finished everywhere.
    assert!(one::<bool>(
        &mut su,
        "SELECT (SELECT started_at FROM tenant.schema_migrations WHERE schema_name = 'tenant_template' AND version = 'v2')
              > (SELECT max(finished_at) FROM tenant.schema_migrations WHERE version = 'v1')"
    ));
    assert!(ledger(&mut su).iter().all(|r| r.2 == "applied"));
    assert_eq!(ledger(&mut su).len(), 6);
}

#[test]
fn a_failing_template_changes_nothing_anywhere() {
    let db = fixture("mig_tmpl", &[("a", 1), ("b", 2)]);
    let mut su = db.superuser();
    migrate(&mut db.connect("admin"), "v1", CHECK_QTY).unwrap();
    let schemas = ["tenant_template", "tenant_a", "tenant_b"];
    let state = everything(&mut su, &schemas);

    // The first statement works, the second fails: the template keeps neither.
    let mut admin = db.connect("admin");
    let bad = "CREATE TABLE tags (id int); INSERT INTO no_such_table VALUES (1)";
    let msg = expect_sqlstate(migrate(&mut admin, "v2", bad), "42P01");
    assert!(msg.contains("template schema tenant_template"), "{msg}");
    assert_eq!(everything(&mut su, &schemas), state);

    // Not registered, so the version can be run again with corrected SQL (and the run lock was
    // released with the failed call: the same session can run again).
    migrate(&mut admin, "v2", "CREATE TABLE tags (id int)").unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.schema_migrations WHERE version = 'v2' AND status = 'applied'"),
        3
    );
}

#[test]
fn the_same_version_with_different_sql_is_22023() {
    let db = fixture("mig_checksum", &[("a", 1)]);
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    migrate(&mut admin, "v1", CHECK_QTY).unwrap();
    let state = everything(&mut su, &["tenant_template", "tenant_a"]);
    // Any change to the text counts, even whitespace or case.
    for other in [
        ADD_EVENTS.to_string(),
        format!("{CHECK_QTY} "),
        CHECK_QTY.to_lowercase(),
    ] {
        let msg = expect_sqlstate(migrate(&mut admin, "v1", &other), "22023");
        assert!(msg.contains("different SQL"), "{msg}");
    }
    assert_eq!(everything(&mut su, &["tenant_template", "tenant_a"]), state);
    // The same SQL again is a harmless re-run.
    migrate(&mut admin, "v1", CHECK_QTY).unwrap();
}

#[test]
fn a_tenant_failed_at_n_is_not_given_n_plus_1_until_retried_in_order() {
    let db = fixture("mig_order", &[("a", 1), ("b", -1), ("c", 1)]);
    let mut su = db.superuser();
    let (mut admin, notices) = connect_noticed(&db, "admin");
    migrate(&mut admin, "v1", CHECK_QTY).unwrap();
    let b_before = shape(&mut su, "tenant_b");
    migrate(&mut admin, "v2", ADD_EVENTS).unwrap();

    assert_eq!(row_of(&mut su, "tenant_b", "v1").0, "failed");
    let (status, sqlstate, error) = row_of(&mut su, "tenant_b", "v2");
    assert_eq!((status.as_str(), sqlstate), ("pending", None));
    assert!(error.unwrap().contains("blocked: version v1"));
    assert_eq!(
        one::<Option<String>>(&mut su, "SELECT started_at::text FROM tenant.schema_migrations WHERE schema_name = 'tenant_b' AND version = 'v2'"),
        None
    );
    assert_eq!(
        shape(&mut su, "tenant_b"),
        b_before,
        "tenant_b was given v2"
    );
    for s in ["tenant_a", "tenant_c"] {
        assert_eq!(row_of(&mut su, s, "v2").0, "applied");
    }
    assert!(notices_contain(&notices, "1 blocked by an earlier version"));
    assert_eq!(
        one::<String>(&mut admin, "SELECT schema_name || ':' || array_to_string(missing, ',') FROM tenant.outdated_schemas()"),
        "tenant_b:v1,v2"
    );
    let s = admin
        .query_one(
            "SELECT applied, failed, pending FROM tenant.migration_status() WHERE version = 'v2'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (s.get::<_, i64>(0), s.get::<_, i64>(1), s.get::<_, i64>(2)),
        (2, 0, 1)
    );

    // Fixed; retry_failed() goes through the versions in order.
    su.batch_execute("UPDATE tenant_b.items SET qty = 1")
        .unwrap();
    admin.batch_execute("CALL tenant.retry_failed()").unwrap();
    assert!(
        ledger(&mut su).iter().all(|r| r.2 == "applied"),
        "{:?}",
        ledger(&mut su)
    );
    assert!(one::<bool>(
        &mut su,
        "SELECT (SELECT started_at FROM tenant.schema_migrations WHERE schema_name = 'tenant_b' AND version = 'v2')
             >= (SELECT finished_at FROM tenant.schema_migrations WHERE schema_name = 'tenant_b' AND version = 'v1')"
    ));
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT schema_version FROM tenant.tenants WHERE slug = 'b'"
        ),
        "v2"
    );
    assert_eq!(drift(&mut su, None), NO_DRIFT);
}

#[test]
fn continue_on_error_false_stops_at_the_first_failed_tenant() {
    let db = fixture("mig_stop", &[("a", 1), ("b", -1), ("c", 1), ("d", 1)]);
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    let err = admin.execute(
        "CALL tenant.migrate_all('v1', $1, continue_on_error => false)",
        &[&CHECK_QTY],
    );
    let msg = expect_sqlstate(err, "23514");
    assert!(msg.contains("stopped") && msg.contains("tenant_b"), "{msg}");
    let statuses: Vec<String> = ledger(&mut su)
        .into_iter()
        .map(|r| format!("{}={}", r.0, r.2))
        .collect();
    assert_eq!(
        statuses,
        [
            "tenant_a=applied",
            "tenant_b=failed",
            "tenant_c=pending",
            "tenant_d=pending",
            "tenant_template=applied"
        ]
    );
    // Everything up to the failure is committed and the run lock is free.
    su.batch_execute("UPDATE tenant_b.items SET qty = 1")
        .unwrap();
    admin
        .batch_execute("CALL tenant.retry_failed('v1')")
        .unwrap();
    assert!(ledger(&mut su).iter().all(|r| r.2 == "applied"));
}

fn fifty(label: &str) -> TestDb {
    let db = TestDb::new(label);
    template(&db);
    let mut su = db.superuser();
    for i in 0..50 {
        let qty = if [7, 21, 38].contains(&i) { -1 } else { i };
        tenant(&db, &mut su, &format!("t{i:02}"), qty);
    }
    db
}

#[test]
fn parallel_two_over_fifty_tenants_ends_like_serial() {
    let serial = fifty("mig_serial");
    let parallel = fifty("mig_par");

    let mut s_admin = serial.connect("admin");
    migrate(&mut s_admin, "v1", CHECK_QTY).unwrap();
    migrate(&mut s_admin, "v2", ADD_EVENTS).unwrap();

    // The parallel run from a superuser session that switched to admin: the workers log in as the
    // session user and take the same role.
    let (mut p, notices) = connect_noticed(&parallel, "postgres");
    p.batch_execute(&format!("SET ROLE {}", parallel.role("admin")))
        .unwrap();
    let leader: i32 = one(&mut p, "SELECT pg_backend_pid()");
    for (v, sql) in [("v1", CHECK_QTY), ("v2", ADD_EVENTS)] {
        p.execute(
            "CALL tenant.migrate_all($1, $2, parallel => 2)",
            &[&v, &sql],
        )
        .unwrap();
    }
    assert!(
        notices_contain(&notices, "2 workers are applying the migration"),
        "{:?}",
        notices.lock().unwrap()
    );
    assert!(
        notices_contain(&notices, "50/50 tenants, 3 failed"),
        "{:?}",
        notices.lock().unwrap()
    );

    let mut ssu = serial.superuser();
    let mut psu = parallel.superuser();
    let ls = ledger(&mut ssu);
    assert_eq!(ls.len(), 102);
    assert_eq!(ls.iter().filter(|r| r.2 == "failed").count(), 3);
    assert_eq!(ls.iter().filter(|r| r.2 == "pending").count(), 3);
    assert_eq!(ledger(&mut psu), ls);
    let schemas: Vec<String> = psu
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas.len(), 51);
    for s in &schemas {
        assert_eq!(
            portable_shape(&mut psu, s),
            portable_shape(&mut ssu, s),
            "schema {s}"
        );
    }
    // The workers did the tenant work, as admin.
    assert_eq!(
        psu.query_one(
            "SELECT count(*) FROM tenant.schema_migrations WHERE tenant_id IS NOT NULL AND started_at IS NOT NULL AND pid = $1",
            &[&leader],
        )
        .unwrap()
        .get::<_, i64>(0),
        0
    );
    let worker_pids: i64 = one(&mut psu, "SELECT count(DISTINCT pid) FROM tenant.schema_migrations WHERE tenant_id IS NOT NULL AND started_at IS NOT NULL");
    assert!((1..=4).contains(&worker_pids), "{worker_pids} worker pids");
    assert_eq!(
        one::<String>(
            &mut psu,
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE tablename = 'events'"
        ),
        parallel.role("admin")
    );
    assert_eq!(one::<i64>(&mut psu, "SELECT count(*) FROM tenant.migration_runs WHERE parallel = 2 AND finished_at IS NOT NULL"), 2);
}

#[test]
fn a_killed_worker_is_taken_over_by_the_leader() {
    let db = fixture("mig_worker", &[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
    let mut su = db.superuser();
    let mut holder = db.superuser();
    holder
        .batch_execute("BEGIN; LOCK TABLE tenant_b.items IN ACCESS SHARE MODE")
        .unwrap();
    let (mut leader, notices) = connect_noticed(&db, "admin");
    let leader_pid: i32 = one(&mut leader, "SELECT pg_backend_pid()");
    let run = std::thread::spawn(move || {
        leader
            .execute(
                "CALL tenant.migrate_all('v1', $1, parallel => 2)",
                &[&ADD_COLUMN],
            )
            .map(|_| ())
    });
    let worker: i32 = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found: Option<i32> = su
                .query_opt(
                    "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
                     WHERE a.backend_type = 'qualityfoundry_tenant migrate' AND NOT l.granted
                       AND l.relation = 'tenant_b.items'::regclass",
                    &[],
                )
                .unwrap()
                .map(|r| r.get(0));
            if let Some(p) = found {
                break p;
            }
            assert!(Instant::now() < deadline, "no worker waited on tenant_b");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // While it waits for its workers the leader commits every second: its snapshot horizon
    // (backend_xmin) keeps moving instead of holding back vacuum for the whole run.
    let leader_xmin = "SELECT backend_xmin::text::bigint FROM pg_stat_activity WHERE pid = $1";
    let first: i64 = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let x: Option<i64> = su.query_one(leader_xmin, &[&leader_pid]).unwrap().get(0);
            if let Some(x) = x {
                break x;
            }
            assert!(
                Instant::now() < deadline,
                "the leader never showed a snapshot"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        su.batch_execute("SELECT txid_current()").unwrap(); // consume xids
        let x: Option<i64> = su.query_one(leader_xmin, &[&leader_pid]).unwrap().get(0);
        if x.is_some_and(|x| x > first) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader's xmin stayed at {first}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    assert!(one::<bool>(
        &mut su,
        &format!("SELECT pg_terminate_backend({worker})")
    ));
    wait_until(&mut su, GONE, worker);
    // The other worker finishes a, c, d; the leader then takes tenant_b over and waits on it.
    wait_until(&mut su, WAITS_ON_ITEMS_OF_B, leader_pid);
    holder.batch_execute("COMMIT").unwrap();
    run.join()
        .unwrap()
        .expect("the run survives a killed worker");
    assert!(
        ledger(&mut su).iter().all(|r| r.2 == "applied"),
        "{:?}",
        ledger(&mut su)
    );
    let b = su
        .query_one(
            "SELECT attempts, pid FROM tenant.schema_migrations WHERE schema_name = 'tenant_b'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (b.get::<_, i32>(0), b.get::<_, Option<i32>>(1)),
        (2, Some(leader_pid))
    );
    assert!(
        notices_contain(&notices, "left by a stopped worker"),
        "{:?}",
        notices.lock().unwrap()
    );
    assert_eq!(drift(&mut su, None), NO_DRIFT);
}

#[test]
fn schema_drift_reports_a_hand_added_column_and_nothing_on_a_clean_set() {
    let db = fixture("mig_drift", &[("a", 1), ("b", 2), ("c", 3)]);
    let mut admin = db.connect("admin");
    assert_eq!(drift(&mut admin, None), NO_DRIFT);
    // Still clean after migrations that add sequences, defaults, foreign keys and indexes.
    migrate(&mut admin, "v1", ADD_EVENTS).unwrap();
    assert_eq!(drift(&mut admin, None), NO_DRIFT);

    db.superuser()
        .batch_execute("ALTER TABLE tenant_b.items ADD COLUMN by_hand text")
        .unwrap();
    let rows: Vec<(String, String, String)> = admin
        .query(
            "SELECT schema::text, object, difference FROM tenant.schema_drift()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "tenant_b");
    assert_eq!(rows[0].1, "column items.by_hand");
    assert!(rows[0].2.starts_with("only in tenant_b: text"), "{rows:?}");
    assert_eq!(drift(&mut admin, Some("tenant_a")), NO_DRIFT);
    assert_eq!(drift(&mut admin, Some("tenant_b")).len(), 1);

    // Types, nullability, defaults, indexes and constraints are compared too.
    db.superuser()
        .batch_execute(
            "ALTER TABLE tenant_c.items ALTER COLUMN label TYPE varchar(10), ALTER COLUMN qty DROP NOT NULL,
                                        ALTER COLUMN qty SET DEFAULT 5;
             CREATE INDEX items_label_idx ON tenant_c.items (label);
             ALTER TABLE tenant_c.events DROP CONSTRAINT events_item_fkey;",
        )
        .unwrap();
    let objects: Vec<String> = admin
        .query(
            "SELECT object FROM tenant.schema_drift('tenant_c') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        objects,
        [
            "column items.label",
            "column items.qty",
            "constraint events_item_fkey on events",
            "index items_label_idx"
        ]
    );
    expect_sqlstate(
        admin.query("SELECT * FROM tenant.schema_drift('no_such_schema')", &[]),
        "3F000",
    );
}

#[test]
fn a_schema_cloned_from_the_template_starts_at_its_version() {
    let db = fixture("mig_mark", &[("a", 1)]);
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    migrate(&mut admin, "v1", ADD_COLUMN).unwrap();

    // What create_tenant(with_schema => true) will do, in one transaction: register the schema,
    // mark it (taking the template lock), then copy the template as it is now.
    let admin_role = db.role("admin");
    su.batch_execute(&format!(
        "BEGIN;
         SELECT tenant.create_tenant('d');
         UPDATE tenant.tenants SET schema_name = 'tenant_d' WHERE slug = 'd';
         SELECT tenant._mark_schema_at_template_version('tenant_d');
         CREATE SCHEMA tenant_d AUTHORIZATION {admin_role};
         SET LOCAL ROLE {admin_role};
         CREATE TABLE tenant_d.items (LIKE tenant_template.items INCLUDING ALL);
         COMMIT;"
    ))
    .unwrap();
    assert_eq!(row_of(&mut su, "tenant_d", "v1").0, "applied");
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT schema_version FROM tenant.tenants WHERE slug = 'd'"
        ),
        "v1"
    );

    // v1 (ADD COLUMN extra) is never run there again — it would fail if it were.
    migrate(&mut admin, "v2", ADD_EVENTS).unwrap();
    assert!(
        ledger(&mut su).iter().all(|r| r.2 == "applied"),
        "{:?}",
        ledger(&mut su)
    );
    assert_eq!(
        one::<i32>(&mut su, "SELECT attempts FROM tenant.schema_migrations WHERE schema_name = 'tenant_d' AND version = 'v1'"),
        0
    );
    assert_eq!(
        one::<i64>(&mut admin, "SELECT count(*) FROM tenant.outdated_schemas()"),
        0
    );
    assert_eq!(drift(&mut admin, None), NO_DRIFT);

    // Internal (create_tenant calls it as the extension owner): bad input as the superuser, and
    // tenant_admin members cannot call it directly.
    expect_sqlstate(
        su.query("SELECT tenant._mark_schema_at_template_version(NULL)", &[]),
        "22004",
    );
    expect_sqlstate(
        su.query(
            "SELECT tenant._mark_schema_at_template_version('public')",
            &[],
        ),
        "22023",
    );
    expect_sqlstate(
        admin.query(
            "SELECT tenant._mark_schema_at_template_version('tenant_d')",
            &[],
        ),
        "42501",
    );
}

#[test]
fn tables_a_migration_creates_are_pinned_to_their_tenant() {
    let db = fixture("mig_pin", &[("a", 1), ("b", 2)]);
    let mut su = db.superuser();
    migrate(&mut db.connect("admin"), "v1", ADD_EVENTS).unwrap();
    for schema in ["tenant_a", "tenant_b"] {
        for table in ["items", "events"] {
            let pinned: bool = one(
                &mut su,
                &format!(
                    "SELECT c.relrowsecurity AND c.relforcerowsecurity
                            AND (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname LIKE 'qft_schema%') = 2
                       FROM pg_class c WHERE c.oid = '{schema}.{table}'::regclass"
                ),
            );
            assert!(pinned, "{schema}.{table} is not pinned");
        }
    }
    su.batch_execute("INSERT INTO tenant_a.events (item) VALUES (1)")
        .unwrap();
    su.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA tenant_a TO {0}; GRANT SELECT ON tenant_a.events TO {0}",
        db.role("app")
    ))
    .unwrap();
    let mut app = db.connect("app");
    app.batch_execute("SELECT tenant.set_tenant('b')").unwrap();
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM tenant_a.events"),
        0
    );
    app.batch_execute("SELECT tenant.set_tenant('a')").unwrap();
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM tenant_a.events"),
        1
    );
}

#[test]
fn application_roles_get_42501_and_change_nothing() {
    let db = fixture("mig_priv", &[("a", 1)]);
    let mut su = db.superuser();
    migrate(&mut db.connect("admin"), "v1", CHECK_QTY).unwrap();
    let state = everything(&mut su, &["tenant_template", "tenant_a"]);
    for who in ["app", "nobody"] {
        let mut c = db.connect(who);
        for sql in [
            "CALL tenant.migrate_all('v2', 'CREATE TABLE x ()')",
            "CALL tenant.migrate_all('v2', 'CREATE TABLE x ()', false, 2)",
            "CALL tenant.retry_failed()",
            "SELECT * FROM tenant.migration_status()",
            "SELECT * FROM tenant.outdated_schemas()",
            "SELECT * FROM tenant.schema_drift()",
            "SELECT tenant._mark_schema_at_template_version('tenant_a')",
            "SELECT tenant._migration_claim(1, NULL)",
            "SELECT tenant._migration_finish(1, 'tenant_a', NULL, NULL)",
            "SELECT tenant._migration_lock()",
            "SELECT * FROM tenant.schema_migrations",
            "SELECT * FROM tenant.migrations",
            "UPDATE tenant.schema_migrations SET status = 'applied'",
        ] {
            expect_sqlstate(c.batch_execute(sql), "42501");
        }
    }
    assert_eq!(everything(&mut su, &["tenant_template", "tenant_a"]), state);

    // tenant_admin members may call the steps (the procedures run as them), but not outside a
    // run: the ledger cannot be written around the run lock.
    let mut admin = db.connect("admin");
    for sql in [
        "SELECT tenant._migration_register('v9', 'CREATE TABLE x ()', 'tenant_template', now())",
        "SELECT tenant._migration_template_step('v9', 'CREATE TABLE x ()')",
        "SELECT tenant._migration_start_run('v1', true, 1, true)",
        "SELECT tenant._migration_claim(1, NULL)",
        "SELECT tenant._migration_requeue(1)",
        "SELECT tenant._migration_end_run(1)",
    ] {
        expect_sqlstate(admin.batch_execute(sql), "55000");
    }
    expect_sqlstate(
        admin.batch_execute("SELECT tenant._migration_finish(1, 'tenant_a', NULL, NULL)"),
        "55000",
    );
    assert_eq!(everything(&mut su, &["tenant_template", "tenant_a"]), state);
}

#[test]
fn bad_input_gets_a_sqlstate_and_changes_nothing() {
    let db = fixture("mig_input", &[("a", 1)]);
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    migrate(&mut admin, "v1", CHECK_QTY).unwrap();
    su.batch_execute(&format!(
        "CREATE FUNCTION public.migrate_in_a_function() RETURNS void LANGUAGE plpgsql AS
           $$ BEGIN CALL tenant.migrate_all('v9', 'CREATE TABLE x ()'); END $$;
         GRANT EXECUTE ON FUNCTION public.migrate_in_a_function() TO {}",
        db.role("admin")
    ))
    .unwrap();
    let schemas = ["tenant_template", "tenant_a"];
    let state = everything(&mut su, &schemas);
    let long = "v".repeat(201);
    let cases: Vec<(String, &str)> = vec![
        (
            "CALL tenant.migrate_all(NULL, 'CREATE TABLE x ()')".into(),
            "22004",
        ),
        ("CALL tenant.migrate_all('v2', NULL)".into(), "22004"),
        (
            "CALL tenant.migrate_all('', 'CREATE TABLE x ()')".into(),
            "22023",
        ),
        (
            "CALL tenant.migrate_all('  ', 'CREATE TABLE x ()')".into(),
            "22023",
        ),
        (
            format!("CALL tenant.migrate_all('{long}', 'CREATE TABLE x ()')"),
            "22023",
        ),
        ("CALL tenant.migrate_all('v2', '')".into(), "22023"),
        ("CALL tenant.migrate_all('v2', ' ; ')".into(), "22023"),
        (
            "CALL tenant.migrate_all('v2', 'CREATE TABLE x ()', NULL)".into(),
            "22004",
        ),
        (
            "CALL tenant.migrate_all('v2', 'CREATE TABLE x ()', true, NULL)".into(),
            "22004",
        ),
        (
            "CALL tenant.migrate_all('v2', 'CREATE TABLE x ()', true, 0)".into(),
            "22023",
        ),
        (
            "CALL tenant.migrate_all('v2', 'CREATE TABLE x ()', true, -3)".into(),
            "22023",
        ),
        (
            "CALL tenant.migrate_all('v2', 'CREATE TABLE x ()', true, 100000)".into(),
            "22023",
        ),
        (
            "CALL tenant.retry_failed('no_such_version')".into(),
            "22023",
        ),
        ("CALL tenant.retry_failed(NULL, 0)".into(), "22023"),
        ("CALL tenant.retry_failed(NULL, NULL)".into(), "22004"),
        // COMMIT per schema is impossible inside a transaction block or a function.
        (
            "BEGIN; CALL tenant.migrate_all('v2', 'CREATE TABLE x ()')".into(),
            "25001",
        ),
        ("BEGIN; CALL tenant.retry_failed()".into(), "25001"),
        ("SELECT public.migrate_in_a_function()".into(), "2D000"),
    ];
    for (sql, code) in &cases {
        let msg = expect_sqlstate(admin.batch_execute(sql), code);
        let _ = admin.batch_execute("ROLLBACK");
        assert!(!msg.is_empty(), "{sql}");
        assert_eq!(
            everything(&mut su, &schemas),
            state,
            "{sql} changed something"
        );
    }
    // A template setting that names no schema.
    let mut su2 = db.superuser();
    su2.batch_execute("SET qualityfoundry_tenant.template_schema = 'no_such_template'")
        .unwrap();
    expect_sqlstate(migrate(&mut su2, "v2", "CREATE TABLE x ()"), "3F000");
    assert_eq!(everything(&mut su, &schemas), state);
    // After all that the session and the run lock are fine.
    migrate(&mut admin, "v2", "CREATE TABLE x ()").unwrap();
}

#[test]
fn hostile_schema_names_and_versions_are_quoted_and_bound() {
    let db = fixture("mig_hostile", &[("a", 1)]);
    let mut su = db.superuser();
    let admin = db.role("admin");
    let odd = r#"Tenant "Odd"; DROP SCHEMA tenant_a CASCADE; --"#;
    let quoted = format!("\"{}\"", odd.replace('"', "\"\""));
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('odd');
         CREATE SCHEMA {quoted} AUTHORIZATION {admin};
         SET ROLE {admin};
         CREATE TABLE {quoted}.items (LIKE tenant_template.items INCLUDING ALL);
         RESET ROLE;
         SELECT tenant.create_tenant('ghost');
         UPDATE tenant.tenants SET schema_name = 'tenant_ghost' WHERE slug = 'ghost';"
    ))
    .unwrap();
    su.execute(
        "UPDATE tenant.tenants SET schema_name = $1 WHERE slug = 'odd'",
        &[&odd],
    )
    .unwrap();

    let mut c = db.connect("admin");
    let v1 = r#"v'1"; DROP SCHEMA tenant_a CASCADE; --"#;
    migrate(&mut c, v1, ADD_COLUMN).unwrap();
    c.execute(
        "CALL tenant.migrate_all('v2', $1, parallel => 2)",
        &[&ADD_EVENTS],
    )
    .unwrap();

    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_a'"
        ),
        1
    );
    for v in [v1, "v2"] {
        assert_eq!(row_of(&mut su, odd, v).0, "applied");
        assert_eq!(row_of(&mut su, "tenant_a", v).0, "applied");
    }
    // A registered schema that does not exist fails with 3F000 (and is then blocked for v2).
    assert_eq!(
        row_of(&mut su, "tenant_ghost", v1),
        (
            "failed".into(),
            Some("3F000".into()),
            Some("schema tenant_ghost does not exist".into())
        )
    );
    assert_eq!(row_of(&mut su, "tenant_ghost", "v2").0, "pending");
    assert!(shape(&mut su, &quoted)
        .iter()
        .any(|l| l.starts_with("col items.extra")));
    assert_eq!(
        drift(&mut c, None),
        ["tenant_ghost | schema tenant_ghost | missing (registered in tenant.tenants)"]
    );
    assert_eq!(drift(&mut c, Some(odd)), NO_DRIFT);
}

#[test]
fn cancelling_a_parallel_run_stops_its_workers_and_the_next_run_finishes() {
    let db = fixture("mig_cancel", &[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
    let mut su = db.superuser();
    let before_b = shape(&mut su, "tenant_b");
    let mut holder = db.superuser();
    holder
        .batch_execute("BEGIN; LOCK TABLE tenant_b.items IN ACCESS SHARE MODE")
        .unwrap();
    let mut leader = db.connect("admin");
    let leader_pid: i32 = one(&mut leader, "SELECT pg_backend_pid()");
    let run = std::thread::spawn(move || {
        leader
            .execute(
                "CALL tenant.migrate_all('v1', $1, parallel => 2)",
                &[&ADD_COLUMN],
            )
            .map(|_| ())
    });
    let worker_waits =
        "SELECT EXISTS (SELECT FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
                        WHERE a.backend_type = 'qualityfoundry_tenant migrate' AND NOT l.granted
                          AND l.relation = 'tenant_b.items'::regclass AND $1::int IS NOT NULL)";
    wait_until(&mut su, worker_waits, 0);
    assert!(one::<bool>(
        &mut su,
        &format!("SELECT pg_cancel_backend({leader_pid})")
    ));
    expect_sqlstate(run.join().unwrap(), "57014");
    // The workers are stopped while tenant_b is still locked: none applies anything afterwards.
    wait_until(
        &mut su,
        "SELECT NOT EXISTS (SELECT FROM pg_stat_activity
                            WHERE backend_type = 'qualityfoundry_tenant migrate' AND $1::int IS NOT NULL)",
        0,
    );
    assert_eq!(row_of(&mut su, "tenant_b", "v1").0, "running");
    assert_eq!(shape(&mut su, "tenant_b"), before_b);
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1363563520 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        0,
        "a lock outlived the cancelled run"
    );
    holder.batch_execute("COMMIT").unwrap();

    let (mut admin, notices) = connect_noticed(&db, "admin");
    admin
        .execute(
            "CALL tenant.migrate_all('v1', $1, parallel => 2)",
            &[&ADD_COLUMN],
        )
        .unwrap();
    assert!(
        notices_contain(&notices, "taking over"),
        "{:?}",
        notices.lock().unwrap()
    );
    assert!(
        ledger(&mut su).iter().all(|r| r.2 == "applied"),
        "{:?}",
        ledger(&mut su)
    );
    assert_eq!(drift(&mut admin, None), NO_DRIFT);
}
