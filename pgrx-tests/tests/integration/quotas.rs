//! Usage and quotas (issue 16), as the application roles (`app` in acme, `app2` in globex) and the
//! management role (`admin`, tenant_admin). Row counts and sizes are checked against the
//! superuser's own reading of the tables (it bypasses row security), never against the
//! extension's figures; concurrency is synchronised on what the server reports (pg_stat_activity),
//! never on sleeps.

use qft_integration_tests::postgres::{Client, NoTls};
use qft_integration_tests::*;
use std::time::{Duration, Instant};

const MIB: i64 = 1024 * 1024;

/// acme (1) and globex (2) with `public.projects` (isolated) and a payload column.
fn quota_db(label: &str) -> TestDb {
    let db = TestDb::new(label).with_projects();
    db.superuser()
        .batch_execute("ALTER TABLE public.projects ADD COLUMN payload text")
        .expect("payload column");
    db
}

/// Inserts `n` rows of about 1 kB (incompressible, stored inline) for the client's tenant.
fn fill(c: &mut Client, from: i32, n: i32) -> Result<u64, postgres::Error> {
    c.execute(
        "INSERT INTO public.projects (id, name, payload) \
         SELECT g, 'p' || g, repeat(md5(g::text), 30) FROM generate_series($1::int, $1::int + $2::int - 1) g",
        &[&from, &n],
    )
}

/// The superuser's reading of a tenant's share of `public.projects`: the table's bytes (heap,
/// indexes, TOAST) apportioned by the tenant's rows, rounded down.
fn share_of_projects(su: &mut Client, tenant: i64) -> i64 {
    su.query_one(
        "SELECT floor(pg_total_relation_size('public.projects')::numeric * count(*) FILTER (WHERE tenant_id = $1)
                      / greatest(count(*), 1))::bigint FROM public.projects",
        &[&tenant],
    )
    .expect("oracle")
    .get(0)
}

fn refresh(admin: &mut Client) {
    admin
        .batch_execute("CALL tenant.refresh_usage()")
        .expect("refresh_usage");
}

/// One row insert as `c`'s tenant: Ok, or the SQLSTATE and message.
fn try_insert(c: &mut Client, id: i32) -> Result<(), (String, String)> {
    c.execute(
        "INSERT INTO public.projects (id, name) VALUES ($1, 'one more')",
        &[&id],
    )
    .map(|_| ())
    .map_err(|e| {
        (
            sqlstate(&e),
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default(),
        )
    })
}

fn audit_actions(su: &mut Client, tenant: i64) -> Vec<String> {
    strings(
        su,
        &format!(
            "SELECT action FROM tenant.audit_log WHERE tenant_id = {tenant} AND action LIKE 'storage_quota%' ORDER BY id"
        ),
    )
}

#[test]
fn a_tenant_over_its_storage_limit_is_write_limited_exactly_while_over() {
    let db = quota_db("quota_storage");
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    let mut app = db.connect_in("app", "acme");
    let mut app2 = db.connect_in("app2", "globex");
    admin
        .batch_execute("SELECT tenant.set_limits('acme', max_storage_mb => 1)")
        .unwrap();
    let limit = MIB;

    // Each state: the superuser's oracle says whether acme is over 1 MiB, and the refresh makes
    // the database agree; writes are refused exactly then.
    let mut next_id = 100_000;
    let mut check_state = |su: &mut Client, app: &mut Client, admin: &mut Client, what: &str| {
        refresh(admin);
        let oracle = share_of_projects(su, 1);
        let over = oracle > limit;
        let summary: (i64, bool) = {
            let r = admin
                .query_one(
                    "SELECT bytes, over_quota FROM tenant.usage_summary() WHERE tenant = 'acme'",
                    &[],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!(
            summary,
            (oracle, over),
            "{what}: usage_summary against the oracle"
        );
        next_id += 1;
        let result = try_insert(app, next_id);
        if over {
            let (code, msg) = result.expect_err(what);
            assert_eq!(code, "53400", "{what}: {msg}");
            assert!(
                msg.contains("\"acme\"") && msg.contains("limit 1 MB") && msg.contains("MB used"),
                "{msg}"
            );
        } else {
            result.unwrap_or_else(|e| panic!("{what}: refused while under the limit: {e:?}"));
        }
        over
    };

    assert!(!check_state(&mut su, &mut app, &mut admin, "a few rows"));
    // Growing past the limit is not refused until the flag says so: the staleness the README
    // documents (one sweep).
    fill(&mut app, 1000, 1500).expect("allowed: the flag is from the last sweep");
    assert!(check_state(
        &mut su,
        &mut app,
        &mut admin,
        "1500 rows of 1 kB"
    ));

    // Over the limit: every way of adding or changing acme's rows is refused, reads and DELETE
    // work, globex and cross-tenant mode are not limited.
    for sql in [
        "UPDATE public.projects SET name = 'renamed' WHERE id = 1000",
        "UPDATE public.projects SET payload = NULL WHERE id = 1001",
        "INSERT INTO public.projects (id, name) SELECT 5000, 'x' WHERE false",
    ] {
        expect_sqlstate(app.batch_execute(sql), "53400");
    }
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM public.projects"),
        1504
    );
    assert_eq!(
        app.execute("DELETE FROM public.projects WHERE id = 1000", &[])
            .unwrap(),
        1
    );
    fill(&mut app2, 1, 10).expect("globex is not limited");
    let mut support = db.connect("support");
    support
        .batch_execute(
            "SELECT tenant.enter_cross_tenant('quota test: a support fix');
             INSERT INTO public.projects (tenant_id, id, name) VALUES (1, 9000, 'support fix');
             UPDATE public.projects SET name = 'fixed' WHERE tenant_id = 1 AND id = 9000;",
        )
        .expect("cross-tenant mode keeps working");
    // A tenant_admin member working in acme's context (a migration, a DBA) is not limited.
    su.batch_execute(&format!("GRANT tenant_user TO {}", db.role("admin")))
        .unwrap();
    let mut dba = db.connect_in("admin", "acme");
    dba.batch_execute("INSERT INTO public.projects (id, name) VALUES (9001, 'dba fix')")
        .expect("tenant_admin members are not limited");

    // Deleting brings acme under the limit (its share is by rows: the space its rows left is
    // everyone's until VACUUM): writable again after the next sweep, not before.
    app.execute(
        "DELETE FROM public.projects WHERE id BETWEEN 1000 AND 2499",
        &[],
    )
    .unwrap();
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects (id, name) VALUES (7000, 'early')"),
        "53400",
    );
    assert!(!check_state(
        &mut su,
        &mut app,
        &mut admin,
        "after deleting"
    ));

    // Over again, then the limit is raised: writable at once, without a sweep.
    fill(&mut app, 20_000, 1500).unwrap();
    assert!(check_state(&mut su, &mut app, &mut admin, "over again"));
    admin
        .batch_execute("SELECT tenant.set_limits('acme', max_storage_mb => 100)")
        .unwrap();
    app.batch_execute("INSERT INTO public.projects (id, name) VALUES (7001, 'raised')")
        .expect("writable once the limit is raised");
    // And lowered again below its measured usage: limited at once.
    admin
        .batch_execute("SELECT tenant.set_limits('acme', max_storage_mb => 1)")
        .unwrap();
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects (id, name) VALUES (7002, 'lowered')"),
        "53400",
    );
    admin
        .batch_execute("SELECT tenant.clear_limits('acme')")
        .unwrap();
    app.batch_execute("INSERT INTO public.projects (id, name) VALUES (7003, 'unlimited')")
        .expect("no limit, no write-limit");

    // Every crossing, either way, is in the audit log; so is every limit change.
    assert_eq!(
        audit_actions(&mut su, 1),
        [
            "storage_quota_exceeded",
            "storage_quota_restored",
            "storage_quota_exceeded",
            "storage_quota_restored",
            "storage_quota_exceeded",
            "storage_quota_restored",
        ]
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.audit_log WHERE tenant_id = 1 AND action IN ('limits_set', 'limits_cleared')"
        ),
        4
    );
    assert!(audit_actions(&mut su, 2).is_empty(), "globex never crossed");
}

