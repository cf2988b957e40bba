//! What ORMs and frameworks do that hand-written SQL does not: explicit NULL tenants, tables they
//! create themselves (Django's many-to-many tables, django_migrations, django_session), keys from
//! sequences; and the users-table recipe. The real Django and SQLAlchemy run in the frameworks
//! tier (pgrx-tests/tests/frameworks).

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

fn globex_rows(db: &TestDb) -> Vec<String> {
    strings(
        &mut db.superuser(),
        "SELECT p::text FROM public.projects p WHERE tenant_id = 2 ORDER BY id",
    )
}

#[test]
fn an_explicit_null_tenant_is_filled_from_the_context() {
    let db = TestDb::new("orm_null").with_projects();
    let before = globex_rows(&db);
    let mut app = db.connect_in("app", "acme");
    // What Django and SQLAlchemy send for a model whose tenant field was left unset.
    app.batch_execute(
        "INSERT INTO public.projects (tenant_id, id, name) VALUES (NULL, 110, 'orm'), (NULL, 111, 'orm'), (1, 112, 'explicit')",
    )
    .unwrap();
    // ON CONFLICT sees the filled tenant: the existing acme row is updated, nothing is added.
    app.batch_execute(
        "INSERT INTO public.projects (tenant_id, id, name) VALUES (NULL, 110, 'upserted')
         ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name",
    )
    .unwrap();
    let mut su = db.superuser();
    assert_eq!(
        strings(
            &mut su,
            "SELECT tenant_id || ':' || id || ':' || name FROM public.projects WHERE id BETWEEN 110 AND 121 ORDER BY id"
        ),
        ["1:110:upserted", "1:111:orm", "1:112:explicit"]
    );
    // Without a context there is nothing to fill it from: row security refuses the row.
    let mut bare = db.connect("app");
    expect_sqlstate(
        bare.batch_execute(
            "INSERT INTO public.projects (tenant_id, id, name) VALUES (NULL, 120, 'nobody''s')",
        ),
        "42501",
    );
    // Cross-tenant mode does not say whose row it is: a NULL stays NULL (and NOT NULL refuses it).
    su.batch_execute(&format!(
        "GRANT SELECT, INSERT ON public.projects TO {}",
        db.role("support")
    ))
    .unwrap();
    let mut support = db.connect("support");
    support
        .batch_execute("SELECT tenant.enter_cross_tenant('ticket 7')")
        .unwrap();
    expect_sqlstate(
        support.batch_execute(
            "INSERT INTO public.projects (tenant_id, id, name) VALUES (NULL, 121, 'whose?')",
        ),
        "23502",
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM public.projects WHERE id BETWEEN 120 AND 121"
        ),
        0
    );
    assert_eq!(globex_rows(&db), before);

    // Any tenant column name and integer type; the trigger is named and quoted safely.
    su.batch_execute(&format!(
        r#"CREATE TABLE public.odd ("Org ""Id""" smallint, v text);
           SELECT tenant.enable_isolation('public.odd', 'Org "Id"');
           GRANT SELECT, INSERT ON public.odd TO {};"#,
        db.role("app")
    ))
    .unwrap();
    app.batch_execute(r#"INSERT INTO public.odd ("Org ""Id""", v) VALUES (NULL, 'x')"#)
        .unwrap();
    assert_eq!(
        one::<i16>(&mut su, r#"SELECT "Org ""Id""" FROM public.odd"#),
        1
    );
    // disable_isolation removes the trigger with everything else enable added.
    su.batch_execute("SELECT tenant.disable_isolation('public.odd')")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.odd'::regclass"
        ),
        0
    );
}

#[test]
fn a_null_tenant_on_a_table_with_shared_rows_is_a_system_row_that_tenants_are_told_they_cannot_write(
) {
    let db = TestDb::new("orm_shared");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme');
         CREATE TABLE public.plans (tenant_id bigint, id int PRIMARY KEY, name text);
         INSERT INTO public.plans VALUES (NULL, 1, 'free plan');
         SELECT tenant.enable_isolation('public.plans', allow_shared_rows => true);
         GRANT SELECT, INSERT ON public.plans TO {};",
        db.role("app")
    ))
    .unwrap();
    let mut app = db.connect_in("app", "acme");
    let msg = expect_sqlstate(
        app.batch_execute(
            "INSERT INTO public.plans (tenant_id, id, name) VALUES (NULL, 2, 'forged')",
        ),
        "42501",
    );
    assert!(msg.contains("a NULL tenant_id makes a shared row"), "{msg}");
    app.batch_execute("INSERT INTO public.plans (id, name) VALUES (3, 'acme plan')")
        .unwrap();
    // The superuser still writes system rows.
    su.batch_execute("INSERT INTO public.plans VALUES (NULL, 4, 'pro plan')")
        .unwrap();
    assert_eq!(
        strings(
            &mut su,
            "SELECT coalesce(tenant_id::text, 'shared') || ':' || id FROM public.plans ORDER BY id"
        ),
        ["shared:1", "1:3", "shared:4"]
    );
}

