//! Roles inside a tenant (issue 15, stage B): tenant.limit_tenant_roles. Every check runs as the
//! NOSUPERUSER application role `app` (owns nothing), entering its tenant with a JWT or a signed
//! context that carries the tenant role; the data is compared afterwards as the superuser.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;
use serde_json::json;

const SECRET: &str = "an HS256 secret of at least thirty-two bytes, for tests only";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 JWT (kid "k1") for `tenant` with tenant role `role` (no role claim when None).
fn jwt(tenant: &str, role: Option<&str>) -> String {
    let mut claims = json!({"sub": "u1", "tenant_id": tenant, "iat": now(), "exp": now() + 300});
    if let Some(r) = role {
        claims["tenant_role"] = json!(r);
    }
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    encode(
        &h,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The projects fixture with the JWT key, limits on every command but SELECT for viewers, and a
/// later permissive `USING (true)` policy that must not widen anything.
fn limited_db(label: &str) -> TestDb {
    let db = TestDb::new(label).with_projects();
    let mut admin = db.connect("admin");
    admin
        .execute("SELECT tenant.add_jwt_key('k1', 'HS256', $1)", &[&SECRET])
        .unwrap();
    admin
        .batch_execute(
            "SELECT tenant.limit_tenant_roles('public.projects', 'SELECT', '{viewer,user,admin}');
             SELECT tenant.limit_tenant_roles('public.projects', 'insert', '{user,admin}');
             SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', '{admin}');
             SELECT tenant.limit_tenant_roles('public.projects', 'DELETE', '{admin}');",
        )
        .unwrap();
    db.superuser()
        .batch_execute("CREATE POLICY wide_open ON public.projects USING (true) WITH CHECK (true)")
        .unwrap();
    db
}

/// `app` in acme with tenant role `role` (a JWT; None: a JWT without a role claim).
fn app_as(db: &TestDb, role: Option<&str>) -> Client {
    let mut c = db.connect("app");
    c.execute("SELECT tenant.set_tenant_jwt($1)", &[&jwt("acme", role)])
        .unwrap();
    c
}

fn count(c: &mut Client, sql: &str) -> Result<u64, qft_integration_tests::postgres::Error> {
    c.execute(sql, &[])
}

fn n_rows(c: &mut Client, sql: &str) -> Result<i64, qft_integration_tests::postgres::Error> {
    c.query_one(sql, &[]).map(|r| r.get(0))
}

#[test]
fn each_command_is_limited_to_its_roles_and_no_permissive_policy_widens_it() {
    let db = limited_db("roles_cmds");
    let before = db.all_projects();
    for role in [
        Some("viewer"),
        Some("user"),
        Some("admin"),
        None,
        Some("guest"),
    ] {
        let may_read = matches!(role, Some("viewer" | "user" | "admin"));
        let may_insert = matches!(role, Some("user" | "admin"));
        let may_write = role == Some("admin");
        let mut c = app_as(&db, role);
        let what = format!("{role:?}");
        c.batch_execute("BEGIN").unwrap();
        let tx = &mut c;

        // SELECT, and a SELECT naming the other tenant's rows.
        let seen = n_rows(tx, "SELECT count(*) FROM public.projects").unwrap();
        assert_eq!(seen, if may_read { 3 } else { 0 }, "{what}");
        assert_eq!(
            n_rows(
                tx,
                "SELECT count(*) FROM public.projects WHERE tenant_id = 2"
            )
            .unwrap(),
            0,
            "{what}"
        );

        // INSERT, plain and in a writable CTE.
        for sql in [
            "INSERT INTO public.projects (id, name) VALUES (900, 'new')",
            "WITH i AS (INSERT INTO public.projects (id, name) VALUES (901, 'cte') RETURNING id) SELECT count(*) FROM i",
        ] {
            tx.batch_execute("SAVEPOINT s").unwrap();
            let r = tx.batch_execute(sql);
            if may_insert && (may_read || !sql.contains("RETURNING")) {
                r.unwrap_or_else(|e| panic!("{what}: {sql}: {e}"));
            } else {
                expect_sqlstate(r, "42501");
                tx.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
            }
        }

        // UPDATE and DELETE: rows the role may not change are not there for it.
        let updated = count(tx, "UPDATE public.projects SET name = 'upd' WHERE id = 100").unwrap();
        assert_eq!(updated, if may_write { 1 } else { 0 }, "{what}");
        let updated_all = count(tx, "UPDATE public.projects SET name = name").unwrap();
        assert_eq!(updated_all, if may_write { 5 } else { 0 }, "{what}");
        let cte_deleted = n_rows(
            tx,
            "WITH d AS (DELETE FROM public.projects WHERE id = 101 RETURNING id) SELECT count(*) FROM d",
        )
        .unwrap();
        assert_eq!(cte_deleted, if may_write { 1 } else { 0 }, "{what}");
        let cte_updated = n_rows(
            tx,
            "WITH u AS (UPDATE public.projects SET name = 'cte' WHERE id = 102 RETURNING id) SELECT count(*) FROM u",
        )
        .unwrap();
        assert_eq!(cte_updated, if may_write { 1 } else { 0 }, "{what}");
        let deleted = count(tx, "DELETE FROM public.projects WHERE id = 100").unwrap();
        assert_eq!(deleted, if may_write { 1 } else { 0 }, "{what}");

        // INSERT ... ON CONFLICT DO UPDATE on an existing row needs UPDATE too.
        tx.batch_execute("SAVEPOINT s").unwrap();
        let r = tx.batch_execute(
            "INSERT INTO public.projects (id, name) VALUES (102, 'upsert')
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name",
        );
        if may_write {
            r.unwrap_or_else(|e| panic!("{what}: upsert: {e}"));
        } else {
            expect_sqlstate(r, "42501");
            tx.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
        }
        // ON CONFLICT DO NOTHING inserts a new row as an INSERT.
        tx.batch_execute("SAVEPOINT s").unwrap();
        let r = tx.batch_execute(
            "INSERT INTO public.projects (id, name) VALUES (903, 'nothing') ON CONFLICT DO NOTHING",
        );
        if may_insert {
            r.unwrap_or_else(|e| panic!("{what}: do nothing: {e}"));
        } else {
            expect_sqlstate(r, "42501");
            tx.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
        }

        // MERGE: the matched UPDATE / DELETE and the not-matched INSERT each need their role.
        for (sql, allowed) in [
            (
                "MERGE INTO public.projects p USING (VALUES (102)) v(id) ON p.id = v.id
                 WHEN MATCHED THEN UPDATE SET name = 'merged'",
                may_write,
            ),
            (
                "MERGE INTO public.projects p USING (VALUES (102)) v(id) ON p.id = v.id
                 WHEN MATCHED THEN DELETE",
                may_write,
            ),
            (
                "MERGE INTO public.projects p USING (VALUES (904)) v(id) ON p.id = v.id
                 WHEN NOT MATCHED THEN INSERT (id, name) VALUES (v.id, 'merged')",
                may_insert,
            ),
        ] {
            tx.batch_execute("SAVEPOINT s").unwrap();
            let r = tx.execute(sql, &[]);
            match r {
                Ok(n) if allowed => assert_eq!(n, 1, "{what}: {sql}"),
                // Rows the role may not read are not matched: nothing to update or delete.
                Ok(n) if !may_read => assert_eq!(n, 0, "{what}: {sql}"),
                Ok(n) => panic!("{what}: {sql}: allowed {n} rows"),
                Err(e) => {
                    assert!(!allowed, "{what}: {sql}: {e}");
                    assert_eq!(sqlstate(&e), "42501", "{what}: {sql}: {e}");
                    tx.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
                }
            }
        }
        tx.batch_execute("ROLLBACK").unwrap();
    }
    assert_eq!(db.all_projects(), before);

    // What each role really could do, committed: only acme's rows changed, as admitted.
    let mut user = app_as(&db, Some("user"));
    user.batch_execute("INSERT INTO public.projects (id, name) VALUES (950, 'by user')")
        .unwrap();
    assert_eq!(
        count(&mut user, "UPDATE public.projects SET name = 'x'").unwrap(),
        0
    );
    let mut admin = app_as(&db, Some("admin"));
    assert_eq!(
        count(&mut admin, "DELETE FROM public.projects WHERE id = 950").unwrap(),
        1
    );
    assert_eq!(db.all_projects(), before);
}

#[test]
fn signed_contexts_cross_tenant_mode_and_removal() {
    let db = limited_db("roles_signed");
    let mut admin = db.connect("admin");
    let token = |admin: &mut Client, role: Option<&str>| -> String {
        admin
            .query_one(
                "SELECT tenant.sign_context('acme', tenant_role => $1)",
                &[&role],
            )
            .unwrap()
            .get(0)
    };
    let mut app = db.connect("app");
    app.execute(
        "SELECT tenant.set_tenant_signed($1)",
        &[&token(&mut admin, Some("user"))],
    )
    .unwrap();
    assert_eq!(
        count(&mut app, "UPDATE public.projects SET name = name").unwrap(),
        0
    );
    app.execute(
        "SELECT tenant.set_tenant_signed($1)",
        &[&token(&mut admin, Some("admin"))],
    )
    .unwrap();
    assert_eq!(
        count(&mut app, "UPDATE public.projects SET name = name").unwrap(),
        3
    );
    // A plain set_tenant carries no role: limited like a role in no list.
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    assert_eq!(
        n_rows(&mut app, "SELECT count(*) FROM public.projects").unwrap(),
        0
    );
    // Cross-tenant mode is above the tenant's roles (as it is above the tenant guard).
    let mut support = db.connect("support");
    support
        .batch_execute("SELECT tenant.enter_cross_tenant('roles test')")
        .unwrap();
    assert_eq!(
        n_rows(&mut support, "SELECT count(*) FROM public.projects").unwrap(),
        6
    );

    // roles => NULL removes a limit; removing one that is not there changes nothing.
    admin
        .batch_execute(
            "SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', NULL);
             SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', NULL);",
        )
        .unwrap();
    app.execute(
        "SELECT tenant.set_tenant_signed($1)",
        &[&token(&mut admin, Some("user"))],
    )
    .unwrap();
    assert_eq!(
        count(&mut app, "UPDATE public.projects SET name = name").unwrap(),
        3
    );
    assert_eq!(
        strings(
            &mut admin,
            "SELECT command || '=' || roles::text FROM tenant.role_limits ORDER BY 1"
        ),
        [
            "DELETE={admin}",
            "INSERT={admin,user}",
            "SELECT={admin,user,viewer}"
        ]
    );
    assert_eq!(
        strings(
            &mut admin,
            "SELECT action FROM tenant.audit_log WHERE action LIKE 'tenant_roles%' ORDER BY id"
        ),
        [
            "tenant_roles_limited",
            "tenant_roles_limited",
            "tenant_roles_limited",
            "tenant_roles_limited",
            "tenant_roles_unlimited"
        ]
    );
    // ALL limits every command, on top of the per-command limits.
    admin
        .batch_execute("SELECT tenant.limit_tenant_roles('public.projects', 'ALL', '{admin}')")
        .unwrap();
    app.execute(
        "SELECT tenant.set_tenant_signed($1)",
        &[&token(&mut admin, Some("user"))],
    )
    .unwrap();
    assert_eq!(
        n_rows(&mut app, "SELECT count(*) FROM public.projects").unwrap(),
        0
    );
}

#[track_caller]
fn assert_no_role_findings(db: &TestDb) {
    let found: Vec<_> = isolation_findings(db)
        .into_iter()
        .filter(|f| f.1.contains("qft_role"))
        .collect();
    assert!(found.is_empty(), "{found:?}");
}

fn policies(c: &mut Client) -> Vec<String> {
    strings(
        c,
        "SELECT polname || ' ' || polcmd::text || ' ' || polpermissive::text || ' ' || coalesce(pg_get_expr(polqual, polrelid), '-')
                || ' ' || coalesce(pg_get_expr(polwithcheck, polrelid), '-')
           FROM pg_policy WHERE polrelid = 'public.projects'::regclass ORDER BY polname",
    )
}

fn limits(c: &mut Client) -> Vec<String> {
    strings(
        c,
        "SELECT relid::text || ' ' || command || ' ' || roles::text FROM tenant.role_limits ORDER BY 1",
    )
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let db = limited_db("roles_bad");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.plain (id int);
         CREATE VIEW public.pview AS SELECT * FROM public.projects;
         CREATE TABLE public.parted (tenant_id bigint NOT NULL, id int) PARTITION BY LIST (tenant_id);
         CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES IN (1);
         SELECT tenant.enable_isolation('public.parted');",
    )
    .unwrap();
    let mut admin = db.connect("admin");
    let (pol, lim) = (policies(&mut su), limits(&mut su));
    for (sql, code, says) in [
        (
            "SELECT tenant.limit_tenant_roles('public.projects', 'TRUNCATE', '{admin}')",
            "22023",
            "invalid command",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.projects', 'SELECT; DROP', '{admin}')",
            "22023",
            "invalid command",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.projects', NULL, '{admin}')",
            "22004",
            "must not be NULL",
        ),
        (
            "SELECT tenant.limit_tenant_roles(NULL, 'SELECT', '{admin}')",
            "22004",
            "must not be NULL",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.plain', 'SELECT', '{admin}')",
            "22023",
            "neither isolated",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.pview', 'SELECT', '{admin}')",
            "42809",
            "not a table",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.parted_1', 'SELECT', '{admin}')",
            "22023",
            "is a partition",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.nope', 'SELECT', '{admin}')",
            "42P01",
            "does not exist",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', '{admin,NULL}')",
            "22023",
            "invalid tenant role NULL",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', '{admin,\"\"}')",
            "22023",
            "invalid tenant role",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', ARRAY['a\\b'])",
            "22023",
            "invalid tenant role",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', ARRAY['a\"b'])",
            "22023",
            "invalid tenant role",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', ARRAY[repeat('r', 64)])",
            "22023",
            "invalid tenant role",
        ),
        (
            "SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', '{{a},{b}}')",
            "22023",
            "one-dimensional",
        ),
    ] {
        let msg = expect_sqlstate(admin.batch_execute(sql), code);
        assert!(msg.contains(says), "{sql}: {msg}");
    }
    // Only tenant_admin members: the application role is refused.
    let mut app = db.connect("app");
    expect_sqlstate(
        app.batch_execute(
            "SELECT tenant.limit_tenant_roles('public.projects', 'UPDATE', '{viewer}')",
        ),
        "42501",
    );
    assert_eq!((policies(&mut su), limits(&mut su)), (pol, lim));

    // A partitioned table's limit reaches a query that names the partition.
    admin
        .batch_execute("SELECT tenant.limit_tenant_roles('public.parted', 'SELECT', '{admin}')")
        .unwrap();
    su.batch_execute(&format!(
        "INSERT INTO public.parted VALUES (1, 1); GRANT SELECT ON public.parted, public.parted_1 TO {}",
        db.role("app")
    ))
    .unwrap();
    let mut viewer = app_as(&db, Some("viewer"));
    assert_eq!(
        n_rows(&mut viewer, "SELECT count(*) FROM public.parted_1").unwrap(),
        0
    );
    assert_eq!(
        n_rows(&mut viewer, "SELECT count(*) FROM public.parted").unwrap(),
        0
    );
    let mut adm = app_as(&db, Some("admin"));
    assert_eq!(
        n_rows(&mut adm, "SELECT count(*) FROM public.parted_1").unwrap(),
        1
    );
    // A partition attached later follows its parent's limit.
    su.batch_execute(
        "CREATE TABLE public.parted_2 (tenant_id bigint NOT NULL, id int);
         ALTER TABLE public.parted ATTACH PARTITION public.parted_2 FOR VALUES IN (2);",
    )
    .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.parted_2'::regclass AND polname = 'qft_role_select'"),
        1
    );
    // disable_isolation removes the limits with the policies; a dropped table leaves no row.
    admin
        .batch_execute("SELECT tenant.disable_isolation('public.parted')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM pg_policy WHERE polname LIKE 'qft\\_role%' AND polrelid <> 'public.projects'::regclass"),
        0
    );
    su.batch_execute("DROP TABLE public.projects CASCADE")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.role_limits"),
        0
    );
}

