//! The Citus tier: a coordinator and two workers (pgrx-tests/src/citus.rs), every query shape as a
//! NOSUPERUSER tenant_user login, and the attacks an application role that can run SQL on the
//! workers would try. PostgreSQL 15 only (Citus 13.2.2 is built for it here).

use qft_integration_tests::citus::CitusDb;
use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

/// Two tenants (acme 1, globex 2), `projects` and `tasks` isolated, then distributed by
/// tenant_id and colocated, three projects and one task each; DML granted to every role.
fn with_projects(db: &CitusDb) {
    let mut su = db.superuser();
    su.batch_execute(
        "SELECT tenant.create_tenant('acme', 'Acme');
         SELECT tenant.create_tenant('globex', 'Globex');
         CREATE TABLE public.projects (tenant_id bigint NOT NULL, id integer NOT NULL, name text,
                                       PRIMARY KEY (tenant_id, id));
         CREATE TABLE public.tasks (tenant_id bigint NOT NULL, id integer NOT NULL, project_id integer NOT NULL,
                                    title text, PRIMARY KEY (tenant_id, id));
         INSERT INTO public.projects VALUES (1, 100, 'acme-100'), (1, 101, 'acme-101'), (1, 102, 'acme-102'),
                                            (2, 200, 'globex-200'), (2, 201, 'globex-201'), (2, 202, 'globex-202');
         INSERT INTO public.tasks VALUES (1, 1, 100, 'acme task'), (2, 2, 200, 'globex task');
         SELECT tenant.enable_isolation('public.projects');
         SELECT tenant.enable_isolation('public.tasks');
         SELECT create_distributed_table('public.projects', 'tenant_id');
         SELECT create_distributed_table('public.tasks', 'tenant_id', colocate_with => 'public.projects');",
    )
    .expect("projects fixture");
    for (short, _) in ROLES {
        su.batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects, public.tasks TO {0}",
            db.role(short)
        ))
        .expect("grant");
    }
}

fn all_rows(db: &CitusDb) -> Vec<(i64, i32, String)> {
    db.superuser()
        .query(
            "SELECT tenant_id, id, name FROM public.projects ORDER BY 1, 2",
            &[],
        )
        .expect("all projects")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn ids(c: &mut Client, sql: &str) -> Vec<i32> {
    c.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn transaction_scoped_context_reaches_every_shard() {
    let db = CitusDb::new("shapes");
    with_projects(&db);
    let before = all_rows(&db);
    let mut app = db.connect("app");
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true);")
        .unwrap();
    // Multi-shard, router (own and other tenant's shard), colocated join.
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects ORDER BY id"),
        [100, 101, 102]
    );
    assert_eq!(
        ids(
            &mut app,
            "SELECT id FROM public.projects WHERE tenant_id = 1 AND id = 101"
        ),
        [101]
    );
    assert_eq!(
        ids(
            &mut app,
            "SELECT id FROM public.projects WHERE tenant_id = 2"
        ),
        Vec::<i32>::new()
    );
    assert_eq!(
        ids(
            &mut app,
            "SELECT t.id FROM public.tasks t JOIN public.projects p
               ON p.tenant_id = t.tenant_id AND p.id = t.project_id ORDER BY 1"
        ),
        [1]
    );
    // INSERT with the default, UPDATE, DELETE, INSERT ... SELECT.
    app.batch_execute(
        "INSERT INTO public.projects (id, name) VALUES (103, 'acme-103');
         UPDATE public.projects SET name = name || '!' WHERE id IN (100, 200);
         DELETE FROM public.projects WHERE id IN (102, 202);
         INSERT INTO public.tasks (id, project_id, title) SELECT id + 1000, id, 'copied' FROM public.projects;",
    )
    .unwrap();
    // Writing another tenant's row is refused by the shard's WITH CHECK.
    let e = app.batch_execute("INSERT INTO public.projects VALUES (2, 299, 'planted')");
    expect_sqlstate(e, "42501");
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(all_rows(&db), before, "rolled back");

    app.batch_execute(
        "BEGIN; SELECT tenant.set_tenant('acme', is_local => true);
         INSERT INTO public.projects (id, name) VALUES (103, 'acme-103');
         UPDATE public.projects SET name = 'changed' WHERE id IN (100, 200);
         DELETE FROM public.projects WHERE id IN (102, 202);
         COMMIT;",
    )
    .unwrap();
    let after = all_rows(&db);
    let globex_before: Vec<_> = before.iter().filter(|r| r.0 == 2).cloned().collect();
    let globex_after: Vec<_> = after.iter().filter(|r| r.0 == 2).cloned().collect();
    assert_eq!(
        globex_after, globex_before,
        "the other tenant's rows are unchanged"
    );
    assert_eq!(
        after
            .iter()
            .filter(|r| r.0 == 1)
            .map(|r| (r.1, r.2.as_str()))
            .collect::<Vec<_>>(),
        [(100, "changed"), (101, "acme-101"), (103, "acme-103")]
    );
}

#[test]
fn session_scope_context_fails_closed_on_distributed_tables() {
    let db = CitusDb::new("session");
    with_projects(&db);
    let before = all_rows(&db);
    let (mut app, notices) =
        connect_noticed(&db.cluster.coordinator.conninfo(&db.role("app"), &db.name));
    app.query_one("SELECT tenant.set_tenant('acme')", &[])
        .unwrap();
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("not in force on a Citus database")),
        "{notices:?}"
    );
    assert_eq!(
        one::<Option<i64>>(&mut app, "SELECT tenant.current_tenant_id()"),
        None
    );
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects"),
        Vec::<i32>::new()
    );
    app.batch_execute("BEGIN").unwrap();
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects"),
        Vec::<i32>::new()
    );
    let e = app.batch_execute("INSERT INTO public.projects (id, name) VALUES (109, 'x')");
    assert!(e.is_err());
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(all_rows(&db), before);
}

/// The shards of `public.projects` holding tenant `tenant`'s rows: (worker index, shard name).
fn shards_of(db: &CitusDb, tenant: i64) -> Vec<(usize, String)> {
    let ports: Vec<i32> = db
        .cluster
        .workers
        .iter()
        .map(|w| i32::from(w.port))
        .collect();
    db.superuser()
        .query(
            "SELECT s.nodeport, s.shard_name FROM citus_shards s
              WHERE s.table_name = 'public.projects'::regclass
                AND s.shardid = get_shard_id_for_distribution_column('public.projects', $1::bigint)",
            &[&tenant],
        )
        .expect("shards")
        .iter()
        .map(|r| {
            let port: i32 = r.get(0);
            (
                ports.iter().position(|&p| p == port).expect("a worker"),
                r.get(1),
            )
        })
        .collect()
}

/// Sets the node context setting by hand, as an attacker can (it is user-settable).
fn set_node_context(c: &mut Client, token: &str) {
    c.execute(
        "SELECT set_config('qualityfoundry_tenant.node_context', $1, false)",
        &[&token],
    )
    .unwrap();
}

/// A node context the application obtained legitimately: its own, for acme, in a transaction.
fn own_token(db: &CitusDb, short: &str) -> String {
    token_after(db, short, "tenant.set_tenant('acme', is_local => true)")
}

#[test]
fn workers_refuse_forged_tampered_and_replayed_contexts() {
    let db = CitusDb::new("attack");
    with_projects(&db);
    let before = all_rows(&db);
    let globex = shards_of(&db, 2);
    let acme = shards_of(&db, 1);
    let token = own_token(&db, "app");
    let count = |c: &mut Client, shard: &str| -> i64 {
        one(c, &format!("SELECT count(*) FROM public.{shard}"))
    };

    // Direct connections to the worker holding globex's shard, as the acme application role.
    let (w, shard) = &globex[0];
    let mut app = db.connect_worker("app", *w);
    assert_eq!(count(&mut app, shard), 0, "no context");
    expect_sqlstate(
        app.batch_execute("SET qualityfoundry_tenant.tenant_id = '2'"),
        "42501",
    );
    expect_sqlstate(
        app.batch_execute("SET qualityfoundry_tenant.cross_tenant = 'on'"),
        "42501",
    );
    assert!(app
        .query_one("SELECT tenant.set_tenant('globex')", &[])
        .is_err());
    expect_sqlstate(app.query("SELECT * FROM tenant.node_keys", &[]), "42501");
    expect_sqlstate(
        app.query("SELECT tenant._node_key_install(1, repeat('00', 32))", &[]),
        "42501",
    );
    // Its own token, tampered to name globex, or cross-tenant mode; a made-up one.
    let tampered = token.replacen("n1.1.1.", "n1.1.2.", 1);
    assert_ne!(tampered, token);
    let parts: Vec<&str> = token.split('.').collect();
    let cross = format!("n1.1.0.{}.1.{}.{}", parts[3], parts[5], parts[6]);
    for forged in [
        tampered.as_str(),
        cross.as_str(),
        "n1.1.2.99999999999.0.00.0000",
        "garbage",
    ] {
        set_node_context(&mut app, forged);
        assert_eq!(count(&mut app, shard), 0, "{forged}");
        assert_eq!(
            app.execute(&format!("UPDATE public.{shard} SET name = 'pwned'"), &[])
                .unwrap(),
            0
        );
    }
    // Its own token works on acme's shard (the positive control)...
    let (aw, ashard) = &acme[0];
    let mut own = db.connect_worker("app", *aw);
    set_node_context(&mut own, &token);
    assert_eq!(count(&mut own, ashard), 3);
    // ...and is nothing for another role (app2 is a tenant_user too).
    let mut other = db.connect_worker("app2", *aw);
    set_node_context(&mut other, &token);
    assert_eq!(count(&mut other, ashard), 0);
    // A node context is ignored on the coordinator: only set_tenant enters a tenant there.
    let mut coord = db.connect("app");
    set_node_context(&mut coord, &token);
    assert_eq!(
        one::<Option<i64>>(&mut coord, "SELECT tenant.current_tenant_id()"),
        None
    );
    // (and a session-level SET is not sent to the workers)
    assert_eq!(
        one::<i64>(&mut coord, "SELECT count(*) FROM public.projects"),
        0
    );

    // run_command_on_* (executable by PUBLIC in Citus) as the application role.
    let mut app = db.connect("app");
    let results = strings(
        &mut app,
        "SELECT result FROM run_command_on_shards('public.projects', $$SELECT count(*) FROM %s$$)",
    );
    assert!(results.iter().all(|r| r == "0"), "{results:?}");
    let forged = strings(
        &mut app,
        &format!(
            "SELECT result FROM run_command_on_shards('public.projects',
               $$SELECT count(*) FROM %s, (SELECT set_config('qualityfoundry_tenant.node_context', '{tampered}', false)) s$$)"
        ),
    );
    assert!(forged.iter().all(|r| r == "0"), "{forged:?}");
    expect_sqlstate(app.query("SELECT tenant.citus_sync_keys()", &[]), "42501");
    assert_eq!(all_rows(&db), before, "nothing changed");
}

#[test]
fn cross_tenant_signed_and_bound_variants() {
    let db = CitusDb::new("variants");
    with_projects(&db);
    let before = all_rows(&db);
    // Cross-tenant mode, for the transaction, audited on the coordinator.
    let mut support = db.connect("support");
    support
        .batch_execute("BEGIN; SELECT tenant.enter_cross_tenant('ticket 7', is_local => true)")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut support, "SELECT count(*) FROM public.projects"),
        6
    );
    support.batch_execute("COMMIT").unwrap();
    assert_eq!(
        one::<i64>(&mut support, "SELECT count(*) FROM public.projects"),
        0
    );
    // A tenant_user cannot: refused, and its workers see one tenant at most.
    let mut app = db.connect("app");
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    expect_sqlstate(
        app.batch_execute("SELECT tenant.enter_cross_tenant('x', is_local => true)"),
        "42501",
    );
    app.batch_execute("ROLLBACK").unwrap();

    // Signed: a token from the auth service (tenant_admin), entered for the transaction.
    let signed: String = one(
        &mut db.connect("admin"),
        "SELECT tenant.sign_context('globex')",
    );
    app.batch_execute("BEGIN").unwrap();
    app.query_one(
        "SELECT tenant.set_tenant_signed($1, is_local => true)",
        &[&signed],
    )
    .unwrap();
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects ORDER BY id"),
        [200, 201, 202]
    );
    app.batch_execute("COMMIT").unwrap();

    // Bound: app2 bound to acme enters it per transaction and cannot switch.
    db.superuser()
        .batch_execute(&format!(
            "SELECT tenant.bind_role('{}', 'acme')",
            db.role("app2")
        ))
        .unwrap();
    let mut bound = db.connect("app2");
    bound
        .batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    assert_eq!(
        ids(&mut bound, "SELECT id FROM public.projects ORDER BY id"),
        [100, 101, 102]
    );
    expect_sqlstate(
        bound.batch_execute("SELECT tenant.set_tenant('globex', is_local => true)"),
        "42501",
    );
    bound.batch_execute("ROLLBACK").unwrap();
    // Switching tenants inside a transaction: the workers follow the coordinator.
    app.batch_execute(
        "BEGIN; SELECT tenant.set_tenant('acme', is_local => true); SELECT count(*) FROM public.projects;
         SELECT tenant.set_tenant('globex', is_local => true);",
    )
    .unwrap();
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects ORDER BY id"),
        [200, 201, 202]
    );
    app.batch_execute("SELECT tenant.clear_tenant()").unwrap();
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM public.projects"),
        0
    );
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(all_rows(&db), before, "nothing changed");
}

#[test]
fn copy_into_a_distributed_isolated_table() {
    let db = CitusDb::new("copy");
    with_projects(&db);
    let before = all_rows(&db);
    let mut app = db.connect("app");
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    let planted = {
        use std::io::Write;
        let mut w = app
            .copy_in("COPY public.projects (tenant_id, id, name) FROM STDIN")
            .unwrap();
        w.write_all(b"2\t250\tplanted\n").unwrap();
        w.finish()
    };
    assert!(planted.is_err(), "a row of another tenant is refused");
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(all_rows(&db), before, "nothing changed");
}

