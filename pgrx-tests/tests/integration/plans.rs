//! Issue 17: plans. `cross_tenant_active()` has a planner support function that folds it to false
//! while the backend holds no cross-tenant entry, and entering or leaving the mode resets the
//! backend's plan cache. These tests prove the fast plan (one index condition, no Filter; an index
//! scan for a tenant_superuser member outside the mode) and that no cached plan — prepared
//! statement, generic plan, PL/pgSQL — hides the mode's rows or shows them after it ends.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

/// `public.big`: 2 tenants x 5,000 rows, isolated and analyzed, so a point query by `id` is an
/// index scan when the tenant equality is an index condition and a sequential scan when it is not.
fn big(db: &TestDb) {
    let mut su = db.superuser();
    su.batch_execute(
        "CREATE TABLE public.big (tenant_id bigint NOT NULL, id integer NOT NULL, payload text,
                                  PRIMARY KEY (tenant_id, id));
         INSERT INTO public.big SELECT t, i, md5(i::text) FROM generate_series(1, 2) t, generate_series(1, 5000) i;
         SELECT tenant.enable_isolation('public.big');
         ANALYZE public.big;",
    )
    .expect("big fixture");
    for short in ["app", "support"] {
        su.batch_execute(&format!(
            "GRANT SELECT ON public.big TO {0}",
            db.role(short)
        ))
        .expect("grant");
    }
    // The support role also works inside one tenant (as a support engineer's login does).
    su.batch_execute(&format!("GRANT tenant_user TO {}", db.role("support")))
        .expect("grant tenant_user");
}

fn plan(client: &mut Client, sql: &str) -> String {
    strings(client, &format!("EXPLAIN (COSTS OFF) {sql}")).join("\n")
}

#[track_caller]
fn assert_fast_plan(plan: &str) {
    assert!(plan.contains("Index Scan"), "not an index scan:\n{plan}");
    assert!(
        plan.contains("Index Cond: ((tenant_id = tenant.current_tenant_id()) AND (id = 5))"),
        "the tenant equality is not the index condition:\n{plan}"
    );
    assert!(
        !plan.contains("Filter") && !plan.contains("cross_tenant_active"),
        "the guard was not folded:\n{plan}"
    );
}

fn count_id5(client: &mut Client) -> i64 {
    one(client, "SELECT count(*) FROM public.big WHERE id = 5")
}

#[test]
fn outside_cross_tenant_mode_the_guard_folds_into_one_index_condition() {
    let db = TestDb::new("plans_fold");
    db.superuser()
        .batch_execute("SELECT tenant.create_tenant('acme'), tenant.create_tenant('globex')")
        .unwrap();
    big(&db);
    let q = "SELECT payload FROM public.big WHERE id = 5";
    for short in ["app", "support"] {
        let mut c = db.connect(short);
        c.batch_execute("SELECT tenant.set_tenant('acme')").unwrap();
        // A tenant_superuser member outside the mode: its permissive cross-tenant policy used to
        // OR the index condition away (a sequential scan of the whole table).
        assert_fast_plan(&plan(&mut c, q));
        assert_eq!(count_id5(&mut c), 1, "{short}");
    }
    // Inside the mode nothing is folded: the member sees every tenant's row.
    let mut support = db.connect("support");
    support
        .batch_execute(
            "SELECT tenant.set_tenant('acme'); SELECT tenant.enter_cross_tenant('plans test')",
        )
        .unwrap();
    let inside = plan(&mut support, q);
    assert!(inside.contains("cross_tenant_active"), "{inside}");
    assert_eq!(count_id5(&mut support), 2);
    support
        .batch_execute("SELECT tenant.exit_cross_tenant()")
        .unwrap();
    assert_fast_plan(&plan(&mut support, q));
    assert_eq!(count_id5(&mut support), 1);
    // An application role that is no member sees only its tenant whatever the plan.
    let mut app = db.connect("app");
    app.batch_execute("SELECT tenant.set_tenant('globex')")
        .unwrap();
    assert_eq!(
        strings(&mut app, "SELECT DISTINCT tenant_id::text FROM public.big"),
        vec!["2"]
    );
}

