//! What a DBA does to tables and to the extension itself: the extension's own objects under
//! auto_isolate, dropped tables, partitions created or attached later, DROP EXTENSION ... CASCADE
//! and CREATE EXTENSION again, the schema and its USAGE, and the README's quick start as written.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

/// What the extension may have done to tables in schema tenant: isolation rows, policies, row
/// security, qft_ triggers, tenant-column defaults.
const OWN_TABLES_TOUCHED: &str = "
    SELECT 'isolated ' || relid::text FROM tenant.isolated_tables WHERE relid::text LIKE 'tenant.%'
    UNION ALL SELECT 'policy ' || polname || ' on ' || polrelid::regclass::text FROM pg_policy
               WHERE polrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'tenant'::regnamespace)
    UNION ALL SELECT 'rls on ' || oid::regclass::text FROM pg_class
               WHERE relnamespace = 'tenant'::regnamespace AND (relrowsecurity OR relforcerowsecurity)
    UNION ALL SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger
               WHERE tgname LIKE 'qft%' AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'tenant'::regnamespace)
    UNION ALL SELECT 'default on ' || adrelid::regclass::text FROM pg_attrdef
               WHERE adrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'tenant'::regnamespace)
                 AND pg_get_expr(adbin, adrelid) LIKE '%current_tenant_id%'
    ORDER BY 1";

#[test]
fn the_extensions_own_tables_are_never_auto_isolated() {
    // The oracle: what a fresh install with auto_isolate off has on its own tables (some row
    // security is there on purpose, e.g. the signing keys under FORCE with no policy).
    let baseline = strings(&mut TestDb::new("own_base").superuser(), OWN_TABLES_TOUCHED);
    for mode in ["on", "strict", "add_column"] {
        for how in ["ALTER DATABASE", "SET"] {
            let db = TestDb::new("own_auto");
            let mut su = db.superuser();
            su.batch_execute("DROP EXTENSION qualityfoundry_tenant")
                .unwrap();
            let mut su = if how == "ALTER DATABASE" {
                su.batch_execute(&format!(
                    "ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = '{mode}'",
                    db.name
                ))
                .unwrap();
                db.superuser()
            } else {
                // Before the library is loaded: a placeholder, kept because a superuser set it.
                let mut fresh = db.superuser();
                fresh
                    .batch_execute(&format!(
                        "SET qualityfoundry_tenant.auto_isolate = '{mode}'"
                    ))
                    .unwrap();
                fresh
            };
            su.batch_execute("CREATE EXTENSION qualityfoundry_tenant")
                .unwrap_or_else(|e| panic!("{mode}/{how}: {e}"));
            assert_eq!(
                one::<String>(&mut su, "SHOW qualityfoundry_tenant.auto_isolate"),
                mode
            );
            // A table a DBA adds to schema tenant by hand is the extension's business too.
            su.batch_execute("CREATE TABLE tenant.dba_notes (tenant_id bigint, note text)")
                .unwrap();
            assert_eq!(
                strings(&mut su, OWN_TABLES_TOUCHED),
                baseline,
                "{mode}/{how}"
            );
            // A user table still is isolated (the mode is really on), and the ledger works:
            // migrate_all writes the template's row, whose tenant_id is NULL.
            su.batch_execute(
                "CREATE TABLE public.later (tenant_id bigint, x int);
                 CREATE SCHEMA tenant_template; CREATE TABLE tenant_template.notes (id int PRIMARY KEY);
                 SELECT tenant.create_tenant('acme', with_schema => true);
                 DROP TABLE tenant.dba_notes;",
            )
            .unwrap();
            assert_eq!(
                strings(&mut su, "SELECT relid::text FROM tenant.isolated_tables"),
                ["later"],
                "{mode}/{how}"
            );
            let mut run = db.superuser();
            run.batch_execute(
                "CALL tenant.migrate_all('1', 'ALTER TABLE notes ADD COLUMN tag text')",
            )
            .unwrap_or_else(|e| panic!("{mode}/{how}: migrate_all: {e}"));
            assert_eq!(
                one::<i64>(
                    &mut run,
                    "SELECT count(*) FROM tenant.schema_migrations WHERE status = 'applied'"
                ),
                2,
                "{mode}/{how}"
            );
        }
    }
}