#[test]
fn usage_counts_shared_tables_exactly_and_tenant_schemas_whole() {
    let db = quota_db("quota_usage");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE SCHEMA tenant_template;
         CREATE TABLE tenant_template.notes (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text);
         CREATE MATERIALIZED VIEW tenant_template.note_count AS SELECT count(*) FROM tenant_template.notes;
         SELECT tenant.create_tenant('initech', with_schema => true);
         INSERT INTO tenant_initech.notes (body) SELECT repeat('n', 200) FROM generate_series(1, 300);
         ANALYZE tenant_initech.notes;
         CREATE TABLE public.events (tenant_id bigint NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id))
             PARTITION BY LIST (tenant_id);
         CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES IN (1);
         CREATE TABLE public.events_rest PARTITION OF public.events DEFAULT;
         SELECT tenant.enable_isolation('public.events');
         INSERT INTO public.events SELECT 1, g FROM generate_series(1, 40) g;
         INSERT INTO public.events SELECT 2, g FROM generate_series(1, 7) g;",
    )
    .unwrap();
    let mut app = db.connect_in("app", "acme");
    fill(&mut app, 1000, 50).unwrap();
    let mut admin = db.connect("admin");
    type Row = (String, i64, String, Option<i64>, i64);
    let usage = |c: &mut Client, sql: &str| -> Vec<Row> {
        c.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    };
    let all = usage(
        &mut admin,
        "SELECT tenant, tenant_id, relation::text, rows, bytes FROM tenant.usage()",
    );
    // The oracle, from the superuser: shared tables (each partition on its own) counted row by
    // row with their bytes apportioned; every table and materialized view of the tenant schema
    // whole, rows left to the planner's statistics (checked below for the analyzed table).
    let oracle = usage(
        &mut su,
        "WITH counted AS (
             SELECT 'public.projects' AS rel, tenant_id, count(*) AS n FROM public.projects GROUP BY tenant_id
             UNION ALL SELECT 'public.events_1', tenant_id, count(*) FROM ONLY public.events_1 GROUP BY tenant_id
             UNION ALL SELECT 'public.events_rest', tenant_id, count(*) FROM ONLY public.events_rest GROUP BY tenant_id)
         SELECT t.slug, t.id, c.rel::regclass::text, c.n,
                floor(pg_total_relation_size(c.rel::regclass)::numeric * c.n
                      / sum(c.n) OVER (PARTITION BY c.rel))::bigint
           FROM counted c JOIN tenant.tenants t ON t.id = c.tenant_id
         UNION ALL
         SELECT 'initech', 3, c.oid::regclass::text, NULL, pg_total_relation_size(c.oid)
           FROM pg_class c WHERE c.relnamespace = 'tenant_initech'::regnamespace AND c.relkind IN ('r', 'm')
         ORDER BY 1, 3",
    );
    let without_schema_rows = |rows: &[Row]| -> Vec<Row> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                if r.0 == "initech" {
                    r.3 = None;
                }
                r
            })
            .collect()
    };
    assert_eq!(without_schema_rows(&all), oracle);
    assert_eq!(
        all.iter()
            .filter(|r| r.0 == "initech")
            .map(|r| (r.2.as_str(), r.3))
            .collect::<Vec<_>>(),
        [
            ("tenant_initech.note_count", None),
            ("tenant_initech.notes", Some(300)),
        ],
        "schema mode: the planner's estimate, after ANALYZE; unknown before"
    );
    // One tenant: the same exact rows, through its range of each tenant index (the bytes of a
    // shared table are apportioned by an estimated total then).
    let acme = usage(
        &mut admin,
        "SELECT tenant, tenant_id, relation::text, rows, bytes FROM tenant.usage('acme')",
    );
    assert_eq!(
        acme.iter().map(|r| (r.2.clone(), r.3)).collect::<Vec<_>>(),
        oracle
            .iter()
            .filter(|r| r.0 == "acme")
            .map(|r| (r.2.clone(), r.3))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        usage(
            &mut admin,
            "SELECT tenant, tenant_id, relation::text, rows, bytes FROM tenant.usage('3')"
        ),
        all.iter()
            .filter(|r| r.0 == "initech")
            .cloned()
            .collect::<Vec<_>>(),
        "a tenant by id"
    );
    // The summary lists every tenant, also one without data.
    su.batch_execute("SELECT tenant.create_tenant('empty', tier => 'pro')")
        .unwrap();
    let summary: Vec<(String, i64, String, i64, bool)> = admin
        .query(
            "SELECT tenant, tenant_id, tier, bytes, over_quota FROM tenant.usage_summary()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let total = |slug: &str| {
        oracle
            .iter()
            .filter(|r| r.0 == slug)
            .map(|r| r.4)
            .sum::<i64>()
    };
    assert_eq!(
        summary,
        vec![
            (
                "acme".to_string(),
                1,
                "free".to_string(),
                total("acme"),
                false
            ),
            ("empty".to_string(), 4, "pro".to_string(), 0, false),
            (
                "globex".to_string(),
                2,
                "free".to_string(),
                total("globex"),
                false
            ),
            (
                "initech".to_string(),
                3,
                "free".to_string(),
                total("initech"),
                false
            ),
        ]
    );
    // Bad input and the wrong role.
    expect_sqlstate(
        admin.query("SELECT * FROM tenant.usage('nope')", &[]),
        "22023",
    );
    for role in ["app", "support", "nobody"] {
        let mut c = db.connect(role);
        expect_sqlstate(c.query("SELECT * FROM tenant.usage()", &[]), "42501");
        expect_sqlstate(
            c.query("SELECT * FROM tenant.usage_summary()", &[]),
            "42501",
        );
        expect_sqlstate(c.batch_execute("CALL tenant.refresh_usage()"), "42501");
    }
}

