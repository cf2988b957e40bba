//! `tenant.check_isolation()` and superuser consistency.
//!
//! Checker tests follow one pattern per problem kind: seed the problem as the superuser, see
//! check_isolation() (called as a tenant_admin) report it, run the reported `fix` as the superuser,
//! and see the problem gone.
//!
//! Roles and parameter privileges are cluster-wide, and check_isolation() reports every role of the
//! cluster, so the tests of this file run one at a time (`serial()`): a role made SUPERUSER by one
//! of them must not show up in another's "clean database" assertion.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;
use std::sync::{Mutex, MutexGuard};

static GLOBAL_STATE: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    GLOBAL_STATE.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, PartialEq)]
struct Problem {
    severity: String,
    object: String,
    problem: String,
    fix: String,
}

fn check(db: &TestDb) -> Vec<Problem> {
    let mut admin = db.connect("admin");
    admin
        .query(
            "SELECT severity, object, problem, fix FROM tenant.check_isolation()",
            &[],
        )
        .expect("check_isolation as admin")
        .iter()
        .map(|r| Problem {
            severity: r.get(0),
            object: r.get(1),
            problem: r.get(2),
            fix: r.get(3),
        })
        .collect()
}

fn about(db: &TestDb, object: &str) -> Vec<Problem> {
    check(db)
        .into_iter()
        .filter(|p| p.object == object)
        .collect()
}

#[track_caller]
fn assert_clean(db: &TestDb) {
    let rows = check(db);
    assert!(rows.is_empty(), "expected a clean database, got {rows:#?}");
}

/// Seeds `seed` as the superuser, expects check_isolation() to report `object` with `severity` and
/// a problem mentioning `needle`, runs each reported fix as the superuser, and expects `object` to
/// be reported no more. Returns the reported rows.
#[track_caller]
fn seed_report_fix(
    db: &TestDb,
    seed: &str,
    object: &str,
    severity: &str,
    needle: &str,
) -> Vec<Problem> {
    let mut su = db.superuser();
    if !seed.is_empty() {
        su.batch_execute(seed)
            .unwrap_or_else(|e| panic!("seed: {e}"));
    }
    let found = about(db, object);
    assert!(
        !found.is_empty(),
        "{object} not reported; check_isolation() returned {:#?}",
        check(db)
    );
    for p in &found {
        assert_eq!(p.severity, severity, "{p:#?}");
        assert!(
            p.problem.contains(needle),
            "problem should mention {needle:?}: {p:#?}"
        );
        assert!(!p.fix.is_empty(), "{p:#?}");
    }
    for p in &found {
        // A fix may already have been made moot by an earlier one for the same object.
        if about(db, object).iter().any(|q| q.fix == p.fix) {
            su.batch_execute(&p.fix)
                .unwrap_or_else(|e| panic!("fix {:?} failed: {e}", p.fix));
        }
    }
    let left = about(db, object);
    assert!(left.is_empty(), "still reported after the fix: {left:#?}");
    found
}

fn db_clean(label: &str) -> TestDb {
    let db = TestDb::new(label).with_projects();
    assert_clean(&db);
    db
}

#[test]
fn a_clean_database_reports_nothing() {
    let _g = serial();
    let db = TestDb::new("chk_clean").with_projects();
    assert_clean(&db);
    // Marked shared, and isolated with shared rows: still clean.
    db.superuser()
        .batch_execute(
            "CREATE TABLE public.countries (code text PRIMARY KEY, name text);
             SELECT tenant.mark_shared('public.countries');
             CREATE TABLE public.templates (tenant_id bigint, id integer, body text, PRIMARY KEY (id, tenant_id));
             SELECT tenant.enable_isolation('public.templates', allow_shared_rows => true);
             CREATE VIEW public.my_projects WITH (security_invoker = true) AS SELECT * FROM public.projects;
             CREATE TABLE public.tasks (tenant_id bigint NOT NULL, id integer, project_id integer,
                                        PRIMARY KEY (tenant_id, id),
                                        FOREIGN KEY (tenant_id, project_id) REFERENCES public.projects (tenant_id, id));
             SELECT tenant.enable_isolation('public.tasks');",
        )
        .unwrap();
    assert_clean(&db);
}