#[test]
fn prepared_and_generic_plans_follow_entering_and_leaving_cross_tenant_mode() {
    let db = TestDb::new("plans_prepared");
    db.superuser()
        .batch_execute("SELECT tenant.create_tenant('acme'), tenant.create_tenant('globex')")
        .unwrap();
    big(&db);
    for mode in ["force_generic_plan", "force_custom_plan", "auto"] {
        let mut s = db.connect("support");
        s.batch_execute(&format!(
            "SET plan_cache_mode = {mode}; SELECT tenant.set_tenant('acme')"
        ))
        .unwrap();
        // A protocol-level prepared statement and an SQL PREPARE, both kept in the plan cache.
        let stmt = s
            .prepare("SELECT count(*) FROM public.big WHERE id = $1")
            .unwrap();
        s.batch_execute("PREPARE q(int) AS SELECT count(*) FROM public.big WHERE id = $1")
            .unwrap();
        let counts = |s: &mut Client| -> (i64, i64) {
            let a: i64 = s.query_one(&stmt, &[&5i32]).unwrap().get(0);
            let b: i64 = one(s, "EXECUTE q(5)");
            (a, b)
        };
        // Enough executions for `auto` to settle on its generic plan.
        for _ in 0..7 {
            assert_eq!(counts(&mut s), (1, 1), "{mode}: outside the mode");
        }
        let outside = strings(&mut s, "EXPLAIN (COSTS OFF) EXECUTE q(5)").join("\n");
        assert!(
            !outside.contains("cross_tenant_active"),
            "{mode}: {outside}"
        );

        s.batch_execute("SELECT tenant.enter_cross_tenant('plans test')")
            .unwrap();
        assert_eq!(counts(&mut s), (2, 2), "{mode}: inside the mode (session)");
        s.batch_execute("SELECT tenant.exit_cross_tenant()")
            .unwrap();
        assert_eq!(counts(&mut s), (1, 1), "{mode}: after leaving");

        // Transaction-local entry: the plans follow it in and out of the transaction.
        s.batch_execute("BEGIN; SELECT tenant.enter_cross_tenant('plans test', true)")
            .unwrap();
        assert_eq!(counts(&mut s), (2, 2), "{mode}: inside the mode (local)");
        s.batch_execute("COMMIT").unwrap();
        assert_eq!(
            counts(&mut s),
            (1, 1),
            "{mode}: after the local entry ended"
        );

        // A ROLLBACK that restores an entry (the mode left inside a transaction that rolls back)
        // brings back the mode, and the plans made while it was off are not used.
        s.batch_execute("SELECT tenant.enter_cross_tenant('plans test')")
            .unwrap();
        s.batch_execute("BEGIN; SELECT tenant.exit_cross_tenant()")
            .unwrap();
        assert_eq!(
            counts(&mut s),
            (1, 1),
            "{mode}: left inside the transaction"
        );
        s.batch_execute("ROLLBACK").unwrap();
        assert_eq!(
            counts(&mut s),
            (2, 2),
            "{mode}: the rollback restored the mode"
        );
        s.batch_execute("SELECT tenant.exit_cross_tenant()")
            .unwrap();
        assert_eq!(counts(&mut s), (1, 1), "{mode}: left again");
    }
}

#[test]
fn plpgsql_cached_plans_follow_cross_tenant_mode() {
    let db = TestDb::new("plans_plpgsql");
    db.superuser()
        .batch_execute("SELECT tenant.create_tenant('acme'), tenant.create_tenant('globex')")
        .unwrap();
    big(&db);
    let mut su = db.superuser();
    // SECURITY INVOKER functions: they run as the calling role, so its policies apply. The second
    // enters and leaves the mode between executions of one cached statement.
    su.batch_execute(
        "CREATE FUNCTION public.count_big(i int) RETURNS bigint LANGUAGE plpgsql AS $$
         BEGIN RETURN (SELECT count(*) FROM public.big WHERE id = i); END $$;
         CREATE FUNCTION public.count_in_and_out(i int) RETURNS bigint[] LANGUAGE plpgsql AS $$
         DECLARE r bigint[] := '{}';
         BEGIN
             r := r || public.count_big(i);
             PERFORM tenant.enter_cross_tenant('plpgsql plans test');
             r := r || public.count_big(i);
             PERFORM tenant.exit_cross_tenant();
             r := r || public.count_big(i);
             RETURN r;
         END $$;
         GRANT EXECUTE ON FUNCTION public.count_big(int), public.count_in_and_out(int) TO PUBLIC;",
    )
    .unwrap();
    let mut s = db.connect("support");
    s.batch_execute("SET plan_cache_mode = force_generic_plan; SELECT tenant.set_tenant('acme')")
        .unwrap();
    for _ in 0..3 {
        assert_eq!(one::<i64>(&mut s, "SELECT public.count_big(5)"), 1);
    }
    s.batch_execute("SELECT tenant.enter_cross_tenant('plans test')")
        .unwrap();
    assert_eq!(one::<i64>(&mut s, "SELECT public.count_big(5)"), 2);
    s.batch_execute("SELECT tenant.exit_cross_tenant()")
        .unwrap();
    assert_eq!(one::<i64>(&mut s, "SELECT public.count_big(5)"), 1);
    for _ in 0..2 {
        assert_eq!(
            one::<Vec<i64>>(&mut s, "SELECT public.count_in_and_out(5)"),
            vec![1, 2, 1]
        );
    }
}