#[test]
fn the_checker_reports_altered_or_dropped_limits_and_enable_isolation_restores_them() {
    let db = limited_db("roles_checker");
    let mut su = db.superuser();
    assert_no_role_findings(&db);
    su.batch_execute(
        "ALTER POLICY qft_role_update ON public.projects USING (true) WITH CHECK (true);
         DROP POLICY qft_role_delete ON public.projects;",
    )
    .unwrap();
    let findings = isolation_findings(&db);
    let about = |name: &str| {
        findings
            .iter()
            .find(|f| f.1 == format!("policy {name} on table public.projects"))
            .unwrap_or_else(|| panic!("{name}: {findings:?}"))
            .clone()
    };
    assert!(
        about("qft_role_update").2.contains("has USING true"),
        "{findings:?}"
    );
    assert!(
        about("qft_role_delete").2.contains("is missing"),
        "{findings:?}"
    );
    // The altered limit lets a viewer update: that is what the finding is about.
    let mut viewer = app_as(&db, Some("viewer"));
    assert_eq!(
        count(&mut viewer, "UPDATE public.projects SET name = name").unwrap(),
        3
    );
    db.connect("admin")
        .batch_execute(&about("qft_role_update").3)
        .unwrap();
    assert_no_role_findings(&db);
    assert_eq!(
        count(&mut viewer, "UPDATE public.projects SET name = name").unwrap(),
        0
    );
    assert_eq!(
        count(&mut viewer, "DELETE FROM public.projects").unwrap(),
        0
    );
}