#[test]
fn check_isolation_is_for_tenant_admin_only() {
    let _g = serial();
    let db = TestDb::new("chk_priv").with_projects();
    let mut app = db.connect("app");
    expect_sqlstate(
        app.query("SELECT * FROM tenant.check_isolation()", &[]),
        "42501",
    );
    let mut nobody = db.connect("nobody");
    expect_sqlstate(
        nobody.query("SELECT * FROM tenant.check_isolation()", &[]),
        "42501",
    );
}

#[test]
fn table_with_tenant_column_but_no_rls() {
    let _g = serial();
    let db = db_clean("chk_norls");
    let found = seed_report_fix(
        &db,
        "CREATE TABLE public.orders (tenant_id bigint NOT NULL, id integer, total numeric)",
        "table public.orders",
        "error",
        "row level security is not enabled",
    );
    assert_eq!(
        found[0].fix,
        "SELECT tenant.enable_isolation('public.orders');"
    );
    assert_eq!(
        one::<i64>(
            &mut db.superuser(),
            "SELECT count(*) FROM tenant.isolated_tables WHERE relid = 'public.orders'::regclass"
        ),
        1
    );
    assert_clean(&db);

    // NULL tenants: the fix keeps them as shared system rows instead of failing with 23502.
    seed_report_fix(
        &db,
        "CREATE TABLE public.settings (tenant_id bigint, k text, v text);
         INSERT INTO public.settings VALUES (NULL, 'theme', 'dark'), (1, 'theme', 'light')",
        "table public.settings",
        "error",
        "1 row(s) have a NULL tenant_id",
    );
    assert_clean(&db);

    // A partition attached after its parent was isolated while the event trigger that isolates
    // such partitions was disabled is not isolated itself.
    seed_report_fix(
        &db,
        "CREATE TABLE public.events (tenant_id bigint NOT NULL, id integer) PARTITION BY LIST (tenant_id);
         CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES IN (1);
         SELECT tenant.enable_isolation('public.events');
         ALTER EVENT TRIGGER qft_isolate_new_children DISABLE;
         CREATE TABLE public.events_2 PARTITION OF public.events FOR VALUES IN (2);
         ALTER EVENT TRIGGER qft_isolate_new_children ENABLE;",
        "table public.events_2",
        "error",
        "row level security is not enabled",
    );
    assert_clean(&db);
}

#[test]
fn rls_without_force() {
    let _g = serial();
    let db = db_clean("chk_noforce");
    let found = seed_report_fix(
        &db,
        "ALTER TABLE public.projects NO FORCE ROW LEVEL SECURITY",
        "table public.projects",
        "error",
        "not forced",
    );
    assert_eq!(
        found[0].fix,
        "ALTER TABLE public.projects FORCE ROW LEVEL SECURITY;"
    );
    assert_clean(&db);

    // Not isolated, RLS on but not forced: enable_isolation is the fix.
    seed_report_fix(
        &db,
        "CREATE TABLE public.invoices (tenant_id bigint NOT NULL, id integer);
         ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;",
        "table public.invoices",
        "error",
        "without FORCE",
    );
    // Row security switched off entirely on an isolated table.
    seed_report_fix(
        &db,
        "ALTER TABLE public.projects DISABLE ROW LEVEL SECURITY",
        "table public.projects",
        "error",
        "row level security is disabled",
    );
    assert_clean(&db);
}

