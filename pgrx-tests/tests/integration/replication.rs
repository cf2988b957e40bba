//! Logical replication: a subscriber gets every tenant's rows, and is isolated only if it has the
//! policies (the schema, copied with pg_dump -s) and the registry (published with the data). Two
//! private clusters: the publisher needs wal_level = logical, and the subscriber's workers must not
//! take the shared cluster's worker slots.

use qft_integration_tests::postgres::{Client, NoTls};
use qft_integration_tests::*;
use std::time::{Duration, Instant};

fn connect(c: &Cluster, user: &str, db: &str) -> Client {
    Client::connect(&c.conninfo(user, db), NoTls)
        .unwrap_or_else(|e| panic!("connect {user}@{db}: {e}"))
}

fn names(client: &mut Client) -> Vec<String> {
    client
        .query("SELECT name FROM public.projects ORDER BY id", &[])
        .expect("select")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits (on the subscriber's own state, with a deadline) until `sql` returns true.
fn wait_until(client: &mut Client, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if one::<bool>(client, sql) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const ROLES: &str =
    "CREATE ROLE repl_app LOGIN NOSUPERUSER NOBYPASSRLS; GRANT tenant_user TO repl_app;
                     CREATE ROLE repl_bi LOGIN NOSUPERUSER NOBYPASSRLS;";

#[test]
fn a_subscriber_that_gets_the_registry_with_the_data_is_isolated() {
    install_extension();
    let install = PgInstall::from_env();
    let pid = std::process::id();
    let publisher = Cluster::start(
        &format!("repl-pub-{pid}"),
        install,
        "wal_level = logical\nmax_wal_senders = 4\nmax_replication_slots = 4\n",
    );
    let subscriber = Cluster::start(&format!("repl-sub-{pid}"), install, "");
    for (c, ext_db) in [(&publisher, "app"), (&subscriber, "postgres")] {
        let mut su = connect(c, "postgres", "postgres");
        su.batch_execute("CREATE DATABASE app").unwrap();
        // The extension creates the (cluster-wide) tenant_* roles the application role is
        // granted; on the subscriber the schema copy below creates it in app.
        connect(c, "postgres", ext_db)
            .batch_execute("CREATE EXTENSION qualityfoundry_tenant")
            .unwrap();
        su.batch_execute(ROLES).unwrap();
    }
    let mut publ = connect(&publisher, "postgres", "app");
    publ.batch_execute(
        "SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
         CREATE TABLE public.projects (tenant_id bigint NOT NULL, id integer NOT NULL, name text,
                                       PRIMARY KEY (tenant_id, id));
         SELECT tenant.enable_isolation('public.projects');
         INSERT INTO public.projects VALUES (1, 100, 'acme-100'), (1, 101, 'acme-101'), (2, 200, 'globex-200');
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO repl_app, repl_bi;
         SELECT tenant.bind_role('repl_bi', 'globex');",
    )
    .unwrap();
    // The subscriber's schema: the publisher's, with the extension (its policies and triggers
    // are DDL, which logical replication does not carry); no data, not even the registry's.
    let file = workspace_root().join(format!("target/clusters/repl-schema-{pid}.sql"));
    let mut dump = publisher.command("pg_dump", "postgres", "app");
    dump.args([
        "--schema-only",
        "--no-publications",
        "--no-subscriptions",
        "-f",
        &file.to_string_lossy(),
    ]);
    run(dump, "pg_dump --schema-only");
    let psql = subscriber.psql_script("postgres", "app", &file);
    run(psql, "the schema on the subscriber");
    let _ = std::fs::remove_file(&file);
    // The README's publication: the registry with the data.
    publ.batch_execute(&format!(
        "CREATE PUBLICATION qft_app FOR TABLE {}, public.projects",
        REGISTRY_TABLES
    ))
    .unwrap();
    let mut sub = connect(&subscriber, "postgres", "app");
    sub.batch_execute(&format!(
        "CREATE SUBSCRIPTION qft_app CONNECTION '{}' PUBLICATION qft_app",
        publisher.conninfo("postgres", "app")
    ))
    .unwrap();
    wait_until(
        &mut sub,
        "SELECT count(*) = 7 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel",
        "the initial copy",
    );
    assert_eq!(
        one::<i64>(&mut sub, "SELECT count(*) FROM public.projects"),
        3,
        "every tenant's rows reached the subscriber"
    );

    // Isolated there as on the publisher, as the application role.
    let mut none = connect(&subscriber, "repl_app", "app");
    assert_eq!(names(&mut none), Vec::<String>::new());
    let mut acme = connect(&subscriber, "repl_app", "app");
    acme.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    assert_eq!(names(&mut acme), ["acme-100", "acme-101"]);
    expect_sqlstate(
        acme.batch_execute("INSERT INTO public.projects VALUES (2, 299, 'forged on the replica')"),
        "42501",
    );
    let mut globex = connect(&subscriber, "repl_app", "app");
    globex
        .batch_execute("SELECT tenant.set_tenant('globex')")
        .unwrap();
    assert_eq!(names(&mut globex), ["globex-200"]);
    // The binding is a registry row: it came with the publication, and no setting selects it.
    let mut bi = connect(&subscriber, "repl_bi", "app");
    assert_eq!(names(&mut bi), ["globex-200"]);
    expect_sqlstate(
        bi.batch_execute("SELECT tenant.set_tenant('acme')"),
        "42501",
    );
    assert_eq!(names(&mut bi), ["globex-200"]);
    drop(bi);

    // Later changes: a new tenant and its rows, a suspended tenant. The sessions already open on
    // the subscriber follow from their next statement (the registry's trigger fires for
    // replicated changes too: ENABLE ALWAYS).
    publ.batch_execute(
        "SELECT tenant.create_tenant('initech');
         INSERT INTO public.projects VALUES (3, 300, 'initech-300'), (1, 102, 'acme-102');
         SELECT tenant.suspend_tenant('acme');",
    )
    .unwrap();
    wait_until(
        &mut sub,
        "SELECT EXISTS (SELECT FROM tenant.tenants WHERE slug = 'acme' AND status = 'suspended')
            AND EXISTS (SELECT FROM public.projects WHERE id = 300)",
        "the later changes",
    );
    assert_eq!(names(&mut acme), Vec::<String>::new());
    assert_eq!(names(&mut globex), ["globex-200"]);
    let mut again = connect(&subscriber, "repl_app", "app");
    expect_sqlstate(
        again.batch_execute("SELECT tenant.set_tenant('acme')"),
        "42501",
    );
    again
        .batch_execute("SELECT tenant.set_tenant('initech')")
        .unwrap();
    assert_eq!(names(&mut again), ["initech-300"]);
    // The subscriber's registry is the publisher's, row for row.
    let registry = |c: &mut Client| -> Vec<String> {
        c.query(
            "SELECT id || ' ' || slug || ' ' || status FROM tenant.tenants
             UNION ALL SELECT relid::text || ' ' || tenant_column FROM tenant.isolated_tables ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(registry(&mut sub), registry(&mut publ));

    drop((none, acme, globex, again));
    sub.batch_execute("DROP SUBSCRIPTION qft_app").unwrap();
    drop(sub);
    drop(publ);
    subscriber.pg_ctl("stop");
    publisher.pg_ctl("stop");
}

/// What the README tells a DBA to publish with the data tables.
const REGISTRY_TABLES: &str = "tenant.tenants, tenant.role_bindings, tenant.role_rules, \
     tenant.isolated_tables, tenant.shared_tables, tenant.shared_patterns";
