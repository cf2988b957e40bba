//! Row isolation of shared tables, tested as the attacker: a NOSUPERUSER role that owns nothing,
//! in tenant acme, against every command; after each, the superuser checks that globex's rows are
//! byte-for-byte what they were.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

fn globex_bytes(db: &TestDb) -> Vec<String> {
    db.superuser()
        .query(
            "SELECT p::text FROM public.projects p WHERE tenant_id = 2 ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn the_command_matrix_never_reaches_another_tenant() {
    let db = TestDb::new("matrix").with_projects();
    let before = globex_bytes(&db);
    let mut app = db.connect_in("app", "acme");

    // SELECT and SELECT ... FOR UPDATE: own rows only.
    assert_eq!(visible(&mut app), ACME);
    assert_eq!(
        ids(
            &mut app,
            "SELECT id FROM public.projects ORDER BY id FOR UPDATE"
        ),
        [100, 101, 102]
    );
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects WHERE id = 200"),
        Vec::<i32>::new()
    );

    // INSERT: own tenant explicitly, by default and for NULL; another tenant is refused.
    in_rollback(&mut app, |app| {
        app.batch_execute("INSERT INTO public.projects VALUES (1, 103, 'mine')")
            .unwrap();
        app.batch_execute("INSERT INTO public.projects (id, name) VALUES (104, 'default')")
            .unwrap();
        assert_eq!(
            ids(
                app,
                "SELECT id FROM public.projects WHERE tenant_id = 1 AND id > 102 ORDER BY id"
            ),
            [103, 104]
        );
    });
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects VALUES (2, 299, 'theirs')"),
        "42501",
    );
    // An explicit NULL (what an ORM sends for an unset field) is filled from the context, like
    // the default: never another tenant's row, never a row without a tenant.
    in_rollback(&mut app, |app| {
        app.batch_execute("INSERT INTO public.projects VALUES (NULL, 299, 'an ORM''s')")
            .unwrap();
        assert_eq!(
            ids(
                app,
                "SELECT id FROM public.projects WHERE tenant_id = 1 AND id = 299"
            ),
            [299]
        );
    });

    // UPDATE moving a row to another tenant, with and without WHERE; UPDATE of their rows.
    expect_sqlstate(
        app.batch_execute("UPDATE public.projects SET tenant_id = 2 WHERE id = 100"),
        "42501",
    );
    expect_sqlstate(
        app.batch_execute("UPDATE public.projects SET tenant_id = 2"),
        "42501",
    );
    assert_eq!(
        app.execute(
            "UPDATE public.projects SET name = 'pwned' WHERE id = 200",
            &[]
        )
        .unwrap(),
        0
    );
    assert_eq!(
        app.execute(
            "UPDATE public.projects SET name = 'pwned' WHERE tenant_id = 2",
            &[]
        )
        .unwrap(),
        0
    );

    // DELETE: their rows are not there to delete; a bare DELETE takes only ours.
    assert_eq!(
        app.execute("DELETE FROM public.projects WHERE id = 200", &[])
            .unwrap(),
        0
    );
    in_rollback(&mut app, |app| {
        assert_eq!(app.execute("DELETE FROM public.projects", &[]).unwrap(), 3)
    });

    // INSERT ... ON CONFLICT DO UPDATE against their key.
    expect_sqlstate(
        app.batch_execute(
            "INSERT INTO public.projects VALUES (2, 200, 'x') ON CONFLICT (tenant_id, id) DO UPDATE SET name = 'pwned'",
        ),
        "42501",
    );
    assert_eq!(
        app.execute("INSERT INTO public.projects VALUES (1, 100, 'x') ON CONFLICT (tenant_id, id) DO NOTHING", &[])
            .unwrap(),
        0
    );

    // MERGE: their row does not match (invisible), and inserting it as theirs is refused.
    expect_sqlstate(
        app.batch_execute(
            "MERGE INTO public.projects p USING (VALUES (2::bigint, 200, 'pwned')) v(t, i, n) \
             ON p.tenant_id = v.t AND p.id = v.i \
             WHEN MATCHED THEN UPDATE SET name = v.n WHEN NOT MATCHED THEN INSERT VALUES (v.t, v.i, v.n)",
        ),
        "42501",
    );
    in_rollback(&mut app, |app| {
        app.batch_execute(
            "MERGE INTO public.projects p USING (VALUES (200)) v(i) ON p.id = v.i \
             WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id, name) VALUES (v.i, 'merged')",
        )
        .unwrap();
        assert_eq!(
            ids(app, "SELECT id FROM public.projects WHERE name = 'merged'"),
            [200]
        );
    });

    // COPY TO shows our rows; COPY FROM is refused under row security.
    let mut out = String::new();
    {
        use std::io::Read;
        app.copy_out("COPY public.projects TO STDOUT")
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
    }
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.starts_with("1\t")), "{out}");
    // (On its own connection: the client library cannot reuse one whose COPY IN failed.)
    let mut copier = db.connect_in("app", "acme");
    let copy_in = (|| -> Result<u64, qft_integration_tests::postgres::Error> {
        use std::io::Write;
        let mut w = copier.copy_in("COPY public.projects FROM STDIN")?;
        w.write_all(b"2\t299\tcopied\n").unwrap();
        w.finish()
    })();
    expect_sqlstate(copy_in, "0A000");

    // RETURNING, writable CTEs and INSERT ... SELECT.
    in_rollback(&mut app, |app| {
        assert_eq!(
            ids(
                app,
                "UPDATE public.projects SET name = name || '.' RETURNING id"
            ),
            [100, 101, 102]
        );
        assert_eq!(ids(app, "WITH d AS (DELETE FROM public.projects WHERE id >= 200 RETURNING id) SELECT id FROM d"), Vec::<i32>::new());
    });
    expect_sqlstate(
        app.batch_execute(
            "INSERT INTO public.projects SELECT 2, id + 1000, name FROM public.projects",
        ),
        "42501",
    );
    in_rollback(&mut app, |app| {
        assert_eq!(app.execute("INSERT INTO public.projects (id, name) SELECT id + 1000, name FROM public.projects", &[]).unwrap(), 3);
    });

    assert_eq!(globex_bytes(&db), before);
    assert_eq!(db.all_projects().len(), 6);
}