#[test]
fn missing_or_altered_policies() {
    let _g = serial();
    let db = db_clean("chk_policies");
    let found = seed_report_fix(
        &db,
        "DROP POLICY qft_tenant_guard ON public.projects",
        "policy qft_tenant_guard on table public.projects",
        "error",
        "is missing",
    );
    assert_eq!(
        found[0].fix,
        "SELECT tenant.enable_isolation('public.projects', 'tenant_id');"
    );
    assert_clean(&db);

    seed_report_fix(
        &db,
        "ALTER POLICY qft_tenant_isolation ON public.projects USING (true)",
        "policy qft_tenant_isolation on table public.projects",
        "error",
        "has USING true instead of (tenant_id = tenant.current_tenant_id())",
    );
    seed_report_fix(
        &db,
        "ALTER POLICY qft_cross_tenant ON public.projects TO PUBLIC",
        "policy qft_cross_tenant on table public.projects",
        "error",
        "instead of TO tenant_superuser",
    );
    seed_report_fix(
        &db,
        "DROP POLICY qft_tenant_guard ON public.projects;
         CREATE POLICY qft_tenant_guard ON public.projects AS PERMISSIVE FOR ALL TO PUBLIC
             USING ((tenant_id = tenant.current_tenant_id()) OR tenant.cross_tenant_active())
             WITH CHECK ((tenant_id = tenant.current_tenant_id()) OR tenant.cross_tenant_active());",
        "policy qft_tenant_guard on table public.projects",
        "error",
        "is PERMISSIVE instead of RESTRICTIVE",
    );
    assert_clean(&db);

    // The split guards of allow_shared_rows are checked too.
    db.superuser()
        .batch_execute(
            "CREATE TABLE public.labels (tenant_id bigint, id integer);
             CREATE INDEX ON public.labels (tenant_id);
             SELECT tenant.enable_isolation('public.labels', allow_shared_rows => true);",
        )
        .unwrap();
    assert_clean(&db);
    let found = seed_report_fix(
        &db,
        "DROP POLICY qft_tenant_guard_delete ON public.labels",
        "policy qft_tenant_guard_delete on table public.labels",
        "error",
        "is missing",
    );
    assert_eq!(
        found[0].fix,
        "SELECT tenant.enable_isolation('public.labels', 'tenant_id', allow_shared_rows => true);"
    );
    assert_clean(&db);
}

#[test]
fn views_over_isolated_tables_without_security_invoker() {
    let _g = serial();
    let db = db_clean("chk_views");
    let found = seed_report_fix(
        &db,
        "CREATE VIEW public.all_projects AS SELECT * FROM public.projects",
        "view public.all_projects",
        "error",
        "public.projects",
    );
    assert_eq!(
        found[0].fix,
        "ALTER VIEW public.all_projects SET (security_invoker = true);"
    );
    assert_clean(&db);
    // Through another view, even one that is itself security_invoker.
    seed_report_fix(
        &db,
        "CREATE VIEW public.inner_v WITH (security_invoker = on) AS SELECT id FROM public.projects;
         CREATE VIEW public.outer_v AS SELECT count(*) AS n FROM public.inner_v;",
        "view public.outer_v",
        "error",
        "public.projects",
    );
    assert_clean(&db);
}