/// A restoring session (a superuser with check_function_bodies off, as pg_restore and pg_dump's
/// scripts run) is left alone by the event triggers, which would collide with what the dump
/// re-creates; a non-superuser turning check_function_bodies off is not restoring, so its new
/// tables and partitions are isolated as ever.
#[test]
fn only_a_superuser_session_with_check_function_bodies_off_counts_as_restoring() {
    let db = TestDb::new("restoring");
    let mut su = db.superuser();
    let nobody = db.role("nobody");
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme');
         ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = 'on';
         GRANT CREATE ON SCHEMA public TO {nobody};
         CREATE TABLE public.parent (tenant_id bigint NOT NULL, x int) PARTITION BY LIST (x);
         SELECT tenant.enable_isolation('public.parent');
         ALTER TABLE public.parent OWNER TO {nobody};",
        db.name
    ))
    .unwrap();
    let isolated = |c: &mut Client| {
        strings(
            c,
            "SELECT relid::text FROM tenant.isolated_tables ORDER BY 1",
        )
    };
    let mut app = db.connect("nobody");
    app.batch_execute(
        "SET check_function_bodies = off;
         CREATE TABLE public.mine (tenant_id bigint, y int);
         CREATE TABLE public.parent_1 PARTITION OF public.parent FOR VALUES IN (1);",
    )
    .unwrap();
    assert_eq!(
        isolated(&mut db.superuser()),
        ["mine", "parent", "parent_1"]
    );
    let mut su = db.superuser();
    su.batch_execute(
        "SET check_function_bodies = off;
         CREATE TABLE public.restored (tenant_id bigint, y int);
         CREATE TABLE public.parent_2 PARTITION OF public.parent FOR VALUES IN (2);
         RESET check_function_bodies;
         CREATE TABLE public.created (tenant_id bigint, y int);",
    )
    .unwrap();
    assert_eq!(
        isolated(&mut db.superuser()),
        ["created", "mine", "parent", "parent_1"]
    );
}

#[test]
fn a_dropped_table_leaves_no_registry_row_and_drop_tenant_never_builds_sql_from_it() {
    let db = TestDb::new("dropped").with_projects();
    let mut su = db.superuser();
    su.batch_execute(
        r#"CREATE TABLE public.gone (tenant_id bigint NOT NULL, x int);
           SELECT tenant.enable_isolation('public.gone');
           CREATE SCHEMA app;
           CREATE TABLE app."Odd ""name""; x" (tenant_id bigint NOT NULL, x int);
           SELECT tenant.enable_isolation('app."Odd ""name""; x"');
           INSERT INTO app."Odd ""name""; x" VALUES (1, 1), (2, 2);
           CREATE TABLE public.countries (code text);
           SELECT tenant.mark_shared('public.countries');"#,
    )
    .unwrap();
    let gone_oid: i64 = one(&mut su, "SELECT 'public.gone'::regclass::oid::bigint");
    su.batch_execute("DROP TABLE public.gone; DROP TABLE public.countries")
        .unwrap();
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.isolated_tables ORDER BY 1"
        ),
        [r#"app."Odd ""name""; x""#, "projects"]
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.shared_tables"),
        0
    );
    assert_eq!(
        strings(
            &mut su,
            "SELECT target FROM tenant.audit_log WHERE action = 'isolated_table_dropped'"
        ),
        ["public.gone"]
    );
    assert!(!strings(
        &mut su,
        "SELECT relid::oid::text FROM tenant.isolated_tables"
    )
    .contains(&gone_oid.to_string()));
    // A drop the trigger did not see (it was disabled) leaves the row; drop_tenant reads the
    // live catalog and never turns it into SQL (0.1.0: `syntax error at or near "18607"`).
    su.batch_execute(
        "CREATE TABLE public.unseen (tenant_id bigint NOT NULL);
         SELECT tenant.enable_isolation('public.unseen');
         ALTER EVENT TRIGGER qft_forget_dropped_tables DISABLE;
         DROP TABLE public.unseen;
         ALTER EVENT TRIGGER qft_forget_dropped_tables ENABLE;",
    )
    .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.isolated_tables"),
        3
    );
    // DROP SCHEMA ... CASCADE is a drop too.
    let mut admin = db.connect("admin");
    let msg = expect_sqlstate(
        admin.batch_execute("SELECT tenant.drop_tenant('acme')"),
        "2BP01",
    );
    assert!(msg.contains("app.\"Odd \"\"name\"\"; x\""), "{msg}");
    admin
        .batch_execute("SELECT tenant.drop_tenant('acme', delete_rows => true)")
        .unwrap();
    assert_eq!(db.all_projects().iter().filter(|r| r.0 == 1).count(), 0);
    assert_eq!(
        one::<i64>(
            &mut su,
            r#"SELECT count(*) FROM app."Odd ""name""; x" WHERE tenant_id = 1"#
        ),
        0
    );
    su.batch_execute("DROP SCHEMA app CASCADE").unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.isolated_tables WHERE relid::text LIKE 'app.%'"
        ),
        0
    );
    admin
        .batch_execute("SELECT tenant.drop_tenant('globex', delete_rows => true)")
        .unwrap();
    assert_eq!(db.all_projects().len(), 0);
}