#[test]
fn a_later_permissive_policy_is_reported_by_the_checker() {
    let db = CitusDb::new("permissive");
    with_projects(&db);
    db.superuser()
        .batch_execute("CREATE POLICY everyone ON public.projects USING (true)")
        .unwrap();
    let findings: Vec<String> = db
        .connect("admin")
        .query(
            "SELECT object || ': ' || problem FROM tenant.check_isolation() WHERE severity = 'error'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        findings.iter().any(|f| f.contains("public.projects")
            && f.contains("everyone")
            && f.contains("distributed")),
        "{findings:#?}"
    );
    // ...and it does widen the shards' view: Citus made the guard permissive there. (A select
    // through the coordinator is routed to acme's shard with tenant_id = 1 folded in, which hides
    // it; on a worker, with acme's own node context, globex's shard shows its rows.)
    let mut app = db.connect("app");
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM public.projects"),
        3
    );
    app.batch_execute("ROLLBACK").unwrap();
    let token = own_token(&db, "app");
    let (w, shard) = &shards_of(&db, 2)[0];
    let mut worker = db.connect_worker("app", *w);
    set_node_context(&mut worker, &token);
    assert_eq!(
        one::<i64>(
            &mut worker,
            &format!("SELECT count(*) FROM public.{shard} WHERE tenant_id = 2")
        ),
        3
    );

    let all = |db: &CitusDb| -> Vec<(String, String)> {
        db.connect("admin")
            .query("SELECT severity, object FROM tenant.check_isolation()", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let run_command = |f: &Vec<(String, String)>| {
        f.iter()
            .filter(|(s, o)| s == "warning" && o.contains("run_command_on_"))
            .count()
    };
    let before = all(&db);
    assert!(run_command(&before) >= 3, "{before:#?}");
    assert!(
        !before.iter().any(|f| f.1 == "table tenant.node_keys"),
        "{before:#?}"
    );
    // The fixes the checker gives, one statement each (Citus propagates each to the workers).
    let mut su = db.superuser();
    let fixes = strings(
        &mut su,
        "SELECT fix FROM tenant.check_isolation() WHERE object ~ 'run_command_on_|everyone'",
    );
    for fix in fixes {
        su.batch_execute(&fix)
            .unwrap_or_else(|e| panic!("{fix}: {e:?}"));
    }
    let after = all(&db);
    assert_eq!(run_command(&after), 0, "{after:#?}");
    assert!(
        !after.iter().any(|f| f.1.contains("everyone")),
        "{after:#?}"
    );
    // With run_command_on_* revoked, the application cannot reach the workers that way at all.
    expect_sqlstate(
        db.connect("app")
            .query("SELECT * FROM run_command_on_workers('SELECT 1')", &[]),
        "42501",
    );
}

/// Every placement of reference table `public.plans` (coordinator and both workers), as the
/// superuser of each node: (tenant_id, id, name) sorted.
fn plan_replicas(db: &CitusDb) -> Vec<Vec<(Option<i64>, i32, String)>> {
    let shard: String = one(
        &mut db.superuser(),
        "SELECT shard_name FROM citus_shards WHERE table_name = 'public.plans'::regclass LIMIT 1",
    );
    let read = |mut c: Client| -> Vec<(Option<i64>, i32, String)> {
        c.query(
            &format!("SELECT tenant_id, id, name FROM public.{shard} ORDER BY 2"),
            &[],
        )
        .expect("read a replica")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    let mut all = vec![read(db.worker_superuser(0)), read(db.worker_superuser(1))];
    all.push(read(db.superuser()));
    all
}

#[test]
fn reference_table_writes_reach_every_replica_or_none() {
    let db = CitusDb::new("reference");
    with_projects(&db);
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE TABLE public.plans (tenant_id bigint, id integer PRIMARY KEY, name text);
         INSERT INTO public.plans VALUES (NULL, 1, 'shared'), (1, 2, 'acme plan'), (2, 3, 'globex plan');
         SELECT tenant.enable_isolation('public.plans', allow_shared_rows => true);
         SELECT create_reference_table('public.plans');
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.plans TO {};",
        db.role("app")
    ))
    .expect("reference table");
    let before = plan_replicas(&db);
    assert!(
        before.iter().all(|r| r == &before[0]) && before[0].len() == 3,
        "{before:?}"
    );
    let mut app = db.connect("app");
    // A session-scope context: no rows on any placement, so no replica diverges.
    app.query_one("SELECT tenant.set_tenant('acme')", &[])
        .unwrap();
    assert_eq!(
        app.execute("UPDATE public.plans SET name = 'x'", &[])
            .unwrap(),
        0
    );
    assert_eq!(plan_replicas(&db), before);
    // A transaction-local one: the tenant's row changes on every replica, shared rows are read-only.
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.plans ORDER BY id"),
        [1, 2]
    );
    assert_eq!(
        app.execute("UPDATE public.plans SET name = 'changed'", &[])
            .unwrap(),
        1
    );
    app.batch_execute("COMMIT").unwrap();
    let after = plan_replicas(&db);
    assert!(
        after.iter().all(|r| r == &after[0]),
        "replicas diverged: {after:?}"
    );
    assert_eq!(
        after[0],
        [
            (None, 1, "shared".to_string()),
            (Some(1), 2, "changed".to_string()),
            (Some(2), 3, "globex plan".to_string())
        ]
    );
}

#[test]
fn isolation_after_distribution_and_back() {
    let db = CitusDb::new("order");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme'); SELECT tenant.create_tenant('globex');
         CREATE TABLE public.items (tenant_id bigint, id integer, name text, PRIMARY KEY (tenant_id, id));
         INSERT INTO public.items VALUES (1, 1, 'a'), (2, 2, 'g');
         SELECT create_distributed_table('public.items', 'tenant_id');
         SELECT truncate_local_data_after_distributing_table('public.items');
         SELECT tenant.enable_isolation('public.items');
         CREATE TABLE public.legacy (id integer PRIMARY KEY, name text);
         INSERT INTO public.legacy VALUES (1, 'old');
         SELECT create_reference_table('public.legacy');
         -- (the coordinator's shell of a Citus table keeps the local rows until this, and
         -- ALTER ... SET NOT NULL checks them)
         SELECT truncate_local_data_after_distributing_table('public.legacy');
         SELECT tenant.add_tenant_column('public.legacy', 'acme');
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.items, public.legacy TO {};",
        db.role("app")
    ))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let mut app = db.connect("app");
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('globex', is_local => true)")
        .unwrap();
    assert_eq!(ids(&mut app, "SELECT id FROM public.items"), [2]);
    app.batch_execute("INSERT INTO public.items (id, name) VALUES (3, 'g3')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM public.legacy"),
        0
    );
    app.batch_execute("COMMIT; BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    assert_eq!(ids(&mut app, "SELECT id FROM public.legacy"), [1]);
    app.batch_execute("COMMIT").unwrap();
    let rows: Vec<(i64, i32)> = su
        .query("SELECT tenant_id, id FROM public.items ORDER BY 2", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(1, 1), (2, 2), (2, 3)]);
    // And back: disable_isolation removes what enable added, on the coordinator and the shards.
    su.batch_execute("SELECT tenant.disable_isolation('public.items')")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut w = db.worker_superuser(0);
    w.batch_execute("SET citus.override_table_visibility = off")
        .unwrap();
    let policies: i64 = one(
        &mut w,
        "SELECT count(*) FROM pg_policy WHERE polrelid::regclass::text ~ '^items_[0-9]+$'",
    );
    assert_eq!(policies, 0);
    let shards: i64 = one(
        &mut w,
        "SELECT count(*) FROM pg_class WHERE relname ~ '^items_[0-9]+$' AND relkind = 'r'",
    );
    assert!(shards > 0, "the worker holds shards of items");
    assert_eq!(
        one::<i64>(&mut db.connect("app"), "SELECT count(*) FROM public.items"),
        3,
        "no row security left"
    );
}

/// Schema-based sharding on for `db`, with the owner Citus connects as for moves: a login role
/// no application holds (returned), set as qualityfoundry_tenant.schema_owner. New connections
/// see both settings.
fn schema_sharding(db: &CitusDb) -> String {
    let owner = db.role("owner");
    db.superuser()
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN NOSUPERUSER;
             ALTER DATABASE {db} SET qualityfoundry_tenant.schema_owner = '{owner}';
             ALTER DATABASE {db} SET citus.enable_schema_based_sharding = on;",
            db = db.name
        ))
        .unwrap();
    owner
}