#[test]
fn materialized_views_over_isolated_tables() {
    let _g = serial();
    let db = db_clean("chk_matview");
    let found = seed_report_fix(
        &db,
        "CREATE MATERIALIZED VIEW public.project_counts AS SELECT tenant_id, count(*) AS n FROM public.projects GROUP BY tenant_id",
        "materialized view public.project_counts",
        "error",
        "public.projects",
    );
    assert!(
        found[0]
            .fix
            .starts_with("DROP MATERIALIZED VIEW public.project_counts;"),
        "{found:#?}"
    );
    // The replacement is a security_invoker view: app in acme sees acme's count only.
    let mut app = db.connect("app");
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    db.superuser()
        .batch_execute("GRANT SELECT ON public.project_counts TO PUBLIC")
        .unwrap();
    let counts: Vec<(i64, i64)> = app
        .query("SELECT tenant_id, n FROM public.project_counts", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(counts, vec![(1, 3)]);
    assert_clean(&db);
}

#[test]
fn security_definer_functions_reading_isolated_tables() {
    let _g = serial();
    let db = db_clean("chk_definer");
    let found = seed_report_fix(
        &db,
        "CREATE FUNCTION public.count_projects() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
             AS $$ BEGIN RETURN (SELECT count(*) FROM public.projects); END $$;",
        "function public.count_projects()",
        "error",
        "public.projects",
    );
    assert_eq!(
        found[0].fix,
        "ALTER FUNCTION public.count_projects() SECURITY INVOKER;"
    );
    // SQL-standard body: found through pg_depend.
    seed_report_fix(
        &db,
        "CREATE FUNCTION public.project_name(i integer) RETURNS text LANGUAGE sql SECURITY DEFINER
             BEGIN ATOMIC SELECT name FROM public.projects WHERE id = i; END;",
        "function public.project_name(integer)",
        "error",
        "public.projects",
    );
    // A definer without the tenant table in its body is fine; so is an invoker that reads it.
    db.superuser()
        .batch_execute(
            "CREATE FUNCTION public.answer() RETURNS integer LANGUAGE sql SECURITY DEFINER AS 'SELECT 42';
             CREATE FUNCTION public.count_mine() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM public.projects';",
        )
        .unwrap();
    assert_clean(&db);
}

#[test]
fn tenant_user_that_is_superuser() {
    let _g = serial();
    let db = db_clean("chk_rolesu");
    let app = db.role("app");
    let found = seed_report_fix(
        &db,
        &format!("ALTER ROLE {app} SUPERUSER"),
        &format!("role {app}"),
        "error",
        "superuser",
    );
    assert_eq!(found[0].fix, format!("ALTER ROLE {app} NOSUPERUSER;"));
    assert_clean(&db);
}

#[test]
fn tenant_user_with_bypassrls() {
    let _g = serial();
    let db = db_clean("chk_rolebypass");
    let app = db.role("app");
    let found = seed_report_fix(
        &db,
        &format!("ALTER ROLE {app} BYPASSRLS"),
        &format!("role {app}"),
        "error",
        "BYPASSRLS",
    );
    assert_eq!(found[0].fix, format!("ALTER ROLE {app} NOBYPASSRLS;"));
    assert_clean(&db);

    // Indirectly: a member of a BYPASSRLS role can SET ROLE to it.
    let escape = format!("{}_escape", db.name);
    seed_report_fix(
        &db,
        &format!("CREATE ROLE {escape} NOLOGIN BYPASSRLS; GRANT {escape} TO {app};"),
        &format!("role {app}"),
        "error",
        &format!("SET ROLE {escape}"),
    );
    assert_clean(&db);
}

#[test]
fn tenant_user_that_owns_an_isolated_table() {
    let _g = serial();
    let db = db_clean("chk_roleowner");
    let app = db.role("app");
    let found = seed_report_fix(
        &db,
        &format!("ALTER TABLE public.projects OWNER TO {app}"),
        &format!("role {app}"),
        "error",
        "owns isolated table public.projects",
    );
    assert_eq!(
        found[0].fix,
        "ALTER TABLE public.projects OWNER TO postgres;"
    );
    assert_clean(&db);
}

#[test]
fn truncate_references_and_trigger_granted_on_isolated_tables() {
    let _g = serial();
    let db = db_clean("chk_truncate");
    let app = db.role("app");
    let found = seed_report_fix(
        &db,
        &format!("GRANT TRUNCATE ON public.projects TO {app}"),
        "table public.projects",
        "error",
        "TRUNCATE",
    );
    assert_eq!(
        found[0].fix,
        format!("REVOKE TRUNCATE ON public.projects FROM {app};")
    );
    assert_clean(&db);
    seed_report_fix(
        &db,
        "GRANT TRUNCATE ON public.projects TO PUBLIC",
        "table public.projects",
        "error",
        "TRUNCATE to PUBLIC",
    );
    seed_report_fix(
        &db,
        &format!("GRANT REFERENCES, TRIGGER ON public.projects TO {app}; GRANT REFERENCES (id) ON public.projects TO {app};"),
        "table public.projects",
        "error",
        &app,
    );
    assert_clean(&db);
}

#[test]
fn foreign_keys_into_isolated_tables_without_the_tenant_column() {
    let _g = serial();
    let db = db_clean("chk_fk");
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.owners (tenant_id bigint NOT NULL, id integer PRIMARY KEY);
         SELECT tenant.enable_isolation('public.owners');
         INSERT INTO public.owners VALUES (1, 10), (2, 20);",
    )
    .unwrap();
    let found = seed_report_fix(
        &db,
        "CREATE TABLE public.pets (tenant_id bigint NOT NULL, id integer, owner_id integer REFERENCES public.owners (id),
                                   PRIMARY KEY (tenant_id, id));
         SELECT tenant.enable_isolation('public.pets');
         INSERT INTO public.pets VALUES (1, 1, 10);",
        "constraint pets_owner_id_fkey on table public.pets",
        "error",
        "references isolated table public.owners without its tenant column",
    );
    assert!(
        found[0]
            .fix
            .contains("FOREIGN KEY (tenant_id, owner_id) REFERENCES public.owners(tenant_id, id)"),
        "{found:#?}"
    );
    // The new key refuses a cross-tenant reference.
    expect_sqlstate(
        su.batch_execute("INSERT INTO public.pets VALUES (1, 2, 20)"),
        "23503",
    );
    // The tenant column paired with the wrong column of the referencing table.
    seed_report_fix(
        &db,
        "CREATE TABLE public.notes (tenant_id bigint NOT NULL, id integer, p_tenant bigint, p_id integer,
                                    PRIMARY KEY (tenant_id, id),
                                    CONSTRAINT notes_project FOREIGN KEY (p_tenant, p_id) REFERENCES public.projects (tenant_id, id));
         SELECT tenant.enable_isolation('public.notes');",
        "constraint notes_project on table public.notes",
        "error",
        "instead of its own tenant column tenant_id",
    );
    // Left: the primary key of owners (a separate problem kind).
    let left: Vec<String> = check(&db).into_iter().map(|p| p.object).collect();
    assert_eq!(
        left,
        vec!["constraint owners_pkey on table public.owners".to_string()]
    );
}