#[test]
fn partitions_and_children_created_or_attached_later_are_isolated() {
    let db = TestDb::new("later_parts");
    let mut su = db.superuser();
    let app = db.role("app");
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
         CREATE TABLE public.events (tenant_id bigint NOT NULL, id integer NOT NULL, what text) PARTITION BY RANGE (id);
         CREATE TABLE public.events_0 PARTITION OF public.events FOR VALUES FROM (0) TO (100);
         SELECT tenant.enable_isolation('public.events');
         -- created as a partition later
         CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES FROM (100) TO (200);
         -- a table with rows of both tenants, attached later
         CREATE TABLE public.events_2 (tenant_id bigint NOT NULL, id integer NOT NULL, what text);
         INSERT INTO public.events_2 VALUES (1, 201, 'acme-2'), (2, 202, 'globex-2');
         ALTER TABLE public.events ATTACH PARTITION public.events_2 FOR VALUES FROM (200) TO (300);
         -- a partitioned table with its own partition, attached later
         CREATE TABLE public.events_3 (tenant_id bigint NOT NULL, id integer NOT NULL, what text) PARTITION BY RANGE (id);
         CREATE TABLE public.events_3a PARTITION OF public.events_3 FOR VALUES FROM (300) TO (400);
         ALTER TABLE public.events ATTACH PARTITION public.events_3 FOR VALUES FROM (300) TO (400);
         -- a table isolated on its own first, then attached
         CREATE TABLE public.events_4 (tenant_id bigint NOT NULL, id integer NOT NULL, what text);
         SELECT tenant.enable_isolation('public.events_4');
         ALTER TABLE public.events ATTACH PARTITION public.events_4 FOR VALUES FROM (400) TO (500);
         INSERT INTO public.events VALUES (1, 1, 'acme-0'), (2, 2, 'globex-0'), (1, 101, 'acme-1'), (2, 102, 'globex-1'),
                                          (1, 301, 'acme-3'), (2, 302, 'globex-3'), (1, 401, 'acme-4'), (2, 402, 'globex-4');
         -- legacy inheritance
         CREATE TABLE public.logs (tenant_id bigint NOT NULL, what text);
         SELECT tenant.enable_isolation('public.logs');
         CREATE TABLE public.logs_old () INHERITS (public.logs);
         INSERT INTO public.logs_old VALUES (1, 'acme-old'), (2, 'globex-old');
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};"
    ))
    .unwrap();
    let tables = [
        "events_0",
        "events_1",
        "events_2",
        "events_3",
        "events_3a",
        "events_4",
        "logs_old",
    ];
    let isolated = strings(
        &mut su,
        "SELECT relid::text FROM tenant.isolated_tables ORDER BY 1",
    );
    for t in tables {
        assert!(isolated.iter().any(|i| i == t), "{t} not in {isolated:?}");
    }
    let before: Vec<String> = strings(
        &mut su,
        "SELECT e::text FROM public.events e WHERE tenant_id = 2 UNION ALL SELECT l::text FROM public.logs l WHERE tenant_id = 2 ORDER BY 1",
    );
    let mut acme = db.connect_in("app", "acme");
    for t in tables {
        let seen = strings(
            &mut acme,
            &format!("SELECT what FROM public.{t} ORDER BY what"),
        );
        assert!(
            seen.iter().all(|w| w.starts_with("acme")),
            "{t} read directly shows {seen:?}"
        );
        if t != "events_3" {
            assert!(!seen.is_empty(), "{t} shows acme nothing");
        }
        expect_sqlstate(
            acme.batch_execute(&format!(
                "UPDATE public.{t} SET tenant_id = 2 WHERE tenant_id = 1"
            )),
            "42501",
        );
        assert_eq!(
            acme.execute(&format!("DELETE FROM public.{t} WHERE tenant_id = 2"), &[])
                .unwrap(),
            0,
            "{t}"
        );
    }
    expect_sqlstate(
        acme.batch_execute("INSERT INTO public.events_2 VALUES (2, 250, 'forged')"),
        "42501",
    );
    let mut nobody_in = db.connect("app");
    assert_eq!(
        one::<i64>(&mut nobody_in, "SELECT count(*) FROM public.events_2"),
        0
    );
    // Detached, a partition stays isolated.
    su.batch_execute("ALTER TABLE public.events DETACH PARTITION public.events_2")
        .unwrap();
    assert_eq!(
        strings(&mut acme, "SELECT what FROM public.events_2"),
        ["acme-2"]
    );
    let after: Vec<String> = strings(
        &mut su,
        "SELECT e::text FROM public.events e WHERE tenant_id = 2 UNION ALL SELECT e::text FROM public.events_2 e WHERE tenant_id = 2
         UNION ALL SELECT l::text FROM public.logs l WHERE tenant_id = 2 ORDER BY 1",
    );
    assert_eq!(after, before);

    // With auto_isolate on, a new partitioned table is isolated and so are its later partitions.
    su.batch_execute(&format!(
        "ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = 'on'",
        db.name
    ))
    .unwrap();
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE TABLE public.metrics (tenant_id bigint NOT NULL, v int) PARTITION BY LIST (tenant_id);
         CREATE TABLE public.metrics_1 PARTITION OF public.metrics FOR VALUES IN (1);
         CREATE TABLE public.metrics_2 PARTITION OF public.metrics FOR VALUES IN (2);
         INSERT INTO public.metrics VALUES (1, 10), (2, 20);
         GRANT SELECT ON public.metrics_2 TO {app};"
    ))
    .unwrap();
    assert_eq!(
        one::<i64>(&mut acme, "SELECT count(*) FROM public.metrics_2"),
        0
    );
}