#[test]
fn schema_per_tenant_distributed_moved_and_placed() {
    let db = CitusDb::new("schemas");
    let owner = schema_sharding(&db);
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SET citus.enable_schema_based_sharding = off; -- the template stays a local schema
         CREATE SCHEMA tenant_template AUTHORIZATION {owner};
         RESET citus.enable_schema_based_sharding;
         GRANT {owner} TO {admin};
         CREATE TABLE tenant_template.notes (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text);
         SELECT tenant.create_tenant('acme', with_schema => true);
         SELECT tenant.create_tenant('globex', with_schema => true);
         GRANT USAGE ON SCHEMA tenant_acme, tenant_globex TO {app};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenant_acme, tenant_globex TO {app};
         INSERT INTO tenant_globex.notes (body) VALUES ('globex secret');",
        app = db.role("app"),
        admin = db.role("admin"),
    ))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let distributed: Vec<String> = strings(
        &mut su,
        "SELECT logicalrelid::text FROM pg_dist_partition WHERE logicalrelid::text ~ '^tenant_(acme|globex)\\.' ORDER BY 1",
    );
    assert_eq!(distributed, ["tenant_acme.notes", "tenant_globex.notes"]);
    let owners = strings(
        &mut su,
        "SELECT DISTINCT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname ~ '^tenant_(acme|globex)$'",
    );
    assert_eq!(owners, std::slice::from_ref(&owner));

    let read = |db: &CitusDb, tenant: &str, sql: &str| -> Vec<String> {
        let mut app = db.connect("app");
        app.batch_execute(&format!(
            "BEGIN; SELECT tenant.set_tenant('{tenant}', is_local => true)"
        ))
        .unwrap();
        let rows = strings(&mut app, sql);
        app.batch_execute("COMMIT").unwrap();
        rows
    };
    assert_eq!(
        read(&db, "acme", "SELECT body FROM tenant_globex.notes"),
        Vec::<String>::new()
    );
    assert_eq!(
        read(&db, "globex", "SELECT body FROM notes"),
        ["globex secret"]
    );

    // Move globex's schema to the other worker: still isolated, recorded, audited.
    let placed = |db: &CitusDb| -> Vec<(String, i32)> {
        db.connect("admin")
            .query(
                "SELECT node_name, node_port FROM tenant.tenant_placements() WHERE tenant = 'globex'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let (_, from) = placed(&db)[0].clone();
    // A rate limit on globex's table: two of three inserts before the move.
    db.connect("admin")
        .batch_execute("SELECT tenant.limit_rate('tenant_globex.notes', 3)")
        .unwrap();
    let insert = |db: &CitusDb, body: &str| {
        let mut app = db.connect("app");
        app.batch_execute("BEGIN; SELECT tenant.set_tenant('globex', is_local => true)")
            .unwrap();
        let r = app.batch_execute(&format!("INSERT INTO notes (body) VALUES ('{body}')"));
        app.batch_execute(if r.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .unwrap();
        r
    };
    insert(&db, "one").unwrap();
    insert(&db, "two").unwrap();
    let target = db
        .cluster
        .workers
        .iter()
        .map(|w| i32::from(w.port))
        .find(|&p| p != from)
        .expect("another worker");
    let mut admin = db.connect("admin");
    admin
        .query_one(
            "SELECT tenant.place_tenant('globex', '127.0.0.1', $1)",
            &[&target],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(placed(&db), [("127.0.0.1".to_string(), target)]);
    // The day's count moved with the schema: one more insert, then the limit.
    insert(&db, "three").unwrap();
    let msg = expect_sqlstate(insert(&db, "four"), "53400");
    assert!(
        msg.contains(
            "tenant \"globex\" has reached its limit of 3 inserts per day into tenant_globex.notes"
        ),
        "{msg}"
    );
    assert_eq!(
        read(&db, "globex", "SELECT body FROM notes ORDER BY id"),
        ["globex secret", "one", "two", "three"]
    );
    assert_eq!(
        read(&db, "acme", "SELECT body FROM tenant_globex.notes"),
        Vec::<String>::new()
    );
    let audited: i64 = one(
        &mut su,
        "SELECT count(*) FROM tenant.audit_log WHERE action = 'tenant_placed' AND target = 'globex'",
    );
    assert_eq!(audited, 1);
    // Bad input: an unknown node, a tenant without a schema; nothing recorded.
    expect_sqlstate(
        admin.query_one("SELECT tenant.place_tenant('globex', '127.0.0.1', 1)", &[]),
        "22023",
    );
    su.batch_execute("SELECT tenant.create_tenant('initech')")
        .unwrap();
    expect_sqlstate(
        admin.query_one(
            "SELECT tenant.place_tenant('initech', '127.0.0.1', $1)",
            &[&target],
        ),
        "22023",
    );
    expect_sqlstate(
        db.connect("app").query_one(
            "SELECT tenant.place_tenant('globex', '127.0.0.1', $1)",
            &[&from],
        ),
        "42501",
    );
    assert_eq!(placed(&db), [("127.0.0.1".to_string(), target)]);

    // migrate_all: the new table is distributed in each tenant's schema, and pinned.
    admin
        .batch_execute(
            &format!(
                "CALL tenant.migrate_all('2', 'SET ROLE {owner}; CREATE TABLE tags (id integer PRIMARY KEY, name text)')"
            ),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let distributed: Vec<String> = strings(
        &mut su,
        "SELECT logicalrelid::text FROM pg_dist_partition WHERE logicalrelid::text ~ '^tenant_(acme|globex)\\.tags' ORDER BY 1",
    );
    assert_eq!(distributed, ["tenant_acme.tags", "tenant_globex.tags"]);
    su.batch_execute(&format!(
        "GRANT SELECT, INSERT ON tenant_globex.tags TO {}; INSERT INTO tenant_globex.tags VALUES (1, 'g')",
        db.role("app")
    ))
    .unwrap();
    assert_eq!(
        read(&db, "acme", "SELECT name FROM tenant_globex.tags"),
        Vec::<String>::new()
    );
    assert_eq!(read(&db, "globex", "SELECT name FROM tags"), ["g"]);
    let drift: i64 = one(&mut admin, "SELECT count(*) FROM tenant.schema_drift()");
    assert_eq!(drift, 0);
    // The migrated schema moves whole (the new table is in the schema's colocation group).
    admin
        .query_one(
            "SELECT tenant.place_tenant('globex', '127.0.0.1', $1)",
            &[&from],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let nodes = strings(
        &mut su,
        "SELECT DISTINCT nodeport::text FROM citus_shards WHERE table_name::text ~ '^tenant_globex\\.'",
    );
    assert_eq!(nodes, [from.to_string()]);
    assert_eq!(read(&db, "globex", "SELECT name FROM tags"), ["g"]);
}

#[test]
fn event_triggers_stand_aside_for_citus_shard_ddl() {
    let db = CitusDb::new("events");
    db.superuser()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET qualityfoundry_tenant.auto_isolate = on",
            db.name
        ))
        .unwrap();
    let mut su = db.superuser();
    // auto_isolate isolates the new table on the coordinator; distributing it makes Citus create
    // its shards and their policies on the workers, where the extension's event triggers fire.
    su.batch_execute(
        "SELECT tenant.create_tenant('acme');
         CREATE TABLE public.events (tenant_id bigint NOT NULL, id integer NOT NULL, PRIMARY KEY (tenant_id, id));
         SELECT create_distributed_table('public.events', 'tenant_id');
         CREATE TABLE public.more (tenant_id bigint NOT NULL, id integer NOT NULL, PRIMARY KEY (tenant_id, id));
         SELECT create_distributed_table('public.more', 'tenant_id', colocate_with => 'public.events');
         ALTER TABLE public.more ADD COLUMN note text;",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        strings(
            &mut su,
            "SELECT relid::text FROM tenant.isolated_tables ORDER BY 1"
        ),
        ["events", "more"]
    );
    // Each shard has exactly the coordinator's policies, and the workers' registries stay empty.
    let expected = strings(
        &mut su,
        "SELECT string_agg(polname, ',' ORDER BY polname) FROM pg_policy WHERE polrelid = 'public.events'::regclass",
    );
    for i in 0..2 {
        let mut w = db.worker_superuser(i);
        w.batch_execute("SET citus.override_table_visibility = off")
            .unwrap();
        let per_shard = strings(
            &mut w,
            "SELECT DISTINCT string_agg(polname, ',' ORDER BY polname) FROM pg_policy p
               JOIN pg_class c ON c.oid = p.polrelid WHERE c.relname ~ '^(events|more)_[0-9]+$' GROUP BY c.oid",
        );
        assert_eq!(per_shard, expected, "worker {i}");
        assert_eq!(
            one::<i64>(&mut w, "SELECT count(*) FROM tenant.isolated_tables"),
            0
        );
    }
}

/// The number of tasks Citus's plan of `sql` has (EXPLAIN's "Task Count").
fn task_count(c: &mut Client, sql: &str) -> i64 {
    let plan = strings(c, &format!("EXPLAIN (COSTS OFF) {sql}")).join("\n");
    let counts: Vec<i64> = plan
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Task Count: "))
        .map(|n| n.parse().expect("a task count"))
        .collect();
    assert!(!counts.is_empty(), "no distributed plan for {sql}:\n{plan}");
    counts.iter().sum()
}

#[test]
fn a_tenant_pinned_query_is_routed_to_one_shard() {
    let db = CitusDb::new("routing");
    with_projects(&db);
    db.superuser()
        .batch_execute(&format!(
            "CREATE TABLE public.kinds (id integer PRIMARY KEY, label text);
             INSERT INTO public.kinds VALUES (0, 'even'), (1, 'odd');
             SELECT create_reference_table('public.kinds');
             GRANT SELECT ON public.kinds TO {0}, {1};",
            db.role("app"),
            db.role("support")
        ))
        .unwrap();
    let before = all_rows(&db);
    let shards: i64 = one(
        &mut db.superuser(),
        "SELECT count(*) FROM citus_shards WHERE table_name = 'public.projects'::regclass",
    );
    assert!(shards > 2, "{shards}");
    let mut app = db.connect("app");
    // Without a context nothing is folded: every shard is asked (and shows nothing).
    app.batch_execute("BEGIN").unwrap();
    assert_eq!(
        task_count(&mut app, "SELECT id FROM public.projects"),
        shards
    );
    app.batch_execute("COMMIT").unwrap();

    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    let shapes: [(&str, &[i32]); 8] = [
        ("SELECT id FROM public.projects ORDER BY id", &[100, 101, 102]),
        (
            "SELECT t.id FROM public.tasks t JOIN public.projects p ON p.tenant_id = t.tenant_id AND p.id = t.project_id ORDER BY 1",
            &[1],
        ),
        (
            "SELECT p.id FROM public.projects p JOIN public.kinds k ON k.id = p.id % 2 WHERE k.label = 'odd' ORDER BY 1",
            &[101],
        ),
        (
            "WITH p AS (SELECT * FROM public.projects) SELECT id FROM p ORDER BY id",
            &[100, 101, 102],
        ),
        (
            "SELECT id FROM public.projects WHERE id IN (SELECT project_id FROM public.tasks) ORDER BY id",
            &[100],
        ),
        (
            "SELECT id FROM (SELECT id FROM public.projects WHERE id > 100) s ORDER BY id",
            &[101, 102],
        ),
        (
            "SELECT p.id FROM public.projects p LEFT JOIN public.tasks t ON t.tenant_id = p.tenant_id AND t.project_id = p.id ORDER BY 1",
            &[100, 101, 102],
        ),
        (
            "SELECT id FROM public.projects WHERE tenant_id = 2",
            &[],
        ),
    ];
    for (sql, expected) in shapes {
        assert_eq!(ids(&mut app, sql), expected, "{sql}");
    }
    for sql in [shapes[0].0, shapes[1].0, shapes[2].0] {
        assert_eq!(task_count(&mut app, sql), 1, "{sql}");
    }
    // A query that pins the distribution column itself the way Citus's fast-path router planner
    // recognises (an integer literal on the bigint column is the cross-type int84eq; a quoted
    // literal is a bigint constant; a parameter) is not folded: the shard query Citus sends names
    // tenant_id once (a second appearance would take it off the fast path). An explicit cast is
    // not what Citus recognises: that one is folded. Each still returns acme's rows only.
    let pinned: [(&str, usize); 4] = [
        (
            "SELECT id FROM public.projects WHERE tenant_id = 1 AND id > 100 ORDER BY id",
            1,
        ),
        (
            "SELECT id FROM public.projects WHERE tenant_id = '1' AND id > 100 ORDER BY id",
            1,
        ),
        (
            "SELECT id FROM public.projects WHERE 1 = tenant_id AND id > 100 ORDER BY id",
            1,
        ),
        (
            "SELECT id FROM public.projects WHERE tenant_id = 1::bigint AND id > 100 ORDER BY id",
            2,
        ),
    ];
    let shard_query = |c: &mut Client, sql: &str| -> String {
        let plan = strings(c, &format!("EXPLAIN (VERBOSE, COSTS OFF) {sql}")).join("\n");
        plan.lines()
            .find_map(|l| l.trim().strip_prefix("Query: ").map(str::to_string))
            .unwrap_or_else(|| panic!("no task query for {sql}:\n{plan}"))
    };
    for (sql, appearances) in pinned {
        assert_eq!(ids(&mut app, sql), [101, 102], "{sql}");
        assert_eq!(task_count(&mut app, sql), 1, "{sql}");
        let q = shard_query(&mut app, sql);
        assert_eq!(q.matches("tenant_id").count(), appearances, "{sql}: {q}");
    }
    app.batch_execute(
        "PREPARE pinned(bigint) AS SELECT id FROM public.projects WHERE tenant_id = $1 AND id > 100 ORDER BY id",
    )
    .unwrap();
    assert_eq!(ids(&mut app, "EXECUTE pinned(1)"), [101, 102]);
    assert_eq!(
        ids(&mut app, "EXECUTE pinned(2)"),
        Vec::<i32>::new(),
        "another tenant's key shows nothing"
    );
    let q = shard_query(&mut app, "EXECUTE pinned(1)");
    assert_eq!(q.matches("tenant_id").count(), 1, "{q}");
    app.batch_execute("DEALLOCATE pinned").unwrap();
    assert_eq!(
        task_count(&mut app, "UPDATE public.projects SET name = name || '!'"),
        1
    );
    assert_eq!(
        task_count(&mut app, "DELETE FROM public.projects WHERE name = 'none'"),
        1
    );
    // Writes: every row of acme's and none of another tenant's.
    assert_eq!(
        app.execute("UPDATE public.projects SET name = name || '!'", &[])
            .unwrap(),
        3
    );
    assert_eq!(
        app.execute(
            "INSERT INTO public.tasks (id, project_id, title) SELECT id + 1000, id, 'copied' FROM public.projects",
            &[]
        )
        .unwrap(),
        3
    );
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.tasks ORDER BY id"),
        [1, 1100, 1101, 1102]
    );
    app.batch_execute("ROLLBACK").unwrap();

    // Cross-tenant mode is not pinned: every shard, every tenant.
    let mut support = db.connect("support");
    support
        .batch_execute("BEGIN; SELECT tenant.enter_cross_tenant('ticket 8', is_local => true)")
        .unwrap();
    assert_eq!(
        task_count(&mut support, "SELECT id FROM public.projects"),
        shards
    );
    assert_eq!(
        one::<i64>(&mut support, "SELECT count(*) FROM public.projects"),
        6
    );
    support.batch_execute("COMMIT").unwrap();
    // Neither is a role row security does not apply to (the superuser sees every row).
    let mut su = db.superuser();
    su.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM public.projects"),
        6
    );
    su.batch_execute("COMMIT").unwrap();
    assert_eq!(all_rows(&db), before, "nothing changed");
}

#[test]
fn cached_plans_are_not_reused_for_another_tenant() {
    let db = CitusDb::new("plans");
    with_projects(&db);
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE FUNCTION public.project_ids() RETURNS SETOF integer LANGUAGE plpgsql STABLE AS
           $$ BEGIN RETURN QUERY SELECT id FROM public.projects ORDER BY id; END $$;",
    )
    .unwrap();
    let before = all_rows(&db);
    let mut app = db.connect("app");
    app.batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    // A prepared statement without parameters (always the one generic plan), one with a
    // parameter (forced generic), and a PL/pgSQL function's saved plan.
    let plain = app
        .prepare("SELECT id FROM public.projects ORDER BY id")
        .unwrap();
    let param = app
        .prepare("SELECT id FROM public.projects WHERE id % 100 >= $1 ORDER BY id")
        .unwrap();
    let run = |app: &mut Client, tenant: &str| -> (Vec<i32>, Vec<i32>, Vec<i32>) {
        app.batch_execute(&format!(
            "BEGIN; SELECT tenant.set_tenant('{tenant}', is_local => true)"
        ))
        .unwrap();
        let a = app
            .query(&plain, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let b = app
            .query(&param, &[&1i32])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let c = ids(app, "SELECT public.project_ids()");
        app.batch_execute("COMMIT").unwrap();
        (a, b, c)
    };
    for _ in 0..2 {
        assert_eq!(
            run(&mut app, "acme"),
            (vec![100, 101, 102], vec![101, 102], vec![100, 101, 102])
        );
        assert_eq!(
            run(&mut app, "globex"),
            (vec![200, 201, 202], vec![201, 202], vec![200, 201, 202])
        );
    }
    // A statement pinning the tenant column itself (Citus routes it by the parameter, so it is
    // not folded): still only the context's rows, whichever tenant the parameter names.
    let pinned = app
        .prepare("SELECT id FROM public.projects WHERE tenant_id = $1 ORDER BY id")
        .unwrap();
    for (tenant, own, other) in [("acme", 1i64, 2i64), ("globex", 2, 1), ("acme", 1, 2)] {
        app.batch_execute(&format!(
            "BEGIN; SELECT tenant.set_tenant('{tenant}', is_local => true)"
        ))
        .unwrap();
        let mine: Vec<i32> = app
            .query(&pinned, &[&own])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let theirs = app.query(&pinned, &[&other]).unwrap().len();
        app.batch_execute("COMMIT").unwrap();
        let expected: Vec<i32> = (0..3).map(|i| own as i32 * 100 + i).collect();
        assert_eq!(mine, expected, "{tenant}");
        assert_eq!(theirs, 0, "{tenant} reads nothing of tenant {other}");
    }
    // Without a context, then in another transaction for acme again.
    assert_eq!(
        app.query(&plain, &[]).unwrap().len(),
        0,
        "no context: no rows"
    );
    assert_eq!(
        run(&mut app, "acme"),
        (vec![100, 101, 102], vec![101, 102], vec![100, 101, 102])
    );
    // Cross-tenant mode after a plan folded for a tenant: every row (a role that may do both).
    su.batch_execute(&format!("GRANT tenant_user TO {}", db.role("support")))
        .unwrap();
    let mut support = db.connect("support");
    let all = support
        .prepare("SELECT count(*) FROM public.projects")
        .unwrap();
    support
        .batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    assert_eq!(support.query_one(&all, &[]).unwrap().get::<_, i64>(0), 3);
    support
        .batch_execute("SELECT tenant.enter_cross_tenant('ticket 9', is_local => true)")
        .unwrap();
    assert_eq!(support.query_one(&all, &[]).unwrap().get::<_, i64>(0), 6);
    support.batch_execute("COMMIT").unwrap();
    assert_eq!(all_rows(&db), before, "nothing changed");
}

/// The node key ids each node holds (coordinator first), read as the superuser.
fn key_ids(db: &CitusDb) -> Vec<Vec<i32>> {
    let sql = "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM tenant.node_keys";
    let mut out = vec![one::<Vec<i32>>(&mut db.superuser(), sql)];
    for w in 0..db.cluster.workers.len() {
        out.push(one::<Vec<i32>>(&mut db.worker_superuser(w), sql));
    }
    out
}