/// The usage of a table is counted as its owner in a security-restricted operation: an index
/// predicate calling the owner's function runs as the owner (restricted), never as the extension
/// owner (a superuser).
#[test]
fn counting_rows_runs_nothing_of_the_table_as_the_extension_owner() {
    let db = quota_db("quota_planted");
    let mut su = db.superuser();
    let owner = db.role("bi");
    // The table's owner plants an IMMUTABLE function in an index predicate; the planner evaluates
    // it (constant folding) whenever it plans a query on the table. It reports who ran it.
    su.batch_execute(&format!(
        "GRANT CREATE ON SCHEMA public TO {owner};
         CREATE TABLE public.owned (tenant_id bigint NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id));
         ALTER TABLE public.owned OWNER TO {owner};
         CREATE FUNCTION public.planted() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
         BEGIN
             RAISE NOTICE 'planted ran as % (superuser: %)', current_user,
                 (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
             RETURN true;
         END $$;
         ALTER FUNCTION public.planted() OWNER TO {owner};
         SET ROLE {owner};
         CREATE INDEX owned_planted ON public.owned (id) WHERE public.planted();
         RESET ROLE;
         SELECT tenant.enable_isolation('public.owned');
         INSERT INTO public.owned VALUES (1, 1), (1, 2), (2, 3);"
    ))
    .unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    let mut cfg: qft_integration_tests::postgres::Config = db
        .cluster
        .conninfo(&db.role("admin"), &db.name)
        .parse()
        .unwrap();
    cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    let mut admin = cfg.connect(NoTls).unwrap();
    for sql in [
        "SELECT tenant, rows FROM tenant.usage() WHERE relation = 'public.owned'::regclass ORDER BY 1",
        "SELECT tenant, rows FROM tenant.usage('acme') WHERE relation = 'public.owned'::regclass ORDER BY 1",
    ] {
        let rows: Vec<(String, i64)> = admin
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(rows[0], ("acme".to_string(), 2), "{sql}");
    }
    let seen = notices.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "the planted predicate was never evaluated, so this test proves nothing"
    );
    for n in &seen {
        assert_eq!(n, &format!("planted ran as {owner} (superuser: f)"));
    }
}