#[test]
fn auto_isolate_add_column_gives_framework_tables_a_tenant_and_isolates_them() {
    let db = TestDb::new("orm_addcol");
    let mut su = db.superuser();
    let app = db.role("app");
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
         ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = 'add_column';
         GRANT CREATE ON SCHEMA public TO {app};",
        db.name
    ))
    .unwrap();
    let mut su = db.superuser();
    // What `manage.py migrate` does: the app's model (with a tenant column), then the
    // many-to-many table Django makes for it (without one), in the same transaction.
    su.batch_execute(&format!(
        "BEGIN;
         CREATE TABLE public.app_project (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id bigint, name text);
         CREATE TABLE public.app_tag (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id bigint, name text);
         CREATE TABLE public.app_project_tags (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                                               project_id bigint NOT NULL, tag_id bigint NOT NULL);
         ALTER TABLE public.app_project_tags ADD CONSTRAINT app_project_tags_uniq UNIQUE (project_id, tag_id);
         COMMIT;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};"
    ))
    .unwrap();
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.isolated_tables ORDER BY 1"
        ),
        ["app_project", "app_project_tags", "app_tag"]
    );
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' || pg_get_expr(adbin, adrelid)
               FROM pg_attribute JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
              WHERE attrelid = 'public.app_project_tags'::regclass AND attname = 'tenant_id'"
        ),
        "bigint true tenant.current_tenant_id()"
    );
    // Django inserts (project_id, tag_id) only, with ON CONFLICT DO NOTHING.
    for (tenant, n) in [("acme", 1), ("globex", 2)] {
        let mut c = db.connect_in("app", tenant);
        c.batch_execute(&format!(
            "INSERT INTO public.app_project (tenant_id, name) VALUES (NULL, '{tenant} project');
             INSERT INTO public.app_tag (name) VALUES ('{tenant} tag');
             INSERT INTO public.app_project_tags (project_id, tag_id)
                  SELECT p.id, t.id FROM public.app_project p, public.app_tag t
             ON CONFLICT DO NOTHING;
             INSERT INTO public.app_project_tags (project_id, tag_id)
                  SELECT p.id, t.id FROM public.app_project p, public.app_tag t
             ON CONFLICT DO NOTHING;"
        ))
        .unwrap();
        assert_eq!(
            one::<i64>(&mut c, "SELECT count(*) FROM public.app_project_tags"),
            1,
            "{tenant}"
        );
        assert_eq!(
            one::<i64>(&mut c, "SELECT min(tenant_id) FROM public.app_project_tags"),
            n
        );
    }
    let mut bare = db.connect("app");
    assert_eq!(
        one::<i64>(&mut bare, "SELECT count(*) FROM public.app_project_tags"),
        0
    );
    // A non-superuser's own new table gets the column too; a schema without isolated tables
    // and temporary tables are left alone; rows without a context cannot be given a tenant.
    let mut creator = db.connect("app");
    creator
        .batch_execute("CREATE TABLE public.app_note (body text)")
        .unwrap();
    su.batch_execute(
        "CREATE SCHEMA scratch; CREATE TABLE scratch.free (x int); CREATE TEMP TABLE t (x int);",
    )
    .unwrap();
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.isolated_tables WHERE relid::text NOT LIKE 'app\\_project%' AND relid::text <> 'app_tag'"
        ),
        ["app_note"]
    );
    let msg = expect_sqlstate(
        su.batch_execute("CREATE TABLE public.copied AS SELECT 1 AS x"),
        "23502",
    );
    assert!(msg.contains("NULL tenant_id"), "{msg}");
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_class WHERE relname = 'copied'"
        ),
        0
    );
}