/// Cross-tenant mode audits every statement, and recording one may have to reload what it
/// checks (the registry's role rules, the node keys), made stale by other sessions in the middle
/// of the transaction. That reload runs queries of its own, which
/// must not be recorded again: they were, recursively, until "stack depth limit exceeded" (it
/// showed now and then, when a full cache reset came in mid-transaction).
#[test]
fn a_statement_audited_after_other_sessions_changed_keys_and_registry_is_recorded_once() {
    let db = CitusDb::new("stalekeys");
    with_projects(&db);
    let before = all_rows(&db);
    let mut support = db.connect("support");
    let mut su = db.superuser();
    support
        .batch_execute("BEGIN; SELECT tenant.enter_cross_tenant('stale keys', is_local => true)")
        .unwrap();
    // Made stale by another session: the node keys (a rotation), the registry (a new tenant).
    assert_eq!(
        one::<i32>(&mut su, "SELECT tenant.citus_rotate_node_key()"),
        2
    );
    su.batch_execute("SELECT tenant.create_tenant('initech')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut support, "SELECT count(*) FROM public.projects"),
        6
    );
    su.batch_execute("SELECT tenant.create_tenant('umbrella')")
        .unwrap();
    support.batch_execute("COMMIT").unwrap();
    let audited: i64 = one(
        &mut su,
        "SELECT count(*) FROM tenant.audit_log WHERE action = 'cross_tenant_statement' \
           AND detail->>'reason' = 'stale keys' AND detail->>'query' = 'SELECT count(*) FROM public.projects'",
    );
    assert_eq!(audited, 1, "the statement is audited once");
    assert_eq!(all_rows(&db), before, "nothing changed");
}

#[test]
fn node_keys_rotate_and_retire() {
    let db = CitusDb::new("rotation");
    with_projects(&db);
    let before = all_rows(&db);
    let old = own_token(&db, "app");
    assert!(old.starts_with("n1.1."), "{old}");
    let (w, shard) = &shards_of(&db, 1)[0];
    // A worker backend that has verified with key 1 (its cache must follow the rotation).
    let mut worker = db.connect_worker("app", *w);
    let count = |c: &mut Client, token: &str| -> i64 {
        set_node_context(c, "");
        set_node_context(c, token);
        one(c, &format!("SELECT count(*) FROM public.{shard}"))
    };
    assert_eq!(count(&mut worker, &old), 3);
    // A coordinator backend that minted with key 1 before the rotation.
    let mut app = db.connect("app");
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true); COMMIT")
        .unwrap();

    // Bad input first: refused, nothing changed.
    let mut su = db.superuser();
    for (sql, state) in [
        ("SELECT tenant.citus_retire_node_key(NULL)", "22004"),
        ("SELECT tenant.citus_retire_node_key(99)", "22023"),
        ("SELECT tenant.citus_retire_node_key(1)", "55000"), // the signing key
    ] {
        expect_sqlstate(su.query(sql, &[]), state);
    }
    for sql in [
        "SELECT tenant.citus_rotate_node_key()",
        "SELECT tenant.citus_retire_node_key(1)",
        "SELECT tenant._node_key_remove(1)",
    ] {
        expect_sqlstate(app.query(sql, &[]), "42501");
        expect_sqlstate(db.connect("admin").query(sql, &[]), "42501");
    }
    expect_sqlstate(
        worker.query("SELECT tenant._node_key_remove(1)", &[]),
        "42501",
    );
    expect_sqlstate(
        db.worker_superuser(0)
            .query("SELECT tenant.citus_rotate_node_key()", &[]),
        "55000",
    );
    assert_eq!(key_ids(&db), [vec![1], vec![1], vec![1]]);

    // Rotate: key 2 everywhere, new contexts signed with it, old ones still verify.
    assert_eq!(
        one::<i32>(&mut su, "SELECT tenant.citus_rotate_node_key()"),
        2
    );
    assert_eq!(key_ids(&db), [vec![1, 2], vec![1, 2], vec![1, 2]]);
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    let new: String = one(
        &mut app,
        "SELECT current_setting('qualityfoundry_tenant.node_context')",
    );
    assert!(new.starts_with("n1.2."), "{new}");
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects ORDER BY id"),
        [100, 101, 102]
    );
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(
        count(&mut worker, &old),
        3,
        "an old context verifies until retired"
    );
    assert_eq!(count(&mut worker, &new), 3);

    // Retire key 1: old contexts give nothing, on the same worker backend too; new ones work.
    assert_eq!(
        one::<i32>(&mut su, "SELECT tenant.citus_retire_node_key(1)"),
        2
    );
    assert_eq!(key_ids(&db), [vec![2], vec![2], vec![2]]);
    assert_eq!(count(&mut worker, &old), 0);
    assert_eq!(count(&mut db.connect_worker("app", *w), &old), 0);
    assert_eq!(count(&mut worker, &new), 3);
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects ORDER BY id"),
        [100, 101, 102]
    );
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(all_rows(&db), before, "nothing changed");
}

/// Autovacuum off (it would add visibility and free-space maps between a measurement and its
/// oracle), then 2,000 rows of about 1.3 kB each for acme in `projects` (uncompressed: inline
/// and below the TOAST threshold), so acme is well over a 1 MB limit and globex under it.
fn with_big_acme(db: &CitusDb) {
    let mut su = db.superuser();
    for sql in [
        "ALTER TABLE public.projects SET (autovacuum_enabled = false)",
        "ALTER TABLE public.tasks SET (autovacuum_enabled = false)",
        "INSERT INTO public.projects
         SELECT 1, g, (SELECT string_agg(md5(g::text || '.' || i::text), '') FROM generate_series(1, 40) i)
           FROM generate_series(1000, 2999) g",
    ] {
        su.batch_execute(sql)
            .unwrap_or_else(|e| panic!("acme's rows: {sql}: {e:?}"));
    }
}

/// The oracle of `usage()` for an isolated distributed table, independent of the extension: rows
/// per tenant counted by the superuser on the coordinator (Citus runs the count on the workers,
/// where a superuser bypasses row security), bytes summed over `run_command_on_shards`
/// (`pg_total_relation_size` of every shard), and each tenant's share of those bytes by rows.
fn usage_oracle(db: &CitusDb, table: &str) -> Vec<(String, String, i64, i64)> {
    let mut su = db.superuser();
    let total_bytes: i64 = one(
        &mut su,
        &format!(
            "SELECT sum(result::bigint)::bigint FROM run_command_on_shards('{table}', $$SELECT pg_total_relation_size('%s')$$)"
        ),
    );
    let counts: Vec<(String, i64)> = su
        .query(
            &format!(
                "SELECT t.slug, count(*) FROM {table} x JOIN tenant.tenants t ON t.id = x.tenant_id GROUP BY 1 ORDER BY 1"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let total_rows: i64 = counts.iter().map(|c| c.1).sum();
    counts
        .into_iter()
        .map(|(slug, n)| {
            let share = i128::from(total_bytes) * i128::from(n) / i128::from(total_rows);
            (slug, table.to_string(), n, share as i64)
        })
        .collect()
}

/// What `tenant.usage(arg)` says, as tenant_admin, for the given relations (named as given).
fn usage_of(db: &CitusDb, arg: &str, tables: &[&str]) -> Vec<(String, String, i64, i64)> {
    let mut admin = db.connect("admin");
    let mut out = Vec::new();
    for table in tables {
        for r in admin
            .query(
                &format!(
                    "SELECT tenant, rows, bytes FROM tenant.usage({arg})
                      WHERE relation = $1::text::regclass ORDER BY tenant"
                ),
                &[table],
            )
            .unwrap()
        {
            out.push((r.get(0), table.to_string(), r.get(1), r.get(2)));
        }
    }
    out
}

fn sorted(mut v: Vec<(String, String, i64, i64)>) -> Vec<(String, String, i64, i64)> {
    v.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    v
}

/// The refusal the single-node trigger gives, for a tenant's measured bytes (over 1 MiB).
fn refusal(slug: &str, bytes: i64, limit_mb: i32) -> String {
    format!(
        "tenant \"{slug}\" is over its storage quota: {:.1} MB used, limit {limit_mb} MB",
        bytes as f64 / 1_048_576.0
    )
}

/// usage(), usage_summary() and the sweep measure the rows and bytes the workers hold (the
/// coordinator's shells are empty), checked against an oracle that does not use the extension.
#[test]
fn usage_of_distributed_tables_is_measured_on_the_workers() {
    let db = CitusDb::new("usage");
    with_projects(&db);
    with_big_acme(&db);
    // tasks owned by a role that is no superuser and cannot log in: on the workers FORCE ROW
    // LEVEL SECURITY hides every tenant's rows from it, unless lifted there.
    let owner = db.role("tasks_owner");
    let mut su = db.superuser();
    su.batch_execute(&format!("CREATE ROLE {owner} NOLOGIN NOSUPERUSER"))
        .unwrap();
    su.batch_execute(&format!("ALTER TABLE public.tasks OWNER TO {owner}"))
        .unwrap();
    let tables = ["public.projects", "public.tasks"];
    let oracle = || {
        sorted(
            tables
                .iter()
                .flat_map(|t| usage_oracle(&db, t))
                .collect::<Vec<_>>(),
        )
    };
    let expected = oracle();
    assert_eq!(expected.len(), 4, "{expected:?}");
    assert_eq!(expected[0].2, 2003, "acme's rows in projects: {expected:?}");
    assert!(expected[0].3 > 2 * 1_048_576, "{expected:?}");
    assert_eq!(usage_of(&db, "", &tables), expected);
    assert_eq!(
        usage_of(&db, "'globex'", &tables),
        expected
            .iter()
            .filter(|u| u.0 == "globex")
            .cloned()
            .collect::<Vec<_>>()
    );
    let per_tenant =
        |slug: &str| -> i64 { expected.iter().filter(|u| u.0 == slug).map(|u| u.3).sum() };
    let mut admin = db.connect("admin");
    let summary: Vec<(String, i64)> = admin
        .query(
            "SELECT tenant, bytes FROM tenant.usage_summary() ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        summary,
        [
            ("acme".to_string(), per_tenant("acme")),
            ("globex".to_string(), per_tenant("globex"))
        ]
    );
    admin.batch_execute("CALL tenant.refresh_usage()").unwrap();
    let state: Vec<(i64, i64, bool)> = db
        .superuser()
        .query(
            "SELECT tenant_id, bytes, over_quota FROM tenant.quota_state ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        state,
        [
            (1, per_tenant("acme"), false),
            (2, per_tenant("globex"), false)
        ]
    );
    assert_eq!(oracle(), expected, "nothing moved while measuring");
    // A uuid tenant column (the tenant's uuid in the rows), distributed by it.
    for sql in [
        "CREATE TABLE public.events (tenant_uuid uuid NOT NULL, id integer NOT NULL, PRIMARY KEY (tenant_uuid, id))",
        "SELECT tenant.enable_isolation('public.events', 'tenant_uuid')",
        "SELECT create_distributed_table('public.events', 'tenant_uuid')",
        "INSERT INTO public.events SELECT (SELECT uuid FROM tenant.tenants WHERE slug = 'globex'), g FROM generate_series(1, 10) g",
    ] {
        su.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let events_bytes: i64 = one(
        &mut su,
        "SELECT sum(result::bigint)::bigint FROM run_command_on_shards('public.events', $$SELECT pg_total_relation_size('%s')$$)",
    );
    assert_eq!(
        usage_of(&db, "", &["public.events"]),
        [(
            "globex".to_string(),
            "public.events".to_string(),
            10,
            events_bytes
        )]
    );
    // A tenant_user may not measure.
    expect_sqlstate(
        db.connect("app").query("SELECT * FROM tenant.usage()", &[]),
        "42501",
    );
}

/// A reference table isolated per tenant, and distributed tenant schemas (schema-based
/// sharding): measured on the workers too, and a write-limited schema tenant refused there (its
/// own schema's tables and the reference table) while the other tenant writes.
#[test]
fn quotas_on_reference_tables_and_distributed_tenant_schemas() {
    let db = CitusDb::new("usageref");
    let owner = schema_sharding(&db);
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SET citus.enable_schema_based_sharding = off;
         CREATE SCHEMA tenant_template AUTHORIZATION {owner};
         CREATE TABLE tenant_template.notes (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text);
         RESET citus.enable_schema_based_sharding;
         SELECT tenant.create_tenant('acme', with_schema => true);
         SELECT tenant.create_tenant('globex', with_schema => true);
         INSERT INTO tenant_globex.notes (body) SELECT repeat('g', 1000) FROM generate_series(1, 2000);
         SET citus.enable_schema_based_sharding = off;
         CREATE TABLE public.kinds (tenant_id bigint NOT NULL, id integer NOT NULL, name text, PRIMARY KEY (tenant_id, id));
         SELECT create_reference_table('public.kinds');
         SELECT tenant.enable_isolation('public.kinds');
         INSERT INTO public.kinds SELECT 1 + (g % 3 = 0)::int, g, md5(g::text) FROM generate_series(1, 300) g;"
    ))
    .unwrap_or_else(|e| panic!("{e:?}"));
    // The reference table: rows as inserted, bytes of one replica (each worker holds one).
    let worker_bytes: Vec<i64> = (0..2)
        .map(|i| {
            let mut w = db.worker_superuser(i);
            w.batch_execute("SET citus.override_table_visibility = off")
                .unwrap();
            one(
                &mut w,
                "SELECT pg_total_relation_size(c.oid) FROM pg_class c
                  WHERE c.relname ~ '^kinds_[0-9]+$' AND c.relkind = 'r'",
            )
        })
        .collect();
    assert_eq!(worker_bytes[0], worker_bytes[1], "the replicas are alike");
    let (acme_rows, globex_rows) = (200i64, 100i64);
    let total = i128::from(worker_bytes[0]);
    assert_eq!(
        usage_of(&db, "", &["public.kinds"]),
        [
            (
                "acme".to_string(),
                "public.kinds".to_string(),
                acme_rows,
                (total * 200 / 300) as i64
            ),
            (
                "globex".to_string(),
                "public.kinds".to_string(),
                globex_rows,
                (total * 100 / 300) as i64
            ),
        ]
    );
    // A distributed tenant schema: every table the tenant's, whole; bytes from its shards.
    let notes_bytes: i64 = one(
        &mut su,
        "SELECT sum(result::bigint)::bigint FROM run_command_on_shards('tenant_globex.notes', $$SELECT pg_total_relation_size('%s')$$)",
    );
    assert!(notes_bytes > 1_048_576, "{notes_bytes}");
    let notes: Vec<(String, Option<i64>, i64)> = db
        .connect("admin")
        .query(
            "SELECT tenant, rows, bytes FROM tenant.usage('globex') WHERE relation::text = 'tenant_globex.notes'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(notes, [("globex".to_string(), None, notes_bytes)]);
    let coordinator_shell: i64 = one(
        &mut su,
        "SELECT pg_total_relation_size('tenant_globex.notes')",
    );
    assert!(coordinator_shell < notes_bytes / 10, "{coordinator_shell}");

    // globex over a 1 MB limit (its schema alone holds more), acme under it.
    let app = db.role("app");
    su.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA tenant_acme, tenant_globex TO {app};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenant_acme, tenant_globex TO {app};"
    ))
    .unwrap();
    su.batch_execute(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON public.kinds TO {app}"
    ))
    .unwrap();
    db.connect("admin")
        .batch_execute(
            "SELECT tenant.set_limits('globex', max_storage_mb => 1);
             SELECT tenant.set_limits('acme', max_storage_mb => 1);
             CALL tenant.refresh_usage();",
        )
        .unwrap();
    let globex_bytes: i64 = one(
        &mut su,
        "SELECT bytes FROM tenant.quota_state WHERE tenant_id = 2 AND over_quota",
    );
    assert_eq!(
        globex_bytes,
        notes_bytes + (total * 100 / 300) as i64,
        "its schema and its share of kinds"
    );
    let snapshot = |su: &mut Client| -> Vec<String> {
        strings(
            su,
            "SELECT format('notes %s %s', n, md5(string_agg(body, ',' ORDER BY id))) FROM
               (SELECT 'acme' AS n, id, body FROM tenant_acme.notes UNION ALL
                SELECT 'globex', id, body FROM tenant_globex.notes) x GROUP BY n
             UNION ALL SELECT format('kinds %s %s', tenant_id, md5(string_agg(name, ',' ORDER BY id)))
               FROM public.kinds GROUP BY tenant_id ORDER BY 1",
        )
    };
    let before = snapshot(&mut su);
    let message = refusal("globex", globex_bytes, 1);
    for sql in [
        "INSERT INTO notes (body) VALUES ('more')",
        "UPDATE notes SET body = 'changed' WHERE id = 1",
        "INSERT INTO public.kinds (id, name) VALUES (1000, 'more')",
        "UPDATE public.kinds SET name = 'changed' WHERE id = 3",
    ] {
        let mut c = db.connect("app");
        c.batch_execute("BEGIN; SELECT tenant.set_tenant('globex', is_local => true)")
            .unwrap();
        let e = c.batch_execute(sql).expect_err(sql);
        let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(
            (d.code().code(), d.message()),
            ("53400", message.as_str()),
            "{sql}"
        );
    }
    assert_eq!(snapshot(&mut su), before, "nothing written");
    let mut c = db.connect("app");
    c.batch_execute("BEGIN; SELECT tenant.set_tenant('globex', is_local => true)")
        .unwrap();
    assert_eq!(one::<i64>(&mut c, "SELECT count(*) FROM notes"), 2000);
    assert_eq!(
        c.execute("DELETE FROM notes WHERE id = 2000", &[]).unwrap(),
        1
    );
    c.batch_execute(
        "COMMIT; BEGIN; SELECT tenant.set_tenant('acme', is_local => true);
         INSERT INTO notes (body) VALUES ('acme writes');
         INSERT INTO public.kinds (id, name) VALUES (1001, 'acme writes'); COMMIT;",
    )
    .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant_globex.notes"),
        1999
    );
    assert_eq!(
        strings(
            &mut su,
            "SELECT format('%s %s', (SELECT body FROM tenant_acme.notes), (SELECT tenant_id FROM public.kinds WHERE id = 1001))"
        ),
        ["acme writes 1"]
    );
}