#[test]
fn unique_constraints_on_isolated_tables_without_the_tenant_column() {
    let _g = serial();
    let db = db_clean("chk_unique");
    let found = seed_report_fix(
        &db,
        "ALTER TABLE public.projects ADD CONSTRAINT projects_name_key UNIQUE (name)",
        "constraint projects_name_key on table public.projects",
        "error",
        "unique constraint",
    );
    assert_eq!(
        found[0].fix,
        "ALTER TABLE public.projects DROP CONSTRAINT projects_name_key, ADD CONSTRAINT projects_name_key UNIQUE (tenant_id, name);"
    );
    assert_clean(&db);
    seed_report_fix(
        &db,
        "CREATE TABLE public.accounts (tenant_id bigint NOT NULL, id integer PRIMARY KEY);
         CREATE INDEX ON public.accounts (tenant_id);
         SELECT tenant.enable_isolation('public.accounts');",
        "constraint accounts_pkey on table public.accounts",
        "error",
        "primary key",
    );
    seed_report_fix(
        &db,
        "CREATE UNIQUE INDEX projects_lower_name ON public.projects (lower(name))",
        "index public.projects_lower_name",
        "error",
        "unique index",
    );
    assert_clean(&db);
    // Different tenants may now use the same name.
    db.superuser()
        .batch_execute("INSERT INTO public.projects VALUES (2, 203, 'acme-100')")
        .unwrap();
}

#[test]
fn isolated_table_without_tenant_index() {
    let _g = serial();
    let db = db_clean("chk_index");
    let found = seed_report_fix(
        &db,
        "CREATE TABLE public.logs (tenant_id bigint NOT NULL, id integer);
         SELECT tenant.enable_isolation('public.logs');
         DROP INDEX public.logs_tenant_id_idx;",
        "table public.logs",
        "warning",
        "no index leading with its tenant column",
    );
    assert_eq!(found[0].fix, "CREATE INDEX ON public.logs (tenant_id);");
    assert_clean(&db);
}