#[test]
fn limits_survive_pg_dump_and_restore() {
    let db = limited_db("roles_dump");
    let mut su = db.superuser();
    let (pol, lim) = (policies(&mut su), limits(&mut su));
    let mut restored = db.dump_and_restore();
    assert_eq!((policies(&mut restored), limits(&mut restored)), (pol, lim));
    assert_eq!(
        one::<i64>(
            &mut restored,
            "SELECT count(*) FROM tenant._policy_differences('public.projects')"
        ),
        0
    );
    // In the copy, a viewer (JWT: the keys were dumped) still cannot update.
    let target = format!("{}_restored", db.name);
    restored
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {target} TO {}",
            db.role("app")
        ))
        .unwrap();
    let mut app = Client::connect(
        &cluster().conninfo(&db.role("app"), &target),
        qft_integration_tests::postgres::NoTls,
    )
    .unwrap();
    app.execute(
        "SELECT tenant.set_tenant_jwt($1)",
        &[&jwt("acme", Some("viewer"))],
    )
    .unwrap();
    assert_eq!(
        n_rows(&mut app, "SELECT count(*) FROM public.projects").unwrap(),
        3
    );
    assert_eq!(
        count(&mut app, "UPDATE public.projects SET name = name").unwrap(),
        0
    );
}

