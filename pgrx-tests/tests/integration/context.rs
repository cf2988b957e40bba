//! The tenant context cannot be forged: every way a NOSUPERUSER role could select a tenant other
//! than through the sanctioned functions is refused, and afterwards it still sees only its own
//! tenant (or nothing).

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

/// `app` in tenant acme, seeing exactly acme's rows.
fn app_in_acme(db: &TestDb) -> Client {
    let mut app = db.connect("app");
    assert_eq!(one::<i64>(&mut app, "SELECT tenant.set_tenant('acme')"), 1);
    assert_eq!(visible(&mut app), ACME);
    app
}

#[track_caller]
fn still_acme_only(db: &TestDb, app: &mut Client) {
    assert_eq!(visible(app), ACME);
    assert_eq!(
        one::<Option<i64>>(app, "SELECT tenant.current_tenant_id()"),
        Some(1)
    );
    assert_eq!(db.all_projects().len(), 6);
}

#[test]
fn set_set_local_and_set_config_of_the_context_are_refused() {
    let db = TestDb::new("forge_set").with_projects();
    let mut app = app_in_acme(&db);
    for sql in [
        "SET qualityfoundry_tenant.tenant_id = '2'",
        "SELECT pg_catalog.set_config('qualityfoundry_tenant.tenant_id', '2', false)",
        "SELECT pg_catalog.set_config('qualityfoundry_tenant.tenant_id', '2', true)",
        "RESET qualityfoundry_tenant.tenant_id",
        "SET qualityfoundry_tenant.cross_tenant = on",
    ] {
        let msg = expect_sqlstate(app.batch_execute(sql), "42501");
        assert!(
            msg.contains("permission denied to set parameter"),
            "{sql}: {msg}"
        );
        still_acme_only(&db, &mut app);
    }
    app.batch_execute("BEGIN").unwrap();
    expect_sqlstate(
        app.batch_execute("SET LOCAL qualityfoundry_tenant.tenant_id = '2'"),
        "42501",
    );
    app.batch_execute("ROLLBACK").unwrap();
    still_acme_only(&db, &mut app);
}

#[test]
fn reset_all_and_discard_all_clear_the_context_never_widen_it() {
    let db = TestDb::new("forge_reset").with_projects();
    let mut app = app_in_acme(&db);
    app.batch_execute("RESET ALL").unwrap();
    assert_eq!(
        one::<Option<i64>>(&mut app, "SELECT tenant.current_tenant_id()"),
        None
    );
    assert_eq!(visible(&mut app), vec![]);
    let mut app = app_in_acme(&db);
    app.batch_execute("DISCARD ALL").unwrap();
    assert_eq!(visible(&mut app), vec![]);
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects (id, name) VALUES (1, 'x')"),
        "42501",
    );
    assert_eq!(db.all_projects().len(), 6);
}

#[test]
fn alter_role_set_and_function_set_clause_are_refused() {
    let db = TestDb::new("forge_alter").with_projects();
    let mut app = app_in_acme(&db);
    let me = db.role("app");
    expect_sqlstate(
        app.batch_execute(&format!(
            "ALTER ROLE {me} SET qualityfoundry_tenant.tenant_id = '2'"
        )),
        "42501",
    );
    expect_sqlstate(
        app.batch_execute(&format!(
            "ALTER ROLE {me} IN DATABASE {} SET qualityfoundry_tenant.tenant_id = '2'",
            db.name
        )),
        "42501",
    );
    expect_sqlstate(
        app.batch_execute(
            "CREATE FUNCTION pg_temp.hop() RETURNS bigint LANGUAGE sql \
             SET qualityfoundry_tenant.tenant_id = '2' AS 'SELECT tenant.current_tenant_id()'",
        ),
        "42501",
    );
    still_acme_only(&db, &mut app);
    // Nothing was stored for the role.
    let mut su = db.superuser();
    let settings: i64 = one(
        &mut su,
        &format!("SELECT count(*) FROM pg_db_role_setting WHERE setrole = '{me}'::regrole"),
    );
    assert_eq!(settings, 0);
    // And a fresh login starts without a tenant.
    let mut fresh = db.connect("app");
    assert_eq!(visible(&mut fresh), vec![]);
}

#[test]
fn startup_options_cannot_select_a_tenant() {
    let db = TestDb::new("forge_pgoptions").with_projects();
    for options in [
        "-c qualityfoundry_tenant.tenant_id=2",
        "-c qualityfoundry_tenant.cross_tenant=on",
    ] {
        match db.try_connect("app", options) {
            // Either the server refuses the connection ...
            Err(e) => assert_eq!(sqlstate(&e), "42501", "{e}"),
            // ... or the forged placeholder is discarded when the library loads.
            Ok(mut app) => {
                assert_eq!(visible(&mut app), vec![], "{options}");
                assert_eq!(
                    one::<Option<i64>>(&mut app, "SELECT tenant.current_tenant_id()"),
                    None
                );
                assert!(!one::<bool>(
                    &mut app,
                    "SELECT tenant.cross_tenant_active()"
                ));
            }
        }
    }
}

#[test]
fn a_placeholder_set_before_the_library_loads_is_discarded() {
    let db = TestDb::new("forge_placeholder").with_projects();
    let mut app = db.connect("app");
    // First statement of the session: the library is not loaded yet, so this makes a placeholder.
    app.batch_execute("SET qualityfoundry_tenant.tenant_id = '2'")
        .unwrap();
    assert_eq!(visible(&mut app), vec![]);
    assert_eq!(
        one::<Option<i64>>(&mut app, "SELECT tenant.current_tenant_id()"),
        None
    );
}

#[test]
fn only_tenant_user_members_may_set_a_context() {
    let db = TestDb::new("ctx_member").with_projects();
    let mut nobody = db.connect("nobody");
    let msg = expect_sqlstate(
        nobody.batch_execute("SELECT tenant.set_tenant('acme')"),
        "42501",
    );
    assert!(msg.contains("set_tenant"), "{msg}");
    assert_eq!(visible(&mut nobody), vec![]);
    // SET ROLE to a role without tenant_user does not keep the right either.
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "GRANT {} TO {}",
        db.role("nobody"),
        db.role("app")
    ))
    .unwrap();
    let mut app = db.connect("app");
    app.batch_execute(&format!("SET ROLE {}", db.role("nobody")))
        .unwrap();
    expect_sqlstate(
        app.batch_execute("SELECT tenant.set_tenant('acme')"),
        "42501",
    );
}

#[test]
fn unknown_suspended_null_zero_and_negative_tenants_are_refused() {
    let db = TestDb::new("ctx_bad").with_projects();
    let mut su = db.superuser();
    su.batch_execute(
        "SELECT tenant.create_tenant('sleepy'); SELECT tenant.suspend_tenant('sleepy')",
    )
    .unwrap();
    let mut app = app_in_acme(&db);
    for (sql, code) in [
        ("SELECT tenant.set_tenant('nope')", "22023"),
        ("SELECT tenant.set_tenant('999')", "22023"),
        ("SELECT tenant.set_tenant(999::bigint)", "22023"),
        ("SELECT tenant.set_tenant('sleepy')", "42501"),
        ("SELECT tenant.set_tenant(NULL::text)", "22004"),
        ("SELECT tenant.set_tenant(NULL::bigint)", "22004"),
        ("SELECT tenant.set_tenant(0)", "22023"),
        ("SELECT tenant.set_tenant(-1)", "22023"),
        ("SELECT tenant.set_tenant('0')", "22023"),
        ("SELECT tenant.set_tenant('-1')", "22023"),
        (
            "SELECT tenant.set_tenant('acme''; SET ROLE postgres; --')",
            "22023",
        ),
    ] {
        let msg = expect_sqlstate(app.batch_execute(sql), code);
        assert!(!msg.is_empty());
        still_acme_only(&db, &mut app);
    }
}