/// A write-limited tenant on a distributed table, as a NOSUPERUSER tenant_user login: every
/// write shape refused (53400, the single-node message), reads and DELETE work, the other tenant
/// and the exempt roles write, and nothing else changed.
#[test]
fn storage_quota_is_enforced_on_distributed_tables() {
    let db = CitusDb::new("storage");
    with_projects(&db);
    with_big_acme(&db);
    // A table local to the coordinator, isolated in the Citus database (no trigger either).
    db.superuser()
        .batch_execute(&format!(
            "CREATE TABLE public.memos (tenant_id bigint NOT NULL, id integer NOT NULL, body text, PRIMARY KEY (tenant_id, id));
             INSERT INTO public.memos VALUES (1, 1, 'acme memo');
             SELECT tenant.enable_isolation('public.memos');
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.memos TO {};",
            db.role("app")
        ))
        .unwrap();
    // The DBA enters tenants too (to show that tenant_admin members are not limited).
    db.superuser()
        .batch_execute(&format!("GRANT tenant_user TO {}", db.role("admin")))
        .unwrap();
    let mut admin = db.connect("admin");
    // A prepared statement planned while acme may still write, run again once it may not.
    let mut prepared = db.connect("app");
    prepared
        .batch_execute(
            "PREPARE ins(int) AS INSERT INTO public.projects (id, name) VALUES ($1, 'prepared');
             BEGIN; SELECT tenant.set_tenant('acme', is_local => true);
             EXECUTE ins(6000); EXECUTE ins(6001); EXECUTE ins(6002); EXECUTE ins(6003);
             EXECUTE ins(6004); EXECUTE ins(6005); ROLLBACK;",
        )
        .unwrap();
    admin
        .batch_execute(
            "SELECT tenant.set_limits('acme', max_storage_mb => 1);
             SELECT tenant.set_limits('globex', max_storage_mb => 1);
             CALL tenant.refresh_usage();",
        )
        .unwrap();
    let mut su = db.superuser();
    let flags: Vec<(i64, bool)> = su
        .query(
            "SELECT tenant_id, over_quota FROM tenant.quota_state ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(flags, [(1, true), (2, false)]);
    let acme_bytes: i64 = one(
        &mut su,
        "SELECT bytes FROM tenant.quota_state WHERE tenant_id = 1",
    );
    let message = refusal("acme", acme_bytes, 1);
    let before = all_rows(&db);
    let tasks_before = strings(
        &mut su,
        "SELECT format('%s %s %s', tenant_id, id, title) FROM public.tasks ORDER BY 1",
    );

    let in_acme = |db: &CitusDb| -> Client {
        let mut app = db.connect("app");
        app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
            .unwrap();
        app
    };
    for sql in [
        "INSERT INTO public.projects (id, name) VALUES (5001, 'plain')",
        "INSERT INTO public.projects (id, name) VALUES (5001, 'plain') ON CONFLICT DO NOTHING",
        "INSERT INTO public.projects (id, name) VALUES (100, 'upsert') ON CONFLICT (tenant_id, id) DO UPDATE SET name = 'upserted'",
        "UPDATE public.projects SET name = 'renamed' WHERE id = 100",
        "UPDATE public.projects SET name = 'renamed'",
        "WITH w AS (INSERT INTO public.projects (id, name) VALUES (5002, 'cte') RETURNING 1) SELECT count(*) FROM w",
        "WITH w AS (UPDATE public.projects SET name = 'cte' WHERE id = 100 RETURNING 1) SELECT count(*) FROM w",
        "INSERT INTO public.projects (id, name) SELECT id + 5000, name FROM public.projects WHERE id < 103",
        "INSERT INTO public.tasks (id, project_id, title) VALUES (50, 100, 'task')",
        "EXECUTE ins(6006)",
        "DO $$ BEGIN INSERT INTO public.projects (id, name) VALUES (5003, 'do'); END $$",
        "INSERT INTO public.memos (id, body) VALUES (2, 'local')",
        "UPDATE public.memos SET body = 'local'",
    ] {
        let mut app = if sql.starts_with("EXECUTE") {
            prepared
                .batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
                .unwrap();
            std::mem::replace(&mut prepared, db.connect("app"))
        } else {
            in_acme(&db)
        };
        let e = app.batch_execute(sql).expect_err(sql);
        let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(d.code().code(), "53400", "{sql}: {d:?}");
        assert_eq!(d.message(), message, "{sql}");
        if sql.starts_with("EXECUTE") {
            prepared = app;
            prepared.batch_execute("ROLLBACK").unwrap();
        }
    }
    // MERGE: Citus itself refuses it on a table whose policies call a function (any tenant).
    let e = in_acme(&db)
        .batch_execute(
            "MERGE INTO public.projects p USING (SELECT 1::bigint AS tenant_id, 100 AS id) s
                ON p.tenant_id = s.tenant_id AND p.id = s.id WHEN MATCHED THEN UPDATE SET name = 'merged'",
        )
        .expect_err("MERGE");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("not yet supported in MERGE")),
        "{e:?}"
    );
    // COPY FROM (Citus runs it, not the executor): refused before any row is sent.
    {
        use std::io::Write;
        let mut app = in_acme(&db);
        let copied = app
            .copy_in("COPY public.projects (id, name) FROM STDIN")
            .and_then(|mut w| {
                w.write_all(b"5004\tcopy\n").unwrap();
                w.finish()
            });
        let e = copied.expect_err("COPY refused");
        assert_eq!(sqlstate(&e), "53400", "{e:?}");
    }
    assert_eq!(all_rows(&db), before, "nothing written");
    assert_eq!(
        strings(
            &mut su,
            "SELECT format('%s %s %s', tenant_id, id, body) FROM public.memos"
        ),
        ["1 1 acme memo"]
    );

    // Reads and DELETE work.
    let mut app = in_acme(&db);
    assert_eq!(
        one::<i64>(&mut app, "SELECT count(*) FROM public.projects"),
        2003
    );
    assert_eq!(
        app.execute("DELETE FROM public.projects WHERE id = 2999", &[])
            .unwrap(),
        1
    );
    app.batch_execute("COMMIT").unwrap();
    // The other tenant writes freely; the exempt roles write in acme.
    let mut globex = db.connect("app2");
    globex
        .batch_execute(
            "BEGIN; SELECT tenant.set_tenant('globex', is_local => true);
             INSERT INTO public.projects (id, name) VALUES (260, 'globex-260');
             UPDATE public.projects SET name = 'globex-200b' WHERE id = 200; COMMIT;",
        )
        .unwrap();
    admin
        .batch_execute(
            "BEGIN; SELECT tenant.set_tenant('acme', is_local => true);
             INSERT INTO public.projects (id, name) VALUES (5100, 'by the admin'); COMMIT;",
        )
        .unwrap();
    db.connect("support")
        .batch_execute(
            "BEGIN; SELECT tenant.enter_cross_tenant('quota support', is_local => true);
             INSERT INTO public.projects VALUES (1, 5101, 'cross-tenant'); COMMIT;",
        )
        .unwrap();
    // A superuser acting in acme's context, and one in no tenant (no context at all).
    su.batch_execute(
        "BEGIN; SELECT tenant.set_tenant('acme', is_local => true);
         INSERT INTO public.projects (id, name) VALUES (5102, 'by a superuser'); COMMIT;",
    )
    .unwrap();
    su.batch_execute("INSERT INTO public.projects VALUES (1, 5103, 'no tenant')")
        .unwrap();
    let mut expected = before.clone();
    expected.retain(|r| r.1 != 2999);
    expected.push((1, 5100, "by the admin".into()));
    expected.push((1, 5101, "cross-tenant".into()));
    expected.push((1, 5102, "by a superuser".into()));
    expected.push((1, 5103, "no tenant".into()));
    expected.push((2, 260, "globex-260".into()));
    for r in expected.iter_mut() {
        if r.1 == 200 {
            r.2 = "globex-200b".into();
        }
    }
    expected.sort();
    assert_eq!(all_rows(&db), expected);
    assert_eq!(
        strings(
            &mut su,
            "SELECT format('%s %s %s', tenant_id, id, title) FROM public.tasks ORDER BY 1",
        ),
        tasks_before
    );
    // A raised limit applies at once (set_limits re-evaluates the flag): acme writes.
    admin
        .batch_execute("SELECT tenant.set_limits('acme', max_storage_mb => 100)")
        .unwrap();
    let mut app = in_acme(&db);
    app.batch_execute(
        "INSERT INTO public.projects (id, name) VALUES (5200, 'writable again'); COMMIT",
    )
    .unwrap();
}