#[test]
fn schema_tenants_keep_the_templates_limits_through_clone_pinning_and_migrations() {
    let db = TestDb::new("roles_schemas");
    tenant_admin_template(
        &db,
        "CREATE TABLE tenant_template.tasks (id int PRIMARY KEY, title text)",
    );
    let mut admin = db.connect("admin");
    admin
        .execute("SELECT tenant.add_jwt_key('k1', 'HS256', $1)", &[&SECRET])
        .unwrap();
    admin
        .batch_execute(
            "SELECT tenant.limit_tenant_roles('tenant_template.tasks', 'UPDATE', '{admin}');
             SELECT tenant.create_tenant('acme', with_schema => true);
             SELECT tenant.create_tenant('globex', with_schema => true);",
        )
        .unwrap();
    let mut su = db.superuser();
    su.batch_execute(
        "INSERT INTO tenant_acme.tasks VALUES (1, 'a'); INSERT INTO tenant_globex.tasks VALUES (1, 'g');",
    )
    .unwrap();
    assert_eq!(
        limits(&mut su),
        [
            "tenant_acme.tasks UPDATE {admin}",
            "tenant_globex.tasks UPDATE {admin}",
            "tenant_template.tasks UPDATE {admin}"
        ]
    );
    let update = "UPDATE tenant_acme.tasks SET title = 'x'";
    assert_eq!(count(&mut app_as(&db, Some("user")), update).unwrap(), 0);
    assert_eq!(count(&mut app_as(&db, Some("admin")), update).unwrap(), 1);

    // Re-pinning keeps the limit; an altered limit in a tenant schema is reported and re-pinned.
    su.batch_execute(
        "ALTER POLICY qft_role_update ON tenant_acme.tasks USING (true) WITH CHECK (true)",
    )
    .unwrap();
    let findings = isolation_findings(&db);
    let f = findings
        .iter()
        .find(|f| f.1 == "policy qft_role_update on table tenant_acme.tasks")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert!(f.2.contains("has USING true"), "{f:?}");
    admin.batch_execute(&f.3).unwrap();
    assert_no_role_findings(&db);
    assert_eq!(count(&mut app_as(&db, Some("user")), update).unwrap(), 0);

    // The template's limit, altered: reported as a template finding (kind 41).
    su.batch_execute("ALTER POLICY qft_role_update ON tenant_template.tasks USING (true)")
        .unwrap();
    let findings = isolation_findings(&db);
    let f = findings
        .iter()
        .find(|f| f.1 == "policy qft_role_update on table tenant_template.tasks")
        .unwrap_or_else(|| panic!("{findings:?}"));
    admin.batch_execute(&f.3).unwrap();
    assert_no_role_findings(&db);

    // A migration sets a limit in the template and every tenant schema.
    admin
        .batch_execute(
            "CALL tenant.migrate_all('2', $m$SELECT tenant.limit_tenant_roles('tasks', 'DELETE', '{admin}')$m$)",
        )
        .unwrap();
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.role_limits WHERE command = 'DELETE' ORDER BY 1"
        ),
        [
            "tenant_acme.tasks",
            "tenant_globex.tasks",
            "tenant_template.tasks"
        ]
    );
    assert_eq!(
        count(
            &mut app_as(&db, Some("user")),
            "DELETE FROM tenant_acme.tasks"
        )
        .unwrap(),
        0
    );
    assert_eq!(
        strings(&mut su, "SELECT tenant_id::text || id::text FROM (SELECT 1 AS tenant_id, id FROM tenant_acme.tasks UNION ALL SELECT 2, id FROM tenant_globex.tasks) x ORDER BY 1"),
        ["11", "21"]
    );
    // A migration that must write a limited table lifts the limit and sets it again.
    admin
        .batch_execute(
            "CALL tenant.migrate_all('3', $m$
                SELECT tenant.limit_tenant_roles('tasks', 'UPDATE', NULL);
                UPDATE tasks SET title = 'migrated';
                SELECT tenant.limit_tenant_roles('tasks', 'UPDATE', '{admin}');$m$)",
        )
        .unwrap();
    assert_eq!(
        strings(
            &mut su,
            "SELECT title FROM tenant_acme.tasks UNION ALL SELECT title FROM tenant_globex.tasks"
        ),
        ["migrated", "migrated"]
    );
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.role_limits WHERE command = 'UPDATE' ORDER BY 1"
        ),
        [
            "tenant_acme.tasks",
            "tenant_globex.tasks",
            "tenant_template.tasks"
        ]
    );
    assert_no_role_findings(&db);
    // clone_schema copies the limits with the tables.
    admin
        .batch_execute("SELECT tenant.clone_schema('tenant_template', 'tenant_copy')")
        .unwrap();
    assert_eq!(
        strings(&mut su, "SELECT command FROM tenant.role_limits WHERE relid = 'tenant_copy.tasks'::regclass ORDER BY 1"),
        ["DELETE", "UPDATE"]
    );
}

