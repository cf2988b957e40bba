//! The extension's life cycle and its privileges.

use qft_integration_tests::*;

const EXT_OID: &str = "(SELECT oid FROM pg_extension WHERE extname = 'qualityfoundry_tenant')";

/// Objects in schema `tenant` that are not members of the extension (so DROP EXTENSION would leave
/// them, and pg_dump would dump them as user objects).
const NOT_MEMBERS: &str = "
    SELECT pg_describe_object(x.classid, x.oid, 0) FROM (
        SELECT 'pg_class'::regclass AS classid, oid FROM pg_class WHERE relnamespace = 'tenant'::regnamespace
        UNION ALL SELECT 'pg_proc'::regclass, oid FROM pg_proc WHERE pronamespace = 'tenant'::regnamespace
        UNION ALL SELECT 'pg_type'::regclass, oid FROM pg_type WHERE typnamespace = 'tenant'::regnamespace
                                                                 AND typrelid = 0 AND typelem = 0
        UNION ALL SELECT 'pg_event_trigger'::regclass, oid FROM pg_event_trigger WHERE evtname LIKE 'qft%'
    ) x
    WHERE NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = x.classid AND d.objid = x.oid AND d.deptype = 'e')
      -- indexes, TOAST tables and row types belong to their table
      AND NOT EXISTS (SELECT FROM pg_class c WHERE x.classid = 'pg_class'::regclass AND c.oid = x.oid AND c.relkind IN ('i', 't'))
    ORDER BY 1";

#[test]
fn drop_extension_removes_every_object_and_create_works_again() {
    let db = TestDb::new("lifecycle").with_projects();
    let mut su = db.superuser();
    // Everything the install made in schema tenant is an extension member, and it lives there.
    let strays: Vec<String> = su
        .query(NOT_MEMBERS, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(strays, Vec::<String>::new());
    // The extension is recorded in the schema it was created from (\dx), not in its own
    // schema tenant, which is one of its members (see the README's Roles section).
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'qualityfoundry_tenant'"
        ),
        "public"
    );
    // Policies depend on the extension's functions: the clean way out is disable_isolation first.
    expect_sqlstate(
        su.batch_execute("DROP EXTENSION qualityfoundry_tenant"),
        "2BP01",
    );
    su.batch_execute(
        "SELECT tenant.disable_isolation('public.projects'); DROP EXTENSION qualityfoundry_tenant",
    )
    .unwrap();
    for (what, sql) in [
        ("extension", "SELECT count(*) FROM pg_extension WHERE extname = 'qualityfoundry_tenant'"),
        // The schema is a member: it goes with the extension.
        ("schema tenant", "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant'"),
        ("functions", "SELECT count(*) FROM pg_proc WHERE probin LIKE '%qualityfoundry_tenant%' OR pronamespace::regnamespace::text = 'tenant'"),
        ("event triggers", "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'qft%'"),
        ("types", "SELECT count(*) FROM pg_type WHERE typnamespace::regnamespace::text = 'tenant'"),
        ("policies", "SELECT count(*) FROM pg_policy WHERE polname LIKE 'qft%'"),
        ("dependencies", "SELECT count(*) FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND refobjid NOT IN (SELECT oid FROM pg_extension)"),
    ] {
        assert_eq!(one::<i64>(&mut su, sql), 0, "{what} left behind");
    }
    // Roles are cluster-wide and stay.
    assert_eq!(one::<i64>(&mut su, "SELECT count(*) FROM pg_roles WHERE rolname IN ('tenant_user', 'tenant_superuser', 'tenant_admin')"), 3);
    su.batch_execute("CREATE EXTENSION qualityfoundry_tenant")
        .unwrap();
    // public.projects still holds the rows of tenants 1 and 2: a new tenant does not get their ids
    // (lifecycle.rs tests this in full); acme can be re-created with its own.
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant.create_tenant('again')"),
        3
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant.create_tenant('acme', id => 1)"),
        1
    );
}