/// The routes round the coordinator: the application role on a worker with its own node
/// context (replayed from the coordinator), directly and through run_command_on_*, also with
/// the context set and cleared inside the writing statement. Refused on the worker while the
/// tenant is write-limited; reads and DELETE there are as before.
#[test]
fn storage_quota_holds_on_the_workers() {
    let db = CitusDb::new("storagew");
    with_projects(&db);
    with_big_acme(&db);
    let unlimited = own_token(&db, "app");
    db.connect("admin")
        .batch_execute(
            "SELECT tenant.set_limits('acme', max_storage_mb => 1); CALL tenant.refresh_usage();",
        )
        .unwrap();
    let token = own_token(&db, "app");
    assert_eq!(token.split('.').nth(4), Some("2"), "{token}: flagged");
    // A tenant_admin member's context in the same tenant is not (it is exempt).
    db.superuser()
        .batch_execute(&format!("GRANT tenant_user TO {}", db.role("admin")))
        .unwrap();
    let admins = own_token(&db, "admin");
    assert_eq!(admins.split('.').nth(4), Some("0"), "{admins}");
    assert_eq!(unlimited.split('.').nth(4), Some("0"), "{unlimited}");
    let before = all_rows(&db);
    let (w, shard) = shards_of(&db, 1)[0].clone();
    let mut direct = db.connect_worker("app", w);
    set_node_context(&mut direct, &token);
    for sql in [
        format!("INSERT INTO public.{shard} VALUES (1, 7001, 'direct')"),
        format!("UPDATE public.{shard} SET name = 'direct' WHERE id = 100"),
        format!("INSERT INTO public.{shard} VALUES (1, 100, 'direct') ON CONFLICT (tenant_id, id) DO UPDATE SET name = 'direct'"),
        format!("WITH w AS (INSERT INTO public.{shard} VALUES (1, 7002, 'direct') RETURNING 1) SELECT count(*) FROM w"),
    ] {
        let msg = expect_sqlstate(direct.batch_execute(&sql), "53400");
        assert!(msg.contains("over its storage quota"), "{sql}: {msg}");
    }
    assert_eq!(
        one::<i64>(
            &mut direct,
            &format!("SELECT count(*) FROM public.{shard} WHERE tenant_id = 1")
        ),
        2003,
        "reads work"
    );
    direct
        .batch_execute(&format!(
            "BEGIN; DELETE FROM public.{shard} WHERE id = 2999; ROLLBACK"
        ))
        .unwrap();
    // COPY FROM into a shard: row security refuses it there by itself.
    expect_sqlstate(
        db.connect_worker("app", w)
            .copy_in::<_>(&format!("COPY public.{shard} FROM STDIN"))
            .map(|_| "copying"),
        "0A000",
    );
    // The context set, used and cleared inside one statement (no context at its start or end).
    let mut fresh = db.connect_worker("app", w);
    let sneaky = format!(
        "WITH s AS (SELECT set_config('qualityfoundry_tenant.node_context', '{token}', true) AS v),
              i AS (INSERT INTO public.{shard} SELECT 1, 7003, 'sneaky' FROM s RETURNING 1),
              c AS (SELECT set_config('qualityfoundry_tenant.node_context', '', true) FROM i)
         SELECT count(*) FROM c"
    );
    let msg = expect_sqlstate(fresh.batch_execute(&sneaky), "53400");
    assert!(msg.contains("over its storage quota"), "{msg}");
    // run_command_on_* from the coordinator, as the application role. (Citus reports a
    // command string's first result only: a second statement's refusal shows in the rows.)
    let mut app = db.connect("app");
    app.query(
        "SELECT success, result FROM run_command_on_shards('public.projects', $1)",
        &[&format!(
            "SET qualityfoundry_tenant.node_context = '{token}'; INSERT INTO %s VALUES (1, 7004, 'rcos')"
        )],
    )
    .unwrap();
    assert_eq!(all_rows(&db), before, "nothing written");
    {
        let command = format!("INSERT INTO %s SELECT 1, 7005, 'rcos' FROM (SELECT set_config('qualityfoundry_tenant.node_context', '{token}', true)) s");
        let results: Vec<(bool, String)> = app
            .query(
                "SELECT success, result FROM run_command_on_shards('public.projects', $1)",
                &[&command],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(results.len(), 32, "every shard");
        assert!(
            results
                .iter()
                .all(|(ok, r)| !ok && r.contains("over its storage quota")),
            "{command}: {results:?}"
        );
    }
    assert_eq!(all_rows(&db), before, "nothing written");
    // The positive control: an unflagged context of the same role inserts on that worker.
    let mut control = db.connect_worker("app", w);
    set_node_context(&mut control, &unlimited);
    control
        .batch_execute(&format!(
            "BEGIN; INSERT INTO public.{shard} VALUES (1, 7006, 'control'); ROLLBACK"
        ))
        .unwrap();
}

/// Inserts `rows` (tenant, id, name) into public.projects as `short` in `tenant`'s transaction.
fn insert_as(db: &CitusDb, short: &str, tenant: &str, sql: &str) -> Result<(), postgres::Error> {
    let mut c = db.connect(short);
    c.batch_execute(&format!(
        "BEGIN; SELECT tenant.set_tenant('{tenant}', is_local => true)"
    ))?;
    let r = c.batch_execute(sql);
    c.batch_execute(if r.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    r
}

/// `sql` as `short` in tenant `tenant` is refused at its rate limit (`limit` into `table`).
fn refused_at_limit(db: &CitusDb, short: &str, tenant: &str, sql: &str, limit: i32, table: &str) {
    let msg = expect_sqlstate(insert_as(db, short, tenant, sql), "53400");
    assert!(
        msg.contains(&rate_refusal(tenant, limit, table)),
        "{sql}: {msg}"
    );
}

fn rate_refusal(slug: &str, limit: i32, table: &str) -> String {
    format!("tenant \"{slug}\" has reached its limit of {limit} inserts per day into {table}")
}

/// Every node's counters of today, as the superuser reads them on each node (the oracle: the
/// workers' own tables, not the extension's report): (node, table, tenant, inserts).
fn rate_counts(db: &CitusDb) -> Vec<(String, String, i64, i64)> {
    let mut out = Vec::new();
    let read =
        |c: &mut Client, node: &str, table: &str, out: &mut Vec<(String, String, i64, i64)>| {
            for r in c
                .query(
                    &format!(
                        "SELECT n.nspname || '.' || c.relname, t.tenant_id, t.inserts
                       FROM tenant.{table} t JOIN pg_class c ON c.oid = t.relid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE t.day = (now() AT TIME ZONE 'UTC')::date ORDER BY 1, 2"
                    ),
                    &[],
                )
                .unwrap()
            {
                out.push((node.to_string(), r.get(0), r.get(1), r.get(2)));
            }
        };
    read(
        &mut db.superuser(),
        "coordinator",
        "rate_counters",
        &mut out,
    );
    for i in 0..2 {
        read(
            &mut db.worker_superuser(i),
            &format!("worker{i}"),
            "node_rate_counters",
            &mut out,
        );
    }
    out
}

/// Rate limits on distributed tables are counted by the node holding the tenant's rows: through
/// the coordinator every insert shape counts, the limit (the table's, or the tenant's
/// max_runs_per_day) refuses with the single-node message, tenants and exempt roles are apart,
/// and a table distributed by another column, whose tenant rows are on several nodes, is refused.
#[test]
fn rate_limits_on_distributed_tables() {
    let db = CitusDb::new("rates");
    with_projects(&db);
    let mut admin = db.connect("admin");
    admin
        .batch_execute("SELECT tenant.limit_rate('public.projects', 5)")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut db.superuser(),
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'qft\\_%'
              AND tgrelid IN ('public.projects'::regclass, 'public.tasks'::regclass)"
        ),
        0,
        "no trigger on the Citus tables"
    );
    // acme: 3 in one multi-row statement, 3 more refused (5 is the limit), then 2, then 1 refused.
    insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.projects (id, name) VALUES (110, 'a'), (111, 'b'), (112, 'c')",
    )
    .unwrap();
    let before = all_rows(&db);
    let e = insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.projects (id, name) VALUES (113, 'd'), (114, 'e'), (115, 'f')",
    );
    let msg = expect_sqlstate(e, "53400");
    assert!(
        msg.contains(&rate_refusal("acme", 5, "public.projects")),
        "{msg}"
    );
    assert_eq!(all_rows(&db), before, "nothing written");
    // A writable CTE through the coordinator (Citus runs its INSERT as the shard's own statement).
    insert_as(&db, "app", "acme", "WITH w AS (INSERT INTO public.projects (id, name) VALUES (113, 'd'), (114, 'e') RETURNING 1) SELECT count(*) FROM w").unwrap();
    let before = all_rows(&db);
    refused_at_limit(
        &db,
        "app",
        "acme",
        "INSERT INTO public.projects (id, name) VALUES (115, 'f')",
        5,
        "public.projects",
    );
    assert_eq!(all_rows(&db), before, "nothing written");
    // globex counts apart: INSERT ... SELECT pushed down to the shards, then a refused one.
    insert_as(&db, "app2", "globex", "INSERT INTO public.projects (tenant_id, id, name) SELECT tenant_id, id + 1000, 'copy' FROM public.projects").unwrap();
    refused_at_limit(&db, "app2", "globex", "INSERT INTO public.projects (tenant_id, id, name) SELECT tenant_id, id + 2000, 'copy' FROM public.projects", 5, "public.projects");
    // Exempt: a tenant_admin member acting in the tenant, and cross-tenant mode.
    db.superuser()
        .batch_execute(&format!(
            "GRANT tenant_user TO {0}; GRANT SELECT, INSERT ON public.projects TO {0}",
            db.role("admin")
        ))
        .unwrap();
    insert_as(
        &db,
        "admin",
        "acme",
        "INSERT INTO public.projects (id, name) VALUES (120, 'admin')",
    )
    .unwrap();
    let mut support = db.connect("support");
    support
        .batch_execute(
            "BEGIN; SELECT tenant.enter_cross_tenant('ticket 9', is_local => true);
             INSERT INTO public.projects VALUES (1, 121, 'support'); COMMIT",
        )
        .unwrap();
    let acme_rows = |db: &CitusDb| all_rows(db).iter().filter(|r| r.0 == 1).count();
    assert_eq!(acme_rows(&db), 3 + 5 + 2, "acme's five and the exempt two");
    // The counts: on the worker holding each tenant's shard, five each, nothing elsewhere.
    let (acme_worker, _) = shards_of(&db, 1)[0].clone();
    let (globex_worker, _) = shards_of(&db, 2)[0].clone();
    let mut expected = vec![
        (
            format!("worker{acme_worker}"),
            "public.projects".to_string(),
            1i64,
            5i64,
        ),
        (
            format!("worker{globex_worker}"),
            "public.projects".to_string(),
            2,
            3,
        ),
    ];
    expected.sort();
    assert_eq!(rate_counts(&db), expected);
    // A limit raised takes effect from the next transaction.
    admin
        .batch_execute("SELECT tenant.limit_rate('public.projects', 6)")
        .unwrap();
    insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.projects (id, name) VALUES (115, 'f')",
    )
    .unwrap();
    // The tenant's own max_runs_per_day where the table's limit is NULL.
    admin
        .batch_execute(
            "SELECT tenant.set_limits('globex', max_runs_per_day => 2);
             SELECT tenant.limit_rate('public.tasks')",
        )
        .unwrap();
    insert_as(
        &db,
        "app2",
        "globex",
        "INSERT INTO public.tasks (id, project_id, title) VALUES (20, 200, 'a'), (21, 200, 'b')",
    )
    .unwrap();
    refused_at_limit(
        &db,
        "app2",
        "globex",
        "INSERT INTO public.tasks (id, project_id, title) VALUES (22, 200, 'c')",
        2,
        "public.tasks",
    );
    insert_as(&db, "app", "acme", "INSERT INTO public.tasks (id, project_id, title) VALUES (10, 100, 'a'), (11, 100, 'b'), (12, 100, 'c')").unwrap();
    // One application session across changes (the coordinator caches what its node contexts
    // carry per backend): the tenant's limit raised, then the table renamed, each seen by its
    // next transaction.
    let mut session = db.connect("app2");
    let mut tx = |sql: &str| {
        session.batch_execute("BEGIN; SELECT tenant.set_tenant('globex', is_local => true)")?;
        let r = session.batch_execute(sql);
        session.batch_execute(if r.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
        r
    };
    let msg = expect_sqlstate(
        tx("INSERT INTO public.tasks (id, project_id, title) VALUES (22, 200, 'c')"),
        "53400",
    );
    assert!(
        msg.contains(&rate_refusal("globex", 2, "public.tasks")),
        "{msg}"
    );
    admin
        .batch_execute("SELECT tenant.set_limits('globex', max_runs_per_day => 3)")
        .unwrap();
    tx("INSERT INTO public.tasks (id, project_id, title) VALUES (22, 200, 'c')").unwrap();
    db.superuser()
        .batch_execute("ALTER TABLE public.tasks RENAME TO jobs")
        .unwrap();
    let msg = expect_sqlstate(
        tx("INSERT INTO public.jobs (id, project_id, title) VALUES (23, 200, 'd')"),
        "53400",
    );
    assert!(
        msg.contains(&rate_refusal("globex", 3, "public.jobs")),
        "{msg}"
    );
    db.superuser()
        .batch_execute("ALTER TABLE public.jobs RENAME TO tasks")
        .unwrap();
    // A table distributed by another column: refused, nothing recorded.
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.events (tenant_id bigint NOT NULL, id integer NOT NULL, PRIMARY KEY (id, tenant_id));
         SELECT tenant.enable_isolation('public.events');
         SELECT create_distributed_table('public.events', 'id');",
    )
    .unwrap();
    let limits = |db: &CitusDb| {
        strings(&mut db.superuser(), "SELECT format('%s %s %s', relid, counted_as, max_inserts_per_day) FROM tenant.rate_limits ORDER BY 1")
    };
    let before = limits(&db);
    let e = admin.query("SELECT tenant.limit_rate('public.events', 5)", &[]);
    let msg = expect_sqlstate(e, "0A000");
    assert!(
        msg.contains("is distributed by id, not by its tenant column"),
        "{msg}"
    );
    assert_eq!(limits(&db), before, "nothing recorded");
    // Whoever may not set limits is told that first.
    expect_sqlstate(
        db.connect("app")
            .query("SELECT tenant.limit_rate('public.projects', 50)", &[]),
        "42501",
    );
    assert_eq!(limits(&db), before); // Distributed by another column after its limit was set: the checker says so (kind 34).
    let checker = |db: &CitusDb| {
        strings(
            &mut db.superuser(),
            "SELECT object || ': ' || fix FROM tenant.check_isolation() WHERE problem ~ 'is rate-limited and distributed by'",
        )
    };
    su.batch_execute(
        "CREATE TABLE public.audits (tenant_id bigint NOT NULL, id integer NOT NULL, PRIMARY KEY (id, tenant_id));
         SELECT tenant.enable_isolation('public.audits');",
    )
    .unwrap();
    admin
        .batch_execute("SELECT tenant.limit_rate('public.audits', 5)")
        .unwrap();
    assert!(checker(&db).is_empty(), "{:?}", checker(&db));
    su.batch_execute("SELECT create_distributed_table('public.audits', 'id')")
        .unwrap();
    assert_eq!(
        checker(&db),
        ["table public.audits: SELECT alter_distributed_table('public.audits', distribution_column := 'tenant_id');"]
    );
}