#[test]
fn drop_extension_cascade_then_create_extension_hands_no_old_rows_to_new_tenants() {
    let db = TestDb::new("renumber").with_projects();
    let mut su = db.superuser();
    // A role that may create tables but is not trusted plants a huge tenant id: ignored.
    let nobody = db.role("nobody");
    su.batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {nobody}"))
        .unwrap();
    db.connect("nobody")
        .batch_execute("CREATE TABLE public.planted (tenant_id bigint); INSERT INTO public.planted VALUES (9223372036854775806)")
        .unwrap();
    su.batch_execute(
        "CREATE TABLE public.invoices (org_id integer NOT NULL, n int);
         INSERT INTO public.invoices VALUES (1, 1), (2, 2), (2, 3);
         SELECT tenant.enable_isolation('public.invoices', 'org_id');
         DROP EXTENSION qualityfoundry_tenant CASCADE;",
    )
    .unwrap();
    let (mut su, notices) = db.superuser_noticed();
    su.batch_execute("CREATE EXTENSION qualityfoundry_tenant")
        .unwrap();
    let warned = notices.lock().unwrap().join("\n");
    assert!(
        warned.contains("public.projects (up to 2)") && !warned.contains("planted"),
        "no warning about the old ids: {warned}"
    );
    // The registry starts after the ids the tables hold: a new tenant inherits nothing.
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant.create_tenant('newco')"),
        3
    );
    // Re-creating the old tenants with their ids gives them their rows back.
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant.create_tenant('acme', id => 1)"),
        1
    );
    notices.lock().unwrap().clear();
    su.batch_execute(
        "SELECT tenant.enable_isolation('public.projects'); SELECT tenant.enable_isolation('public.invoices', 'org_id');",
    )
    .unwrap();
    let warned = notices.lock().unwrap().join("\n");
    assert!(
        warned.contains(
            "public.projects holds 3 row(s) of tenant ids that are not in tenant.tenants: 2"
        ) && warned.contains(
            "public.invoices holds 2 row(s) of tenant ids that are not in tenant.tenants: 2"
        ),
        "{warned}"
    );
    let app = db.role("app");
    su.batch_execute(&format!(
        "GRANT SELECT, INSERT ON public.projects, public.invoices TO {app}"
    ))
    .unwrap();
    let mut newco = db.connect_in("app", "newco");
    assert_eq!(visible(&mut newco), vec![]);
    assert_eq!(
        one::<i64>(&mut newco, "SELECT count(*) FROM public.invoices"),
        0
    );
    let mut acme = db.connect_in("app", "acme");
    assert_eq!(visible(&mut acme), ACME);

    // A generated id that isolated tables already hold rows for is refused (here the sequence is
    // set back by hand; after CREATE EXTENSION the reservation above prevents it).
    su.batch_execute("SELECT setval('tenant.tenants_id_seq', 1)")
        .unwrap();
    let registry = |su: &mut Client| -> Vec<String> {
        strings(
            su,
            "SELECT id || ':' || slug FROM tenant.tenants ORDER BY id",
        )
    };
    let before = registry(&mut su);
    let msg = expect_sqlstate(
        su.batch_execute("SELECT tenant.create_tenant('unlucky')"),
        "55000",
    );
    assert!(
        msg.contains("tenant id 2 already has 2 row(s) in public.invoices"),
        "{msg}"
    );
    assert_eq!(registry(&mut su), before);
    // Bad ids change nothing either.
    for (sql, code) in [
        ("SELECT tenant.create_tenant('x', id => 0)", "22023"),
        ("SELECT tenant.create_tenant('x', id => -5)", "22023"),
        ("SELECT tenant.create_tenant('x', id => 1)", "42710"),
        ("SELECT tenant.create_tenant('acme', id => 9)", "42710"),
    ] {
        expect_sqlstate(su.batch_execute(sql), code);
        assert_eq!(registry(&mut su), before, "{sql}");
    }
    notices.lock().unwrap().clear();
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant.create_tenant('globex', id => 2)"),
        2
    );
    let told = notices.lock().unwrap().join("\n");
    assert!(
        told.contains("owns the 3 existing row(s) of public.projects"),
        "{told}"
    );
    let mut globex = db.connect_in("app", "globex");
    assert_eq!(visible(&mut globex), GLOBEX);
    assert_eq!(
        one::<i64>(&mut globex, "SELECT count(*) FROM public.invoices"),
        2
    );
    // Generated ids continue after the largest one given.
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant.create_tenant('after', id => 40)"),
        40
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant.create_tenant('next')"),
        41
    );
}