#[test]
fn without_a_context_nothing_is_visible_and_every_write_is_rejected() {
    let db = TestDb::new("nocontext").with_projects();
    let before = db.all_projects();
    let mut app = db.connect("app");
    assert_eq!(visible(&mut app), vec![]);
    assert_eq!(
        app.execute("UPDATE public.projects SET name = 'x'", &[])
            .unwrap(),
        0
    );
    assert_eq!(app.execute("DELETE FROM public.projects", &[]).unwrap(), 0);
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects VALUES (1, 1, 'x')"),
        "42501",
    );
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects (id) VALUES (1)"),
        "42501",
    );
    assert_eq!(db.all_projects(), before);
}

#[test]
fn the_owner_is_isolated_too_and_a_later_permissive_policy_does_not_widen_access() {
    let db = TestDb::new("owner").with_projects();
    let owner = db.role("nobody");
    let mut su = db.superuser();
    su.batch_execute(&format!("ALTER TABLE public.projects OWNER TO {owner}"))
        .unwrap();
    let mut own = db.connect("nobody");
    assert_eq!(
        visible(&mut own),
        vec![],
        "FORCE row security applies to the owner"
    );
    own.batch_execute("CREATE POLICY open_all ON public.projects AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true)").unwrap();
    assert_eq!(visible(&mut own), vec![]);
    let mut app = db.connect_in("app", "acme");
    assert_eq!(visible(&mut app), ACME);
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects VALUES (2, 299, 'x')"),
        "42501",
    );
    assert_eq!(
        app.execute(
            "UPDATE public.projects SET name = 'x' WHERE tenant_id = 2",
            &[]
        )
        .unwrap(),
        0
    );
    assert_eq!(db.all_projects().len(), 6);
}