#[test]
fn shared_patterns_mark_framework_tables_before_they_exist() {
    let db = TestDb::new("orm_patterns");
    let mut su = db.superuser();
    su.batch_execute(
        "SELECT tenant.create_tenant('acme');
         CREATE TABLE public.projects (tenant_id bigint NOT NULL, id int);
         SELECT tenant.enable_isolation('public.projects');
         CREATE TABLE public.django_content_type (id int PRIMARY KEY, model text);",
    )
    .unwrap();
    let mut admin = db.connect("admin");
    let state = |su: &mut Client| -> Vec<String> {
        strings(
            su,
            "SELECT 'pattern ' || schema_name || ' ' || pattern FROM tenant.shared_patterns
             UNION ALL SELECT 'shared ' || relid::text FROM tenant.shared_tables
             UNION ALL SELECT 'isolated ' || relid::text FROM tenant.isolated_tables ORDER BY 1",
        )
    };
    let before = state(&mut su);
    for (sql, code) in [
        ("SELECT tenant.mark_shared_like(NULL, 'x%')", "22004"),
        ("SELECT tenant.mark_shared_like('public', NULL)", "22004"),
        ("SELECT tenant.mark_shared_like('public', '  ')", "22023"),
        ("SELECT tenant.mark_shared_like('nope', 'x%')", "3F000"),
        (
            "SELECT tenant.unmark_shared_like('public', 'never%')",
            "22023",
        ),
        ("SELECT tenant.unmark_shared_like(NULL, 'x')", "22004"),
    ] {
        expect_sqlstate(admin.batch_execute(sql), code);
        assert_eq!(state(&mut su), before, "{sql}");
    }
    let mut app = db.connect("app");
    expect_sqlstate(
        app.batch_execute("SELECT tenant.mark_shared_like('public', '%')"),
        "42501",
    );
    assert_eq!(state(&mut su), before);
    // Existing matches are marked at once (the isolated table is not, whatever its name).
    assert_eq!(
        one::<i32>(
            &mut admin,
            r"SELECT tenant.mark_shared_like('public', 'django\_%')"
        ),
        1
    );
    assert_eq!(
        one::<i32>(
            &mut admin,
            r"SELECT tenant.mark_shared_like('public', 'proj%')"
        ),
        0
    );
    assert_eq!(
        one::<i32>(
            &mut admin,
            r"SELECT tenant.mark_shared_like('public', 'django\_%')"
        ),
        0,
        "idempotent"
    );
    // New ones in every mode, including strict, which would reject them, and add_column.
    for mode in ["off", "on", "strict", "add_column"] {
        su.batch_execute(&format!(
            "ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = '{mode}'",
            db.name
        ))
        .unwrap();
        let mut s = db.superuser();
        s.batch_execute(&format!(
            "CREATE TABLE public.django_session_{mode} (session_key text PRIMARY KEY, tenant_id bigint)"
        ))
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(
            one::<i64>(
                &mut s,
                &format!("SELECT count(*) FROM tenant.shared_tables WHERE relid = 'public.django_session_{mode}'::regclass")
            ),
            1,
            "{mode}"
        );
        assert!(!one::<bool>(
            &mut s,
            &format!("SELECT relrowsecurity FROM pg_class WHERE oid = 'public.django_session_{mode}'::regclass")
        ));
    }
    // Other new tables are still refused in strict mode.
    su.batch_execute(&format!(
        "ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = 'strict'",
        db.name
    ))
    .unwrap();
    let mut s = db.superuser();
    expect_sqlstate(
        s.batch_execute("CREATE TABLE public.auth_user (id int)"),
        "42P16",
    );
    admin
        .batch_execute(r"SELECT tenant.unmark_shared_like('public', 'django\_%')")
        .unwrap();
    expect_sqlstate(
        s.batch_execute("CREATE TABLE public.django_admin_log (id int)"),
        "42P16",
    );
    // Marked tables stay marked; the checker does not report them as unmarked.
    let problems: Vec<String> = strings(
        &mut admin,
        "SELECT object FROM tenant.check_isolation() WHERE object LIKE 'table public.django%'",
    );
    assert_eq!(problems, Vec::<String>::new());
    let audit = strings(
        &mut su,
        "SELECT action FROM tenant.audit_log WHERE action LIKE 'shared_pattern%' ORDER BY id",
    );
    assert_eq!(
        audit,
        [
            "shared_pattern_added",
            "shared_pattern_added",
            "shared_pattern_added",
            "shared_pattern_removed"
        ]
    );
}