// ---------------------------------------------------------------------------------------------
// Cached plans (the role fold, src/context.rs "Folding the tenant role"): a plan answers the role
// limits for the role in force when it is made, so every kind of cached plan must follow the role
// when it changes (and a plan that escapes the reset must show nothing).

/// The statements every cached-plan probe runs, each undone afterwards: (label, SQL, returns rows).
const PROBES: [(&str, &str, bool); 9] = [
    ("select", "SELECT count(*) FROM public.projects", true),
    ("tenant", "SELECT tenant.current_tenant_id()", true),
    (
        "insert",
        "INSERT INTO public.projects (id, name) VALUES (900, 'new')",
        false,
    ),
    ("update", "UPDATE public.projects SET name = name", false),
    ("delete", "DELETE FROM public.projects WHERE id = 100", false),
    (
        "upsert",
        "INSERT INTO public.projects (id, name) VALUES (102, 'upsert') ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name",
        false,
    ),
    (
        "nothing",
        "INSERT INTO public.projects (id, name) VALUES (903, 'nothing') ON CONFLICT DO NOTHING",
        false,
    ),
    (
        "merge",
        "MERGE INTO public.projects p USING (VALUES (102)) v(id) ON p.id = v.id WHEN MATCHED THEN UPDATE SET name = 'merged'",
        false,
    ),
    (
        "cte",
        "WITH u AS (UPDATE public.projects SET name = 'cte' WHERE id = 102 RETURNING id) SELECT count(*) FROM u",
        true,
    ),
];

