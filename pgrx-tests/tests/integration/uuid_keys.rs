//! Tables keyed by the tenant's uuid (issue 15, stage B): enable_isolation and add_tenant_column
//! on a uuid tenant column, through the isolation command matrix as the NOSUPERUSER application
//! role; globex's rows are compared byte for byte afterwards.

use qft_integration_tests::*;

const ACME: &str = "0000a1a1-0000-4000-8000-000000000001";
const GLOBEX: &str = "0000b2b2-0000-4000-8000-000000000002";

/// Tenants acme and globex with known uuids, and `public.docs` keyed by `tenant uuid`, three rows
/// each, isolated, DML granted to every test role.
fn uuid_db(label: &str) -> TestDb {
    let db = TestDb::new(label);
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SELECT tenant.create_tenant('acme', 'Acme', uuid => '{ACME}');
         SELECT tenant.create_tenant('globex', 'Globex', uuid => '{GLOBEX}');
         CREATE TABLE public.docs (tenant uuid NOT NULL, id integer NOT NULL, body text, PRIMARY KEY (tenant, id));
         INSERT INTO public.docs VALUES ('{ACME}', 100, 'a100'), ('{ACME}', 101, 'a101'), ('{ACME}', 102, 'a102'),
                                        ('{GLOBEX}', 200, 'g200'), ('{GLOBEX}', 201, 'g201'), ('{GLOBEX}', 202, 'g202');
         SELECT tenant.enable_isolation('public.docs', 'tenant');"
    ))
    .unwrap();
    for short in ["app", "app2", "nobody", "admin", "support", "bi"] {
        su.batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON public.docs TO {0}; GRANT USAGE ON SCHEMA tenant TO {0}",
            db.role(short)
        ))
        .unwrap();
    }
    db
}

fn globex_rows(db: &TestDb) -> Vec<String> {
    strings(
        &mut db.superuser(),
        &format!("SELECT d::text FROM public.docs d WHERE tenant = '{GLOBEX}' ORDER BY id"),
    )
}