#[test]
fn a_suspended_tenant_sees_nothing_from_the_next_statement() {
    let db = TestDb::new("ctx_suspend").with_projects();
    let mut app = app_in_acme(&db);
    let mut admin = db.connect("admin");
    admin
        .batch_execute("SELECT tenant.suspend_tenant('acme')")
        .unwrap();
    assert_eq!(visible(&mut app), vec![]);
    expect_sqlstate(
        app.batch_execute("INSERT INTO public.projects (id, name) VALUES (7, 'x')"),
        "42501",
    );
    admin
        .batch_execute("SELECT tenant.resume_tenant('1')")
        .unwrap();
    assert_eq!(visible(&mut app), ACME);
    assert_eq!(db.all_projects().len(), 6);
}

#[test]
fn local_context_ends_with_commit_and_rollback() {
    let db = TestDb::new("ctx_local").with_projects();
    let mut app = db.connect("app");
    for end in ["COMMIT", "ROLLBACK"] {
        app.batch_execute("BEGIN").unwrap();
        assert_eq!(
            one::<i64>(
                &mut app,
                "SELECT tenant.set_tenant('globex', is_local => true)"
            ),
            2
        );
        assert_eq!(visible(&mut app), GLOBEX);
        app.batch_execute(end).unwrap();
        assert_eq!(visible(&mut app), vec![], "after {end}");
    }
}

#[test]
fn session_context_survives_commit_and_rollback_restores_it() {
    let db = TestDb::new("ctx_session").with_projects();
    let mut app = app_in_acme(&db);
    app.batch_execute("BEGIN; COMMIT;").unwrap();
    assert_eq!(visible(&mut app), ACME);
    app.batch_execute("BEGIN").unwrap();
    app.batch_execute("SELECT tenant.set_tenant('globex')")
        .unwrap();
    assert_eq!(visible(&mut app), GLOBEX);
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(visible(&mut app), ACME);
    assert_eq!(
        one::<String>(&mut app, "SELECT tenant.current_tenant()"),
        "acme"
    );
}

#[test]
fn context_scope_transaction_makes_every_switch_local() {
    let db = TestDb::new("ctx_scope").with_projects();
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "ALTER ROLE {} IN DATABASE {} SET qualityfoundry_tenant.context_scope = 'transaction'",
        db.role("app"),
        db.name
    ))
    .unwrap();
    let mut app = db.connect("app");
    // Autocommit: the context ends with its own statement.
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    assert_eq!(visible(&mut app), vec![]);
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme');")
        .unwrap();
    assert_eq!(visible(&mut app), ACME);
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(visible(&mut app), vec![]);
    // The scope itself is superuser-only.
    expect_sqlstate(
        app.batch_execute("SET qualityfoundry_tenant.context_scope = 'session'"),
        "42501",
    );
}

#[test]
fn generic_cached_plans_follow_tenant_switches() {
    let db = TestDb::new("ctx_plan").with_projects();
    let mut app = db.connect("app");
    app.batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    let stmt = app
        .prepare("SELECT tenant_id, id FROM public.projects ORDER BY id")
        .unwrap();
    let run = |app: &mut Client| -> Vec<(i64, i32)> {
        app.query(&stmt, &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    assert_eq!(run(&mut app), vec![]);
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    assert_eq!(run(&mut app), ACME);
    app.batch_execute("SELECT tenant.set_tenant('globex')")
        .unwrap();
    assert_eq!(run(&mut app), GLOBEX);
    app.batch_execute("SELECT tenant.clear_tenant()").unwrap();
    assert_eq!(run(&mut app), vec![]);
}

#[test]
fn parallel_workers_see_the_same_tenant() {
    let db = TestDb::new("ctx_parallel").with_projects();
    let mut su = db.superuser();
    su.batch_execute(
        "INSERT INTO public.projects SELECT 1 + g % 2, 1000 + g, 'bulk' FROM generate_series(1, 20000) g; ANALYZE public.projects",
    )
    .unwrap();
    let mut app = db.connect_in("app", "acme");
    let serial: i64 = one(&mut app, "SELECT count(*) FROM public.projects");
    app.batch_execute(
        "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; \
         SET max_parallel_workers_per_gather = 2; SET enable_indexscan = off; SET enable_bitmapscan = off",
    )
    .unwrap();
    let plan: Vec<String> = app
        .query("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM public.projects", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Workers Launched: 2") || plan.contains("Workers Launched: 1"),
        "{plan}"
    );
    let parallel: i64 = one(&mut app, "SELECT count(*) FROM public.projects");
    assert_eq!(serial, 3 + 10000);
    assert_eq!(parallel, serial);
    let foreign: i64 = one(
        &mut app,
        "SELECT count(*) FROM public.projects WHERE tenant_id <> 1",
    );
    assert_eq!(foreign, 0);
}

#[test]
fn bound_roles_are_in_their_tenant_from_the_first_statement_and_cannot_leave() {
    let db = TestDb::new("ctx_bound").with_projects();
    let mut su = db.superuser();
    su.batch_execute(&format!("GRANT tenant_user TO {}", db.role("bi")))
        .unwrap();
    let mut admin = db.connect("admin");
    admin
        .batch_execute(&format!(
            "SELECT tenant.bind_role('{}', 'globex')",
            db.role("bi")
        ))
        .unwrap();
    let mut bi = db.connect("bi");
    assert_eq!(visible(&mut bi), GLOBEX);
    for sql in [
        "SELECT tenant.set_tenant('acme')",
        "SELECT tenant.set_tenant(1)",
        "SELECT tenant.clear_tenant()",
        "SET qualityfoundry_tenant.tenant_id = '1'",
        "RESET qualityfoundry_tenant.tenant_id",
    ] {
        expect_sqlstate(bi.batch_execute(sql), "42501");
        assert_eq!(visible(&mut bi), GLOBEX, "{sql}");
    }
    bi.batch_execute("RESET ALL").unwrap();
    assert_eq!(visible(&mut bi), GLOBEX);
    bi.batch_execute("DISCARD ALL").unwrap();
    assert_eq!(visible(&mut bi), GLOBEX);
    // Re-entering its own tenant is not a switch.
    assert_eq!(one::<i64>(&mut bi, "SELECT tenant.set_tenant('globex')"), 2);
    // A valid token for another tenant does not get it out either.
    let token: String = one(&mut admin, "SELECT tenant.sign_context('acme')");
    expect_sqlstate(
        bi.query_one("SELECT tenant.set_tenant_signed($1)", &[&token]),
        "42501",
    );
    assert_eq!(visible(&mut bi), GLOBEX);
    // Unbinding takes effect at the next login.
    admin
        .batch_execute(&format!("SELECT tenant.unbind_role('{}')", db.role("bi")))
        .unwrap();
    let mut bi = db.connect("bi");
    assert_eq!(visible(&mut bi), vec![]);
    let log: i64 = one(
        &mut su,
        "SELECT count(*) FROM tenant.audit_log WHERE action IN ('role_bound', 'role_unbound')",
    );
    assert_eq!(log, 2);
}

#[test]
fn binding_a_superuser_or_unknown_tenant_is_refused_and_changes_nothing() {
    let db = TestDb::new("ctx_bind_bad").with_projects();
    let mut admin = db.connect("admin");
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.bind_role('postgres', 'acme')"),
        "22023",
    );
    expect_sqlstate(
        admin.batch_execute(&format!(
            "SELECT tenant.bind_role('{}', 'nope')",
            db.role("bi")
        )),
        "22023",
    );
    expect_sqlstate(
        admin.batch_execute(&format!("SELECT tenant.unbind_role('{}')", db.role("bi"))),
        "22023",
    );
    let mut app = db.connect("app");
    expect_sqlstate(
        app.batch_execute(&format!(
            "SELECT tenant.bind_role('{}', 'acme')",
            db.role("bi")
        )),
        "42501",
    );
    let mut su = db.superuser();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.role_bindings"),
        0
    );
    // Scoped to this test's database and roles: other tests bind roles in theirs concurrently.
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = current_database() AND s.setrole <> 0"
        ),
        0
    );
}