#[test]
fn check_isolation_rates_keys_from_a_sequence_as_a_warning_and_other_keys_as_errors() {
    let db = TestDb::new("orm_seqkeys");
    let mut su = db.superuser();
    su.batch_execute(
        "SELECT tenant.create_tenant('acme');
         CREATE TABLE public.a_serial (id serial PRIMARY KEY, tenant_id bigint NOT NULL);
         CREATE TABLE public.b_identity (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id bigint NOT NULL);
         CREATE TABLE public.c_django (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id bigint NOT NULL);
         CREATE TABLE public.d_natural (code text PRIMARY KEY, tenant_id bigint NOT NULL);
         CREATE TABLE public.e_plain (id int PRIMARY KEY, tenant_id bigint NOT NULL);
         CREATE SEQUENCE public.shared_seq;
         CREATE TABLE public.f_nextval (id bigint DEFAULT nextval('public.shared_seq') PRIMARY KEY, tenant_id bigint NOT NULL);
         CREATE TABLE public.g_pair (id serial, k int, tenant_id bigint NOT NULL, UNIQUE (id, k));",
    )
    .unwrap();
    for t in [
        "a_serial",
        "b_identity",
        "c_django",
        "d_natural",
        "e_plain",
        "f_nextval",
        "g_pair",
    ] {
        su.batch_execute(&format!("SELECT tenant.enable_isolation('public.{t}')"))
            .unwrap();
    }
    let mut admin = db.connect("admin");
    let found: Vec<(String, String, String)> = admin
        .query(
            "SELECT severity, object, problem FROM tenant.check_isolation()
              WHERE object LIKE 'constraint % on table public.%' ORDER BY object",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let severity: Vec<(String, String)> = found
        .iter()
        .map(|(s, o, _)| (o.clone(), s.clone()))
        .collect();
    assert_eq!(
        severity,
        [
            (
                "constraint a_serial_pkey on table public.a_serial",
                "warning"
            ),
            (
                "constraint b_identity_pkey on table public.b_identity",
                "warning"
            ),
            (
                "constraint c_django_pkey on table public.c_django",
                "warning"
            ),
            (
                "constraint d_natural_pkey on table public.d_natural",
                "error"
            ),
            ("constraint e_plain_pkey on table public.e_plain", "error"),
            (
                "constraint f_nextval_pkey on table public.f_nextval",
                "warning"
            ),
            ("constraint g_pair_id_k_key on table public.g_pair", "error"),
        ]
        .map(|(o, s)| (o.to_string(), s.to_string()))
    );
    for (s, o, p) in &found {
        if s == "warning" {
            assert!(p.contains("sequence"), "{o}: {p}");
        } else {
            assert!(
                p.contains("tells whether a key exists in another tenant"),
                "{o}: {p}"
            );
        }
    }
}

#[test]
fn the_users_recipe_hides_superuser_accounts_from_every_tenant() {
    let db = TestDb::new("orm_users");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
         CREATE TABLE public.users (id int PRIMARY KEY, email text, tenant_id bigint, is_superuser boolean);
         INSERT INTO public.users VALUES (1, 'root@platform', NULL, true), (2, 'alice@acme', 1, false),
                                         (3, 'gus@globex', 2, false);
         GRANT SELECT ON public.users TO {}, {};",
        db.role("app"),
        db.role("support")
    ))
    .unwrap();
    let block = readme_block("test", "users_recipe");
    let (isolate, hide) = block
        .split_once("-- ...but")
        .expect("the recipe has its two steps");
    su.batch_execute(isolate).unwrap();
    // Without the second step a superuser's account is a shared row: every tenant reads it.
    let mut acme = db.connect_in("app", "acme");
    let emails = |c: &mut Client| strings(c, "SELECT email FROM public.users ORDER BY id");
    assert_eq!(emails(&mut acme), ["root@platform", "alice@acme"]);
    su.batch_execute(&format!("-- ...but{hide}")).unwrap();
    assert_eq!(emails(&mut acme), ["alice@acme"]);
    let mut globex = db.connect_in("app", "globex");
    assert_eq!(emails(&mut globex), ["gus@globex"]);
    let mut bare = db.connect("app");
    assert_eq!(emails(&mut bare), Vec::<String>::new());
    // Platform staff read every account, superusers included, in audited cross-tenant mode.
    let mut support = db.connect("support");
    support
        .batch_execute("SELECT tenant.enter_cross_tenant('login of a platform superuser')")
        .unwrap();
    assert_eq!(
        emails(&mut support),
        ["root@platform", "alice@acme", "gus@globex"]
    );
    // The recipe's policy is not the extension's: the checker has nothing to say about it.
    let mut admin = db.connect("admin");
    assert_eq!(
        strings(
            &mut admin,
            "SELECT problem FROM tenant.check_isolation() WHERE object LIKE 'policy % on table public.users'"
        ),
        Vec::<String>::new()
    );
}