#[test]
fn a_point_query_uses_the_tenant_comparison_as_an_index_condition() {
    let db = TestDb::new("explain").with_projects();
    let mut app = db.connect_in("app", "acme");
    app.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = app
        .query(
            "EXPLAIN (COSTS OFF) SELECT name FROM public.projects WHERE id = 101",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    let cond = plan
        .lines()
        .find(|l| l.contains("Index Cond"))
        .unwrap_or_else(|| panic!("no index condition:\n{plan}"));
    assert!(
        cond.contains("tenant_id = tenant.current_tenant_id()") && cond.contains("id = 101"),
        "{plan}"
    );
}

#[test]
fn shared_rows_are_readable_by_every_tenant_and_writable_by_none() {
    let db = TestDb::new("shared").with_projects();
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE TABLE public.api_permissions (id int PRIMARY KEY, tenant_id bigint, name text);
         INSERT INTO public.api_permissions VALUES (1, NULL, 'system.read'), (2, NULL, 'system.write'),
                                                   (3, 1, 'acme.custom'), (4, 2, 'globex.custom');
         SELECT tenant.enable_isolation('public.api_permissions', allow_shared_rows => true);
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.api_permissions TO {}",
        db.role("app")
    ))
    .unwrap();
    let mut app = db.connect_in("app", "acme");
    assert_eq!(
        ids(
            &mut app,
            "SELECT id FROM public.api_permissions ORDER BY id"
        ),
        [1, 2, 3]
    );
    assert_eq!(
        app.execute(
            "UPDATE public.api_permissions SET name = 'x' WHERE id = 1",
            &[]
        )
        .unwrap(),
        0
    );
    assert_eq!(
        app.execute("DELETE FROM public.api_permissions WHERE id <= 2", &[])
            .unwrap(),
        0
    );
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.api_permissions VALUES (5, NULL, 'forged')"),
        "42501",
    );
    expect_sqlstate(
        app.batch_execute("UPDATE public.api_permissions SET tenant_id = NULL WHERE id = 3"),
        "42501",
    );
    let all: Vec<String> = su
        .query(
            "SELECT a::text FROM public.api_permissions a ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        all,
        [
            "(1,,system.read)",
            "(2,,system.write)",
            "(3,1,acme.custom)",
            "(4,2,globex.custom)"
        ]
    );
}

#[test]
fn enable_isolation_bad_arguments_change_nothing() {
    let db = TestDb::new("enable_bad");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.t (id int, tenant_id bigint, label text, owner_name text);
         INSERT INTO public.t VALUES (1, NULL, 'a', 'x'), (2, NULL, 'b', 'y'), (3, 1, 'c', 'z');
         CREATE VIEW public.v AS SELECT * FROM public.t;",
    )
    .unwrap();
    let mut admin = db.connect("admin");
    for (sql, code, needle) in [
        (
            "SELECT tenant.enable_isolation('public.t', 'nope')",
            "42703",
            "nope",
        ),
        (
            "SELECT tenant.enable_isolation('public.t', 'label')",
            "42804",
            "type text",
        ),
        (
            "SELECT tenant.enable_isolation('public.t')",
            "23502",
            "2 rows",
        ),
        (
            "SELECT tenant.enable_isolation('public.v')",
            "42809",
            "not a table",
        ),
        ("SELECT tenant.enable_isolation(NULL)", "22004", "NULL"),
        (
            "SELECT tenant.enable_isolation('public.missing')",
            "42P01",
            "missing",
        ),
        (
            "SELECT tenant.disable_isolation('public.t')",
            "22023",
            "not isolated",
        ),
    ] {
        let msg = expect_sqlstate(admin.batch_execute(sql), code);
        assert!(msg.contains(needle), "{sql}: {msg}");
    }
    let state: (bool, bool, i64, i64, Option<String>, bool) = {
        let r = su
            .query_one(
                "SELECT c.relrowsecurity, c.relforcerowsecurity,
                        (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid),
                        (SELECT count(*) FROM pg_index WHERE indrelid = c.oid),
                        (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE d.adrelid = c.oid),
                        (SELECT attnotnull FROM pg_attribute WHERE attrelid = c.oid AND attname = 'tenant_id')
                   FROM pg_class c WHERE c.oid = 'public.t'::regclass",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
    };
    assert_eq!(state, (false, false, 0, 0, None, false));
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.isolated_tables"),
        0
    );
    let mut app = db.connect("app");
    expect_sqlstate(
        app.batch_execute("SELECT tenant.enable_isolation('public.t')"),
        "42501",
    );
}