mod signed {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};

    /// A token made outside the database, in the documented format (a fresh token id each time).
    pub(super) fn forge(key: &[u8], key_id: i32, tenant: i64, expires_at: i64) -> String {
        forge_with(
            key,
            key_id,
            tenant,
            expires_at - 60,
            expires_at,
            &fresh_id(),
        )
    }

    pub(super) fn fresh_id() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(1);
        format!(
            "{:016x}{:016x}",
            std::process::id() as u64,
            N.fetch_add(1, Ordering::SeqCst)
        )
    }

    pub(super) fn forge_with(
        key: &[u8],
        key_id: i32,
        tenant: i64,
        issued_at: i64,
        expires_at: i64,
        id: &str,
    ) -> String {
        let payload = format!("v2.{key_id}.{tenant}.{issued_at}.{expires_at}.{id}");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(payload.as_bytes());
        format!(
            "{payload}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn signed_db(label: &str) -> (TestDb, Client, Client) {
        let db = TestDb::new(label).with_projects();
        let mut su = db.superuser();
        su.batch_execute(&format!(
            "ALTER ROLE {} IN DATABASE {} SET qualityfoundry_tenant.require_signed_context = on",
            db.role("app"),
            db.name
        ))
        .unwrap();
        let admin = db.connect("admin");
        let app = db.connect("app");
        (db, admin, app)
    }

    #[test]
    fn a_valid_token_enters_its_tenant_and_plain_set_tenant_is_refused() {
        let (db, mut admin, mut app) = signed_db("sig_ok");
        expect_sqlstate(
            app.batch_execute("SELECT tenant.set_tenant('acme')"),
            "42501",
        );
        assert_eq!(visible(&mut app), vec![]);
        expect_sqlstate(
            app.batch_execute("SET qualityfoundry_tenant.require_signed_context = off"),
            "42501",
        );
        let token: String = one(&mut admin, "SELECT tenant.sign_context('acme')");
        assert_eq!(
            one::<i64>(
                &mut app,
                &format!("SELECT tenant.set_tenant_signed('{token}')")
            ),
            1
        );
        assert_eq!(visible(&mut app), ACME);
        let token: String = one(&mut admin, "SELECT tenant.sign_context('2', '1 minute')");
        app.batch_execute("BEGIN").unwrap();
        app.query_one("SELECT tenant.set_tenant_signed($1, true)", &[&token])
            .unwrap();
        assert_eq!(visible(&mut app), GLOBEX);
        app.batch_execute("COMMIT").unwrap();
        assert_eq!(visible(&mut app), ACME);
        assert_eq!(db.all_projects().len(), 6);
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_refused() {
        let (db, mut admin, mut app) = signed_db("sig_bad");
        let good: String = one(&mut admin, "SELECT tenant.sign_context('acme')");
        let mut su = db.superuser();
        let (key_id, key): (i32, Vec<u8>) = {
            let r = su
                .query_one(
                    "SELECT id, secret FROM tenant.signing_keys ORDER BY id DESC LIMIT 1",
                    &[],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        let now: i64 = one(&mut su, "SELECT extract(epoch FROM now())::bigint");
        let other_key = [7u8; 32];
        let tampered_tenant = good.replacen("v2.1.1.", "v2.1.2.", 1);
        assert_ne!(tampered_tenant, good);
        let mut tampered_mac = good.clone();
        let last = tampered_mac.pop().unwrap();
        tampered_mac.push(if last == 'A' { 'B' } else { 'A' });
        for (label, token) in [
            ("tenant changed", tampered_tenant),
            ("mac changed", tampered_mac),
            ("expired", forge(&key, key_id, 1, now - 10)),
            ("other key", forge(&other_key, key_id, 2, now + 300)),
            ("unknown key id", forge(&key, key_id + 50, 2, now + 300)),
            ("garbage", "not-a-token".to_string()),
            ("empty", String::new()),
        ] {
            let msg = expect_sqlstate(
                app.query_one("SELECT tenant.set_tenant_signed($1)", &[&token]),
                "42501",
            );
            assert!(
                msg.contains("invalid tenant context token"),
                "{label}: {msg}"
            );
            assert_eq!(visible(&mut app), vec![], "{label}");
        }
        // A token made with this database's key by someone else's clock is still honoured: the
        // forge helper itself is correct.
        assert_eq!(
            one::<i64>(
                &mut app,
                &format!(
                    "SELECT tenant.set_tenant_signed('{}')",
                    forge(&key, key_id, 2, now + 300)
                )
            ),
            2
        );
        // After rotation without grace, old tokens stop working.
        admin
            .batch_execute("SELECT tenant.rotate_signing_key('0 seconds')")
            .unwrap();
        expect_sqlstate(
            app.query_one("SELECT tenant.set_tenant_signed($1)", &[&good]),
            "42501",
        );
        let fresh: String = one(&mut admin, "SELECT tenant.sign_context('acme')");
        app.query_one("SELECT tenant.set_tenant_signed($1)", &[&fresh])
            .unwrap();
        assert_eq!(visible(&mut app), ACME);
    }

    #[test]
    fn the_key_is_unreadable_and_only_admins_sign() {
        let (db, _admin, mut app) = signed_db("sig_key");
        for role in ["app", "admin", "support", "nobody"] {
            let mut c = db.connect(role);
            expect_sqlstate(
                c.batch_execute("SELECT secret FROM tenant.signing_keys"),
                "42501",
            );
        }
        expect_sqlstate(
            app.batch_execute("SELECT tenant.sign_context('acme')"),
            "42501",
        );
        let mut admin = db.connect("admin");
        expect_sqlstate(
            admin.batch_execute("SELECT tenant.sign_context('acme', '-5 minutes')"),
            "22023",
        );
        expect_sqlstate(
            admin.batch_execute("SELECT tenant.sign_context('nope')"),
            "22023",
        );
    }
}

mod cross_tenant {
    use super::*;

    #[test]
    fn members_see_and_write_all_tenants_and_every_entry_and_exit_is_audited() {
        let db = TestDb::new("cross_ok").with_projects();
        let mut support = db.connect("support");
        assert_eq!(visible(&mut support), vec![]);
        support
            .batch_execute("SELECT tenant.enter_cross_tenant('ticket 1234')")
            .unwrap();
        let mut all = ACME.to_vec();
        all.extend(GLOBEX);
        assert_eq!(visible(&mut support), all);
        support
            .batch_execute("UPDATE public.projects SET name = name || '!' WHERE id = 200")
            .unwrap();
        support
            .batch_execute("SELECT tenant.exit_cross_tenant()")
            .unwrap();
        assert_eq!(visible(&mut support), vec![]);
        let mut su = db.superuser();
        let rows = su
            .query(
                "SELECT action, session_role::text, detail->>'reason' FROM tenant.audit_log \
                 WHERE action IN ('cross_tenant_entered', 'cross_tenant_left') ORDER BY id",
                &[],
            )
            .unwrap();
        let got: Vec<(String, String, Option<String>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "cross_tenant_entered".into(),
                    db.role("support"),
                    Some("ticket 1234".into())
                ),
                ("cross_tenant_left".into(), db.role("support"), None),
            ]
        );
        let log = cluster().server_log();
        assert!(
            log.contains(&format!(
                "cross-tenant mode entered by role \"{}\"",
                db.role("support")
            )),
            "server log"
        );
        // The application role can neither change nor delete the audit trail.
        let mut app = db.connect("app");
        for sql in [
            "UPDATE tenant.audit_log SET detail = NULL",
            "DELETE FROM tenant.audit_log",
            "TRUNCATE tenant.audit_log",
            "INSERT INTO tenant.audit_log (action) VALUES ('fake')",
        ] {
            expect_sqlstate(app.batch_execute(sql), "42501");
        }
        let mut support = db.connect("support");
        expect_sqlstate(
            support.batch_execute("DELETE FROM tenant.audit_log"),
            "42501",
        );
        assert_eq!(
            one::<i64>(
                &mut su,
                "SELECT count(*) FROM tenant.audit_log WHERE action IN ('cross_tenant_entered', 'cross_tenant_left')"
            ),
            2
        );
    }

    #[test]
    fn non_members_and_empty_reasons_are_refused() {
        let db = TestDb::new("cross_bad").with_projects();
        let mut app = app_in_acme(&db);
        expect_sqlstate(
            app.batch_execute("SELECT tenant.enter_cross_tenant('because')"),
            "42501",
        );
        still_acme_only(&db, &mut app);
        let mut support = db.connect("support");
        for sql in [
            "SELECT tenant.enter_cross_tenant('')",
            "SELECT tenant.enter_cross_tenant('   ')",
            "SELECT tenant.enter_cross_tenant(NULL)",
        ] {
            expect_sqlstate(support.batch_execute(sql), "22023");
            assert!(!one::<bool>(
                &mut support,
                "SELECT tenant.cross_tenant_active()"
            ));
            assert_eq!(visible(&mut support), vec![]);
        }
        let mut su = db.superuser();
        assert_eq!(
            one::<i64>(
                &mut su,
                "SELECT count(*) FROM tenant.audit_log WHERE action LIKE 'cross_tenant%'"
            ),
            0
        );
    }
}

/// Issue 10: rules that cannot be switched off, bindings that follow changes, cross-tenant mode
/// that no one inherits, single-use tokens, no existence oracle. Every case runs twice: on the
/// shared cluster (library loaded on first use) and on one with `shared_preload_libraries`.
mod hardening {
    use super::signed::{forge_with, fresh_id};
    use super::*;
    use qft_integration_tests::postgres::error::DbError;

    macro_rules! both_clusters {
        ($($name:ident),* $(,)?) => {
            mod plain {
                $(#[test] fn $name() { super::$name(qft_integration_tests::cluster()) })*
            }
            mod preloaded {
                $(#[test] fn $name() { super::$name(qft_integration_tests::preloaded_cluster()) })*
            }
        };
    }

    both_clusters!(
        registry_rules_cannot_be_shadowed_by_startup_options_or_placeholders,
        alter_role_settings_cannot_be_shadowed_either,
        a_binding_survives_forged_settings_and_set_tenant_never_lies,
        bound_sessions_follow_rebind_unbind_suspension_and_drop,
        set_session_authorization_ends_the_previous_roles_context,
        cross_tenant_mode_has_the_context_scopes_and_is_never_inherited,
        bound_tenant_superusers_stay_in_their_tenant_unless_a_superuser_allows_it,
        a_token_works_once_and_never_in_another_session,
        a_token_is_spent_only_by_a_transaction_that_commits,
        tokens_issued_before_the_used_token_table_was_emptied_are_refused,
        rotate_zero_retires_every_earlier_key,
        pg_read_all_data_cannot_read_the_signing_keys,
        refused_roles_cannot_tell_existing_from_unknown_tenants,
        null_flags_settings_display_and_local_warnings,
        the_checker_reports_pooled_roles_that_can_hold_session_contexts,
        parallel_workers_see_the_leaders_cross_tenant_mode_and_context,
    );

    /// The owner-tagged values reach parallel workers (which have other pids): a worker sees the
    /// leader's context and the leader's cross-tenant entry, nothing more and nothing less.
    fn parallel_workers_see_the_leaders_cross_tenant_mode_and_context(c: &'static Cluster) {
        let db = db_on(c, "par_cross");
        let mut su = db.superuser();
        su.batch_execute(
            "INSERT INTO public.projects SELECT 1 + g % 2, 1000 + g, 'bulk' FROM generate_series(1, 20000) g; \
             ANALYZE public.projects",
        )
        .unwrap();
        let force = "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
                     SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2; \
                     SET enable_indexscan = off; SET enable_bitmapscan = off";
        let count = |c: &mut Client| -> (i64, String) {
            let plan: Vec<String> = c
                .query(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM public.projects",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (
                one(c, "SELECT count(*) FROM public.projects"),
                plan.join("\n"),
            )
        };
        let mut support = db.connect("support");
        support.batch_execute(force).unwrap();
        support
            .batch_execute("SELECT tenant.enter_cross_tenant('parallel audit')")
            .unwrap();
        let (n, plan) = count(&mut support);
        assert!(plan.contains("Workers Launched"), "{plan}");
        assert_eq!(n, 6 + 20000);
        support
            .batch_execute("SELECT tenant.exit_cross_tenant()")
            .unwrap();
        assert_eq!(count(&mut support).0, 0);
        // A superuser-connected pooler's client: the context is tied to the session user, and
        // the workers agree with the leader.
        let mut pooler = db.superuser();
        pooler.batch_execute(force).unwrap();
        pooler
            .batch_execute(&format!(
                "SET SESSION AUTHORIZATION {}; SELECT tenant.set_tenant('acme')",
                db.role("app")
            ))
            .unwrap();
        assert_eq!(count(&mut pooler).0, 3 + 10000);
        pooler
            .batch_execute(&format!("SET SESSION AUTHORIZATION {}", db.role("app2")))
            .unwrap();
        let (n, plan) = count(&mut pooler);
        assert!(plan.contains("Workers Launched"), "{plan}");
        assert_eq!(n, 0);
    }

    fn db_on(c: &'static Cluster, label: &str) -> TestDb {
        TestDb::new_on(c, label).with_projects()
    }

    fn tenant_of(client: &mut Client) -> Option<i64> {
        one(client, "SELECT tenant.current_tenant_id()")
    }

    /// The error of `result`: its SQLSTATE and message.
    #[track_caller]
    fn refusal<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> (String, String) {
        let e = result.expect_err("expected an error");
        let msg = e
            .as_db_error()
            .map(DbError::message)
            .unwrap_or_default()
            .to_string();
        (sqlstate(&e), msg)
    }

    fn rules(db: &TestDb, short: &str, args: &str) {
        db.superuser()
            .batch_execute(&format!(
                "SELECT tenant.set_role_rules('{}', {args})",
                db.role(short)
            ))
            .unwrap();
    }

    fn token(db: &TestDb, tenant: &str) -> String {
        let mut admin = db.connect("admin");
        one(
            &mut admin,
            &format!("SELECT tenant.sign_context('{tenant}')"),
        )
    }

    /// `set_tenant_signed(t)` as `short` in a new session on another thread: the tenant it
    /// entered or the SQLSTATE, and the projects that session then sees.
    type Use = (Result<i64, String>, Vec<(i64, i32)>);
    fn use_elsewhere(db: &TestDb, short: &str, t: &str) -> std::thread::JoinHandle<Use> {
        let (cluster, name, role, t) = (db.cluster, db.name.clone(), db.role(short), t.to_string());
        std::thread::spawn(move || {
            let mut c = qft_integration_tests::postgres::Client::connect(
                &cluster.conninfo(&role, &name),
                qft_integration_tests::postgres::NoTls,
            )
            .unwrap();
            let r = c
                .query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
                .map(|r| r.get::<_, i64>(0))
                .map_err(|e| sqlstate(&e));
            (r, visible(&mut c))
        })
    }

    /// Waits, on server state, until a session of `short` other than `holder` waits on a lock.
    fn wait_until_blocked(db: &TestDb, short: &str, holder: &mut Client) {
        let holder_pid: i32 = one(holder, "SELECT pg_backend_pid()");
        let mut su = db.superuser();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while one::<i64>(
            &mut su,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND usename = '{}' AND wait_event_type = 'Lock' AND pid <> {holder_pid}",
                db.role(short)
            ),
        ) == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the second user never waited"
            );
            std::thread::yield_now();
        }
    }

    /// Connects as `short` with `options`, or with a placeholder SET as the session's first
    /// statement (before the library is loaded, when it is not preloaded).
    /// None when the server refused the connection (42501: the library is preloaded, so the
    /// startup option was checked and refused), which is the attack failing too.
    fn attacker(db: &TestDb, short: &str, forged: &str, how: &str) -> Option<Client> {
        match how {
            "pgoptions" => match db.try_connect(short, &format!("-c {forged}")) {
                Ok(c) => Some(c),
                Err(e) => {
                    assert_eq!(sqlstate(&e), "42501", "{e}");
                    None
                }
            },
            _ => {
                let mut c = db.connect(short);
                // Refused (42501) when the library is loaded; a placeholder otherwise.
                let _ = c.batch_execute(&format!("SET {forged}"));
                Some(c)
            }
        }
    }

    /// With `app` signed-only and `app2` transaction-scoped (however the DBA said so), a client
    /// forging the settings by startup option or placeholder changes neither rule.
    fn rules_hold_against_forged_settings(db: &TestDb) {
        for how in ["pgoptions", "placeholder"] {
            let Some(mut app) = attacker(
                db,
                "app",
                "qualityfoundry_tenant.require_signed_context=off",
                how,
            ) else {
                continue;
            };
            let (code, msg) = refusal(app.query_one("SELECT tenant.set_tenant('acme')", &[]));
            assert_eq!(code, "42501", "{how}: {msg}");
            assert!(msg.contains("signed context token"), "{how}: {msg}");
            assert_eq!(visible(&mut app), vec![], "{how}");
            assert_eq!(tenant_of(&mut app), None);
            // The sanctioned way still works.
            let t = token(db, "acme");
            app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
                .unwrap();
            assert_eq!(visible(&mut app), ACME);

            let Some(mut app2) = attacker(
                db,
                "app2",
                "qualityfoundry_tenant.context_scope=session",
                how,
            ) else {
                continue;
            };
            app2.batch_execute("SELECT tenant.set_tenant('globex')")
                .unwrap();
            assert_eq!(visible(&mut app2), vec![], "{how}: the context was local");
            app2.batch_execute("BEGIN; SELECT tenant.set_tenant('globex');")
                .unwrap();
            assert_eq!(visible(&mut app2), GLOBEX);
            app2.batch_execute("COMMIT").unwrap();
            assert_eq!(visible(&mut app2), vec![], "{how}: gone after COMMIT");
        }
        assert_eq!(db.all_projects().len(), 6);
    }

    fn registry_rules_cannot_be_shadowed_by_startup_options_or_placeholders(c: &'static Cluster) {
        let db = db_on(c, "rules_forge");
        rules(&db, "app", "require_signed_context => true");
        rules(&db, "app2", "context_scope => 'transaction'");
        rules_hold_against_forged_settings(&db);
    }

    /// The report: the DBA's ALTER ROLE ... SET lost to a startup option when the
    /// library is not preloaded. The stored setting is read from the catalog, so it holds too.
    fn alter_role_settings_cannot_be_shadowed_either(c: &'static Cluster) {
        let db = db_on(c, "rules_alter");
        let mut su = db.superuser();
        su.batch_execute(&format!(
            "ALTER ROLE {} IN DATABASE {} SET qualityfoundry_tenant.require_signed_context = on;
             ALTER ROLE {} SET qualityfoundry_tenant.context_scope = 'transaction';",
            db.role("app"),
            db.name,
            db.role("app2")
        ))
        .unwrap();
        rules_hold_against_forged_settings(&db);
        su.batch_execute(&format!("ALTER ROLE {} RESET ALL", db.role("app2")))
            .unwrap();
    }

    fn bind(db: &TestDb, short: &str, tenant: &str) {
        db.connect("admin")
            .batch_execute(&format!(
                "SELECT tenant.bind_role('{}', '{tenant}')",
                db.role(short)
            ))
            .unwrap();
    }

    fn a_binding_survives_forged_settings_and_set_tenant_never_lies(c: &'static Cluster) {
        let db = db_on(c, "bind_forge");
        db.superuser()
            .batch_execute(&format!("GRANT tenant_user TO {}", db.role("bi")))
            .unwrap();
        bind(&db, "bi", "globex");
        for how in ["pgoptions", "placeholder"] {
            for forged in [
                "qualityfoundry_tenant.tenant_id=1",
                "qualityfoundry_tenant.tenant_id=",
            ] {
                let Some(mut bi) = attacker(&db, "bi", forged, how) else {
                    continue;
                };
                assert_eq!(visible(&mut bi), GLOBEX, "{how} {forged}");
                // The setter answers with the context it really is.
                assert_eq!(one::<i64>(&mut bi, "SELECT tenant.set_tenant('globex')"), 2);
                assert_eq!(tenant_of(&mut bi), Some(2));
                expect_sqlstate(
                    bi.batch_execute("SELECT tenant.set_tenant('acme')"),
                    "42501",
                );
                assert_eq!(visible(&mut bi), GLOBEX);
            }
        }
        // The binding is in the registry only: no role setting was written.
        let mut su = db.superuser();
        assert_eq!(
            one::<i64>(
                &mut su,
                &format!(
                    "SELECT count(*) FROM pg_db_role_setting WHERE setrole = '{}'::regrole",
                    db.role("bi")
                )
            ),
            0
        );
        assert_eq!(db.all_projects().len(), 6);
    }

    fn bound_sessions_follow_rebind_unbind_suspension_and_drop(c: &'static Cluster) {
        let db = db_on(c, "bind_follow");
        bind(&db, "bi", "globex");
        let mut bi = db.connect("bi");
        assert_eq!(visible(&mut bi), GLOBEX);
        let mut admin = db.connect("admin");
        bind(&db, "bi", "acme");
        assert_eq!(visible(&mut bi), ACME, "rebinding reaches the open session");
        bi.batch_execute("DISCARD ALL").unwrap();
        assert_eq!(visible(&mut bi), ACME);
        admin
            .batch_execute("SELECT tenant.suspend_tenant('acme')")
            .unwrap();
        assert_eq!(visible(&mut bi), vec![]);
        admin
            .batch_execute("SELECT tenant.resume_tenant('acme')")
            .unwrap();
        assert_eq!(visible(&mut bi), ACME);
        admin
            .batch_execute(&format!("SELECT tenant.unbind_role('{}')", db.role("bi")))
            .unwrap();
        assert_eq!(
            visible(&mut bi),
            vec![],
            "unbinding reaches the open session"
        );
        assert_eq!(tenant_of(&mut bi), None);
        bind(&db, "bi", "globex");
        assert_eq!(visible(&mut bi), GLOBEX);
        let mut su = db.superuser();
        su.batch_execute("SELECT tenant.drop_tenant('globex', delete_rows => true)")
            .unwrap();
        assert_eq!(
            visible(&mut bi),
            vec![],
            "a dropped tenant's binding is gone"
        );
        assert_eq!(
            one::<i64>(&mut su, "SELECT count(*) FROM tenant.role_bindings"),
            0
        );
    }

    fn set_session_authorization_ends_the_previous_roles_context(c: &'static Cluster) {
        let db = db_on(c, "sess_auth");
        bind(&db, "bi", "globex");
        // What a pooler connected as a superuser does between clients.
        let mut pooler = db.superuser();
        pooler
            .batch_execute(&format!("SET SESSION AUTHORIZATION {}", db.role("app")))
            .unwrap();
        pooler
            .batch_execute("SELECT tenant.set_tenant('acme')")
            .unwrap();
        assert_eq!(visible(&mut pooler), ACME);
        pooler
            .batch_execute(&format!("SET SESSION AUTHORIZATION {}", db.role("app2")))
            .unwrap();
        assert_eq!(
            visible(&mut pooler),
            vec![],
            "app2 does not inherit app's tenant"
        );
        assert_eq!(tenant_of(&mut pooler), None);
        pooler
            .batch_execute(&format!("SET SESSION AUTHORIZATION {}", db.role("bi")))
            .unwrap();
        assert_eq!(
            visible(&mut pooler),
            GLOBEX,
            "bi is in its bound tenant at once"
        );
        pooler
            .batch_execute(&format!("SET SESSION AUTHORIZATION {}", db.role("app2")))
            .unwrap();
        assert_eq!(visible(&mut pooler), vec![], "and app2 does not keep bi's");
        pooler.batch_execute("RESET SESSION AUTHORIZATION").unwrap();
        assert_eq!(db.all_projects().len(), 6);
    }

    fn cross_active(c: &mut Client) -> bool {
        one(c, "SELECT tenant.cross_tenant_active()")
    }

    fn all_rows() -> Vec<(i64, i32)> {
        let mut all = ACME.to_vec();
        all.extend(GLOBEX);
        all
    }

    fn cross_tenant_mode_has_the_context_scopes_and_is_never_inherited(c: &'static Cluster) {
        let db = db_on(c, "cross_scope");
        let mut support = db.connect("support");
        support.batch_execute("BEGIN").unwrap();
        support
            .batch_execute("SELECT tenant.enter_cross_tenant('ticket 1', is_local => true)")
            .unwrap();
        assert_eq!(visible(&mut support), all_rows());
        support.batch_execute("COMMIT").unwrap();
        assert!(!cross_active(&mut support), "local entry ends with COMMIT");
        assert_eq!(visible(&mut support), vec![]);
        // Session scope: gone after DISCARD ALL, RESET ALL and SET SESSION AUTHORIZATION.
        for reset in ["DISCARD ALL", "RESET ALL"] {
            support
                .batch_execute("SELECT tenant.enter_cross_tenant('ticket 2')")
                .unwrap();
            assert!(cross_active(&mut support));
            support.batch_execute(reset).unwrap();
            assert!(!cross_active(&mut support), "{reset}");
            assert_eq!(visible(&mut support), vec![]);
        }
        let mut su = db.superuser();
        su.batch_execute(&format!("GRANT tenant_superuser TO {}", db.role("app2")))
            .unwrap();
        let mut pooler = db.superuser();
        pooler
            .batch_execute(&format!(
                "SET SESSION AUTHORIZATION {}; SELECT tenant.enter_cross_tenant('ticket 3')",
                db.role("support")
            ))
            .unwrap();
        assert_eq!(visible(&mut pooler), all_rows());
        pooler
            .batch_execute(&format!("SET SESSION AUTHORIZATION {}", db.role("app2")))
            .unwrap();
        assert!(
            !cross_active(&mut pooler),
            "another session user does not inherit it"
        );
        assert_eq!(visible(&mut pooler), vec![]);
        // A value that did not come from enter_cross_tenant in this session is not honoured,
        // and the plain "on" is refused outright.
        // (The library is loaded in this backend first, so the value is checked.)
        let support_oid: u32 = one(
            &mut su,
            &format!(
                "SELECT '{}'::regrole::oid FROM tenant.current_tenant_id() x",
                db.role("support")
            ),
        );
        expect_sqlstate(
            su.batch_execute(&format!(
                "ALTER ROLE {} IN DATABASE {} SET qualityfoundry_tenant.cross_tenant = on",
                db.role("support"),
                db.name
            )),
            "22023",
        );
        su.batch_execute(&format!(
            "ALTER ROLE {} IN DATABASE {} SET qualityfoundry_tenant.cross_tenant = '1.1.{support_oid}'",
            db.role("support"),
            db.name
        ))
        .unwrap();
        let mut preset = db.connect("support");
        assert!(!cross_active(&mut preset));
        assert_eq!(visible(&mut preset), vec![]);
        // context_scope = transaction makes it local.
        rules(&db, "support", "context_scope => 'transaction'");
        let mut support = db.connect("support");
        support
            .batch_execute("BEGIN; SELECT tenant.enter_cross_tenant('ticket 4');")
            .unwrap();
        assert_eq!(visible(&mut support), all_rows());
        support.batch_execute("COMMIT").unwrap();
        assert!(!cross_active(&mut support));
        expect_sqlstate(
            support.batch_execute("SELECT tenant.enter_cross_tenant('x', NULL)"),
            "22004",
        );
        assert_eq!(db.all_projects().len(), 6);
    }

    fn bound_tenant_superusers_stay_in_their_tenant_unless_a_superuser_allows_it(
        c: &'static Cluster,
    ) {
        let db = db_on(c, "cross_bound");
        bind(&db, "support", "acme");
        let mut support = db.connect("support");
        assert_eq!(visible(&mut support), ACME);
        let msg = expect_sqlstate(
            support.batch_execute("SELECT tenant.enter_cross_tenant('escape')"),
            "42501",
        );
        assert!(msg.contains("bound"), "{msg}");
        assert!(!cross_active(&mut support));
        assert_eq!(visible(&mut support), ACME);
        let mut su = db.superuser();
        assert_eq!(
            one::<i64>(
                &mut su,
                "SELECT count(*) FROM tenant.audit_log WHERE action = 'cross_tenant_entered'"
            ),
            0
        );
        // A tenant_admin may not grant the allowance; a superuser may.
        let bind_allowing = format!(
            "SELECT tenant.bind_role('{}', 'acme', allow_cross_tenant => true)",
            db.role("support")
        );
        expect_sqlstate(db.connect("admin").batch_execute(&bind_allowing), "42501");
        assert!(!one::<bool>(
            &mut su,
            "SELECT allow_cross_tenant FROM tenant.role_bindings"
        ));
        su.batch_execute(&bind_allowing).unwrap();
        support
            .batch_execute("SELECT tenant.enter_cross_tenant('allowed by the DBA')")
            .unwrap();
        assert_eq!(visible(&mut support), all_rows());
        support
            .batch_execute("SELECT tenant.exit_cross_tenant()")
            .unwrap();
        assert_eq!(visible(&mut support), ACME);
    }

    fn a_token_works_once_and_never_in_another_session(c: &'static Cluster) {
        let db = db_on(c, "tok_replay");
        let t = token(&db, "acme");
        let mut app = db.connect("app");
        app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
            .unwrap();
        assert_eq!(visible(&mut app), ACME);
        // Another session (here another tenant's login, which saw the token in pg_stat_activity).
        let mut other = db.connect_in("app2", "globex");
        let (code, msg) = refusal(other.query_one("SELECT tenant.set_tenant_signed($1)", &[&t]));
        assert_eq!(code, "42501", "{msg}");
        assert_eq!(visible(&mut other), GLOBEX, "its context is unchanged");
        // The same session cannot reuse it either (a pooled successor would be this session).
        app.batch_execute("SELECT tenant.clear_tenant()").unwrap();
        expect_sqlstate(
            app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t]),
            "42501",
        );
        assert_eq!(visible(&mut app), vec![]);
        // Concurrent first uses: exactly one wins.
        let t = token(&db, "globex");
        let mut first = db.connect("app");
        first.batch_execute("BEGIN").unwrap();
        first
            .query_one("SELECT tenant.set_tenant_signed($1, true)", &[&t])
            .unwrap();
        let racer = use_elsewhere(&db, "app2", &t);
        // The racer is blocked on the first user's row.
        wait_until_blocked(&db, "app2", &mut first);
        first.batch_execute("COMMIT").unwrap();
        assert_eq!(racer.join().unwrap().0, Err("42501".to_string()));
        assert_eq!(db.all_projects().len(), 6);
    }

    /// A use is recorded with the transaction that made it: a rolled-back use (also one a
    /// concurrent user waited for) leaves the token usable, a read-only transaction cannot use it
    /// at all (25006, nothing recorded), and two uses in one transaction are one too many.
    fn a_token_is_spent_only_by_a_transaction_that_commits(c: &'static Cluster) {
        let db = db_on(c, "tok_abort");
        let t = token(&db, "acme");
        let mut app = db.connect("app");
        let (code, msg) = refusal(app.batch_execute(&format!(
            "BEGIN READ ONLY; SELECT tenant.set_tenant_signed('{t}', true)"
        )));
        assert_eq!(code, "25006", "{msg}");
        assert!(msg.contains("read-only"), "{msg}");
        app.batch_execute("ROLLBACK").unwrap();
        assert_eq!(visible(&mut app), vec![]);
        // Used in a transaction that rolls back: still unused.
        app.batch_execute("BEGIN").unwrap();
        app.query_one("SELECT tenant.set_tenant_signed($1, true)", &[&t])
            .unwrap();
        assert_eq!(visible(&mut app), ACME);
        app.batch_execute("ROLLBACK").unwrap();
        // A second session waits for a first use that then rolls back, and gets in.
        let mut first = db.connect("app");
        first.batch_execute("BEGIN").unwrap();
        first
            .query_one("SELECT tenant.set_tenant_signed($1, true)", &[&t])
            .unwrap();
        let racer = use_elsewhere(&db, "app", &t);
        wait_until_blocked(&db, "app", &mut first);
        first.batch_execute("ROLLBACK").unwrap();
        let (won, rows) = racer.join().unwrap();
        assert_eq!(won, Ok(1));
        assert_eq!(rows, ACME);
        // Now spent: refused everywhere, also twice in one transaction.
        expect_sqlstate(
            app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t]),
            "42501",
        );
        let t = token(&db, "acme");
        app.batch_execute("BEGIN").unwrap();
        app.query_one("SELECT tenant.set_tenant_signed($1, true)", &[&t])
            .unwrap();
        expect_sqlstate(
            app.query_one("SELECT tenant.set_tenant_signed($1, true)", &[&t]),
            "42501",
        );
        app.batch_execute("ROLLBACK").unwrap();
        let mut su = db.superuser();
        let rows: i64 = one(
            &mut su,
            "SELECT count(*) FROM tenant.used_tokens WHERE token_id <> '00000000-0000-0000-0000-000000000000'",
        );
        assert_eq!(rows, 1, "only the committed use is recorded");
        // The use is written into the primary key alone: an index or a trigger added to the
        // table would be left wrong, so a use is refused (55000) while one is there, nothing
        // recorded, and the token still usable once it is gone.
        let t = token(&db, "acme");
        for (add, drop) in [
            (
                "CREATE INDEX used_tokens_extra ON tenant.used_tokens (expires_at)",
                "DROP INDEX tenant.used_tokens_extra",
            ),
            (
                "CREATE FUNCTION public.planted() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
                 CREATE TRIGGER planted AFTER INSERT ON tenant.used_tokens FOR EACH ROW EXECUTE FUNCTION public.planted()",
                "DROP TRIGGER planted ON tenant.used_tokens; DROP FUNCTION public.planted()",
            ),
        ] {
            su.batch_execute(add).unwrap();
            let (code, msg) = refusal(app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t]));
            assert_eq!(code, "55000", "{msg}");
            assert!(msg.contains("besides its primary key"), "{msg}");
            assert_eq!(tenant_of(&mut app), None);
            su.batch_execute(drop).unwrap();
        }
        let recorded: i64 = one(&mut su, "SELECT count(*) FROM tenant.used_tokens");
        assert_eq!(recorded, 2, "the marker row and the one committed use");
        assert_eq!(
            app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
                .unwrap()
                .get::<_, i64>(0),
            one::<i64>(&mut su, "SELECT id FROM tenant.tenants WHERE slug = 'acme'")
        );
        assert_eq!(db.all_projects().len(), 6);
    }

    fn key(db: &TestDb) -> (i32, Vec<u8>) {
        let r = db
            .superuser()
            .query_one(
                "SELECT id, secret FROM tenant.signing_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    }

    fn tokens_issued_before_the_used_token_table_was_emptied_are_refused(c: &'static Cluster) {
        let db = db_on(c, "tok_crash");
        token(&db, "acme"); // makes the key
        let (key_id, secret) = key(&db);
        let mut su = db.superuser();
        let now: i64 = one(&mut su, "SELECT extract(epoch FROM now())::bigint");
        // What a crash does to the unlogged table, then a new backend.
        su.batch_execute("TRUNCATE tenant.used_tokens").unwrap();
        let old = forge_with(&secret, key_id, 1, now - 30, now + 300, &fresh_id());
        let mut app = db.connect("app");
        let (code, msg) = refusal(app.query_one("SELECT tenant.set_tenant_signed($1)", &[&old]));
        assert_eq!(code, "42501", "{msg}");
        assert_eq!(visible(&mut app), vec![]);
        // Tokens issued afterwards work.
        let fresh = token(&db, "acme");
        app.query_one("SELECT tenant.set_tenant_signed($1)", &[&fresh])
            .unwrap();
        assert_eq!(visible(&mut app), ACME);
        // 0.1.0's v1 tokens (no token id) are refused.
        let v1 = format!("v1.{key_id}.1.{}.AAAA", now + 300);
        expect_sqlstate(
            app.query_one("SELECT tenant.set_tenant_signed($1)", &[&v1]),
            "42501",
        );
        assert_eq!(visible(&mut app), ACME);
    }

    fn rotate_zero_retires_every_earlier_key(c: &'static Cluster) {
        let db = db_on(c, "tok_rotate");
        let mut admin = db.connect("admin");
        let sign =
            |admin: &mut Client| -> String { one(admin, "SELECT tenant.sign_context('acme')") };
        let two_ago = sign(&mut admin);
        admin
            .batch_execute("SELECT tenant.rotate_signing_key()")
            .unwrap();
        let one_ago = sign(&mut admin);
        admin
            .batch_execute("SELECT tenant.rotate_signing_key('0')")
            .unwrap();
        let mut app = db.connect("app");
        for (label, t) in [
            ("two rotations ago", &two_ago),
            ("one rotation ago", &one_ago),
        ] {
            let (code, msg) = refusal(app.query_one("SELECT tenant.set_tenant_signed($1)", &[t]));
            assert_eq!(code, "42501", "{label}");
            assert!(
                msg.contains("invalid tenant context token"),
                "{label}: {msg}"
            );
            assert_eq!(visible(&mut app), vec![]);
        }
        let mut su = db.superuser();
        assert_eq!(
            one::<i64>(
                &mut su,
                "SELECT count(*) FROM tenant.signing_keys WHERE retired_at IS NULL OR retired_at > now()"
            ),
            1
        );
        expect_sqlstate(
            admin.batch_execute("SELECT tenant.rotate_signing_key('-1 minute')"),
            "22023",
        );
        let t = sign(&mut admin);
        app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
            .unwrap();
        assert_eq!(visible(&mut app), ACME);
    }

    fn pg_read_all_data_cannot_read_the_signing_keys(c: &'static Cluster) {
        let db = db_on(c, "key_read");
        token(&db, "acme");
        let mut su = db.superuser();
        su.batch_execute(&format!("GRANT pg_read_all_data TO {}", db.role("nobody")))
            .unwrap();
        let mut reader = db.connect("nobody");
        assert_eq!(
            one::<i64>(&mut reader, "SELECT count(*) FROM tenant.signing_keys"),
            0
        );
        assert!(one::<i64>(&mut su, "SELECT count(*) FROM tenant.signing_keys") >= 1);
        let problems = |db: &TestDb| -> Vec<(String, String, String)> {
            db.connect("admin")
                .query(
                    "SELECT object, problem, fix FROM tenant.check_isolation() \
                     WHERE problem LIKE '%tenant contexts%'",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        };
        assert_eq!(
            problems(&db),
            vec![],
            "RLS keeps the reader out: nothing to report"
        );
        // With BYPASSRLS the reader could read them: the checker says so, and its fix works.
        su.batch_execute(&format!("ALTER ROLE {} BYPASSRLS", db.role("nobody")))
            .unwrap();
        let found = problems(&db);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, format!("role {}", db.role("nobody")));
        su.batch_execute(&found[0].2).unwrap();
        assert_eq!(problems(&db), vec![]);
        let mut reader = db.connect("nobody");
        assert_eq!(
            one::<i64>(&mut reader, "SELECT count(*) FROM tenant.signing_keys"),
            0
        );
        // Row security switched off is reported too.
        su.batch_execute("ALTER TABLE tenant.signing_keys NO FORCE ROW LEVEL SECURITY")
            .unwrap();
        let found = problems(&db);
        assert_eq!(found.len(), 1, "{found:?}");
        su.batch_execute(&found[0].2).unwrap();
        assert_eq!(problems(&db), vec![]);
    }

    fn refused_roles_cannot_tell_existing_from_unknown_tenants(c: &'static Cluster) {
        let db = db_on(c, "oracle");
        let mut su = db.superuser();
        su.batch_execute(&format!("GRANT tenant_user TO {}", db.role("bi")))
            .unwrap();
        bind(&db, "bi", "globex");
        rules(&db, "app", "require_signed_context => true");
        for short in ["bi", "app", "nobody"] {
            let mut c = db.connect(short);
            let answers: Vec<(String, String)> = [
                "SELECT tenant.set_tenant('acme')",
                "SELECT tenant.set_tenant('nope')",
                "SELECT tenant.set_tenant('1')",
                "SELECT tenant.set_tenant('999')",
                "SELECT tenant.set_tenant(1::bigint)",
                "SELECT tenant.set_tenant(999::bigint)",
            ]
            .iter()
            .map(|sql| refusal(c.query_one(*sql, &[])))
            .collect();
            assert!(
                answers.iter().all(|a| a == &answers[0]),
                "{short} can tell tenants apart: {answers:#?}"
            );
            assert_eq!(answers[0].0, "42501", "{short}");
        }
        assert_eq!(db.all_projects().len(), 6);
    }

    fn null_flags_settings_display_and_local_warnings(c: &'static Cluster) {
        let db = db_on(c, "small");
        let mut app = db.connect("app");
        for sql in [
            "SELECT tenant.set_tenant('acme', NULL)",
            "SELECT tenant.set_tenant(1::bigint, NULL)",
        ] {
            expect_sqlstate(app.batch_execute(sql), "22004");
            assert_eq!(visible(&mut app), vec![]);
        }
        let t = token(&db, "acme");
        expect_sqlstate(
            app.query_one("SELECT tenant.set_tenant_signed($1, NULL)", &[&t]),
            "22004",
        );
        // Refused with NULL, so the token was not spent.
        app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
            .unwrap();
        assert_eq!(visible(&mut app), ACME);
        let mut su = db.superuser();
        su.batch_execute(&format!(
            "ALTER ROLE {} IN DATABASE {} SET qualityfoundry_tenant.context_scope = transaction",
            db.role("app2"),
            db.name
        ))
        .unwrap();
        let mut app2 = db.connect("app2");
        app2.batch_execute("SELECT tenant.current_tenant_id()")
            .unwrap(); // loads the library
        assert_eq!(
            one::<String>(&mut app2, "SHOW qualityfoundry_tenant.context_scope"),
            "transaction"
        );
        assert_eq!(
            one::<String>(&mut app2, "SHOW qualityfoundry_tenant.auto_isolate"),
            "off"
        );
        // The context displays as the bare id.
        assert_eq!(
            one::<String>(&mut app, "SHOW qualityfoundry_tenant.tenant_id"),
            "1"
        );
        // A local switch outside a transaction block: a WARNING, as for SET LOCAL.
        let out = db
            .cluster
            .command("psql", &db.role("app"), &db.name)
            .args(["-X", "-c", "SELECT tenant.set_tenant('acme', true)"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("WARNING:") && stderr.contains("outside a transaction block"),
            "{stderr}"
        );
        let out = db
            .cluster
            .command("psql", &db.role("app"), &db.name)
            .args([
                "-X",
                "-c",
                "BEGIN",
                "-c",
                "SELECT tenant.set_tenant('acme', true)",
                "-c",
                "COMMIT",
            ])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("WARNING"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn the_checker_reports_pooled_roles_that_can_hold_session_contexts(c: &'static Cluster) {
        let db = db_on(c, "chk_pool");
        let report = |db: &TestDb| -> Vec<(String, String)> {
            db.connect("admin")
                .query(
                    "SELECT object, fix FROM tenant.check_isolation() WHERE problem LIKE '%session-scope%' ORDER BY 1",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        };
        assert_eq!(report(&db), vec![], "explicit rules: nothing to report");
        let mut su = db.superuser();
        for short in ["app", "support"] {
            su.batch_execute(&format!(
                "SELECT tenant.drop_role_rules('{}')",
                db.role(short)
            ))
            .unwrap();
        }
        let found = report(&db);
        let objects: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        let (app, support) = (
            format!("role {}", db.role("app")),
            format!("role {}", db.role("support")),
        );
        assert_eq!(objects, vec![app.as_str(), support.as_str()]);
        for (_, fix) in &found {
            su.batch_execute(fix).unwrap();
        }
        assert_eq!(report(&db), vec![]);
        // The fix is the safe rule: the role's session-scope set_tenant is now local.
        let mut app = db.connect("app");
        app.batch_execute("SELECT tenant.set_tenant('acme')")
            .unwrap();
        assert_eq!(visible(&mut app), vec![]);
        // A bound login role is exempt; NOLOGIN roles are not reported.
        su.batch_execute(&format!(
            "SELECT tenant.drop_role_rules('{}')",
            db.role("app")
        ))
        .unwrap();
        bind(&db, "app", "acme");
        assert_eq!(report(&db), vec![]);
        // Bad rule input changes nothing.
        let mut admin = db.connect("admin");
        for (sql, code) in [
            (
                format!(
                    "SELECT tenant.set_role_rules('{}', context_scope => 'sometimes')",
                    db.role("app2")
                ),
                "22023",
            ),
            (
                format!("SELECT tenant.set_role_rules('{}')", db.role("app2")),
                "22023",
            ),
            (
                "SELECT tenant.set_role_rules(NULL, true)".to_string(),
                "22004",
            ),
            (
                format!("SELECT tenant.drop_role_rules('{}')", db.role("bi")),
                "22023",
            ),
        ] {
            expect_sqlstate(admin.batch_execute(&sql), code);
        }
        expect_sqlstate(
            db.connect("app2").batch_execute(&format!(
                "SELECT tenant.set_role_rules('{}', require_signed_context => false)",
                db.role("app2")
            )),
            "42501",
        );
        assert_eq!(
            one::<Option<String>>(
                &mut su,
                &format!(
                    "SELECT context_scope FROM tenant.role_rules WHERE role = '{}'::regrole",
                    db.role("app2")
                )
            ),
            Some("session".to_string())
        );
    }
}
