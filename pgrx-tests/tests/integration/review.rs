//! The security review's findings, fixed end to end: legacy tables without a tenant column, two
//! contradicting superuser markers, shared system rows, and tenant B asking for tenant A's project.

use qft_integration_tests::*;

#[test]
fn the_security_review_scenario_end_to_end() {
    let db = TestDb::new("review");
    let mut su = db.superuser();
    su.batch_execute(
        "SELECT tenant.create_tenant('qualityfoundry', 'QualityFoundry (default tenant)');
         SELECT tenant.create_tenant('beta', 'Tenant B');
         CREATE TABLE public.projects (id int PRIMARY KEY, name text);
         CREATE TABLE public.rd_projects (id int PRIMARY KEY, name text);
         CREATE TABLE public.sales_contracts (id int PRIMARY KEY, amount numeric);
         CREATE TABLE public.work_orders (id int PRIMARY KEY, title text);
         INSERT INTO public.projects VALUES (100, 'Project 100'), (101, 'Project 101');
         INSERT INTO public.rd_projects VALUES (1, 'R&D 1');
         INSERT INTO public.sales_contracts VALUES (1, 1000);
         INSERT INTO public.work_orders VALUES (1, 'WO 1');
         CREATE TABLE public.users (id int PRIMARY KEY, email text, is_superuser boolean, tenant_id bigint);
         INSERT INTO public.users VALUES
             (1, 'root@qf',  true,  NULL),   -- consistent platform superuser
             (2, 'alice@qf', false, 1),      -- consistent tenant user
             (3, 'ghost@qf', false, NULL),   -- the review's bug: a normal user with no tenant
             (4, 'bob@beta', NULL,  2),      -- a NULL flag: neither superuser nor user
             (5, 'eve@qf',   true,  1);      -- a superuser pinned to a tenant
         CREATE TABLE public.api_permissions (id int PRIMARY KEY, tenant_id bigint, name text);
         INSERT INTO public.api_permissions VALUES (1, NULL, 'system.read'), (2, NULL, 'system.admin'),
                                                   (3, 2, 'beta.reports');",
    )
    .unwrap();
    let mut admin = db.connect("admin");

    // 1. Legacy tables get a tenant column, backfilled to the default tenant, and isolation.
    for t in ["projects", "rd_projects", "sales_contracts", "work_orders"] {
        admin
            .batch_execute(&format!(
                "SELECT tenant.add_tenant_column('public.{t}', 'qualityfoundry')"
            ))
            .unwrap();
    }

    // 2. Superuser consistency: first the report, then the refusal, then the constraint.
    let offenders: Vec<(String, String)> = admin
        .query("SELECT row_key, problem FROM tenant.superuser_violations('public.users') ORDER BY row_key", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        offenders.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        ["3", "4", "5"],
        "{offenders:?}"
    );
    let msg = expect_sqlstate(
        admin.batch_execute("SELECT tenant.enforce_superuser_consistency('public.users')"),
        "23514",
    );
    assert!(msg.contains('3'), "{msg}");
    su.batch_execute(
        "UPDATE public.users SET tenant_id = 1 WHERE id = 3;
         UPDATE public.users SET is_superuser = false WHERE id = 4;
         UPDATE public.users SET tenant_id = NULL WHERE id = 5;",
    )
    .unwrap();
    let name: String = one(
        &mut admin,
        "SELECT tenant.enforce_superuser_consistency('public.users')",
    );
    assert!(name.contains("consistency"), "{name}");
    expect_sqlstate(
        su.batch_execute("INSERT INTO public.users VALUES (6, 'x@qf', NULL, 1)"),
        "23514",
    );
    expect_sqlstate(
        su.batch_execute("INSERT INTO public.users VALUES (7, 'y@qf', false, NULL)"),
        "23514",
    );
    admin
        .batch_execute("SELECT tenant.enable_isolation('public.users', allow_shared_rows => true)")
        .unwrap();

    // 3. System permissions are shared read-only.
    admin
        .batch_execute(
            "SELECT tenant.enable_isolation('public.api_permissions', allow_shared_rows => true)",
        )
        .unwrap();

    // 4. The checker's findings, fixed with the SQL it suggests, until it reports nothing.
    let mut first_round = Vec::new();
    for round in 0..4 {
        // Roles and parameter privileges are cluster-wide: only this database's are ours to fix.
        let problems: Vec<(String, String, String)> = isolation_findings(&db)
            .into_iter()
            .map(|(_, object, problem, fix)| (object, problem, fix))
            .collect();
        if round == 0 {
            first_round = problems.clone();
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            round < 3,
            "check_isolation() still reports after 3 rounds of fixes: {problems:?}"
        );
        for (_, _, fix) in problems {
            su.batch_execute(&fix)
                .unwrap_or_else(|e| panic!("fix failed: {fix}: {e}"));
        }
    }
    // The legacy primary keys on id alone were existence oracles across tenants.
    assert!(
        first_round.iter().any(|p| p.0.contains("projects")),
        "{first_round:?}"
    );
    assert_eq!(isolation_findings(&db), []);

    // 5. Tenant B asks for tenant A's project 100 and gets nothing; A sees it.
    for t in ["projects", "api_permissions"] {
        su.batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON public.{t} TO {}",
            db.role("app")
        ))
        .unwrap();
    }
    let mut app = db.connect("app");
    app.batch_execute("SELECT tenant.set_tenant('beta')")
        .unwrap();
    assert_eq!(
        app.query("SELECT * FROM public.projects WHERE id = 100", &[])
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        app.execute(
            "UPDATE public.projects SET name = 'pwned' WHERE id = 100",
            &[]
        )
        .unwrap(),
        0
    );
    let perms: Vec<String> = app
        .query("SELECT name FROM public.api_permissions ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(perms, ["system.read", "system.admin", "beta.reports"]);
    assert_eq!(
        app.execute(
            "UPDATE public.api_permissions SET name = 'pwned' WHERE id = 1",
            &[]
        )
        .unwrap(),
        0
    );
    app.batch_execute("SELECT tenant.set_tenant('qualityfoundry')")
        .unwrap();
    let names: Vec<String> = app
        .query("SELECT name FROM public.projects WHERE id = 100", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["Project 100"]);
    assert_eq!(
        one::<String>(&mut su, "SELECT name FROM public.projects WHERE id = 100"),
        "Project 100"
    );
}

