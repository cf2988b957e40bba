//! Schema per tenant: tenant_<slug> schemas cloned from the template and pinned to their tenant,
//! tested as the application role.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

const TEMPLATE: &str = "
    CREATE SCHEMA tenant_template;
    CREATE TABLE tenant_template.projects (id serial PRIMARY KEY, name text NOT NULL);
    CREATE TABLE tenant_template.tasks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                        project_id int NOT NULL REFERENCES tenant_template.projects (id),
                                        title text);
    CREATE VIEW tenant_template.open_tasks WITH (security_invoker = true) AS
        SELECT t.id, t.title, p.name AS project FROM tenant_template.tasks t JOIN tenant_template.projects p ON p.id = t.project_id;
";

fn schema_db(label: &str) -> TestDb {
    let db = TestDb::new(label);
    let mut su = db.superuser();
    su.batch_execute(TEMPLATE).unwrap();
    let mut admin = db.connect("admin");
    assert_eq!(
        one::<i64>(
            &mut admin,
            "SELECT tenant.create_tenant('acme', with_schema => true)"
        ),
        1
    );
    assert_eq!(
        one::<i64>(
            &mut admin,
            "SELECT tenant.create_tenant('globex', with_schema => true)"
        ),
        2
    );
    su.batch_execute(
        "INSERT INTO tenant_acme.projects (name) VALUES ('acme project');
         INSERT INTO tenant_globex.projects (name) VALUES ('globex project');
         INSERT INTO tenant_globex.tasks (project_id, title) VALUES (1, 'globex task');",
    )
    .unwrap();
    db
}

fn names(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_tenant_sees_its_schema_unqualified_and_nothing_of_another() {
    let db = schema_db("schema_iso");
    let mut su = db.superuser();
    assert_eq!(
        names(
            &mut su,
            "SELECT slug || ':' || schema_name FROM tenant.tenants ORDER BY id"
        ),
        ["acme:tenant_acme", "globex:tenant_globex"]
    );
    let before: Vec<String> = names(&mut su, "SELECT t::text FROM tenant_globex.tasks t");
    let mut app = db.connect("app");
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    // Unqualified names resolve to the tenant's own schema.
    assert!(one::<String>(&mut app, "SHOW search_path").starts_with("tenant_acme"));
    assert_eq!(
        names(&mut app, "SELECT name FROM projects"),
        ["acme project"]
    );
    app.batch_execute("INSERT INTO projects (name) VALUES ('second')")
        .unwrap();
    app.batch_execute("INSERT INTO tasks (project_id, title) VALUES (1, 'mine')")
        .unwrap();
    assert_eq!(names(&mut app, "SELECT title FROM open_tasks"), ["mine"]);
    // Another tenant's schema, schema-qualified: no rows, no writes.
    assert_eq!(
        names(&mut app, "SELECT name FROM tenant_globex.projects"),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&mut app, "SELECT title FROM tenant_globex.open_tasks"),
        Vec::<String>::new()
    );
    expect_sqlstate(
        app.batch_execute("INSERT INTO tenant_globex.projects (name) VALUES ('planted')"),
        "42501",
    );
    assert_eq!(
        app.execute("UPDATE tenant_globex.tasks SET title = 'pwned'", &[])
            .unwrap(),
        0
    );
    assert_eq!(
        app.execute("DELETE FROM tenant_globex.tasks", &[]).unwrap(),
        0
    );
    // No CREATE in its own schema (or any tenant schema), no TRUNCATE.
    expect_sqlstate(
        app.batch_execute("CREATE TABLE tenant_acme.mine (x int)"),
        "42501",
    );
    expect_sqlstate(app.batch_execute("CREATE TABLE mine (x int)"), "42501");
    expect_sqlstate(app.batch_execute("TRUNCATE tenant_globex.tasks"), "42501");
    assert_eq!(
        names(&mut su, "SELECT t::text FROM tenant_globex.tasks t"),
        before
    );
    // Without a context the schema shows nothing either.
    app.batch_execute("SELECT tenant.clear_tenant()").unwrap();
    assert_eq!(
        names(&mut app, "SELECT name FROM tenant_acme.projects"),
        Vec::<String>::new()
    );
    assert!(!one::<String>(&mut app, "SHOW search_path").contains("tenant_acme"));
}