/// A table local to a Citus coordinator, and a reference table, are counted as on one node by
/// the node(s) storing their rows; a partitioned distributed table counts every partition
/// against its limit.
#[test]
fn rate_limits_on_local_reference_and_partitioned_tables() {
    let db = CitusDb::new("rateskinds");
    let mut su = db.superuser();
    su.batch_execute(
        "SELECT tenant.create_tenant('acme', 'Acme');
         SELECT tenant.create_tenant('globex', 'Globex');
         CREATE TABLE public.notes (tenant_id bigint NOT NULL, id integer NOT NULL, PRIMARY KEY (tenant_id, id));
         SELECT tenant.enable_isolation('public.notes');
         CREATE TABLE public.kinds (tenant_id bigint NOT NULL, id integer NOT NULL, PRIMARY KEY (tenant_id, id));
         SELECT create_reference_table('public.kinds');
         SELECT tenant.enable_isolation('public.kinds');
         CREATE TABLE public.runs (tenant_id bigint NOT NULL, id integer NOT NULL, at date NOT NULL,
                                   PRIMARY KEY (tenant_id, id, at)) PARTITION BY RANGE (at);
         CREATE TABLE public.runs_2025 PARTITION OF public.runs FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE public.runs_2026 PARTITION OF public.runs FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         SELECT tenant.enable_isolation('public.runs');
         SELECT create_distributed_table('public.runs', 'tenant_id');",
    )
    .unwrap();
    for (short, _) in ROLES {
        su.batch_execute(&format!(
            "GRANT SELECT, INSERT ON public.notes, public.kinds, public.runs, public.runs_2025, public.runs_2026 TO {}",
            db.role(short)
        ))
        .unwrap();
    }
    db.connect("admin")
        .batch_execute(
            "SELECT tenant.limit_rate('public.notes', 2);
             SELECT tenant.limit_rate('public.kinds', 2);
             SELECT tenant.limit_rate('public.runs', 3);",
        )
        .unwrap();
    let count = |db: &CitusDb, table: &str| -> i64 {
        one(
            &mut db.superuser(),
            &format!("SELECT count(*) FROM public.{table}"),
        )
    };
    // The local table: counted on the coordinator.
    insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.notes (id) VALUES (1), (2)",
    )
    .unwrap();
    refused_at_limit(
        &db,
        "app",
        "acme",
        "INSERT INTO public.notes (id) VALUES (3)",
        2,
        "public.notes",
    );
    insert_as(
        &db,
        "app",
        "globex",
        "INSERT INTO public.notes (id) VALUES (1)",
    )
    .unwrap();
    // An INSERT in a WITH clause reports no count of its own there: refused, nothing written.
    let msg = expect_sqlstate(
        insert_as(
            &db,
            "app",
            "globex",
            "WITH w AS (INSERT INTO public.notes (id) VALUES (2) RETURNING 1) SELECT count(*) FROM w",
        ),
        "0A000",
    );
    assert!(
        msg.contains("inside WITH or MERGE is not supported"),
        "{msg}"
    );
    assert_eq!(count(&db, "notes"), 3);
    // The reference table: every placement counts the same inserts; the third is refused.
    insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.kinds (id) VALUES (1)",
    )
    .unwrap();
    insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.kinds (id) VALUES (2)",
    )
    .unwrap();
    refused_at_limit(
        &db,
        "app",
        "acme",
        "INSERT INTO public.kinds (id) VALUES (3)",
        2,
        "public.kinds",
    );
    assert_eq!(count(&db, "kinds"), 2);
    // The partitioned table: both partitions count against runs' limit, through the parent or
    // straight into a partition.
    insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.runs (id, at) VALUES (1, '2025-06-01'), (2, '2026-06-01')",
    )
    .unwrap();
    refused_at_limit(
        &db,
        "app",
        "acme",
        "INSERT INTO public.runs_2025 (id, at) VALUES (3, '2025-07-01'), (4, '2025-07-02')",
        3,
        "public.runs",
    );
    insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.runs_2025 (id, at) VALUES (3, '2025-07-01')",
    )
    .unwrap();
    expect_sqlstate(
        insert_as(
            &db,
            "app",
            "acme",
            "INSERT INTO public.runs (id, at) VALUES (5, '2026-07-01')",
        ),
        "53400",
    );
    assert_eq!(count(&db, "runs"), 3);
    let counts = rate_counts(&db);
    let of = |node: &str, table: &str| -> Vec<(i64, i64)> {
        counts
            .iter()
            .filter(|c| c.0 == node && c.1 == table)
            .map(|c| (c.2, c.3))
            .collect()
    };
    assert_eq!(
        of("coordinator", "public.notes"),
        [(1, 2), (2, 1)],
        "{counts:?}"
    );
    for node in ["worker0", "worker1"] {
        assert_eq!(of(node, "public.kinds"), [(1, 2)], "{node}: {counts:?}");
        assert!(of(node, "public.notes").is_empty(), "{counts:?}");
    }
    let runs: i64 = counts
        .iter()
        .filter(|c| c.1 == "public.runs")
        .map(|c| c.3)
        .sum();
    assert_eq!(runs, 3, "{counts:?}");
}

/// The workers count what is sent to them directly: an application role on a worker's port, or
/// through run_command_on_shards, with its own node context replayed, inserts into its tenant's
/// shard up to the same limit and shares the count with the coordinator's path; the inserts
/// whose count is not their own are refused; a context whose rates were altered or removed is
/// no context (its MAC fails).
#[test]
fn rate_limits_hold_on_the_workers() {
    let db = CitusDb::new("ratesw");
    with_projects(&db);
    let before_limit = own_token(&db, "app");
    assert_eq!(
        before_limit.split('.').count(),
        7,
        "{before_limit}: no rates yet"
    );
    db.connect("admin")
        .batch_execute("SELECT tenant.limit_rate('public.projects', 4)")
        .unwrap();
    let token = own_token(&db, "app");
    assert_eq!(token.split('.').count(), 8, "{token}: the limits are in it");
    let (w, shard) = shards_of(&db, 1)[0].clone();
    let mut direct = db.connect_worker("app", w);
    set_node_context(&mut direct, &token);
    direct
        .batch_execute(&format!(
            "INSERT INTO public.{shard} VALUES (1, 7001, 'direct'), (1, 7002, 'direct')"
        ))
        .unwrap();
    let before = all_rows(&db);
    for sql in [
        format!("INSERT INTO public.{shard} VALUES (1, 7003, 'direct'), (1, 7004, 'direct'), (1, 7005, 'direct')"),
        format!("INSERT INTO public.{shard} SELECT 1, g, 'direct' FROM generate_series(7010, 7012) g"),
    ] {
        let msg = expect_sqlstate(direct.batch_execute(&sql), "53400");
        assert!(msg.contains(&rate_refusal("acme", 4, "public.projects")), "{sql}: {msg}");
    }
    for sql in [
        format!("WITH w AS (INSERT INTO public.{shard} VALUES (1, 7020, 'cte') RETURNING 1) SELECT count(*) FROM w"),
        format!("MERGE INTO public.{shard} t USING (SELECT 1::bigint AS tenant_id, 7021 AS id) s
                   ON t.tenant_id = s.tenant_id AND t.id = s.id
                 WHEN NOT MATCHED THEN INSERT VALUES (s.tenant_id, s.id, 'merge')"),
    ] {
        let msg = expect_sqlstate(direct.batch_execute(&sql), "0A000");
        assert!(msg.contains("inside WITH or MERGE is not supported in a database with Citus"), "{sql}: {msg}");
    }
    assert_eq!(all_rows(&db), before, "nothing written");
    // run_command_on_shards as the application role, and the coordinator's path: one count.
    let mut app = db.connect("app");
    let rcos = |app: &mut Client, id: i32| -> Vec<(bool, String)> {
        let command = format!(
            "INSERT INTO %1$s SELECT 1, {id}, 'rcos' FROM (SELECT set_config('qualityfoundry_tenant.node_context', '{token}', true)) s \
              WHERE pg_catalog.to_regclass('%1$s') = pg_catalog.to_regclass('public.{shard}')"
        );
        app.query(
            "SELECT success, result FROM run_command_on_shards('public.projects', $1)",
            &[&command],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let results = rcos(&mut app, 7030);
    assert!(results.iter().all(|(ok, _)| *ok), "{results:?}");
    insert_as(
        &db,
        "app",
        "acme",
        "INSERT INTO public.projects (id, name) VALUES (130, 'x')",
    )
    .unwrap();
    let before = all_rows(&db);
    let results = rcos(&mut app, 7031);
    assert!(
        results
            .iter()
            .any(|(ok, r)| !ok && r.contains(&rate_refusal("acme", 4, "public.projects"))),
        "{results:?}"
    );
    refused_at_limit(
        &db,
        "app",
        "acme",
        "INSERT INTO public.projects (id, name) VALUES (131, 'x')",
        4,
        "public.projects",
    );
    assert_eq!(all_rows(&db), before);
    let acme_new: Vec<i32> = all_rows(&db)
        .iter()
        .filter(|r| r.0 == 1 && r.1 >= 110)
        .map(|r| r.1)
        .collect();
    assert_eq!(
        acme_new,
        [130, 7001, 7002, 7030],
        "two direct, one through run_command_on_shards, one through the coordinator"
    );
    // Rates raised or removed: the MAC fails, so no context (row security refuses the insert).
    let text = token.split('.').nth(6).unwrap().to_string();
    let raised = text.replacen(",4", ",400", 1);
    assert_ne!(raised, text);
    for forged in [
        token.replacen(&text, &raised, 1),
        token.replacen(&format!(".{text}"), "", 1),
    ] {
        let mut c = db.connect_worker("app", w);
        set_node_context(&mut c, &forged);
        let e = c.batch_execute(&format!(
            "INSERT INTO public.{shard} VALUES (1, 7040, 'forged')"
        ));
        expect_sqlstate(e, "42501");
    }
    assert_eq!(all_rows(&db), before, "nothing written");
}

/// Per tenant schema, after migration `version` created table `table` and added column `column`
/// to `notes`: (schema, ledger status, attempts, the new table distributed in the schema's
/// colocation group, its extension policies, the column on every shard of notes).
fn migrated(
    su: &mut Client,
    version: &str,
    table: &str,
    column: &str,
) -> Vec<(String, String, i32, bool, Vec<String>, bool)> {
    su.query(
        "SELECT m.schema_name::text, m.status, m.attempts,
                coalesce((SELECT p.colocationid = n.colocationid
                            FROM pg_dist_partition p, pg_dist_partition n
                           WHERE p.logicalrelid = to_regclass(format('%I.%I', m.schema_name, $2::text))
                             AND n.logicalrelid = format('%I.notes', m.schema_name)::regclass), false),
                ARRAY(SELECT polname::text FROM pg_policy
                       WHERE polrelid = to_regclass(format('%I.%I', m.schema_name, $2::text)) ORDER BY 1),
                (SELECT bool_and(result = '1') FROM run_command_on_shards(format('%I.notes', m.schema_name)::regclass,
                     format('SELECT count(*) FROM pg_attribute WHERE attrelid = %L::regclass AND attname = %L', '%s', $3::text)))
           FROM tenant.schema_migrations m
          WHERE m.version = $1 AND m.tenant_id IS NOT NULL ORDER BY 1",
        &[&version, &table, &column],
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

/// Four distributed tenant schemas (acme, globex, initech, umbrella) cloned from a template with
/// `notes`, owned by a login role Citus can use; initech already has a table `tags`, made by a
/// top-level CREATE TABLE (which Citus distributes itself). Returns the owner.
fn schema_tenants(db: &CitusDb) -> String {
    let owner = schema_sharding(db);
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SET citus.enable_schema_based_sharding = off;
         CREATE SCHEMA tenant_template AUTHORIZATION {owner};
         RESET citus.enable_schema_based_sharding;
         GRANT {owner} TO {admin};
         CREATE TABLE tenant_template.notes (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text);
         ALTER TABLE tenant_template.notes OWNER TO {owner};
         SELECT tenant.create_tenant(t, with_schema => true) FROM unnest(ARRAY['acme', 'globex', 'initech', 'umbrella']) t;
         INSERT INTO tenant_globex.notes (body) VALUES ('globex secret');",
        admin = db.role("admin"),
    ))
    .unwrap_or_else(|e| panic!("{e:?}"));
    // Its own transaction: Citus refuses placements touched by two users in one.
    su.batch_execute(&format!("SET ROLE {owner}")).unwrap();
    su.batch_execute("CREATE TABLE tenant_initech.tags (id integer)")
        .unwrap_or_else(|e| panic!("{e:?}"));
    owner
}

#[test]
fn parallel_migrate_all_on_distributed_schemas_ends_like_serial() {
    let serial_db = CitusDb::new("serial");
    let parallel_db = CitusDb::new("parallel");
    let mut ledgers = Vec::new();
    for (db, parallel) in [(&serial_db, 1), (&parallel_db, 2)] {
        let owner = schema_tenants(db);
        let mut su = db.superuser();
        // The top-level CREATE TABLE was distributed by Citus (the event trigger only pinned it).
        assert_eq!(
            strings(
                &mut su,
                "SELECT logicalrelid::text FROM pg_dist_partition WHERE logicalrelid::text ~ '^tenant_initech\\.' ORDER BY 1"
            ),
            ["tenant_initech.notes", "tenant_initech.tags"]
        );
        // Creates a table and alters a distributed one, as the owner (which Citus needs: the
        // new table is distributed as its owner too).
        let migration = format!(
            "SET ROLE {owner}; CREATE TABLE tags (id integer PRIMARY KEY, name text); ALTER TABLE notes ADD COLUMN tag text"
        );
        db.connect("admin")
            .execute(
                "CALL tenant.migrate_all('2', $1, parallel => $2)",
                &[&migration, &parallel],
            )
            .unwrap_or_else(|e| panic!("parallel {parallel}: {e:?}"));
        let ledger = migrated(&mut su, "2", "tags", "tag");
        let errors = strings(
            &mut su,
            "SELECT format('%s %s', schema_name, sqlstate) FROM tenant.schema_migrations WHERE error IS NOT NULL ORDER BY 1",
        );
        assert_eq!(errors, ["tenant_initech 42P07"], "parallel {parallel}");
        // Only initech, where the migration failed, differs from the template.
        let drift = strings(
            &mut su,
            "SELECT DISTINCT d.schema::text FROM tenant.schema_drift() d ORDER BY 1",
        );
        assert_eq!(drift, ["tenant_initech"], "parallel {parallel}");
        let details = strings(
            &mut su,
            "SELECT row_to_json(d)::text FROM tenant.schema_drift() d ORDER BY 1",
        );
        ledgers.push((ledger, details));
    }
    assert_eq!(ledgers[1], ledgers[0], "parallel ends like serial");
    let ledgers: Vec<_> = ledgers.into_iter().map(|l| l.0).collect();
    let expected_policies: Vec<String> =
        ["qft_cross_tenant", "qft_schema_guard", "qft_schema_tenant"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(
        ledgers[1],
        ["acme", "globex", "initech", "umbrella"]
            .iter()
            .map(|t| {
                let ok = *t != "initech";
                (
                    format!("tenant_{t}"),
                    if ok { "applied" } else { "failed" }.to_string(),
                    1,
                    true, // initech's own tags is in the schema's colocation group too
                    expected_policies.clone(),
                    ok,
                )
            })
            .collect::<Vec<_>>()
    );
    // The table a parallel worker made is isolated: acme sees nothing of globex's.
    let db = &parallel_db;
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA tenant_acme, tenant_globex TO {app};
         GRANT SELECT ON ALL TABLES IN SCHEMA tenant_acme, tenant_globex TO {app};",
        app = db.role("app")
    ))
    .unwrap();
    su.batch_execute("INSERT INTO tenant_globex.tags VALUES (1, 'g')")
        .unwrap();
    let mut app = db.connect("app");
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true)")
        .unwrap();
    assert_eq!(
        strings(&mut app, "SELECT name FROM tenant_globex.tags"),
        Vec::<String>::new()
    );
    assert_eq!(
        strings(&mut app, "SELECT body FROM tenant_globex.notes"),
        Vec::<String>::new()
    );
    app.batch_execute("COMMIT").unwrap();
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('globex', is_local => true)")
        .unwrap();
    assert_eq!(strings(&mut app, "SELECT name FROM tags"), ["g"]);
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(
        strings(&mut su, "SELECT body FROM tenant_globex.notes"),
        ["globex secret"]
    );
}

/// Rows of `sql` as text, one string per row (columns joined by ',', NULL as '-').
fn rows(c: &mut Client, sql: &str) -> Result<Vec<String>, postgres::Error> {
    Ok(c.simple_query(sql)?
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("-"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        })
        .collect())
}