#[test]
fn the_command_matrix_on_a_uuid_keyed_table_never_reaches_another_tenant() {
    let db = uuid_db("uuid_matrix");
    let before = globex_rows(&db);
    let mut app = db.connect_in("app", "acme");
    let all = "SELECT id FROM public.docs ORDER BY id";
    assert_eq!(ids(&mut app, all), [100, 101, 102]);
    assert_eq!(
        ids(
            &mut app,
            "SELECT id FROM public.docs ORDER BY id FOR UPDATE"
        ),
        [100, 101, 102]
    );
    assert_eq!(
        ids(&mut app, "SELECT id FROM public.docs WHERE id = 200"),
        Vec::<i32>::new()
    );

    // INSERT: explicit own uuid, the default, an explicit NULL (filled from the context).
    in_rollback(&mut app, |app| {
        app.batch_execute(&format!(
            "INSERT INTO public.docs VALUES ('{ACME}', 103, 'mine')"
        ))
        .unwrap();
        app.batch_execute("INSERT INTO public.docs (id, body) VALUES (104, 'default')")
            .unwrap();
        app.batch_execute("INSERT INTO public.docs VALUES (NULL, 105, 'orm')")
            .unwrap();
        assert_eq!(
            ids(
                app,
                &format!(
                    "SELECT id FROM public.docs WHERE tenant = '{ACME}' AND id > 102 ORDER BY id"
                )
            ),
            [103, 104, 105]
        );
    });
    expect_sqlstate(
        app.batch_execute(&format!(
            "INSERT INTO public.docs VALUES ('{GLOBEX}', 299, 'theirs')"
        )),
        "42501",
    );
    // UPDATE moving a row to globex; UPDATE / DELETE of globex's rows.
    expect_sqlstate(
        app.batch_execute(&format!(
            "UPDATE public.docs SET tenant = '{GLOBEX}' WHERE id = 100"
        )),
        "42501",
    );
    assert_eq!(
        app.execute("UPDATE public.docs SET body = 'x' WHERE id = 200", &[])
            .unwrap(),
        0
    );
    assert_eq!(
        app.execute(
            &format!("UPDATE public.docs SET body = 'x' WHERE tenant = '{GLOBEX}'"),
            &[]
        )
        .unwrap(),
        0
    );
    assert_eq!(
        app.execute("DELETE FROM public.docs WHERE id = 200", &[])
            .unwrap(),
        0
    );
    in_rollback(&mut app, |app| {
        assert_eq!(app.execute("DELETE FROM public.docs", &[]).unwrap(), 3)
    });
    // ON CONFLICT against their key, MERGE of their row, INSERT ... SELECT as theirs.
    expect_sqlstate(
        app.batch_execute(&format!(
            "INSERT INTO public.docs VALUES ('{GLOBEX}', 200, 'x') ON CONFLICT (tenant, id) DO UPDATE SET body = 'pwned'"
        )),
        "42501",
    );
    expect_sqlstate(
        app.batch_execute(&format!(
            "MERGE INTO public.docs d USING (VALUES ('{GLOBEX}'::uuid, 200)) v(t, i) ON d.tenant = v.t AND d.id = v.i
             WHEN MATCHED THEN UPDATE SET body = 'pwned' WHEN NOT MATCHED THEN INSERT VALUES (v.t, v.i, 'pwned')"
        )),
        "42501",
    );
    expect_sqlstate(
        app.batch_execute(&format!(
            "INSERT INTO public.docs SELECT '{GLOBEX}', id + 1000, body FROM public.docs"
        )),
        "42501",
    );
    in_rollback(&mut app, |app| {
        assert_eq!(
            ids(app, "WITH u AS (UPDATE public.docs SET body = body || '.' RETURNING id) SELECT id FROM u ORDER BY id"),
            [100, 101, 102]
        );
    });

    // The plain equality on the uuid column is the index condition of a point query.
    app.batch_execute("SET enable_seqscan = off").unwrap();
    let plan = strings(
        &mut app,
        "EXPLAIN (COSTS OFF) SELECT body FROM public.docs WHERE id = 101",
    )
    .join("\n");
    assert!(
        plan.lines().any(|l| l.contains("Index Cond")
            && l.contains("tenant = tenant.current_tenant_uuid()")
            && l.contains("id = 101")),
        "{plan}"
    );

    // No context: nothing. Cross-tenant mode: everything. A bound role: its tenant only.
    let mut none = db.connect("app2");
    assert_eq!(ids(&mut none, all), Vec::<i32>::new());
    expect_sqlstate(
        none.batch_execute("INSERT INTO public.docs (id) VALUES (1)"),
        "42501",
    );
    let mut support = db.connect("support");
    support
        .batch_execute("SELECT tenant.enter_cross_tenant('uuid matrix')")
        .unwrap();
    assert_eq!(ids(&mut support, all).len(), 6);
    let mut su = db.superuser();
    su.batch_execute(&format!("GRANT tenant_user TO {}", db.role("bi")))
        .unwrap();
    db.connect("admin")
        .batch_execute(&format!(
            "SELECT tenant.bind_role('{}', 'globex')",
            db.role("bi")
        ))
        .unwrap();
    let mut bi = db.connect("bi");
    assert_eq!(ids(&mut bi, all), [200, 201, 202]);
    expect_sqlstate(
        bi.batch_execute("SELECT tenant.set_tenant('acme')"),
        "42501",
    );
    assert_eq!(ids(&mut bi, all), [200, 201, 202]);

    // Roles inside the tenant work on uuid-keyed tables too.
    db.connect("admin")
        .batch_execute("SELECT tenant.limit_tenant_roles('public.docs', 'DELETE', '{admin}')")
        .unwrap();
    let token: String = db
        .connect("admin")
        .query_one(
            "SELECT tenant.sign_context('acme', tenant_role => 'viewer')",
            &[],
        )
        .unwrap()
        .get(0);
    app.execute("SELECT tenant.set_tenant_signed($1)", &[&token])
        .unwrap();
    assert_eq!(app.execute("DELETE FROM public.docs", &[]).unwrap(), 0);
    assert_eq!(ids(&mut app, all), [100, 101, 102]);

    assert_eq!(globex_rows(&db), before);
    assert_eq!(one::<i64>(&mut su, "SELECT count(*) FROM public.docs"), 6);
}

