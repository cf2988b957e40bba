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
        ids(&mut app, "SELECT id FROM public.projects WHERE tenant_id = 1 AND id = 101"),
        [101]
    );
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.projects WHERE tenant_id = 2"),
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
    assert_eq!(globex_after, globex_before, "the other tenant's rows are unchanged");
    assert_eq!(
        after.iter().filter(|r| r.0 == 1).map(|r| (r.1, r.2.as_str())).collect::<Vec<_>>(),
        [(100, "changed"), (101, "acme-101"), (103, "acme-103")]
    );
}

#[test]
fn session_scope_context_fails_closed_on_distributed_tables() {
    let db = CitusDb::new("session");
    with_projects(&db);
    let before = all_rows(&db);
    let mut app = db.connect("app");
    app.query_one("SELECT tenant.set_tenant('acme')", &[]).unwrap();
    assert_eq!(ids(&mut app, "SELECT id FROM public.projects"), Vec::<i32>::new());
    app.batch_execute("BEGIN").unwrap();
    assert_eq!(ids(&mut app, "SELECT id FROM public.projects"), Vec::<i32>::new());
    let e = app.batch_execute("INSERT INTO public.projects (id, name) VALUES (109, 'x')");
    assert!(e.is_err());
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(all_rows(&db), before);
}