#[test]
fn any_role_may_call_the_getters_by_name_and_nothing_else_in_schema_tenant() {
    let db = TestDb::new("usage");
    let mut su = db.superuser();
    su.batch_execute("SELECT tenant.create_tenant('acme')")
        .unwrap();
    let mut admin = db.connect("admin");
    admin
        .batch_execute(&format!(
            "SELECT tenant.bind_role('{}', 'acme')",
            db.role("bi")
        ))
        .unwrap();
    // bi and nobody hold no extension role and were granted nothing on schema tenant.
    let mut bi = db.connect("bi");
    assert_eq!(
        one::<Option<String>>(&mut bi, "SELECT tenant.current_tenant()"),
        Some("acme".to_string())
    );
    let mut nobody = db.connect("nobody");
    assert_eq!(
        one::<Option<i64>>(&mut nobody, "SELECT tenant.current_tenant_id()"),
        None
    );
    assert!(!one::<bool>(
        &mut nobody,
        "SELECT tenant.cross_tenant_active()"
    ));
    for sql in [
        "SELECT * FROM tenant.tenants",
        "SELECT * FROM tenant.audit_log",
        "SELECT tenant.set_tenant('acme')",
        "SELECT tenant.create_tenant('x')",
        "CREATE TABLE tenant.mine (x int)",
        "CREATE FUNCTION tenant.current_tenant_id(x int) RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint'",
    ] {
        expect_sqlstate(nobody.batch_execute(sql), "42501");
    }
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_class WHERE relname = 'mine'"
        ),
        0
    );
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let db = TestDb::new("readme");
    let mut su = db.superuser();
    su.batch_execute("DROP EXTENSION qualityfoundry_tenant")
        .unwrap();
    let block = readme_block("test", "quick_start")
        .replace("app_login", &db.role("app"))
        .replace("dba", &db.role("admin"))
        .replace("support", &db.role("support"));
    let (dba, app) = block
        .split_once("-- Application")
        .expect("the block has a DBA part and an application part");
    // The roles exist but hold no extension role yet: the snippet grants them.
    for r in ["app", "admin", "support"] {
        su.batch_execute(&format!(
            "REVOKE tenant_user, tenant_admin, tenant_superuser FROM {}",
            db.role(r)
        ))
        .unwrap();
    }
    su.batch_execute(dba)
        .unwrap_or_else(|e| panic!("the DBA part: {e}"));
    su.batch_execute("SELECT tenant.create_tenant('globex'); INSERT INTO public.projects (tenant_id, name) VALUES (2, 'globex-only')")
        .unwrap();
    let mut client = db.connect("app");
    let seen: Vec<String> = client
        .simple_query(&format!("-- Application{app}"))
        .unwrap_or_else(|e| panic!("the application part: {e}"))
        .iter()
        .filter_map(|m| match m {
            qft_integration_tests::postgres::SimpleQueryMessage::Row(r) => {
                r.try_get("name").ok().flatten().map(str::to_string)
            }
            _ => None,
        })
        .collect();
    assert_eq!(seen, ["Apollo"]);
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT tenant_id FROM public.projects WHERE name = 'Apollo'"
        ),
        1
    );
}