#[test]
fn add_tenant_column_drop_tenant_checker_and_usage_know_uuid_columns() {
    let db = uuid_db("uuid_admin");
    let mut su = db.superuser();
    let mut admin = db.connect("admin");
    su.batch_execute(&format!(
        "CREATE TABLE public.legacy (id int PRIMARY KEY, v text);
         INSERT INTO public.legacy VALUES (1, 'a'), (2, 'b');
         GRANT SELECT, INSERT ON public.legacy TO {}",
        db.role("app")
    ))
    .unwrap();
    // Bad column types: 42804 with the types that are allowed, nothing added.
    let msg = expect_sqlstate(
        admin.batch_execute(
            "SELECT tenant.add_tenant_column('public.legacy', 'acme', 'tenant', 'text')",
        ),
        "42804",
    );
    assert!(msg.contains("cannot be of type text"), "{msg}");
    expect_sqlstate(
        admin.batch_execute(
            "SELECT tenant.add_tenant_column('public.legacy', 'acme', 'tenant', NULL)",
        ),
        "22004",
    );
    su.batch_execute("CREATE TABLE public.texty (tenant text, id int)")
        .unwrap();
    let msg = expect_sqlstate(
        admin.batch_execute("SELECT tenant.enable_isolation('public.texty', 'tenant')"),
        "42804",
    );
    assert!(msg.contains("of type text"), "{msg}");
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.legacy'::regclass AND attnum > 0"),
        2
    );
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.isolated_tables WHERE relid::text IN ('public.legacy', 'public.texty')"),
        0
    );

    // A uuid column backfilled with acme's uuid, referencing tenant.tenants (uuid).
    admin
        .batch_execute("SELECT tenant.add_tenant_column('public.legacy', 'acme', 'tenant', column_type => 'uuid')")
        .unwrap();
    assert_eq!(
        strings(&mut su, "SELECT DISTINCT tenant::text FROM public.legacy"),
        [ACME]
    );
    assert_eq!(
        strings(&mut su, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'public.legacy'::regclass AND contype = 'f'"),
        ["FOREIGN KEY (tenant) REFERENCES tenant.tenants(uuid)"]
    );
    let mut g = db.connect_in("app", "globex");
    assert_eq!(
        ids(&mut g, "SELECT id FROM public.legacy"),
        Vec::<i32>::new()
    );
    g.batch_execute("INSERT INTO public.legacy (id, v) VALUES (3, 'g')")
        .unwrap();
    assert_eq!(
        strings(
            &mut su,
            "SELECT tenant::text FROM public.legacy WHERE id = 3"
        ),
        [GLOBEX]
    );

    // Usage counts uuid-keyed rows per tenant.
    assert_eq!(
        strings(
            &mut admin,
            "SELECT tenant || ' ' || relation::text || ' ' || rows FROM tenant.usage()
              WHERE relation IN ('public.docs'::regclass, 'public.legacy'::regclass) ORDER BY 1"
        ),
        [
            "acme docs 3",
            "acme legacy 2",
            "globex docs 3",
            "globex legacy 1"
        ]
    );

    // The checker compares a uuid table's policies with the template, by content.
    su.batch_execute("ALTER POLICY qft_tenant_isolation ON public.docs USING (true)")
        .unwrap();
    let findings = isolation_findings(&db);
    let f = findings
        .iter()
        .find(|f| f.1 == "policy qft_tenant_isolation on table public.docs")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert!(
        f.2.contains("instead of (tenant = tenant.current_tenant_uuid())"),
        "{f:?}"
    );
    admin.batch_execute(&f.3).unwrap();
    assert!(
        !isolation_findings(&db)
            .iter()
            .any(|f| f.1.contains("public.docs")),
        "{:?}",
        isolation_findings(&db)
    );

    // drop_tenant counts and deletes rows by uuid.
    let msg = expect_sqlstate(
        admin.batch_execute("SELECT tenant.drop_tenant('globex')"),
        "2BP01",
    );
    assert!(msg.contains("still has"), "{msg}");
    admin
        .batch_execute("SELECT tenant.drop_tenant('globex', delete_rows => true)")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            &format!("SELECT count(*) FROM public.docs WHERE tenant = '{GLOBEX}'")
        ),
        0
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            &format!("SELECT count(*) FROM public.legacy WHERE tenant = '{GLOBEX}'")
        ),
        0
    );
    assert_eq!(one::<i64>(&mut su, "SELECT count(*) FROM public.docs"), 3);

    // disable_isolation removes exactly what enable added (the uuid default).
    admin
        .batch_execute("SELECT tenant.disable_isolation('public.docs')")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM pg_attrdef WHERE adrelid = 'public.docs'::regclass"
        ),
        0
    );
}