#[test]
fn enable_is_idempotent_and_disable_removes_exactly_what_it_added() {
    let db = TestDb::new("enable_disable");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.t (id int PRIMARY KEY, tenant_id integer, note text);
         CREATE POLICY keep_me ON public.t USING (note IS NOT NULL);
         INSERT INTO public.t VALUES (1, 1, 'a');",
    )
    .unwrap();
    let snapshot = |su: &mut Client| -> String {
        one(
            su,
            "SELECT concat_ws('|', c.relrowsecurity, c.relforcerowsecurity,
                    (SELECT string_agg(polname, ',' ORDER BY polname) FROM pg_policy WHERE polrelid = c.oid),
                    (SELECT string_agg(i.indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index i WHERE indrelid = c.oid),
                    (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE d.adrelid = c.oid),
                    (SELECT attnotnull FROM pg_attribute WHERE attrelid = c.oid AND attname = 'tenant_id'))
               FROM pg_class c WHERE c.oid = 'public.t'::regclass",
        )
    };
    let before = snapshot(&mut su);
    let mut admin = db.connect("admin");
    admin
        .batch_execute("SELECT tenant.enable_isolation('public.t')")
        .unwrap();
    let enabled = snapshot(&mut su);
    assert!(
        enabled.starts_with("t|t|keep_me,qft_cross_tenant,qft_tenant_guard,qft_tenant_isolation|"),
        "{enabled}"
    );
    assert!(
        enabled.contains("tenant.current_tenant_id()") && enabled.ends_with("|t"),
        "{enabled}"
    );
    admin
        .batch_execute("SELECT tenant.enable_isolation('public.t')")
        .unwrap();
    assert_eq!(snapshot(&mut su), enabled);
    admin
        .batch_execute("SELECT tenant.disable_isolation('public.t')")
        .unwrap();
    assert_eq!(snapshot(&mut su), before);
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.isolated_tables"),
        0
    );
    let actions: Vec<String> = su
        .query(
            "SELECT action FROM tenant.audit_log WHERE target = 'public.t' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["isolation_enabled", "isolation_disabled"]);
}

#[test]
fn partitions_are_isolated_with_their_parent() {
    let db = TestDb::new("partitions");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
         CREATE TABLE public.events (tenant_id bigint NOT NULL, at date NOT NULL, what text) PARTITION BY RANGE (at);
         CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         INSERT INTO public.events VALUES (1, '2026-03-01', 'a'), (2, '2026-03-02', 'g');
         SELECT tenant.enable_isolation('public.events');
         GRANT SELECT ON public.events, public.events_2026 TO {}",
        db.role("app")
    ))
    .unwrap();
    let mut app = db.connect_in("app", "acme");
    for t in ["public.events", "public.events_2026"] {
        let rows: Vec<String> = app
            .query(&format!("SELECT what FROM {t}"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(rows, ["a"], "{t}");
    }
}

#[test]
fn enable_isolation_for_schema_and_add_tenant_column() {
    let db = TestDb::new("schema_legacy");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
         CREATE SCHEMA app;
         CREATE TABLE app.a (tenant_id bigint, x int); CREATE TABLE app.b (tenant_id int, y int);
         CREATE TABLE app.c (z int);
         CREATE TABLE public.legacy (id int PRIMARY KEY, name text);
         INSERT INTO public.legacy VALUES (1, 'old'), (2, 'older');
         GRANT USAGE ON SCHEMA app TO {0}; GRANT SELECT ON ALL TABLES IN SCHEMA app TO {0};
         GRANT SELECT, INSERT ON public.legacy TO {0};",
        db.role("app")
    ))
    .unwrap();
    let mut admin = db.connect("admin");
    assert_eq!(
        one::<i32>(
            &mut admin,
            "SELECT tenant.enable_isolation_for_schema('app')"
        ),
        2
    );
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.enable_isolation_for_schema('nope')"),
        "3F000",
    );
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.add_tenant_column('public.legacy', 'nope')"),
        "22023",
    );
    admin
        .batch_execute("SELECT tenant.add_tenant_column('public.legacy', 'acme')")
        .unwrap();
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.add_tenant_column('public.legacy', 'acme')"),
        "42701",
    );
    let isolated: Vec<String> = su
        .query(
            "SELECT relid::text FROM tenant.isolated_tables ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(isolated, ["app.a", "app.b", "legacy"]);
    let mut app = db.connect("app");
    app.batch_execute("SELECT tenant.set_tenant('globex')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM public.legacy"),
        0
    );
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM public.legacy"),
        2
    );
    app.batch_execute("INSERT INTO public.legacy (id, name) VALUES (3, 'new')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant_id FROM public.legacy WHERE id = 3"),
        1
    );
    // The legacy table now references the registry.
    assert_eq!(one::<i64>(&mut su, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.legacy'::regclass AND contype = 'f' AND confrelid = 'tenant.tenants'::regclass"), 1);
}

#[test]
fn auto_isolate_on_isolates_new_tables_and_strict_rejects_unmarked_ones() {
    let db = TestDb::new("auto");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme');
         ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = 'on'",
        db.name
    ))
    .unwrap();
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.later (tenant_id bigint, x int); CREATE TABLE public.plain (x int)",
    )
    .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.isolated_tables WHERE relid = 'public.later'::regclass"
        ),
        1
    );
    assert!(one::<bool>(
        &mut su,
        "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'public.later'::regclass"
    ));
    su.batch_execute(&format!(
        "ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = 'strict'",
        db.name
    ))
    .unwrap();
    let mut su = db.superuser();
    let msg = expect_sqlstate(
        su.batch_execute("CREATE TABLE public.unmarked (x int)"),
        "42P16",
    );
    assert!(msg.contains("tenant_id"), "{msg}");
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_class WHERE relname = 'unmarked'"
        ),
        0
    );
    su.batch_execute("CREATE TABLE public.also_later (tenant_id int, y int)")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.isolated_tables"),
        2
    );
    // A schema without isolated tables is not policed.
    su.batch_execute("CREATE SCHEMA scratch; CREATE TABLE scratch.free (x int)")
        .unwrap();
    // The documented way to add a deliberately global table.
    su.batch_execute("BEGIN; SET LOCAL qualityfoundry_tenant.auto_isolate = 'on'; CREATE TABLE public.countries (code text); SELECT tenant.mark_shared('public.countries'); COMMIT;").unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.shared_tables"),
        1
    );
    // An application role cannot turn it off: once the library is loaded SET is refused, and a
    // placeholder set before it loads is discarded before the event trigger reads the setting.
    su.batch_execute(&format!(
        "GRANT CREATE ON SCHEMA public TO {}",
        db.role("app")
    ))
    .unwrap();
    let mut app = db.connect("app");
    app.batch_execute("SET qualityfoundry_tenant.auto_isolate = 'off'")
        .unwrap();
    expect_sqlstate(
        app.batch_execute("CREATE TABLE public.sneaky (x int)"),
        "42P16",
    );
    expect_sqlstate(
        app.batch_execute("SET qualityfoundry_tenant.auto_isolate = 'off'"),
        "42501",
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_class WHERE relname = 'sneaky'"
        ),
        0
    );
}