/// The tenant ids a bound session's three kinds of cached statement see for `id = 5`: a
/// protocol-level prepared statement, an SQL `PREPARE` and a PL/pgSQL function's cached plan.
fn bound_views(s: &mut Client, stmt: &postgres::Statement) -> [Vec<i64>; 3] {
    let protocol: Vec<i64> = s
        .query(stmt, &[&5i32])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sql: Vec<i64> = s
        .query("EXECUTE bq(5)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plpgsql: Vec<i64> = one(s, "SELECT public.bound_ids(5)");
    [protocol, sql, plpgsql]
}

/// Issue 17: a bound role's tenant getter is folded into its plans as a constant (the index
/// condition is `tenant_id = '1'::bigint`, no function call left), and every registry change
/// resets the backend's plan cache, so suspension, resumption, rebinding and unbinding reach an
/// already-open session's prepared statements, generic and custom plans and PL/pgSQL plans on
/// their next execution.
#[test]
fn a_bound_sessions_cached_plans_follow_suspension_and_rebinding() {
    let db = TestDb::new("plans_bound");
    db.superuser()
        .batch_execute("SELECT tenant.create_tenant('acme'), tenant.create_tenant('globex')")
        .unwrap();
    big(&db);
    let mut su = db.superuser();
    let bi = db.role("bi");
    su.batch_execute(&format!(
        "GRANT SELECT ON public.big TO {bi};
         CREATE FUNCTION public.bound_ids(i int) RETURNS bigint[] LANGUAGE plpgsql AS $$
         BEGIN RETURN ARRAY(SELECT tenant_id FROM public.big WHERE id = i); END $$;
         GRANT EXECUTE ON FUNCTION public.bound_ids(int) TO PUBLIC;
         SELECT tenant.bind_role('{bi}', 'acme');"
    ))
    .unwrap();
    let mut admin = db.connect("admin");
    for mode in ["force_generic_plan", "force_custom_plan", "auto"] {
        let mut s = db.connect("bi");
        s.batch_execute(&format!("SET plan_cache_mode = {mode}"))
            .unwrap();
        let p = plan(&mut s, "SELECT payload FROM public.big WHERE id = 5");
        assert!(
            p.contains("Index Cond: ((tenant_id = '1'::bigint) AND (id = 5))")
                && !p.contains("current_tenant_id")
                && !p.contains("Filter"),
            "{mode}: the bound tenant is not a constant of the plan:\n{p}"
        );
        let stmt = s
            .prepare("SELECT tenant_id FROM public.big WHERE id = $1")
            .unwrap();
        s.batch_execute("PREPARE bq(int) AS SELECT tenant_id FROM public.big WHERE id = $1")
            .unwrap();
        for _ in 0..7 {
            assert_eq!(
                bound_views(&mut s, &stmt),
                [vec![1], vec![1], vec![1]],
                "{mode}"
            );
        }
        let step = |admin: &mut Client, s: &mut Client, sql: &str, want: Vec<i64>| {
            admin.batch_execute(sql).unwrap();
            for _ in 0..2 {
                assert_eq!(
                    bound_views(s, &stmt),
                    [want.clone(), want.clone(), want.clone()],
                    "{mode}: after {sql}"
                );
            }
        };
        step(
            &mut admin,
            &mut s,
            "SELECT tenant.suspend_tenant('acme')",
            vec![],
        );
        step(
            &mut admin,
            &mut s,
            "SELECT tenant.resume_tenant('acme')",
            vec![1],
        );
        step(
            &mut admin,
            &mut s,
            &format!("SELECT tenant.bind_role('{bi}', 'globex')"),
            vec![2],
        );
        step(
            &mut admin,
            &mut s,
            &format!("SELECT tenant.unbind_role('{bi}')"),
            vec![],
        );
        step(
            &mut admin,
            &mut s,
            &format!("SELECT tenant.bind_role('{bi}', 'acme')"),
            vec![1],
        );
        // Inside an open transaction the session sees a change from its next transaction at
        // the latest (like any catalog change), never a mix afterwards.
        s.batch_execute("BEGIN").unwrap();
        assert_eq!(bound_views(&mut s, &stmt), [vec![1], vec![1], vec![1]]);
        admin
            .batch_execute("SELECT tenant.suspend_tenant('acme')")
            .unwrap();
        s.batch_execute("COMMIT").unwrap();
        assert_eq!(
            bound_views(&mut s, &stmt),
            [Vec::<i64>::new(), vec![], vec![]],
            "{mode}"
        );
        admin
            .batch_execute("SELECT tenant.resume_tenant('acme')")
            .unwrap();
    }
}

/// The fold is for a session whose session user cannot change: a superuser login that becomes
/// a bound role with `SET SESSION AUTHORIZATION` keeps calling the getter, so a plan made then
/// does not carry the bound tenant into a later session user whose current role is the same
/// (the plan cache replans on a change of current user only). Also PostgreSQL's expression
/// caches outside the plan cache (a domain's CHECK in the type cache) never hold a folded tenant.
#[test]
fn no_fold_outlives_a_session_user_change_or_sits_in_a_domain_check() {
    let db = TestDb::new("plans_bound_auth");
    db.superuser()
        .batch_execute("SELECT tenant.create_tenant('acme'), tenant.create_tenant('globex')")
        .unwrap();
    big(&db);
    let (bi, app) = (db.role("bi"), db.role("app"));
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "GRANT SELECT ON public.big TO {bi};
         GRANT {app} TO {bi};
         SELECT tenant.bind_role('{bi}', 'acme');
         CREATE DOMAIN public.own_tenant AS bigint CHECK (VALUE = tenant.current_tenant_id());"
    ))
    .unwrap();
    // bi (bound to acme) acts as app (unbound, no context) and prepares; then app becomes the
    // session user: same current role, so the cached plan is not replanned by PostgreSQL.
    let mut s = db.superuser();
    s.batch_execute(&format!(
        "SET plan_cache_mode = force_generic_plan;
         SET SESSION AUTHORIZATION {bi}; SET ROLE {app};
         PREPARE sq(int) AS SELECT tenant_id::text FROM public.big WHERE id = $1"
    ))
    .unwrap();
    assert_eq!(strings(&mut s, "EXECUTE sq(5)"), vec!["1"]);
    s.batch_execute(&format!("SET SESSION AUTHORIZATION {app}"))
        .unwrap();
    assert_eq!(
        strings(&mut s, "EXECUTE sq(5)"),
        Vec::<String>::new(),
        "the bound tenant of the previous session user leaked into a cached plan"
    );
    // The domain's check follows a rebinding in an open bound session.
    let mut b = db.connect("bi");
    assert_eq!(one::<i64>(&mut b, "SELECT 1::bigint::public.own_tenant"), 1);
    expect_sqlstate(
        b.batch_execute("SELECT 2::bigint::public.own_tenant"),
        "23514",
    );
    su.batch_execute(&format!("SELECT tenant.bind_role('{bi}', 'globex')"))
        .unwrap();
    expect_sqlstate(
        b.batch_execute("SELECT 1::bigint::public.own_tenant"),
        "23514",
    );
    assert_eq!(one::<i64>(&mut b, "SELECT 2::bigint::public.own_tenant"), 2);
}