/// What an application role that can run any SQL would try, while its tenant is write-limited.
#[test]
fn the_storage_guard_cannot_be_dodged_or_switched_off_by_the_application() {
    let db = quota_db("quota_attack");
    let mut su = db.superuser();
    let (app_role, app2_role) = (db.role("app"), db.role("app2"));
    su.batch_execute(&format!(
        "CREATE TABLE public.parts (tenant_id bigint NOT NULL, id int NOT NULL, name text, PRIMARY KEY (tenant_id, id))
             PARTITION BY LIST (tenant_id);
         CREATE TABLE public.parts_acme PARTITION OF public.parts FOR VALUES IN (1);
         CREATE TABLE public.parts_rest PARTITION OF public.parts DEFAULT;
         SELECT tenant.enable_isolation('public.parts');
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.parts, public.parts_acme, public.parts_rest TO {app_role}, {app2_role};
         CREATE SCHEMA appown AUTHORIZATION {app_role};"
    ))
    .unwrap();
    let mut app = db.connect_in("app", "acme");
    fill(&mut app, 1000, 1200).unwrap();
    app.batch_execute("INSERT INTO public.parts VALUES (1, 1, 'a')")
        .unwrap();
    // The app's own view and function, made while it could still write.
    app.batch_execute(
        "CREATE VIEW appown.v AS SELECT * FROM public.projects;
         CREATE FUNCTION appown.sneak(i int) RETURNS void LANGUAGE sql SECURITY DEFINER
             AS $$ INSERT INTO public.projects (id, name) VALUES (i, 'sneak') $$;",
    )
    .unwrap();
    // A SECURITY DEFINER function of a tenant_admin member, callable by the application: its
    // owner's exemption is not lent to the caller.
    su.batch_execute(&format!(
        "CREATE SCHEMA adminown AUTHORIZATION {admin};
         SET ROLE {admin};
         CREATE FUNCTION adminown.insert_for_me(i int) RETURNS void LANGUAGE sql SECURITY DEFINER
             SET search_path = pg_catalog AS $$ INSERT INTO public.projects (id, name) VALUES (i, 'lent') $$;
         GRANT USAGE ON SCHEMA adminown TO {app_role};
         GRANT EXECUTE ON FUNCTION adminown.insert_for_me(int) TO {app_role};
         RESET ROLE;",
        admin = db.role("admin")
    ))
    .unwrap();
    let mut admin = db.connect("admin");
    admin
        .batch_execute(
            "SELECT tenant.set_limits('acme', max_storage_mb => 1); CALL tenant.refresh_usage();",
        )
        .unwrap();
    let before = db.all_projects();
    let counters = |su: &mut Client| -> (i64, i64) {
        (
            one(
                &mut *su,
                "SELECT count(*) FROM public.projects WHERE tenant_id = 1",
            ),
            one(
                &mut *su,
                "SELECT count(*) FROM public.parts WHERE tenant_id = 1",
            ),
        )
    };
    let rows_before = counters(&mut su);

    // Every write path: refused with 53400.
    for sql in [
        "INSERT INTO public.projects (id, name) VALUES (5001, 'plain') ON CONFLICT DO NOTHING",
        "INSERT INTO public.projects (id, name) VALUES (100, 'upsert') ON CONFLICT (tenant_id, id) DO UPDATE SET name = 'upserted'",
        "WITH w AS (INSERT INTO public.projects (id, name) VALUES (5002, 'cte') RETURNING 1) SELECT count(*) FROM w",
        "WITH w AS (UPDATE public.projects SET name = 'cte' WHERE id = 100 RETURNING 1) SELECT count(*) FROM w",
        "MERGE INTO public.projects p USING (SELECT 5003 AS id) s ON p.id = s.id WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, 'merge')",
        "MERGE INTO public.projects p USING (SELECT 100 AS id) s ON p.id = s.id WHEN MATCHED THEN UPDATE SET name = 'merge'",
        "INSERT INTO appown.v (id, name) VALUES (5004, 'view')",
        "UPDATE appown.v SET name = 'view' WHERE id = 100",
        "SELECT appown.sneak(5005)",
        "SELECT adminown.insert_for_me(5009)",
        "INSERT INTO public.parts VALUES (1, 2, 'parent')",
        "INSERT INTO public.parts_acme VALUES (1, 3, 'partition directly')",
        "UPDATE public.parts_acme SET name = 'partition directly'",
        "DO $$ BEGIN INSERT INTO public.projects (id, name) VALUES (5006, 'do'); END $$",
    ] {
        let msg = expect_sqlstate(app.batch_execute(sql), "53400");
        assert!(msg.contains("\"acme\""), "{sql}: {msg}");
    }
    // COPY FROM is no way round: PostgreSQL refuses it on a table with row security.
    // (On a connection of its own: the refused COPY leaves the client's protocol state behind.)
    expect_sqlstate(
        db.connect_in("app", "acme")
            .copy_in::<_>("COPY public.projects (id, name) FROM STDIN")
            .map(|_| "copying"),
        "0A000",
    );
    // Switching the guard off, forging the flag, resetting it, changing the limit: refused.
    for (sql, code) in [
        ("SET session_replication_role = replica", "42501"),
        (
            "ALTER TABLE public.projects DISABLE TRIGGER qft_storage_quota",
            "42501",
        ),
        ("ALTER TABLE public.projects DISABLE TRIGGER ALL", "42501"),
        ("DROP TRIGGER qft_storage_quota ON public.projects", "42501"),
        ("UPDATE tenant.quota_state SET over_quota = false", "42501"),
        ("DELETE FROM tenant.quota_state", "42501"),
        ("TRUNCATE tenant.quota_state", "42501"),
        (
            "SELECT tenant.set_limits('acme', max_storage_mb => 1000)",
            "42501",
        ),
        ("SELECT tenant.clear_limits('acme')", "42501"),
        ("CALL tenant.refresh_usage()", "42501"),
        ("SELECT tenant._quota_changed()", "42501"),
        ("SELECT tenant._refresh_usage()", "42501"),
        ("SELECT tenant._quota_reassess(1)", "42501"),
        (
            "SELECT * FROM tenant._table_usage('public.projects'::regclass, 'tenant_id', NULL)",
            "42501",
        ),
        ("SELECT tenant._storage_guard()", "42501"),
        (
            "SET qualityfoundry_tenant.usage_refresh_interval = 0",
            "55P02",
        ),
        ("SET qualityfoundry_tenant.max_tenants = -1", "42501"),
    ] {
        expect_sqlstate(app.batch_execute(sql), code);
    }
    // A startup option does not switch it off either (a non-superuser cannot even connect so),
    // nor does a forged worker interval.
    expect_sqlstate(
        db.try_connect("app", "-c session_replication_role=replica")
            .map(|_| "connected"),
        "42501",
    );
    let mut forged = db
        .try_connect("app", "-c qualityfoundry_tenant.usage_refresh_interval=0")
        .expect("a placeholder until the library loads");
    forged
        .query_one("SELECT tenant.set_tenant('acme')", &[])
        .unwrap();
    expect_sqlstate(
        forged.batch_execute("INSERT INTO public.projects (id, name) VALUES (5008, 'option')"),
        "53400",
    );
    // Nothing of acme's changed; reads and DELETE still work; the other tenant writes.
    assert_eq!(counters(&mut su), rows_before);
    assert_eq!(db.all_projects(), before);
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM appown.v"),
        1200 + 3
    );
    app.batch_execute("DELETE FROM public.parts_acme").unwrap();
    let mut app2 = db.connect_in("app2", "globex");
    app2.batch_execute("INSERT INTO public.parts VALUES (2, 1, 'globex'); UPDATE public.projects SET name = 'g' WHERE id = 200")
        .expect("globex is not limited");
}

fn runs_db(label: &str) -> TestDb {
    let db = TestDb::new(label);
    let mut su = db.superuser();
    su.batch_execute(
        "SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
         CREATE TABLE public.runs (tenant_id bigint NOT NULL, id bigserial, note text,
                                   PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (tenant_id);
         CREATE TABLE public.runs_0 PARTITION OF public.runs FOR VALUES WITH (modulus 2, remainder 0);
         CREATE TABLE public.runs_1 PARTITION OF public.runs FOR VALUES WITH (modulus 2, remainder 1);
         SELECT tenant.enable_isolation('public.runs');",
    )
    .unwrap();
    for short in ["app", "app2", "support"] {
        su.batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON public.runs, public.runs_0, public.runs_1 TO {0};
             GRANT USAGE ON SEQUENCE public.runs_id_seq TO {0}",
            db.role(short)
        ))
        .unwrap();
    }
    db
}

fn runs_of(su: &mut Client, tenant: i64) -> i64 {
    su.query_one(
        "SELECT count(*) FROM public.runs WHERE tenant_id = $1",
        &[&tenant],
    )
    .unwrap()
    .get(0)
}