/// Citus 13 recursively plans a distributed table on the nullable side of an outer join whose
/// other side is recurring (a subquery without tables, a function, a reference table) by copying
/// its range-table entry, row-security quals included and misnumbered, into subqueries: PostgreSQL
/// then crashed the backend (src/security_quals.rs). Every such shape returns the tenant's own
/// rows; the shapes the extension cannot rewrite are refused with 0A000; the connection always
/// survives and the other tenant's rows are unchanged.
#[test]
fn outer_joins_with_a_recurring_side_return_own_rows_or_are_refused() {
    let db = CitusDb::new("outer");
    with_projects(&db);
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE TABLE public.ref (k integer PRIMARY KEY);
         INSERT INTO public.ref VALUES (1), (2);
         SELECT create_reference_table('public.ref');
         CREATE TABLE public.loc (k integer);
         INSERT INTO public.loc VALUES (1);
         CREATE TABLE public.gappy (tenant_id bigint NOT NULL, junk integer, id integer NOT NULL);
         ALTER TABLE public.gappy DROP COLUMN junk;
         INSERT INTO public.gappy VALUES (1, 10), (2, 20);
         SELECT tenant.enable_isolation('public.gappy');
         SELECT create_distributed_table('public.gappy', 'tenant_id', colocate_with => 'public.projects');
         GRANT SELECT ON public.ref, public.loc, public.gappy TO {0}, {1};",
        db.role("app"),
        db.role("app2")
    ))
    .expect("fixture");
    let before = all_rows(&db);

    // A fresh session whose first statement is such a join: the library (and its planner hook)
    // is loaded only while Citus plans it, so it may be refused, but never crashes.
    let mut fresh = db.connect("app");
    match rows(
        &mut fresh,
        "SELECT s.x, p.id FROM (SELECT 1 AS x) s LEFT JOIN public.projects p ON true",
    ) {
        Ok(r) => assert_eq!(r, ["1,-"], "no context: the null-extended row only"),
        Err(e) => assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e}"),
    }
    assert_eq!(
        one::<i32>(&mut fresh, "SELECT 1"),
        1,
        "the session survives"
    );

    let mut app = db.connect("app");
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', is_local => true);")
        .unwrap();
    let shapes: &[(&str, &[&str])] = &[
        (
            "SELECT s.x, p.id FROM (SELECT 1 AS x) s LEFT JOIN public.projects p ON true ORDER BY 2",
            &["1,100", "1,101", "1,102"],
        ),
        // Only a column the policy does not read.
        (
            "SELECT p.name FROM (SELECT 1) s LEFT JOIN public.projects p ON true ORDER BY 1",
            &["acme-100", "acme-101", "acme-102"],
        ),
        (
            "SELECT p.id, t.id FROM (SELECT 1) s LEFT JOIN public.projects p ON true
               LEFT JOIN public.tasks t ON true ORDER BY 1",
            &["100,1", "101,1", "102,1"],
        ),
        (
            "SELECT p.id, s.x FROM public.projects p RIGHT JOIN (SELECT 1 AS x) s ON true ORDER BY 1",
            &["100,1", "101,1", "102,1"],
        ),
        (
            "SELECT p.id, s.x FROM public.projects p FULL JOIN (SELECT 1 AS x) s ON true ORDER BY 1",
            &["100,1", "101,1", "102,1"],
        ),
        (
            "SELECT r.k, p.id FROM public.ref r LEFT JOIN public.projects p ON p.id = r.k + 99 ORDER BY 1",
            &["1,100", "2,101"],
        ),
        (
            "SELECT r.k, p.id FROM public.projects p FULL JOIN public.ref r ON p.id = r.k + 199 ORDER BY 1, 2",
            &["1,-", "2,-", "-,100", "-,101", "-,102"],
        ),
        (
            "SELECT g, p.id FROM pg_catalog.generate_series(1, 2) g
               LEFT JOIN public.projects p ON p.id = g + 99 ORDER BY 1",
            &["1,100", "2,101"],
        ),
        (
            "SELECT s.x, l.id FROM (SELECT 100 AS x) s
               LEFT JOIN LATERAL (SELECT p.id FROM public.projects p WHERE p.id > s.x) l ON true ORDER BY 2",
            &["100,101", "100,102"],
        ),
        (
            "WITH c AS MATERIALIZED (SELECT id FROM public.tasks)
             SELECT c.id, p.id FROM c LEFT JOIN public.projects p ON p.id = 100",
            &["1,100"],
        ),
        (
            "SELECT l.k, p.id FROM public.loc l LEFT JOIN public.projects p ON true ORDER BY 2",
            &["1,100", "1,101", "1,102"],
        ),
        // A colocated outer join is pushed down as before.
        (
            "SELECT t.id, p.id FROM public.tasks t LEFT JOIN public.projects p
               ON p.tenant_id = t.tenant_id AND p.id = t.project_id",
            &["1,100"],
        ),
        // The hint of the refusals below: the table as a subquery.
        (
            "SELECT s.x, g.id FROM (SELECT 1 AS x) s LEFT JOIN (SELECT * FROM public.gappy) g ON true",
            &["1,10"],
        ),
        (
            "SELECT l.k, p.id FROM public.loc l JOIN (SELECT * FROM public.projects) p ON true
              WHERE p.tenant_id = 1 AND p.id = 100",
            &["1,100"],
        ),
    ];
    for (sql, expected) in shapes {
        app.batch_execute("SAVEPOINT s").unwrap();
        let got = rows(&mut app, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got, *expected, "{sql}");
        app.batch_execute("RELEASE s").unwrap();
    }
    // An UPDATE whose subquery has the shape touches the tenant's own rows only.
    app.batch_execute(
        "UPDATE public.projects SET name = name || '!'
          WHERE id IN (SELECT p.id FROM (SELECT 1) s LEFT JOIN public.projects p ON true)",
    )
    .unwrap();
    // What the extension leaves to Citus, refused instead of crashing: a system column of the
    // nullable table, a table with a dropped column, a local table joined with a pinned row.
    for sql in [
        "SELECT p.ctid IS NULL FROM (SELECT 1) s LEFT JOIN public.projects p ON true",
        "SELECT g.id FROM (SELECT 1) s LEFT JOIN public.gappy g ON true",
        "SELECT l.k, p.id FROM public.loc l JOIN public.projects p ON true
          WHERE p.tenant_id = 1 AND p.id = 100",
    ] {
        app.batch_execute("SAVEPOINT s").unwrap();
        let e = expect_sqlstate(rows(&mut app, sql), "0A000");
        assert!(e.contains("Citus cannot run this query"), "{sql}: {e}");
        // The table named as SQL writes it (the hint's subquery can be pasted).
        assert!(e.contains("recursively plans table public."), "{sql}: {e}");
        if sql.contains("gappy") {
            assert!(e.contains("table public.gappy,"), "{sql}: {e}");
        }
        app.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    }
    app.batch_execute("COMMIT").unwrap();
    let after = all_rows(&db);
    let of = |rows: &[(i64, i32, String)], t: i64| -> Vec<(i32, String)> {
        rows.iter()
            .filter(|r| r.0 == t)
            .map(|r| (r.1, r.2.clone()))
            .collect()
    };
    assert_eq!(of(&after, 2), of(&before, 2), "the other tenant's rows");
    assert_eq!(
        of(&after, 1),
        [
            (100, "acme-100!".to_string()),
            (101, "acme-101!".to_string()),
            (102, "acme-102!".to_string())
        ]
    );

    // The same shape on a direct worker connection (Citus plans it there too, with metadata):
    // no context, the null-extended row, and no crash.
    let mut w = db.connect_worker("app", 0);
    w.batch_execute("SELECT tenant.current_tenant_id()")
        .unwrap();
    assert_eq!(
        rows(
            &mut w,
            "SELECT s.x, p.id FROM (SELECT 1 AS x) s LEFT JOIN public.projects p ON true"
        )
        .unwrap(),
        ["1,-"]
    );
}

/// A node context as `short` gets it on the coordinator after `enter` (a setter call).
fn token_after(db: &CitusDb, short: &str, enter: &str) -> String {
    let mut c = db.connect(short);
    c.batch_execute(&format!("BEGIN; SELECT {enter}")).unwrap();
    let t: String = one(
        &mut c,
        "SELECT current_setting('qualityfoundry_tenant.node_context')",
    );
    c.batch_execute("COMMIT").unwrap();
    assert!(t.starts_with("n1."), "{t}");
    t
}

/// On a worker, cross_tenant_active() is folded to false at plan time while the verified node
/// context is not in cross-tenant mode (the shards' OR'ed policies then reduce to the tenant
/// match); a plan cached so is re-planned once a node context claims cross-tenant mode, and back.
#[test]
fn a_worker_plan_folded_outside_cross_tenant_mode_is_replanned_in_it() {
    let db = CitusDb::new("crossfold");
    with_projects(&db);
    // The same role enters a tenant, then cross-tenant mode (tokens name their role).
    db.superuser()
        .batch_execute(&format!("GRANT tenant_user TO {}", db.role("support")))
        .unwrap();
    let acme = token_after(
        &db,
        "support",
        "tenant.set_tenant('acme', is_local => true)",
    );
    let cross = token_after(
        &db,
        "support",
        "tenant.enter_cross_tenant('ticket 9', is_local => true)",
    );
    let (w, shard) = &shards_of(&db, 1)[0];
    let mut oracle = db.worker_superuser(*w);
    let all: i64 = one(&mut oracle, &format!("SELECT count(*) FROM public.{shard}"));
    let own: i64 = one(
        &mut oracle,
        &format!("SELECT count(*) FROM public.{shard} WHERE tenant_id = 1"),
    );
    assert_eq!(own, 3);

    let mut support = db.connect_worker("support", *w);
    set_node_context(&mut support, &acme);
    support
        .batch_execute(&format!("PREPARE q AS SELECT count(*) FROM public.{shard}"))
        .unwrap();
    assert_eq!(one::<i64>(&mut support, "EXECUTE q"), own);
    let plan = strings(&mut support, "EXPLAIN (COSTS OFF) EXECUTE q").join("\n");
    assert!(!plan.contains("cross_tenant_active"), "folded: {plan}");
    set_node_context(&mut support, &cross);
    assert_eq!(
        one::<i64>(&mut support, "EXECUTE q"),
        all,
        "re-planned in cross-tenant mode"
    );
    set_node_context(&mut support, &acme);
    assert_eq!(one::<i64>(&mut support, "EXECUTE q"), own);
    set_node_context(&mut support, "");
    assert_eq!(one::<i64>(&mut support, "EXECUTE q"), 0);
}

/// Entering a tenant for the transaction on a Citus coordinator writes nothing: the node context
/// is set without SPI (pgrx's Spi::run and Spi::get_one assign the transaction an id, which made
/// every such transaction commit as a writing one), from the session's first call on.
#[test]
fn entering_a_tenant_on_citus_assigns_no_transaction_id() {
    let db = CitusDb::new("readonly");
    with_projects(&db);
    let mut app = db.connect("app");
    for tenant in ["acme", "globex", "acme"] {
        app.batch_execute(&format!(
            "BEGIN; SELECT tenant.set_tenant('{tenant}', is_local => true)"
        ))
        .unwrap();
        assert_eq!(ids(&mut app, "SELECT id FROM public.projects").len(), 3);
        assert_eq!(
            one::<Option<String>>(&mut app, "SELECT txid_current_if_assigned()::text"),
            None,
            "{tenant}"
        );
        app.batch_execute("SELECT tenant.clear_tenant(); COMMIT")
            .unwrap();
    }
}