#[test]
fn a_local_context_routes_search_path_for_the_transaction_only() {
    let db = schema_db("schema_local");
    let mut app = db.connect("app");
    let default_path: String = one(&mut app, "SHOW search_path");
    app.batch_execute("BEGIN").unwrap();
    app.batch_execute("SELECT tenant.set_tenant('globex', is_local => true)")
        .unwrap();
    assert_eq!(
        names(&mut app, "SELECT name FROM projects"),
        ["globex project"]
    );
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(one::<String>(&mut app, "SHOW search_path"), default_path);
    expect_sqlstate(app.batch_execute("SELECT name FROM projects"), "42P01");
}

#[test]
fn tables_created_later_in_a_tenant_schema_are_pinned() {
    let db = schema_db("schema_later");
    let mut su = db.superuser();
    su.batch_execute("CREATE TABLE tenant_acme.invoices (id serial, total numeric); INSERT INTO tenant_acme.invoices (total) VALUES (10)")
        .unwrap();
    let pinned: i64 = one(
        &mut su,
        "SELECT count(*) FROM pg_policy WHERE polrelid = 'tenant_acme.invoices'::regclass AND polname LIKE 'qft_schema%'",
    );
    assert_eq!(pinned, 2);
    let mut app = db.connect("app");
    app.batch_execute("SELECT tenant.set_tenant('globex')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM tenant_acme.invoices"),
        0
    );
    expect_sqlstate(
        app.batch_execute("INSERT INTO tenant_acme.invoices (total) VALUES (99)"),
        "42501",
    );
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    assert_eq!(one::<i64>(&mut app, "SELECT count(*) FROM invoices"), 1);
    // Its serial sequence was granted with it.
    app.batch_execute("INSERT INTO invoices (total) VALUES (20)")
        .unwrap();
    assert_eq!(one::<i64>(&mut app, "SELECT count(*) FROM invoices"), 2);
    let mut admin = db.connect("admin");
    assert_eq!(
        one::<i64>(&mut admin, "SELECT count(*) FROM tenant.check_isolation()"),
        0
    );
}

#[test]
fn bad_slugs_and_existing_schemas_leave_nothing_behind() {
    let db = TestDb::new("schema_bad");
    let mut su = db.superuser();
    su.batch_execute(TEMPLATE).unwrap();
    su.batch_execute("CREATE SCHEMA tenant_taken").unwrap();
    let schemas = |su: &mut Client| -> String {
        one(
            su,
            "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace",
        )
    };
    let before = schemas(&mut su);
    let mut admin = db.connect("admin");
    for (slug, code) in [
        ("x; DROP SCHEMA public CASCADE; --", "22023"),
        ("it's", "22023"),
        ("a\"b", "22023"),
        ("Upper", "22023"),
        ("with space", "22023"),
        ("", "22023"),
        ("ééééééééééééééééééééé", "22023"),
        ("a_slug_that_is_longer_than_forty_characters", "22023"),
        ("taken", "42P06"),
    ] {
        expect_sqlstate(
            admin.query_one(
                "SELECT tenant.create_tenant($1, with_schema => true)",
                &[&slug],
            ),
            code,
        );
    }
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.create_tenant(NULL, with_schema => true)"),
        "22023",
    );
    assert_eq!(schemas(&mut su), before);
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.tenants"),
        0
    );
    // Without a template there is nothing to clone.
    su.batch_execute("DROP SCHEMA tenant_template CASCADE")
        .unwrap();
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.create_tenant('orphan', with_schema => true)"),
        "3F000",
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.tenants"),
        0
    );
}