#[test]
fn the_rate_limit_holds_exactly_under_concurrent_inserts_of_one_tenant() {
    const LIMIT: i64 = 25;
    const SESSIONS: usize = 4;
    const ATTEMPTS: usize = 12;
    let db = runs_db("quota_rate_race");
    let mut admin = db.connect("admin");
    admin
        .batch_execute(&format!("SELECT tenant.limit_rate('public.runs', {LIMIT})"))
        .unwrap();
    // The first insert of the day creates acme's counter row.
    let mut first = db.connect_in("app", "acme");
    first
        .batch_execute("INSERT INTO public.runs (note) VALUES ('first')")
        .unwrap();
    // Hold the counter row, so every session's first insert queues behind it; release when all
    // of them wait, so they really run at the same time.
    let mut su = db.superuser();
    let mut gate = db.superuser();
    gate.batch_execute("BEGIN; SELECT * FROM tenant.rate_counters WHERE tenant_id = 1 FOR UPDATE")
        .unwrap();
    let cluster = db.cluster;
    let (role, name) = (db.role("app"), db.name.clone());
    let handles: Vec<_> = (0..SESSIONS)
        .map(|s| {
            let (role, name) = (role.clone(), name.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&cluster.conninfo(&role, &name), NoTls).unwrap();
                c.query_one("SELECT tenant.set_tenant('acme')", &[]).unwrap();
                let (mut ok, mut refused) = (0i64, 0i64);
                for i in 0..ATTEMPTS {
                    // One single-row and one two-row statement in turn.
                    let sql = if i % 2 == 0 {
                        format!("INSERT INTO public.runs (note) VALUES ('s{s} i{i}')")
                    } else {
                        format!("INSERT INTO public.runs (note) VALUES ('s{s} i{i} a'), ('s{s} i{i} b')")
                    };
                    let rows = if i % 2 == 0 { 1 } else { 2 };
                    match c.batch_execute(&sql) {
                        Ok(()) => ok += rows,
                        Err(e) => {
                            assert_eq!(sqlstate(&e), "53400", "{e}");
                            refused += rows;
                        }
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND usename = $1 AND wait_event_type = 'Lock'",
                &[&role],
            )
            .unwrap()
            .get(0);
        if waiting as usize == SESSIONS {
            break;
        }
        assert!(Instant::now() < deadline, "only {waiting} sessions queued");
        std::thread::yield_now();
    }
    gate.batch_execute("COMMIT").unwrap();
    let (ok, refused) = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let attempted = (SESSIONS * ATTEMPTS / 2 * 3) as i64;
    assert_eq!(ok + refused, attempted);
    // Never more than the limit; and the sessions kept inserting until it was reached (what was
    // refused is what would have passed it, statement by statement).
    let stored = runs_of(&mut su, 1);
    assert_eq!(stored, 1 + ok);
    assert!(stored <= LIMIT, "{stored} rows past a limit of {LIMIT}");
    assert!(
        stored >= LIMIT - 1,
        "only {stored} of {LIMIT}: a statement was refused below the limit"
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT inserts FROM tenant.rate_counters WHERE tenant_id = 1"
        ),
        stored
    );
    // Another tenant is unaffected, and has its own counter row.
    let mut app2 = db.connect_in("app2", "globex");
    for _ in 0..(LIMIT + 2) {
        app2.batch_execute("INSERT INTO public.runs (note) VALUES ('g')")
            .unwrap_or_else(|e| {
                if sqlstate(&e) != "53400" {
                    panic!("{e}")
                }
            });
    }
    assert_eq!(runs_of(&mut su, 2), LIMIT);
}

#[test]
fn the_rate_limit_falls_back_to_max_runs_per_day_counts_partitions_and_resists_the_tenant() {
    let db = runs_db("quota_rate");
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    admin
        .batch_execute(
            "SELECT tenant.limit_rate('public.runs');
             SELECT tenant.set_limits('acme', max_runs_per_day => 3);",
        )
        .unwrap();
    let mut app = db.connect_in("app", "acme");
    // A statement that would pass the limit is refused whole.
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.runs (note) VALUES ('1'), ('2'), ('3'), ('4')"),
        "53400",
    );
    assert_eq!(runs_of(&mut su, 1), 0);
    app.batch_execute("INSERT INTO public.runs (note) VALUES ('1'), ('2')")
        .unwrap();
    // Straight into acme's partition: counted against the table's limit just the same.
    let part: String = one(
        &mut su,
        "SELECT tableoid::regclass::text FROM public.runs WHERE tenant_id = 1 LIMIT 1",
    );
    app.batch_execute(&format!(
        "INSERT INTO {part} (tenant_id, note) VALUES (1, '3')"
    ))
    .unwrap();
    let msg = expect_sqlstate(
        app.batch_execute(&format!(
            "INSERT INTO {part} (tenant_id, note) VALUES (1, '4')"
        )),
        "53400",
    );
    assert!(
        msg.contains("\"acme\"") && msg.contains("3 inserts per day"),
        "{msg}"
    );
    for sql in [
        "INSERT INTO public.runs (note) VALUES ('again')",
        "INSERT INTO public.runs (note) SELECT 'x' FROM generate_series(1, 2)",
        "WITH w AS (INSERT INTO public.runs (note) VALUES ('cte') RETURNING 1) SELECT count(*) FROM w",
        "MERGE INTO public.runs r USING (SELECT 'merge' AS note) s ON false WHEN NOT MATCHED THEN INSERT (note) VALUES (s.note)",
    ] {
        expect_sqlstate(app.batch_execute(sql), "53400");
    }
    // The tenant cannot reset or raise its count.
    for sql in [
        "DELETE FROM tenant.rate_counters",
        "UPDATE tenant.rate_counters SET inserts = 0",
        "SELECT tenant.limit_rate('public.runs', 1000)",
        "SELECT tenant.drop_rate_limit('public.runs')",
        "SELECT tenant.set_limits('acme', max_runs_per_day => 1000)",
        "ALTER TABLE public.runs DISABLE TRIGGER qft_rate_limit",
        "SET session_replication_role = replica",
    ] {
        expect_sqlstate(app.batch_execute(sql), "42501");
    }
    // Deleting runs does not give the day's inserts back.
    app.batch_execute("DELETE FROM public.runs").unwrap();
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.runs (note) VALUES ('after delete')"),
        "53400",
    );
    // globex has no max_runs_per_day: unlimited, but counted.
    let mut app2 = db.connect_in("app2", "globex");
    for _ in 0..5 {
        app2.batch_execute("INSERT INTO public.runs (note) VALUES ('g')")
            .unwrap();
    }
    // Cross-tenant mode is not rate-limited (and not counted).
    let mut support = db.connect("support");
    support
        .batch_execute(
            "SELECT tenant.enter_cross_tenant('quota test: backfill runs');
             INSERT INTO public.runs (tenant_id, note) VALUES (1, 'support');",
        )
        .unwrap();
    let counters: Vec<(i64, i64)> = su
        .query(
            "SELECT tenant_id, inserts FROM tenant.rate_counters WHERE relid = 'public.runs'::regclass ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(counters, [(1, 3), (2, 5)]);
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.audit_log WHERE action = 'rate_limit_reached' AND tenant_id = 1"
        ),
        1
    );
    // An explicit table limit wins over max_runs_per_day; dropping the limit lets acme insert.
    admin
        .batch_execute("SELECT tenant.limit_rate('public.runs', 5)")
        .unwrap();
    app.batch_execute("INSERT INTO public.runs (note) VALUES ('4'), ('5')")
        .unwrap();
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.runs (note) VALUES ('6')"),
        "53400",
    );
    admin
        .batch_execute("SELECT tenant.drop_rate_limit('public.runs')")
        .unwrap();
    app.batch_execute("INSERT INTO public.runs (note) VALUES ('free again')")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'qft_rate_limit'"
        ),
        0,
        "dropping the limit removes its triggers from the table and its partitions"
    );
    let actions = strings(
        &mut su,
        "SELECT action FROM tenant.audit_log WHERE action LIKE 'rate_limit%' ORDER BY id",
    );
    assert_eq!(
        actions,
        [
            "rate_limit_set",
            "rate_limit_reached",
            "rate_limit_set",
            "rate_limit_reached",
            "rate_limit_removed"
        ]
    );
}