/// What the probes must give in acme for tenant role `role` (limited_db's limits), `tenant` the
/// tenant in force (acme: 1) or None.
fn expected_probes(role: Option<&str>, tenant: Option<i64>) -> Vec<String> {
    let in_acme = tenant.is_some();
    let read = in_acme && matches!(role, Some("viewer" | "user" | "admin"));
    let insert = in_acme && matches!(role, Some("user" | "admin"));
    let write = in_acme && role == Some("admin");
    let n = |yes: bool, n: i64| (if yes { n } else { 0 }).to_string();
    let ok_or_denied = |yes: bool| if yes { "1" } else { "denied" }.to_string();
    vec![
        n(read, 3),
        tenant.map_or("NULL".into(), |t| t.to_string()),
        ok_or_denied(insert),
        n(write, 3),
        n(write, 1),
        ok_or_denied(write),
        ok_or_denied(insert),
        // MERGE: a row the role reads but may not update is an error, one it cannot read is not matched.
        if write {
            "1".into()
        } else if read {
            "denied".into()
        } else {
            "0".into()
        },
        n(write, 1),
    ]
}

/// Runs the probes as protocol-prepared statements (prepared once per connection, by the caller).
fn run_prepared(
    c: &mut Client,
    stmts: &[qft_integration_tests::postgres::Statement],
) -> Vec<String> {
    let mut out = Vec::new();
    for ((label, _, rows), st) in PROBES.iter().zip(stmts) {
        c.batch_execute("SAVEPOINT probe").unwrap();
        let r = if *rows {
            c.query_one(st, &[]).map(|r| {
                r.get::<_, Option<i64>>(0)
                    .map_or("NULL".to_string(), |v| v.to_string())
            })
        } else {
            c.execute(st, &[]).map(|n| n.to_string())
        };
        out.push(match r {
            Ok(v) => v,
            Err(e) if sqlstate(&e) == "42501" => "denied".into(),
            Err(e) => panic!("{label}: {e}"),
        });
        c.batch_execute("ROLLBACK TO SAVEPOINT probe").unwrap();
    }
    out
}

/// A PL/pgSQL function running the probes (its plans are cached for the session), as the caller.
fn create_plpgsql_probe(db: &TestDb) {
    let mut body = String::from(
        "CREATE FUNCTION public.role_probe() RETURNS text[] LANGUAGE plpgsql AS $f$
         DECLARE out text[] := '{}'; n bigint;
         BEGIN\n",
    );
    for (_, sql, rows) in PROBES {
        let run = if rows {
            // SELECT ... INTO: the first column of the row.
            let (head, tail) = sql.split_once(" FROM ").map_or((sql, ""), |(h, t)| (h, t));
            if tail.is_empty() {
                format!("{head} INTO n;")
            } else {
                format!("{head} INTO n FROM {tail};")
            }
        } else {
            format!("{sql}; GET DIAGNOSTICS n = ROW_COUNT;")
        };
        body.push_str(&format!(
            "BEGIN {run} RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = coalesce(n::text, 'NULL');
             EXCEPTION WHEN SQLSTATE 'P0001' THEN out := out || SQLERRM;
                       WHEN insufficient_privilege THEN out := out || 'denied'::text;
             END;\n"
        ));
    }
    body.push_str("RETURN out; END $f$; GRANT EXECUTE ON FUNCTION public.role_probe() TO PUBLIC;");
    db.superuser().batch_execute(&body).unwrap();
}