#[test]
fn unmarked_table_without_tenant_column() {
    let _g = serial();
    let db = db_clean("chk_unmarked");
    let found = seed_report_fix(
        &db,
        "CREATE TABLE public.currencies (code text PRIMARY KEY);
         CREATE TABLE public.ranges (id integer) PARTITION BY RANGE (id);
         CREATE TABLE public.ranges_1 PARTITION OF public.ranges FOR VALUES FROM (0) TO (10);",
        "table public.currencies",
        "warning",
        "not marked shared",
    );
    assert_eq!(
        found[0].fix,
        "SELECT tenant.mark_shared('public.currencies');"
    );
    // The partitioned table is reported once, not its partition.
    let rows = check(&db);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].object, "table public.ranges");
    seed_report_fix(
        &db,
        "",
        "table public.ranges",
        "warning",
        "not marked shared",
    );
    // Temporary tables are not reported.
    let mut su = db.superuser();
    su.batch_execute("CREATE TEMP TABLE scratch (x integer)")
        .unwrap();
    assert_clean(&db);
}

#[test]
fn grant_set_on_the_context_parameter() {
    let _g = serial();
    let db = db_clean("chk_param");
    let app = db.role("app");
    let found = seed_report_fix(
        &db,
        &format!("GRANT SET ON PARAMETER qualityfoundry_tenant.tenant_id TO {app}"),
        "parameter qualityfoundry_tenant.tenant_id",
        "error",
        &app,
    );
    assert_eq!(
        found[0].fix,
        format!("REVOKE SET ON PARAMETER qualityfoundry_tenant.tenant_id FROM {app};")
    );
    assert_clean(&db);
}

#[test]
fn stale_and_renamed_registry_entries() {
    let _g = serial();
    let db = db_clean("chk_stale");
    let found = seed_report_fix(
        &db,
        "ALTER TABLE public.projects RENAME COLUMN tenant_id TO org_id",
        "table public.projects",
        "error",
        "renamed to org_id",
    );
    assert_eq!(
        found[0].fix,
        "ALTER TABLE public.projects RENAME COLUMN org_id TO tenant_id;"
    );
    assert_clean(&db);
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.gone (tenant_id bigint NOT NULL); SELECT tenant.enable_isolation('public.gone');",
    )
    .unwrap();
    let oid: i64 = one(&mut su, "SELECT 'public.gone'::regclass::oid::bigint");
    seed_report_fix(
        &db,
        // A drop the sql_drop trigger did not see (it cleans up after every other drop).
        "ALTER EVENT TRIGGER qft_forget_dropped_tables DISABLE; DROP TABLE public.gone;
         ALTER EVENT TRIGGER qft_forget_dropped_tables ENABLE;",
        &format!("table {oid}"),
        "warning",
        "no longer exists",
    );
    assert_clean(&db);
}

// ---------------------------------------------------------------------------------------------
// Superuser consistency
// ---------------------------------------------------------------------------------------------

const CONSTRAINT: &str = "users_tenant_superuser_consistency";

fn users_db(label: &str) -> TestDb {
    let db = TestDb::new(label);
    db.superuser()
        .batch_execute(
            "CREATE TABLE public.users (id integer PRIMARY KEY, email text, tenant_id bigint, is_superuser boolean);
             INSERT INTO public.users VALUES
                 (1, 'root@example.com', NULL, true),
                 (2, 'alice@acme.example', 1, false),
                 (3, 'bob@acme.example', 1, true),
                 (4, 'carol@nowhere.example', NULL, false),
                 (5, 'dave@globex.example', 2, NULL);",
        )
        .unwrap();
    db
}

fn check_constraints(db: &TestDb) -> i64 {
    one(&mut db.superuser(), "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.users'::regclass AND contype = 'c'")
}