/// A legacy table of the attacker's (a NOSUPERUSER tenant_admin member), in a schema tenant_admin
/// owns, whose UPDATE and DELETE triggers call the planted function: add_tenant_column's backfill
/// and drop_tenant's row deletion run them as the table's owner, never as the extension owner.
#[test]
fn legacy_table_maintenance_runs_planted_triggers_without_the_extension_owners_rights() {
    let db = TestDb::new("review_planted");
    plant_escalation(&db, "tenant_admin");
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    admin
        .batch_execute(
            "SELECT tenant.create_tenant('acme');
             SET ROLE tenant_admin;
             CREATE TABLE attacker.legacy (id int PRIMARY KEY, name text);
             INSERT INTO attacker.legacy VALUES (1, 'one'), (2, 'two');
             CREATE FUNCTION attacker.on_update() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM attacker.escalate('add_tenant_column'); RETURN NEW; END $$;
             CREATE FUNCTION attacker.on_delete() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM attacker.escalate('drop_tenant'); RETURN OLD; END $$;
             CREATE TRIGGER legacy_update BEFORE UPDATE ON attacker.legacy FOR EACH ROW EXECUTE FUNCTION attacker.on_update();
             CREATE TRIGGER legacy_delete BEFORE DELETE ON attacker.legacy FOR EACH ROW EXECUTE FUNCTION attacker.on_delete();
             RESET ROLE;",
        )
        .unwrap();
    admin
        .batch_execute("SELECT tenant.add_tenant_column('attacker.legacy', 'acme')")
        .unwrap();
    assert_escalation_failed(&db, "add_tenant_column");
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM attacker.legacy WHERE tenant_id = 1"
        ),
        2
    );
    admin
        .batch_execute("SELECT tenant.drop_tenant('acme', delete_rows => true)")
        .unwrap();
    assert_escalation_failed(&db, "drop_tenant");
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM attacker.legacy"),
        0
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.tenants"),
        0
    );
}