#[test]
fn cached_plans_follow_the_tenant_role_for_every_command() {
    let db = limited_db("roles_cached");
    create_plpgsql_probe(&db);
    let before = db.all_projects();
    let mut c = db.connect("app");
    // Generic plans from the first execution: the plan made for the first role is the one reused.
    c.batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    let stmts: Vec<_> = PROBES
        .iter()
        .map(|(_, sql, _)| c.prepare(sql).unwrap())
        .collect();
    let plpgsql = |c: &mut Client| -> Vec<String> {
        c.query_one("SELECT public.role_probe()", &[])
            .unwrap()
            .get::<_, Vec<String>>(0)
    };
    let roles = [
        Some("viewer"),
        Some("admin"),
        None,
        Some("viewer"),
        Some("user"),
        Some("admin"),
    ];
    // Session-scope contexts, one after the other.
    for role in roles {
        c.execute("SELECT tenant.set_tenant_jwt($1)", &[&jwt("acme", role)])
            .unwrap();
        let want = expected_probes(role, Some(1));
        c.batch_execute("BEGIN").unwrap();
        assert_eq!(
            run_prepared(&mut c, &stmts),
            want,
            "prepared, session, {role:?}"
        );
        c.batch_execute("ROLLBACK").unwrap();
        assert_eq!(plpgsql(&mut c), want, "plpgsql, session, {role:?}");
    }
    c.batch_execute("SELECT tenant.clear_tenant()").unwrap();
    // Transaction-local contexts (one per request, as behind a pooler); the same role twice in a
    // row, and no context between the transactions.
    for role in roles.iter().chain(roles.iter()).copied() {
        c.batch_execute("BEGIN").unwrap();
        c.execute(
            "SELECT tenant.set_tenant_jwt($1, true)",
            &[&jwt("acme", role)],
        )
        .unwrap();
        let want = expected_probes(role, Some(1));
        assert_eq!(
            run_prepared(&mut c, &stmts),
            want,
            "prepared, local, {role:?}"
        );
        assert_eq!(plpgsql(&mut c), want, "plpgsql, local, {role:?}");
        c.batch_execute("COMMIT").unwrap();
        c.batch_execute("BEGIN").unwrap();
        assert_eq!(
            run_prepared(&mut c, &stmts),
            expected_probes(None, None),
            "prepared, after the local {role:?}"
        );
        c.batch_execute("COMMIT").unwrap();
    }
    // A local token over a session context without a role: when the transaction ends, the
    // session's context (no role) is back, and the plans made for the token's role follow it.
    c.batch_execute("SELECT tenant.set_tenant('acme')").unwrap();
    for role in [Some("admin"), Some("viewer")] {
        c.batch_execute("BEGIN").unwrap();
        c.execute(
            "SELECT tenant.set_tenant_jwt($1, true)",
            &[&jwt("acme", role)],
        )
        .unwrap();
        assert_eq!(run_prepared(&mut c, &stmts), expected_probes(role, Some(1)));
        assert_eq!(plpgsql(&mut c), expected_probes(role, Some(1)));
        c.batch_execute("COMMIT").unwrap();
        c.batch_execute("BEGIN").unwrap();
        assert_eq!(
            run_prepared(&mut c, &stmts),
            expected_probes(None, Some(1)),
            "prepared, the session context back after a local {role:?}"
        );
        c.batch_execute("COMMIT").unwrap();
        assert_eq!(plpgsql(&mut c), expected_probes(None, Some(1)));
    }
    // A rollback to a savepoint brings the earlier role back.
    c.execute(
        "SELECT tenant.set_tenant_jwt($1)",
        &[&jwt("acme", Some("admin"))],
    )
    .unwrap();
    c.batch_execute("BEGIN").unwrap();
    assert_eq!(
        run_prepared(&mut c, &stmts),
        expected_probes(Some("admin"), Some(1))
    );
    c.batch_execute("SAVEPOINT s").unwrap();
    c.execute(
        "SELECT tenant.set_tenant_jwt($1)",
        &[&jwt("acme", Some("viewer"))],
    )
    .unwrap();
    assert_eq!(
        run_prepared(&mut c, &stmts),
        expected_probes(Some("viewer"), Some(1))
    );
    c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    assert_eq!(
        run_prepared(&mut c, &stmts),
        expected_probes(Some("admin"), Some(1))
    );
    c.batch_execute("ROLLBACK").unwrap();
    // And a context without a role, brought back by a rollback to a savepoint.
    c.batch_execute("SELECT tenant.set_tenant('acme'); BEGIN; SAVEPOINT s;")
        .unwrap();
    c.execute(
        "SELECT tenant.set_tenant_jwt($1)",
        &[&jwt("acme", Some("admin"))],
    )
    .unwrap();
    assert_eq!(
        run_prepared(&mut c, &stmts),
        expected_probes(Some("admin"), Some(1))
    );
    c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    assert_eq!(
        run_prepared(&mut c, &stmts),
        expected_probes(None, Some(1)),
        "prepared, no role after a rollback to a savepoint"
    );
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(db.all_projects(), before);
}