#[test]
fn an_existing_schema_named_tenant_is_not_adopted() {
    let db = TestDb::new("adopt");
    let mut su = db.superuser();
    // The schema is an extension member: DROP EXTENSION removes it with everything else.
    su.batch_execute("DROP EXTENSION qualityfoundry_tenant")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant'"
        ),
        0
    );
    // Any schema of that name, even an empty one a superuser owns: CREATE EXTENSION fails and
    // leaves the schema as it was (SPEC: it fails rather than adopting it).
    for setup in ["CREATE SCHEMA tenant", "CREATE TABLE tenant.mine (x int)"] {
        su.batch_execute(setup).unwrap();
        let before: String = one(
            &mut su,
            "SELECT concat_ws('|', nspowner::regrole, nspacl, (SELECT string_agg(relname, ',') FROM pg_class WHERE relnamespace = n.oid))
               FROM pg_namespace n WHERE nspname = 'tenant'",
        );
        let msg = expect_sqlstate(
            su.batch_execute("CREATE EXTENSION qualityfoundry_tenant"),
            "42P06",
        );
        assert!(msg.contains("tenant"), "{setup}: {msg}");
        assert_eq!(
            one::<i64>(
                &mut su,
                "SELECT count(*) FROM pg_extension WHERE extname = 'qualityfoundry_tenant'"
            ),
            0
        );
        let after: String = one(
            &mut su,
            "SELECT concat_ws('|', nspowner::regrole, nspacl, (SELECT string_agg(relname, ',') FROM pg_class WHERE relnamespace = n.oid))
               FROM pg_namespace n WHERE nspname = 'tenant'",
        );
        assert_eq!(after, before, "{setup}");
    }
    // Once that schema is gone, the extension installs again.
    su.batch_execute("DROP SCHEMA tenant CASCADE; CREATE EXTENSION qualityfoundry_tenant")
        .unwrap();
}