/// The uuid getter folds for a bound role like the id (a uuid-keyed table's index condition is
/// the bound tenant's uuid), and the fold follows suspension on a cached plan; a bound
/// tenant_superuser member allowed into cross-tenant mode gets the folded plan outside the mode
/// and every tenant's rows inside it, on the same cached statement.
#[test]
fn the_uuid_getter_folds_too_and_a_bound_member_still_enters_cross_tenant_mode() {
    let db = TestDb::new("plans_bound_uuid");
    db.superuser()
        .batch_execute("SELECT tenant.create_tenant('acme'), tenant.create_tenant('globex')")
        .unwrap();
    big(&db);
    let (bi, support) = (db.role("bi"), db.role("support"));
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE TABLE public.docs (tenant uuid NOT NULL, id integer NOT NULL, PRIMARY KEY (tenant, id));
         INSERT INTO public.docs SELECT t.uuid, i FROM tenant.tenants t, generate_series(1, 5000) i;
         SELECT tenant.enable_isolation('public.docs', 'tenant');
         ANALYZE public.docs;
         GRANT SELECT ON public.docs TO {bi};
         SELECT tenant.bind_role('{bi}', 'acme');
         SELECT tenant.bind_role('{support}', 'acme', allow_cross_tenant => true);"
    ))
    .unwrap();
    let acme_uuid: String = one(
        &mut su,
        "SELECT uuid::text FROM tenant.tenants WHERE slug = 'acme'",
    );
    let mut s = db.connect("bi");
    s.batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    let p = plan(&mut s, "SELECT id FROM public.docs WHERE id = 5");
    assert!(
        p.contains(&format!(
            "Index Cond: ((tenant = '{acme_uuid}'::uuid) AND (id = 5))"
        )) && !p.contains("current_tenant_uuid"),
        "the bound tenant's uuid is not a constant of the plan:\n{p}"
    );
    let stmt = s
        .prepare("SELECT tenant::text FROM public.docs WHERE id = $1")
        .unwrap();
    let seen = |s: &mut Client| -> Vec<String> {
        s.query(&stmt, &[&5i32])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    for _ in 0..3 {
        assert_eq!(seen(&mut s), vec![acme_uuid.clone()]);
    }
    su.batch_execute("SELECT tenant.suspend_tenant('acme')")
        .unwrap();
    assert_eq!(seen(&mut s), Vec::<String>::new(), "suspended");
    su.batch_execute("SELECT tenant.resume_tenant('acme')")
        .unwrap();
    assert_eq!(seen(&mut s), vec![acme_uuid.clone()], "resumed");

    let mut m = db.connect("support");
    m.batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    let p = plan(&mut m, "SELECT payload FROM public.big WHERE id = 5");
    assert!(
        p.contains("Index Cond: ((tenant_id = '1'::bigint) AND (id = 5))") && !p.contains("Filter"),
        "{p}"
    );
    let stmt = m
        .prepare("SELECT count(*) FROM public.big WHERE id = $1")
        .unwrap();
    let count = |m: &mut Client| -> i64 { m.query_one(&stmt, &[&5i32]).unwrap().get(0) };
    assert_eq!(count(&mut m), 1);
    m.batch_execute("SELECT tenant.enter_cross_tenant('plans test')")
        .unwrap();
    assert_eq!(count(&mut m), 2, "inside cross-tenant mode");
    m.batch_execute("SELECT tenant.exit_cross_tenant()")
        .unwrap();
    assert_eq!(count(&mut m), 1, "after leaving it");
}