#[test]
fn two_sessions_creating_the_same_tenant_one_wins_the_other_fails_cleanly() {
    let db = TestDb::new("schema_race");
    let mut su = db.superuser();
    su.batch_execute(TEMPLATE).unwrap();
    let mut first = db.connect("admin");
    first
        .batch_execute("BEGIN; SELECT tenant.create_tenant('same', with_schema => true);")
        .unwrap();
    let pid: i32 = {
        let mut second = db.connect("admin");
        let pid: i32 = one(&mut second, "SELECT pg_backend_pid()");
        let handle = std::thread::spawn(move || {
            let r =
                second.batch_execute("SELECT tenant.create_tenant('same', with_schema => true)");
            r.map_err(|e| sqlstate(&e))
        });
        // Wait until the second session is blocked on the first one's lock (no sleeps: poll the
        // server's own view of it).
        let mut watcher = db.superuser();
        loop {
            let waiting: bool = watcher
                .query_one(
                    "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            if waiting {
                break;
            }
            assert!(
                !handle.is_finished(),
                "the second create_tenant did not wait for the first"
            );
        }
        first.batch_execute("COMMIT").unwrap();
        assert_eq!(handle.join().unwrap(), Err("42710".to_string()));
        pid
    };
    assert!(pid > 0);
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.tenants WHERE slug = 'same'"
        ),
        1
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_same%'"
        ),
        1
    );
}

#[test]
fn drop_tenant_refuses_to_leave_its_schema_behind() {
    let db = schema_db("schema_drop");
    let mut admin = db.connect("admin");
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.drop_tenant('globex')"),
        "2BP01",
    );
    let mut su = db.superuser();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_globex'"
        ),
        1
    );
    admin
        .batch_execute("SELECT tenant.drop_tenant('globex', drop_schema => true)")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_globex'"
        ),
        0
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.tenants WHERE slug = 'globex'"
        ),
        0
    );
}

#[test]
fn migrate_all_runs_on_cloned_tenant_schemas_and_new_tenants_start_at_the_template_version() {
    let db = TestDb::new("schema_migrate");
    let mut su = db.superuser();
    // A template owned by tenant_admin, so its members can migrate it (tenant schemas made by
    // create_tenant are handed to tenant_admin the same way).
    su.batch_execute(
        "CREATE SCHEMA tenant_template AUTHORIZATION tenant_admin;
         SET ROLE tenant_admin;
         CREATE TABLE tenant_template.projects (id serial PRIMARY KEY, name text NOT NULL);
         RESET ROLE;",
    )
    .unwrap();
    let mut admin = db.connect("admin");
    admin
        .batch_execute("SELECT tenant.create_tenant('acme', with_schema => true)")
        .unwrap();
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'tenant_acme'"
        ),
        "tenant_admin"
    );
    assert_eq!(one::<String>(&mut su, "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'tenant_acme.projects'::regclass"), "tenant_admin");
    admin
        .execute(
            "CALL tenant.migrate_all($1, $2)",
            &[&"v1", &"ALTER TABLE projects ADD COLUMN budget integer; CREATE TABLE notes (id int, body text)"],
        )
        .unwrap();
    assert_eq!(one::<i64>(&mut su, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenant_acme.projects'::regclass AND attname = 'budget'"), 1);
    assert_eq!(one::<i64>(&mut su, "SELECT count(*) FROM pg_policy WHERE polrelid = 'tenant_acme.notes'::regclass AND polname LIKE 'qft_schema%'"), 2);
    // A tenant created after v1 is cloned from the migrated template and recorded at v1: the
    // migration is never re-applied to it.
    admin
        .batch_execute("SELECT tenant.create_tenant('globex', with_schema => true)")
        .unwrap();
    assert_eq!(
        one::<Option<String>>(
            &mut su,
            "SELECT schema_version FROM tenant.tenants WHERE slug = 'globex'"
        ),
        Some("v1".to_string())
    );
    assert_eq!(one::<String>(&mut su, "SELECT status FROM tenant.schema_migrations WHERE schema_name = 'tenant_globex' AND version = 'v1'"), "applied");
    assert_eq!(
        one::<i64>(&mut admin, "SELECT count(*) FROM tenant.outdated_schemas()"),
        0
    );
    admin
        .execute("CALL tenant.migrate_all($1, $2)", &[&"v1", &"ALTER TABLE projects ADD COLUMN budget integer; CREATE TABLE notes (id int, body text)"])
        .unwrap();
    assert_eq!(
        one::<i64>(&mut admin, "SELECT count(*) FROM tenant.schema_drift()"),
        0
    );
}