/// The registry, the limits tables and the audit log, for "nothing changed" checks.
fn quota_snapshot(su: &mut Client) -> Vec<String> {
    strings(
        su,
        "SELECT 'tenant ' || t::text FROM tenant.tenants t
         UNION ALL SELECT 'tier ' || x::text FROM tenant.tiers x
         UNION ALL SELECT 'state ' || q::text FROM tenant.quota_state q
         UNION ALL SELECT 'rate ' || (r.relid, r.counted_as, r.max_inserts_per_day)::text FROM tenant.rate_limits r
         UNION ALL SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE tgname LIKE 'qft%'
         UNION ALL SELECT 'audit ' || count(*) FROM tenant.audit_log
         ORDER BY 1",
    )
}

#[test]
fn bad_limits_are_refused_with_their_sqlstate_and_change_nothing() {
    let db = quota_db("quota_bad");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.loose (tenant_id bigint, id int);
         CREATE VIEW public.projects_view AS SELECT * FROM public.projects;
         CREATE TABLE public.parted (tenant_id bigint NOT NULL, id int) PARTITION BY LIST (tenant_id);
         CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES IN (1);
         SELECT tenant.enable_isolation('public.parted');",
    )
    .unwrap();
    let before = quota_snapshot(&mut su);
    let mut admin = db.connect("admin");
    for (sql, code) in [
        (
            "SELECT tenant.set_limits('acme', max_storage_mb => 0)",
            "22023",
        ),
        (
            "SELECT tenant.set_limits('acme', max_storage_mb => -5)",
            "22023",
        ),
        (
            "SELECT tenant.set_limits('acme', max_runs_per_day => 0)",
            "22023",
        ),
        (
            "SELECT tenant.set_limits('acme', max_storage_mb => 10, max_runs_per_day => -1)",
            "22023",
        ),
        ("SELECT tenant.set_limits('acme')", "22023"),
        (
            "SELECT tenant.set_limits('nope', max_storage_mb => 10)",
            "22023",
        ),
        (
            "SELECT tenant.set_limits(NULL, max_storage_mb => 10)",
            "22004",
        ),
        ("SELECT tenant.clear_limits('acme', false, false)", "22023"),
        ("SELECT tenant.clear_limits('acme', NULL)", "22004"),
        ("SELECT tenant.clear_limits('nope')", "22023"),
        ("SELECT tenant.set_tier_limits('gold', 10, 10)", "22023"),
        ("SELECT tenant.set_tier_limits(NULL, 10, 10)", "22004"),
        ("SELECT tenant.set_tier_limits('pro', 0, 10)", "22023"),
        ("SELECT tenant.set_tier_limits('pro', 10, -3)", "22023"),
        ("SELECT tenant.limit_rate('public.projects', 0)", "22023"),
        ("SELECT tenant.limit_rate('public.projects', -1)", "22023"),
        ("SELECT tenant.limit_rate(NULL, 5)", "22004"),
        ("SELECT tenant.limit_rate('public.loose', 5)", "22023"),
        (
            "SELECT tenant.limit_rate('public.projects_view', 5)",
            "22023",
        ),
        ("SELECT tenant.limit_rate('public.parted_1', 5)", "22023"),
        ("SELECT tenant.limit_rate('public.missing', 5)", "42P01"),
        ("SELECT tenant.drop_rate_limit('public.projects')", "22023"),
        ("SELECT tenant.drop_rate_limit(NULL)", "22004"),
        ("SELECT * FROM tenant.usage('nope')", "22023"),
    ] {
        let msg = expect_sqlstate(admin.batch_execute(sql), code);
        assert!(!msg.is_empty(), "{sql}");
    }
    // Direct writes to the registry's limits are checked too (a superuser's UPDATE).
    expect_sqlstate(
        su.batch_execute("UPDATE tenant.tenants SET max_storage_mb = 0 WHERE id = 1"),
        "23514",
    );
    assert_eq!(quota_snapshot(&mut su), before);
}