type Violation = (String, Option<bool>, Option<i64>, String);

fn violations(admin: &mut Client, sql: &str) -> Vec<Violation> {
    admin
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[test]
fn inconsistent_users_are_listed_and_refused_then_enforced() {
    let db = users_db("su_enforce");
    let mut admin = db.connect("admin");
    assert_eq!(
        violations(
            &mut admin,
            "SELECT * FROM tenant.superuser_violations('public.users')"
        ),
        vec![
            (
                "3".to_string(),
                Some(true),
                Some(1),
                "superuser with a tenant".to_string()
            ),
            (
                "4".to_string(),
                Some(false),
                None,
                "normal user without a tenant".to_string()
            ),
            (
                "5".to_string(),
                None,
                Some(2),
                "superuser flag is NULL".to_string()
            ),
        ]
    );

    let err = admin
        .batch_execute("SELECT tenant.enforce_superuser_consistency('public.users')")
        .expect_err("violations must be refused");
    assert_eq!(sqlstate(&err), "23514");
    let dbe = err.as_db_error().expect("a server error");
    assert!(dbe.message().contains("3 rows"), "{}", dbe.message());
    assert!(
        dbe.detail().unwrap_or_default().contains("3, 4, 5"),
        "{:?}",
        dbe.detail()
    );
    assert_eq!(check_constraints(&db), 0, "nothing added");

    db.superuser()
        .batch_execute(
            "UPDATE public.users SET tenant_id = NULL WHERE id = 3;
             UPDATE public.users SET tenant_id = 2 WHERE id = 4;
             UPDATE public.users SET is_superuser = false WHERE id = 5;",
        )
        .unwrap();
    assert!(violations(
        &mut admin,
        "SELECT * FROM tenant.superuser_violations('public.users')"
    )
    .is_empty());
    let name: String = one(
        &mut admin,
        "SELECT tenant.enforce_superuser_consistency('public.users')",
    );
    assert_eq!(name, CONSTRAINT);
    assert_eq!(check_constraints(&db), 1);

    let mut su = db.superuser();
    expect_sqlstate(
        su.batch_execute("INSERT INTO public.users VALUES (10, 'x', 1, NULL)"),
        "23514",
    );
    expect_sqlstate(
        su.batch_execute("INSERT INTO public.users VALUES (11, 'x', NULL, NULL)"),
        "23514",
    );
    expect_sqlstate(
        su.batch_execute("INSERT INTO public.users VALUES (12, 'x', NULL, false)"),
        "23514",
    );
    expect_sqlstate(
        su.batch_execute("INSERT INTO public.users VALUES (13, 'x', 1, true)"),
        "23514",
    );
    expect_sqlstate(
        su.batch_execute("UPDATE public.users SET is_superuser = NULL WHERE id = 2"),
        "23514",
    );
    su.batch_execute("INSERT INTO public.users VALUES (14, 'x', 1, false), (15, 'y', NULL, true)")
        .unwrap();

    // Idempotent.
    let again: String = one(
        &mut admin,
        "SELECT tenant.enforce_superuser_consistency('public.users', 'tenant_id', 'is_superuser')",
    );
    assert_eq!(again, CONSTRAINT);
    assert_eq!(check_constraints(&db), 1);
}

#[test]
fn superuser_consistency_bad_inputs() {
    let db = users_db("su_bad");
    let mut su = db.superuser();
    su.batch_execute(
        "ALTER TABLE public.users ADD COLUMN role_name text;
         CREATE VIEW public.users_v AS SELECT * FROM public.users;",
    )
    .unwrap();
    let mut admin = db.connect("admin");
    for (sql, code) in [
        (
            "SELECT tenant.enforce_superuser_consistency('public.users', 'org_id')",
            "42703",
        ),
        (
            "SELECT tenant.enforce_superuser_consistency('public.users', 'tenant_id', 'is_admin')",
            "42703",
        ),
        (
            "SELECT tenant.enforce_superuser_consistency('public.users', 'tenant_id', 'role_name')",
            "42804",
        ),
        (
            "SELECT tenant.enforce_superuser_consistency('public.users', 'email', 'is_superuser')",
            "42804",
        ),
        (
            "SELECT tenant.enforce_superuser_consistency('public.users_v')",
            "42809",
        ),
        ("SELECT tenant.enforce_superuser_consistency(NULL)", "22004"),
        (
            "SELECT tenant.enforce_superuser_consistency('public.users', NULL)",
            "22004",
        ),
        (
            "SELECT tenant.enforce_superuser_consistency('public.users', 'tenant_id', NULL)",
            "22004",
        ),
        (
            "SELECT * FROM tenant.superuser_violations('public.users', 'org_id')",
            "42703",
        ),
        (
            "SELECT * FROM tenant.superuser_violations('public.users', 'tenant_id', 'role_name')",
            "42804",
        ),
        (
            "SELECT * FROM tenant.superuser_violations('public.users_v')",
            "42809",
        ),
        ("SELECT * FROM tenant.superuser_violations(NULL)", "22004"),
    ] {
        let msg = expect_sqlstate(admin.batch_execute(sql), code);
        assert!(!msg.is_empty(), "{sql}");
        assert_eq!(check_constraints(&db), 0, "{sql} added a constraint");
    }
    // Consistent rows, but still a bad input: nothing added either.
    su.batch_execute("DELETE FROM public.users WHERE id IN (3, 4, 5)")
        .unwrap();
    expect_sqlstate(
        admin.batch_execute(
            "SELECT tenant.enforce_superuser_consistency('public.users', 'tenant_id', 'role_name')",
        ),
        "42804",
    );
    assert_eq!(check_constraints(&db), 0);
}

#[test]
fn superuser_consistency_is_for_tenant_admin_only() {
    let db = users_db("su_priv");
    for role in ["app", "nobody"] {
        let mut c = db.connect(role);
        expect_sqlstate(
            c.batch_execute("SELECT tenant.enforce_superuser_consistency('public.users')"),
            "42501",
        );
        expect_sqlstate(
            c.batch_execute("SELECT * FROM tenant.superuser_violations('public.users')"),
            "42501",
        );
    }
    assert_eq!(check_constraints(&db), 0);
}

#[test]
fn superuser_consistency_names_rows_without_a_primary_key_and_fits_long_names() {
    let db = TestDb::new("su_names");
    let mut su = db.superuser();
    let long = "accounts_of_every_customer_and_every_operator_in_the_entire_org";
    assert_eq!(long.len(), 63);
    su.batch_execute(&format!(
        "CREATE TABLE public.{long} (org bigint, admin boolean);
         INSERT INTO public.{long} VALUES (1, true), (NULL, NULL), (2, false);"
    ))
    .unwrap();
    let mut admin = db.connect("admin");
    let rows = violations(
        &mut admin,
        &format!("SELECT * FROM tenant.superuser_violations('public.{long}', 'org', 'admin')"),
    );
    assert_eq!(
        rows,
        vec![
            (
                "(0,1)".to_string(),
                Some(true),
                Some(1),
                "superuser with a tenant".to_string()
            ),
            (
                "(0,2)".to_string(),
                None,
                None,
                "superuser flag is NULL".to_string()
            ),
        ]
    );
    su.batch_execute(&format!(
        "DELETE FROM public.{long} WHERE org IS DISTINCT FROM 2"
    ))
    .unwrap();
    let name: String = one(
        &mut admin,
        &format!("SELECT tenant.enforce_superuser_consistency('public.{long}', 'org', 'admin')"),
    );
    assert!(name.len() <= 63, "{name}");
    assert!(name.ends_with("_tenant_superuser_consistency"), "{name}");
    let found: i64 = one(
        &mut su,
        &format!("SELECT count(*) FROM pg_constraint WHERE conname = '{name}'"),
    );
    assert_eq!(found, 1);
}