#[test]
fn a_plan_that_outlives_its_role_shows_nothing() {
    let db = limited_db("roles_stale");
    let mut c = app_as(&db, Some("admin"));
    // A cursor's plan is made (and folded for admin) when it is declared, and is no cached plan
    // that a reset re-plans; its scan starts at the first FETCH, by then without a role.
    c.batch_execute(
        "BEGIN;
         DECLARE admin_cur CURSOR FOR SELECT id FROM public.projects ORDER BY id;
         DECLARE admin_upd CURSOR FOR SELECT id FROM public.projects WHERE tenant.current_tenant_id() IS NOT NULL;",
    )
    .unwrap();
    c.execute(
        "SELECT tenant.set_tenant_jwt($1, true)",
        &[&jwt("acme", None)],
    )
    .unwrap();
    assert_eq!(c.query("FETCH ALL FROM admin_cur", &[]).unwrap().len(), 0);
    assert_eq!(c.query("FETCH ALL FROM admin_upd", &[]).unwrap().len(), 0);
    c.batch_execute("ROLLBACK").unwrap();
    // The same cursors declared with the role in force see acme's rows.
    c.batch_execute(
        "BEGIN; DECLARE admin_cur CURSOR FOR SELECT id FROM public.projects ORDER BY id;",
    )
    .unwrap();
    assert_eq!(c.query("FETCH ALL FROM admin_cur", &[]).unwrap().len(), 3);
    c.batch_execute("ROLLBACK").unwrap();
}

/// The planner looks the role-keyed getters up by signature: a type named `text` that the
/// caller puts before pg_catalog on its search_path changes nothing.
#[test]
fn a_shadowing_text_type_on_the_search_path_changes_no_plan() {
    let db = limited_db("roles_shadow");
    db.superuser()
        .batch_execute(&format!(
            "CREATE SCHEMA shadow; CREATE DOMAIN shadow.text AS integer;
             GRANT USAGE ON SCHEMA shadow TO {}",
            db.role("app")
        ))
        .unwrap();
    let mut c = app_as(&db, Some("admin"));
    c.batch_execute("SET search_path = shadow, pg_catalog, public")
        .unwrap();
    assert_eq!(
        n_rows(&mut c, "SELECT count(*) FROM public.projects").unwrap(),
        3
    );
    assert_eq!(db.all_projects().len(), 6);
}

#[test]
fn cross_tenant_mode_on_a_role_limited_table_with_cached_plans() {
    let db = limited_db("roles_cross");
    db.superuser()
        .batch_execute(&format!("GRANT tenant_user TO {}", db.role("support")))
        .unwrap();
    let mut s = db.connect("support");
    s.batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    s.execute(
        "SELECT tenant.set_tenant_jwt($1)",
        &[&jwt("acme", Some("viewer"))],
    )
    .unwrap();
    let select = s.prepare("SELECT count(*) FROM public.projects").unwrap();
    let update = s.prepare("UPDATE public.projects SET name = name").unwrap();
    let rows = |s: &mut Client| -> (i64, u64) {
        s.batch_execute("BEGIN").unwrap();
        let seen: i64 = s.query_one(&select, &[]).unwrap().get(0);
        let updated = s.execute(&update, &[]).unwrap();
        s.batch_execute("ROLLBACK").unwrap();
        (seen, updated)
    };
    // A viewer of acme: reads acme, changes nothing.
    assert_eq!(rows(&mut s), (3, 0));
    // Cross-tenant mode is above the tenant's roles: every row of every tenant.
    s.batch_execute("SELECT tenant.enter_cross_tenant('role limits and cached plans')")
        .unwrap();
    assert_eq!(rows(&mut s), (6, 6));
    s.batch_execute("SELECT tenant.exit_cross_tenant()")
        .unwrap();
    assert_eq!(rows(&mut s), (3, 0));
    // And in a transaction-local mode, with an admin token: the mode ends with the transaction.
    s.execute(
        "SELECT tenant.set_tenant_jwt($1)",
        &[&jwt("acme", Some("admin"))],
    )
    .unwrap();
    assert_eq!(rows(&mut s), (3, 3));
    s.batch_execute("BEGIN; SELECT tenant.enter_cross_tenant('local', true);")
        .unwrap();
    assert_eq!(s.query_one(&select, &[]).unwrap().get::<_, i64>(0), 6);
    s.batch_execute("COMMIT").unwrap();
    assert_eq!(rows(&mut s), (3, 3));
}