#[test]
fn tier_defaults_apply_to_new_tenants_only_and_every_change_is_audited() {
    let db = TestDb::new("quota_tiers");
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    admin
        .batch_execute(
            "SELECT tenant.create_tenant('old', tier => 'pro');
             SELECT tenant.set_tier_limits('pro', 500, 100);
             SELECT tenant.set_tier_limits('free', NULL, 10);
             SELECT tenant.create_tenant('new', tier => 'pro');
             SELECT tenant.create_tenant('small');
             SELECT tenant.create_tenant('big', tier => 'enterprise');",
        )
        .unwrap();
    type Limits = Vec<(String, Option<i32>, Option<i32>)>;
    let limits = |c: &mut Client, sql: &str| -> Limits {
        c.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    assert_eq!(
        limits(
            &mut admin,
            "SELECT slug, max_storage_mb, max_runs_per_day FROM tenant.tenants ORDER BY id"
        ),
        [
            ("old".to_string(), None, None),
            ("new".to_string(), Some(500), Some(100)),
            ("small".to_string(), None, Some(10)),
            ("big".to_string(), None, None),
        ]
    );
    assert_eq!(
        limits(
            &mut admin,
            "SELECT tier, max_storage_mb, max_runs_per_day FROM tenant.tiers ORDER BY tier"
        ),
        [
            ("free".to_string(), None, Some(10)),
            ("pro".to_string(), Some(500), Some(100))
        ]
    );
    let audit: Vec<(String, String, String)> = su
        .query(
            "SELECT action, target, acting_role::text FROM tenant.audit_log
              WHERE action IN ('tier_limits_set', 'limits_set') ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let admin_role = db.role("admin");
    assert_eq!(
        audit,
        [
            (
                "tier_limits_set".to_string(),
                "pro".to_string(),
                admin_role.clone()
            ),
            (
                "tier_limits_set".to_string(),
                "free".to_string(),
                admin_role.clone()
            ),
            (
                "limits_set".to_string(),
                "new".to_string(),
                admin_role.clone()
            ),
            (
                "limits_set".to_string(),
                "small".to_string(),
                admin_role.clone()
            ),
        ]
    );
    // The tiers and limits are dumped with the extension.
    let dumped = strings(
        &mut su,
        "SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'qualityfoundry_tenant'",
    );
    for t in ["tenant.tiers", "tenant.rate_limits", "tenant.rate_counters"] {
        assert!(dumped.iter().any(|d| d == t), "{t} not in {dumped:?}");
    }
}

#[test]
fn the_tenant_cap_refuses_create_tenant_past_it_and_creates_nothing() {
    let db = TestDb::new("quota_cap");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE SCHEMA tenant_template; CREATE TABLE tenant_template.notes (id int PRIMARY KEY);
         LOAD 'qualityfoundry_tenant';
         ALTER ROLE {} IN DATABASE {} SET qualityfoundry_tenant.max_tenants = 2;",
        db.role("admin"),
        db.name
    ))
    .unwrap();
    let mut admin = db.connect("admin");
    admin
        .batch_execute("SELECT tenant.create_tenant('one'); SELECT tenant.create_tenant('two')")
        .unwrap();
    let before = quota_snapshot(&mut su);
    let schemas = |su: &mut Client| -> i64 {
        one(su, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' AND nspname <> 'tenant_template'")
    };
    let msg = expect_sqlstate(
        admin.batch_execute("SELECT tenant.create_tenant('three', with_schema => true)"),
        "53400",
    );
    assert!(
        msg.contains("\"three\"") && msg.contains("2 tenants"),
        "{msg}"
    );
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.create_tenant('three')"),
        "53400",
    );
    // The tenant_admin cannot lift the cap: not with SET, not with a startup option (which, in a
    // session that has not loaded the library yet, replaces the role's value in the placeholder
    // and is then discarded).
    expect_sqlstate(
        admin.batch_execute("SET qualityfoundry_tenant.max_tenants = 100"),
        "42501",
    );
    let mut forged = db
        .try_connect("admin", "-c qualityfoundry_tenant.max_tenants=-1")
        .expect("connects (the option is a placeholder until the library loads)");
    expect_sqlstate(
        forged.batch_execute("SELECT tenant.create_tenant('three')"),
        "53400",
    );
    assert_eq!(
        quota_snapshot(&mut su),
        before,
        "nothing created, nothing audited"
    );
    assert_eq!(schemas(&mut su), 0);
    let reached: i64 = one(
        &mut su,
        "SELECT count(*) FROM tenant.audit_log WHERE action = 'tenant_cap_reached' AND target = 'two'",
    );
    assert_eq!(reached, 1, "the create that reached the cap is audited");
    // Dropping a tenant makes room; a superuser may lift the cap for its own session.
    admin
        .batch_execute("SELECT tenant.drop_tenant('one')")
        .unwrap();
    admin
        .batch_execute("SELECT tenant.create_tenant('three', with_schema => true)")
        .unwrap();
    su.batch_execute(
        "SET qualityfoundry_tenant.max_tenants = -1; SELECT tenant.create_tenant('four')",
    )
    .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.tenants"),
        3
    );
    let mut app = db.connect("app");
    app.batch_execute("SELECT tenant.current_tenant_id()")
        .unwrap(); // loads the library
    expect_sqlstate(
        app.batch_execute("SET qualityfoundry_tenant.max_tenants = 100"),
        "42501",
    );
}

#[test]
fn concurrent_creates_at_the_cap_let_exactly_one_through() {
    let db = TestDb::new("quota_cap_race");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "LOAD 'qualityfoundry_tenant'; ALTER DATABASE {} SET qualityfoundry_tenant.max_tenants = 1",
        db.name
    ))
    .unwrap();
    // Both creates queue on the row the cap check updates; released together.
    let mut gate = db.superuser();
    gate.batch_execute("BEGIN; SELECT * FROM tenant.quota_status FOR UPDATE")
        .unwrap();
    let cluster = db.cluster;
    let (role, name) = (db.role("admin"), db.name.clone());
    let handles: Vec<_> = ["left", "right"]
        .into_iter()
        .map(|slug| {
            let (role, name) = (role.clone(), name.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&cluster.conninfo(&role, &name), NoTls).unwrap();
                c.batch_execute(&format!("SELECT tenant.create_tenant('{slug}')"))
                    .map_err(|e| sqlstate(&e))
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while one::<i64>(
        &mut su,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND usename = '{role}' AND wait_event_type = 'Lock'"
        ),
    ) < 2
    {
        assert!(Instant::now() < deadline, "the creates did not queue");
        std::thread::yield_now();
    }
    gate.batch_execute("COMMIT").unwrap();
    let mut results: Vec<Result<(), String>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    results.sort();
    assert_eq!(results, [Ok(()), Err("53400".to_string())]);
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.tenants"),
        1
    );
}

