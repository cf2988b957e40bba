//! The framework examples of the README (examples/django, examples/sqlalchemy), run for real: a
//! Python virtualenv under target/venv (made by .ci/python-env), the shared throwaway cluster,
//! and the superuser as the independent oracle of what the framework wrote.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;
use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    let venv = workspace_root().join("target/venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run .ci/python-env (installs examples/requirements.txt)",
        venv.display()
    );
    venv
}

/// Runs the example program `args` (in examples/`dir`) as database role `user` of `db`, and
/// returns its standard output; panics with both outputs unless it succeeds.
fn example(dir: &str, db: &str, user: &str, args: &[&str], extra_env: &[(&str, &str)]) -> String {
    let c = cluster();
    let mut cmd = Command::new(python());
    cmd.current_dir(workspace_root().join("examples").join(dir))
        .args(args)
        .env("QFT_DB_NAME", db)
        .env("QFT_DB_HOST", &c.sock)
        .env("QFT_DB_PORT", c.port.to_string())
        .env("QFT_DB_USER", user)
        .env(
            "QFT_SQLALCHEMY_URL",
            format!(
                "postgresql+psycopg://{user}@/{db}?host={}&port={}",
                c.sock.display(),
                c.port
            ),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{dir} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{dir} {args:?} as {user} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn readme() -> String {
    std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md")
}

/// The deployment of README's Frameworks section, run as written: `migrator` (runs migrations,
/// owns the tables; tenant_admin, tenant_superuser for data migrations; auto_isolate =
/// add_column), the application role, default privileges, Django's tables shared by name; and
/// the backup role of Backups and restores.
fn deployment(label: &str) -> (TestDb, String, String, String) {
    let db = TestDb::new(label);
    let owner = db.role("owner");
    // TestDb's `app` exists already; the block makes its own application role.
    let app = db.role("web");
    let backup = db.role("backup");
    let mut su = db.superuser();
    let setup = readme_block("test", "framework_setup")
        .replace("migrator", &owner)
        .replace("app_login", &app);
    su.batch_execute(&setup)
        .unwrap_or_else(|e| panic!("README framework_setup: {e}"));
    // The harness revokes CONNECT from PUBLIC on its test databases (so the checker sees only the
    // test's own roles); an ordinary database needs no such grant.
    su.batch_execute(&format!(
        "ALTER DATABASE {db} OWNER TO {owner};
         GRANT CONNECT ON DATABASE {db} TO {app};
         SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');",
        db = db.name
    ))
    .unwrap();
    su.batch_execute(&readme_block("test", "backup_role").replace("backup_login", &backup))
        .unwrap();
    (db, owner, app, backup)
}

#[test]
fn the_readmes_framework_snippets_are_the_examples_code() {
    let readme = readme();
    let mut checked = 0;
    for chunk in readme.split("<!-- example: ").skip(1) {
        let path = chunk.split_whitespace().next().expect("a path");
        let code = readme_block("example", path);
        let file = std::fs::read_to_string(workspace_root().join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            file.contains(code.trim_end()),
            "README's block for {path} is not in the file:\n{code}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} example blocks");
}

#[test]
fn sqlalchemy_example() {
    let (db, owner, app, _) = deployment("sqlalchemy");
    // README: create_all as the owner with auto_isolate = on (add_column would do as well).
    db.superuser()
        .batch_execute(&format!(
            "ALTER ROLE {owner} SET qualityfoundry_tenant.auto_isolate = 'on'"
        ))
        .unwrap();
    example("sqlalchemy", &db.name, &owner, &["app.py", "create"], &[]);
    let mut su = db.superuser();
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.isolated_tables ORDER BY 1"
        ),
        ["sa_labels", "sa_projects"],
        "create_all made them isolated (auto_isolate = on for the owner)"
    );
    let out = example("sqlalchemy", &db.name, &app, &["app.py", "run"], &[]);
    assert!(out.contains("\"none_write\": \"42501\""), "{out}");
    // The oracle: every row the application wrote belongs to the tenant it was written in.
    assert_eq!(
        strings(
            &mut su,
            "SELECT t.slug || ' ' || p.name FROM public.sa_projects p JOIN tenant.tenants t ON t.id = p.tenant_id
              WHERE p.name NOT LIKE t.slug || ' %' UNION ALL
             SELECT 'label of another tenant''s project ' || l.id FROM public.sa_labels l
               JOIN public.sa_projects p ON p.id = l.project_id WHERE p.tenant_id <> l.tenant_id"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM public.sa_projects"),
        8
    );
}

#[test]
fn django_example() {
    let (db, owner, app, backup) = deployment("django");
    let mut su = db.superuser();
    // The test runner's database is a copy of a template with the extension and the same registry.
    let template = format!("{}_template", db.name);
    su.batch_execute(&format!("CREATE DATABASE {template} OWNER {owner}"))
        .unwrap();
    {
        let mut t = Client::connect(
            &cluster().conninfo("postgres", &template),
            qft_integration_tests::postgres::NoTls,
        )
        .unwrap();
        t.batch_execute(&format!(
            r"CREATE EXTENSION qualityfoundry_tenant;
              SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
              SELECT tenant.mark_shared_like('public', 'django\_%');
              SELECT tenant.mark_shared_like('public', 'auth\_%');
              ALTER DATABASE {template} IS_TEMPLATE true;"
        ))
        .unwrap();
    }
    let env = [
        ("QFT_TEST_TEMPLATE", template.as_str()),
        ("QFT_BACKUP_USER", backup.as_str()),
    ];

    // The first migration, the application at work, then the rest (Django's own apps and a data
    // migration over every tenant's rows).
    example(
        "django",
        &db.name,
        &owner,
        &["manage.py", "migrate", "projects", "0001"],
        &env,
    );
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.isolated_tables ORDER BY 1"
        ),
        ["projects_project", "projects_project_tags", "projects_tag"]
    );
    assert_eq!(
        one::<String>(
            &mut su,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 'public.projects_project_tags'::regclass AND attname = 'tenant_id'"
        ),
        "bigint",
        "auto_isolate = add_column gave Django's many-to-many table a tenant column"
    );
    let out = example("django", &db.name, &app, &["manage.py", "demo"], &env);
    let json = out
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("demo prints JSON");
    for (needle, what) in [
        (
            r#""acme": {"links": 1, "projects": ["acme one", "acme two"], "tags": ["later:blue", "urgent:red"], "tags_of_one": ["urgent"]}"#,
            "acme",
        ),
        (
            r#""globex": {"links": 1, "projects": ["globex one", "globex two"], "tags": ["later:blue", "urgent:red"], "tags_of_one": ["urgent"]}"#,
            "globex",
        ),
        (r#""none": {"links": 0, "projects": 0}"#, "no tenant"),
    ] {
        assert!(json.contains(needle), "{what}: {json}");
    }
    assert_eq!(
        strings(
            &mut su,
            "SELECT 'm2m row of tenant ' || l.tenant_id || ' links project of ' || p.tenant_id
               FROM public.projects_project_tags l JOIN public.projects_project p ON p.id = l.project_id
              WHERE l.tenant_id IS DISTINCT FROM p.tenant_id
             UNION ALL SELECT 'project ' || p.name || ' in tenant ' || t.slug FROM public.projects_project p
               JOIN tenant.tenants t ON t.id = p.tenant_id WHERE p.name NOT LIKE t.slug || ' %'"
        ),
        Vec::<String>::new()
    );
    example("django", &db.name, &owner, &["manage.py", "migrate"], &env);
    // The backup role's reads cover tables that exist when they are granted: again after a
    // migration (Backups and restores in the README).
    db.superuser()
        .batch_execute(&format!("SELECT tenant.grant_backup_reads('{backup}')"))
        .unwrap();
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.shared_tables ORDER BY 1"
        )
        .iter()
        .filter(|t| t.starts_with("django_session") || t.starts_with("auth_user"))
        .cloned()
        .collect::<Vec<_>>(),
        [
            "auth_user",
            "auth_user_groups",
            "auth_user_user_permissions",
            "django_session"
        ]
    );
    assert_eq!(
        strings(
            &mut su,
            "SELECT code FROM public.projects_project ORDER BY id"
        )
        .iter()
        .filter(|c| !c.starts_with("P-"))
        .count(),
        0,
        "the data migration reached every tenant's rows"
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.audit_log WHERE action = 'cross_tenant_entered'
                AND detail->>'reason' = 'migration projects.0002: project codes'"
        ),
        1
    );

    // dumpdata: the application role without a tenant gets nothing (as it should); the backup
    // role gets every tenant; a login bound to a tenant gets that tenant.
    let dump = |user: &str, alias: &str| -> String {
        let out = example(
            "django",
            &db.name,
            user,
            &[
                "manage.py",
                "dumpdata",
                "projects.project",
                "--database",
                alias,
            ],
            &env,
        );
        out.trim().to_string()
    };
    assert_eq!(dump(&app, "default"), "[]");
    let all = dump(&app, "backup");
    assert_eq!(
        all.matches("\"model\": \"projects.project\"").count(),
        4,
        "{all}"
    );
    let bi = db.role("bi");
    su.batch_execute(&format!(
        "SELECT tenant.bind_role('{bi}', 'acme'); GRANT SELECT ON ALL TABLES IN SCHEMA public TO {bi};"
    ))
    .unwrap();
    let acme = dump(&bi, "default");
    assert!(
        acme.contains("acme one") && !acme.contains("globex"),
        "{acme}"
    );

    // Django's test runner, in a test database made from the template. It runs the tests with
    // the migrating connection, so here the owner also needs tenant_user.
    su.batch_execute(&format!("GRANT tenant_user TO {owner}"))
        .unwrap();
    let out = example(
        "django",
        &db.name,
        &owner,
        &["manage.py", "test", "projects", "--noinput", "-v", "2"],
        &env,
    );
    assert!(out.contains("Ran 5 tests") && out.contains("\nOK"), "{out}");
}