#[test]
fn remaining_admin_functions_reject_bad_input_and_change_nothing() {
    let db = TestDb::new("admin_bad").with_projects();
    let mut su = db.superuser();
    su.batch_execute("CREATE VIEW public.pv AS SELECT * FROM public.projects")
        .unwrap();
    let state = |su: &mut Client| -> String {
        one(
            su,
            "SELECT concat_ws('|',
                 (SELECT string_agg(slug || ':' || coalesce(schema_name, '-'), ',' ORDER BY id) FROM tenant.tenants),
                 (SELECT count(*) FROM tenant.shared_tables),
                 (SELECT string_agg(relid::text, ',' ORDER BY relid::text) FROM tenant.isolated_tables),
                 (SELECT count(*) FROM tenant.role_bindings),
                 (SELECT count(*) FROM pg_policy),
                 (SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.pv'::regclass AND NOT attisdropped),
                 (SELECT count(*) FROM pg_namespace))",
        )
    };
    let before = state(&mut su);
    let mut admin = db.connect("admin");
    for (sql, code) in [
        ("SELECT tenant.mark_shared(NULL)", "22004"),
        ("SELECT tenant.mark_shared('public.projects')", "22023"),
        ("SELECT tenant.pin_tenant_schema('acme')", "22023"),
        ("SELECT tenant.pin_tenant_schema('nope')", "22023"),
        ("SELECT tenant.drop_tenant('acme', NULL)", "22004"),
        (
            "SELECT tenant.drop_tenant('acme', delete_rows => NULL)",
            "22004",
        ),
        (
            "SELECT tenant.create_tenant('fresh', with_schema => NULL)",
            "22004",
        ),
        ("SELECT tenant.unbind_role(NULL)", "22004"),
        (
            "SELECT tenant.add_tenant_column('public.pv', 'acme')",
            "42809",
        ),
        ("SELECT tenant.add_tenant_column(NULL, 'acme')", "22004"),
        ("SELECT tenant.enable_isolation_for_schema(NULL)", "22004"),
    ] {
        let msg = expect_sqlstate(admin.batch_execute(sql), code);
        assert!(!msg.is_empty(), "{sql}");
        assert_eq!(state(&mut su), before, "{sql} changed something");
    }
}