/// The usage worker, on a cluster of its own that does not preload the library: the first write
/// to an enforced table starts it (and only one), it sweeps every interval, and it stops when the
/// interval is set to 0.
#[test]
fn the_usage_worker_starts_without_preloading_and_keeps_the_flags_fresh() {
    static WORKER_CLUSTER: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
    let c: &'static Cluster = WORKER_CLUSTER.get_or_init(|| {
        install_extension();
        Cluster::start(
            &format!("itest-usage-worker-{}", std::process::id()),
            PgInstall::from_env(),
            "max_worker_processes = 8\nqualityfoundry_tenant.usage_refresh_interval = '1s'\n",
        )
    });
    let db = TestDb::new_on(c, "quota_worker").with_projects();
    let mut su = db.superuser();
    su.batch_execute("ALTER TABLE public.projects ADD COLUMN payload text")
        .unwrap();
    let workers = |su: &mut Client| -> i64 {
        one(
            su,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'qualityfoundry_tenant usage' \
             AND datname = current_database()",
        )
    };
    let wait_for = |su: &mut Client, what: &str, sql: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !one::<bool>(su, sql) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50)); // polling server state, with a deadline
        }
    };
    // No tenant has a storage limit: nothing starts.
    let mut app = db.connect_in("app", "acme");
    fill(&mut app, 1, 10).unwrap();
    assert_eq!(workers(&mut su), 0);
    // A limit, and a write from a few sessions: exactly one worker, which measures acme.
    su.batch_execute("UPDATE tenant.tenants SET max_storage_mb = 1 WHERE slug = 'acme'")
        .unwrap();
    let mut others: Vec<Client> = (0..3).map(|_| db.connect_in("app", "acme")).collect();
    for (i, o) in others.iter_mut().enumerate() {
        fill(o, 200 + i as i32, 1).unwrap();
    }
    wait_for(
        &mut su,
        "the worker",
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'qualityfoundry_tenant usage' AND datname = current_database()",
    );
    fill(&mut app, 1000, 1500).expect("not refused before the worker measured it");
    wait_for(
        &mut su,
        "the sweep to flag acme",
        "SELECT coalesce((SELECT over_quota FROM tenant.quota_state WHERE tenant_id = 1), false)",
    );
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects (id, name) VALUES (50, 'x')"),
        "53400",
    );
    assert_eq!(workers(&mut su), 1);
    assert_eq!(
        one::<i32>(&mut su, "SELECT worker_interval_s FROM tenant.quota_status"),
        1
    );
    // Deleting is noticed without anyone calling refresh_usage.
    // (The rows were the table's last pages: VACUUM gives them back, as autovacuum would.)
    app.batch_execute("DELETE FROM public.projects WHERE id >= 1000")
        .unwrap();
    su.batch_execute("VACUUM public.projects").unwrap();
    wait_for(
        &mut su,
        "the sweep to clear acme",
        "SELECT NOT over_quota FROM tenant.quota_state WHERE tenant_id = 1",
    );
    app.batch_execute("INSERT INTO public.projects (id, name) VALUES (51, 'x')")
        .expect("writable again after the sweep");
    // Interval 0: the worker records it and stops.
    c.append_conf("qualityfoundry_tenant.usage_refresh_interval = 0\n");
    su.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(
        &mut su,
        "the worker to stop",
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'qualityfoundry_tenant usage' AND datname = current_database()",
    );
    assert_eq!(
        one::<i32>(&mut su, "SELECT worker_interval_s FROM tenant.quota_status"),
        0
    );
    drop(others);
}

fn quota_triggers(su: &mut Client) -> Vec<String> {
    strings(
        su,
        "SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger \
         WHERE tgname IN ('qft_storage_quota', 'qft_rate_limit') ORDER BY 1",
    )
}

#[test]
fn isolation_and_pinning_install_the_guards_and_disabling_removes_them() {
    let db = quota_db("quota_lifecycle");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE SCHEMA tenant_template;
         CREATE TABLE tenant_template.runs (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at timestamptz DEFAULT now());
         SELECT tenant.create_tenant('initech', with_schema => true);
         CREATE TABLE public.jobs (tenant_id bigint NOT NULL, id int);",
    )
    .unwrap();
    let mut admin = db.connect("admin");
    admin
        .batch_execute(
            "SELECT tenant.enable_isolation('public.jobs');
             SELECT tenant.limit_rate('public.jobs', 10);
             SELECT tenant.limit_rate('tenant_initech.runs', 2);",
        )
        .unwrap();
    // The extension's triggers are not drift: the template has none, as it has no pins.
    assert_eq!(
        one::<i64>(&mut admin, "SELECT count(*) FROM tenant.schema_drift()"),
        0
    );
    // A table created later in the tenant schema is pinned, and guarded, too.
    su.batch_execute("CREATE TABLE tenant_initech.later (id int)")
        .unwrap();
    assert_eq!(
        quota_triggers(&mut su),
        [
            "jobs qft_rate_limit",
            "jobs qft_storage_quota",
            "projects qft_storage_quota",
            "tenant_initech.later qft_storage_quota",
            "tenant_initech.runs qft_rate_limit",
            "tenant_initech.runs qft_storage_quota",
        ]
    );
    // A pinned table is rate-limited for its tenant.
    let mut app = db.connect_in("app", "initech");
    app.batch_execute("INSERT INTO tenant_initech.runs DEFAULT VALUES; INSERT INTO tenant_initech.runs DEFAULT VALUES")
        .unwrap();
    expect_sqlstate(
        app.batch_execute("INSERT INTO tenant_initech.runs DEFAULT VALUES"),
        "53400",
    );
    // disable_isolation removes what isolation and limit_rate added (audited); enabling again
    // brings the storage guard back, not the rate limit.
    admin
        .batch_execute("SELECT tenant.disable_isolation('public.jobs')")
        .unwrap();
    assert!(!quota_triggers(&mut su)
        .iter()
        .any(|t| t.starts_with("jobs ")));
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.rate_limits WHERE relid = 'public.jobs'::regclass"
        ),
        0
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.audit_log WHERE action = 'rate_limit_removed' AND target = 'public.jobs'"
        ),
        1
    );
    admin
        .batch_execute("SELECT tenant.enable_isolation('public.jobs'); SELECT tenant.enable_isolation('public.jobs')")
        .unwrap();
    assert_eq!(
        quota_triggers(&mut su)
            .into_iter()
            .filter(|t| t.starts_with("jobs "))
            .collect::<Vec<_>>(),
        ["jobs qft_storage_quota"]
    );
    // A tenant with measurements and counters can be dropped; they go with it.
    admin
        .batch_execute(
            "CALL tenant.refresh_usage();
             SELECT tenant.drop_tenant('initech', drop_schema => true);",
        )
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT (SELECT count(*) FROM tenant.quota_state WHERE tenant_id = 3) + (SELECT count(*) FROM tenant.rate_counters WHERE tenant_id = 3)"
        ),
        0
    );
}