#[test]
fn non_superusers_execute_only_what_they_were_granted() {
    let db = TestDb::new("privs");
    let mut su = db.superuser();
    let executable = |su: &mut qft_integration_tests::postgres::Client,
                      role: &str|
     -> Vec<String> {
        su.query(
            &format!(
                "SELECT p.oid::regprocedure::text FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid \
                 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = {EXT_OID} AND d.classid = 'pg_proc'::regclass \
                   AND has_function_privilege('{role}', p.oid, 'EXECUTE') ORDER BY 1"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    // The getters, and what the role limits' policies call (issue 15: the role folded at plan
    // time and the tenant getters keyed to it).
    let public = [
        "tenant._current_tenant_id_as(text)",
        "tenant._current_tenant_uuid_as(text)",
        "tenant._tenant_role_in(text[])",
        "tenant.cross_tenant_active()",
        "tenant.current_tenant()",
        "tenant.current_tenant_id()",
        "tenant.current_tenant_role()",
        "tenant.current_tenant_uuid()",
        "tenant.current_user_id()",
    ];
    assert_eq!(executable(&mut su, &db.role("nobody")), public);
    // Issue 17: PUBLIC executes the getters through PostgreSQL's default function ACL (stored as
    // NULL, the cheaper per-call check), and no initial privileges are recorded for them, so
    // pg_dump dumps none; every other function keeps an explicit ACL.
    let defaults: Vec<String> = su
        .query(
            &format!(
                "SELECT p.oid::regprocedure::text FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid \
                 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = {EXT_OID} AND d.classid = 'pg_proc'::regclass \
                   AND p.proacl IS NULL \
                   AND NOT EXISTS (SELECT FROM pg_init_privs i WHERE i.classoid = 'pg_proc'::regclass AND i.objoid = p.oid) \
                 ORDER BY 1"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(defaults, public, "the functions with the default ACL");
    let mut app_expected: Vec<&str> = public.to_vec();
    app_expected.extend([
        "tenant.clear_tenant()",
        "tenant.set_tenant(bigint,boolean)",
        "tenant.set_request_id(text)",
        "tenant.set_tenant(text,boolean)",
        "tenant.set_tenant_jwt(text,boolean)",
        "tenant.set_tenant_signed(text,boolean)",
    ]);
    app_expected.sort();
    assert_eq!(executable(&mut su, &db.role("app")), app_expected);
    let mut support_expected: Vec<&str> = public.to_vec();
    support_expected.extend([
        "tenant.enter_cross_tenant(text,boolean)",
        "tenant.exit_cross_tenant()",
        "tenant.set_request_id(text)",
    ]);
    support_expected.sort();
    assert_eq!(executable(&mut su, &db.role("support")), support_expected);
    // Internal helpers are for the extension owner only, whoever asks — except the steps of
    // migrate_all/retry_failed: those procedures COMMIT per schema, so they are SECURITY INVOKER
    // and tenant_admin calls the steps itself (each SECURITY DEFINER step checks membership).
    let migrate_steps = [
        "tenant._migration_apply(bigint,name)",
        "tenant._migration_check_args(text,text,text,boolean,boolean,integer)",
        "tenant._migration_claim(bigint,integer)",
        "tenant._migration_counts(bigint)",
        "tenant._migration_end_run(bigint)",
        "tenant._migration_execute(bigint)",
        "tenant._migration_fast_step(bigint,text)",
        "tenant._migration_finish(bigint,name,text,text)",
        "tenant._migration_lock()",
        "tenant._migration_next_version(text)",
        "tenant._migration_progress(bigint,integer)",
        "tenant._migration_raise_if_stopped(bigint)",
        "tenant._migration_register(text,text,name,timestamp with time zone)",
        "tenant._migration_report(integer,integer,integer,integer)",
        "tenant._migration_requeue(bigint)",
        "tenant._migration_run_step(bigint,text)",
        "tenant._migration_run_template(text,text)",
        "tenant._migration_start_run(text,boolean,integer,boolean)",
        "tenant._migration_start_workers(bigint)",
        "tenant._migration_template_lock(boolean)",
        "tenant._migration_template_step(text,text)",
        "tenant._migration_template_target(text,text)",
        "tenant._migration_unlock()",
        "tenant._migration_wait_workers(bigint,integer)",
        // migrate_all re-pins each tenant schema after migrating it when the step changed what
        // the pins depend on, and refuses a step that adds what would escape them.
        "tenant._schema_check_after(name,text,text[],text)",
        "tenant._schema_check_before(name)",
        "tenant._tenant_schema_problem_keys(name,boolean)",
        "tenant._tenant_schema_refuse(name,boolean,text[],text)",
    ];
    // The internal functions that role limits' policies call (as the querying role, so PUBLIC):
    // read-only answers about the caller's own context, like the getters.
    let policy_helpers = [
        "tenant._current_tenant_id_as(text)",
        "tenant._current_tenant_uuid_as(text)",
        "tenant._tenant_role_in(text[])",
    ];
    for role in ["nobody", "app", "support", "admin"] {
        let privs = executable(&mut su, &db.role(role));
        let internal: Vec<&String> = privs
            .iter()
            .filter(|f| f.starts_with("tenant._") && !policy_helpers.contains(&f.as_str()))
            .collect();
        let expected: &[&str] = if role == "admin" { &migrate_steps } else { &[] };
        assert_eq!(internal, expected, "{role} may run {privs:?}");
        let mut c = db.connect(role);
        expect_sqlstate(
            c.batch_execute("SELECT tenant._audit('forged', NULL, NULL, NULL)"),
            "42501",
        );
        expect_sqlstate(
            c.batch_execute("SELECT tenant._registry_changed()"),
            "42501",
        );
    }
    // A plain role calling an admin function: refused, and nothing was created.
    let mut app = db.connect("app");
    expect_sqlstate(
        app.batch_execute("SELECT tenant.create_tenant('sneaky')"),
        "42501",
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.tenants"),
        0
    );
}

#[test]
fn registry_tables_are_dumped_with_the_extension() {
    let db = TestDb::new("configdump");
    let mut su = db.superuser();
    let dumped: Vec<String> = su
        .query(&format!("SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE oid = {EXT_OID} ORDER BY 1"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in [
        "tenant.tenants",
        "tenant.role_bindings",
        "tenant.audit_log",
        "tenant.isolated_tables",
        "tenant.shared_tables",
        "tenant.memberships",
        "tenant.jwt_keys",
    ] {
        assert!(dumped.iter().any(|d| d == t), "{t} not in {dumped:?}");
    }
    assert!(
        !dumped.iter().any(|d| d == "tenant.signing_keys"),
        "the signing key must not be dumped"
    );
}

#[test]
fn registry_rules_reject_bad_tenants_and_leave_no_row() {
    let db = TestDb::new("registry_bad");
    let mut admin = db.connect("admin");
    for (sql, code) in [
        ("SELECT tenant.create_tenant(NULL)", "22023"),
        ("SELECT tenant.create_tenant('')", "22023"),
        ("SELECT tenant.create_tenant('Upper')", "22023"),
        ("SELECT tenant.create_tenant('1abc')", "22023"),
        ("SELECT tenant.create_tenant('a-b')", "22023"),
        (
            "SELECT tenant.create_tenant('x''; DROP TABLE tenant.tenants; --')",
            "22023",
        ),
        ("SELECT tenant.create_tenant(repeat('a', 41))", "22023"),
        (
            "SELECT tenant.create_tenant('ok', tier => 'platinum')",
            "22023",
        ),
        ("SELECT tenant.create_tenant('ok', tier => NULL)", "22023"),
        ("SELECT tenant.suspend_tenant('nope')", "22023"),
        ("SELECT tenant.drop_tenant('nope')", "22023"),
    ] {
        expect_sqlstate(admin.batch_execute(sql), code);
    }
    assert_eq!(
        one::<i64>(&mut admin, "SELECT count(*) FROM tenant.tenants"),
        0
    );
    assert_eq!(
        one::<i64>(
            &mut admin,
            "SELECT tenant.create_tenant(repeat('a', 40), 'Forty', 'pro')"
        ),
        1
    );
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.create_tenant(repeat('a', 40))"),
        "42710",
    );
    assert_eq!(
        one::<i64>(&mut admin, "SELECT count(*) FROM tenant.tenants"),
        1
    );
    let audit: i64 = one(
        &mut admin,
        "SELECT count(*) FROM tenant.audit_log WHERE action = 'tenant_created'",
    );
    assert_eq!(audit, 1);
}

#[test]
fn drop_tenant_refuses_while_rows_remain_unless_asked() {
    let db = TestDb::new("drop_tenant").with_projects();
    let mut admin = db.connect("admin");
    let msg = expect_sqlstate(
        admin.batch_execute("SELECT tenant.drop_tenant('acme')"),
        "2BP01",
    );
    assert!(msg.contains("3 rows"), "{msg}");
    assert_eq!(db.all_projects().len(), 6);
    admin
        .batch_execute("SELECT tenant.drop_tenant('acme', delete_rows => true)")
        .unwrap();
    assert_eq!(db.all_projects().iter().filter(|r| r.0 == 1).count(), 0);
    assert_eq!(db.all_projects().len(), 3);
    let mut su = db.superuser();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.tenants WHERE slug = 'acme'"
        ),
        0
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.audit_log WHERE action = 'tenant_dropped'"
        ),
        1
    );
}

#[test]
fn the_registry_survives_pg_dump_and_restore() {
    let db = TestDb::new("dump").with_projects();
    let mut admin = db.connect("admin");
    admin
        .batch_execute(&format!(
            "SELECT tenant.bind_role('{}', 'globex')",
            db.role("bi")
        ))
        .unwrap();
    let mut restored = db.dump_and_restore();
    let rows: Vec<String> = restored
        .query(
            "SELECT id || ':' || slug FROM tenant.tenants ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["1:acme", "2:globex"]);
    assert_eq!(
        one::<i64>(
            &mut restored,
            "SELECT count(*) FROM tenant.isolated_tables WHERE relid = 'public.projects'::regclass"
        ),
        1
    );
    assert_eq!(
        one::<i64>(&mut restored, "SELECT count(*) FROM tenant.role_bindings"),
        1
    );
    assert!(one::<i64>(&mut restored, "SELECT count(*) FROM tenant.audit_log") >= 3);
    // New tenants continue after the restored ids, and isolation works in the copy.
    assert_eq!(
        one::<i64>(&mut restored, "SELECT tenant.create_tenant('third')"),
        3
    );
    assert_eq!(
        one::<i64>(&mut restored, "SELECT count(*) FROM tenant.signing_keys"),
        0
    );
    let policies: i64 = one(
        &mut restored,
        "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.projects'::regclass",
    );
    assert_eq!(policies, 3);
}