/// A bound tenant_admin that runs `migrate_all` in an open session: its plans folded to its own
/// tenant are reset when a step starts, so a function whose plan was cached before the run sees
/// each schema's tenant inside that schema's step (never the bound tenant). The function pins
/// its search_path, so the step's search_path does not make PostgreSQL replan it anyway.
#[test]
fn a_migration_step_does_not_run_a_plan_folded_to_the_bound_tenant() {
    let db = TestDb::new("plans_bound_migrate");
    let admin = db.role("admin");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE SCHEMA tenant_template AUTHORIZATION {admin};
         SET ROLE {admin};
         CREATE TABLE tenant_template.items (id integer PRIMARY KEY);
         RESET ROLE;
         CREATE FUNCTION public.ctx() RETURNS bigint LANGUAGE plpgsql
         SET search_path = pg_catalog AS $$
         BEGIN RETURN (SELECT tenant.current_tenant_id()); END $$;
         GRANT EXECUTE ON FUNCTION public.ctx() TO PUBLIC;"
    ))
    .unwrap();
    for slug in ["acme", "globex"] {
        su.batch_execute(&format!(
            "SELECT tenant.create_tenant('{slug}');
             CREATE SCHEMA tenant_{slug} AUTHORIZATION {admin};
             SET ROLE {admin};
             CREATE TABLE tenant_{slug}.items (LIKE tenant_template.items INCLUDING ALL);
             INSERT INTO tenant_{slug}.items VALUES (1);
             RESET ROLE;
             UPDATE tenant.tenants SET schema_name = 'tenant_{slug}' WHERE slug = '{slug}';
             SELECT tenant.pin_tenant_schema('{slug}');"
        ))
        .unwrap();
    }
    su.batch_execute(&format!("SELECT tenant.bind_role('{admin}', 'acme')"))
        .unwrap();
    let mut a = db.connect("admin");
    a.batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    for _ in 0..3 {
        assert_eq!(one::<i64>(&mut a, "SELECT public.ctx()"), 1);
    }
    a.execute(
        "CALL tenant.migrate_all($1, $2)",
        &[
            &"v1",
            &"ALTER TABLE items ADD COLUMN t bigint; UPDATE items SET t = public.ctx()",
        ],
    )
    .unwrap();
    let seen = strings(
        &mut su,
        "SELECT 'acme ' || t::text FROM tenant_acme.items
         UNION ALL SELECT 'globex ' || t::text FROM tenant_globex.items ORDER BY 1",
    );
    assert_eq!(seen, vec!["acme 1", "globex 2"]);
    // Back outside the run, the session is in its bound tenant again.
    assert_eq!(one::<i64>(&mut a, "SELECT public.ctx()"), 1);
}
