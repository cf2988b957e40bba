//! Planner cost without a cluster: ordering, rendering and diffing a 1,000-table model.
//!     cargo bench -p qft-schema
//! The model is synthetic but shaped like the application fixture: per table ten columns (an
//! identity key, defaults, a generated column), a primary key, two foreign keys, two indexes, a
//! trigger, two policies, comments and a grant; plus 300 views and 200 functions, with their
//! dependencies.

use criterion::{criterion_group, criterion_main, Criterion};
use qft_schema::diff::{diff, Options};
use qft_schema::model::*;
use qft_schema::plan::{creation_order, plan};
use qft_schema::{Schema, SqlText};
use std::hint::black_box;

fn t(s: &str) -> SqlText {
    SqlText::plain(s)
}

fn model(tables: usize) -> Schema {
    let mut s = Schema {
        name: "bench".into(),
        owner: "owner".into(),
        ..Default::default()
    };
    for i in 0..tables {
        let name = format!("table_{i:04}");
        let mut columns = vec![Column {
            name: "id".into(),
            data_type: t("bigint"),
            not_null: true,
            identity: Some(Identity::ByDefault),
            storage: Storage::Plain,
            type_storage: Storage::Plain,
            local: true,
            ..Default::default()
        }];
        for c in 0..9 {
            columns.push(Column {
                name: format!("col_{c}"),
                data_type: t(if c % 3 == 0 { "text" } else { "integer" }),
                default: (c % 4 == 1).then(|| t("0")),
                generated: (c == 8).then(|| t("(col_1 + 1)")),
                not_null: c % 2 == 0,
                storage: Storage::Extended,
                type_storage: Storage::Extended,
                local: true,
                comment: (c == 0).then(|| "the name".to_string()),
                ..Default::default()
            });
        }
        s.sequences.push(Sequence {
            name: format!("{name}_id_seq"),
            data_type: t("bigint"),
            start: 1,
            increment: 1,
            min: 1,
            max: i64::MAX,
            cache: 1,
            owned_by: Some(OwnedBy {
                table: name.clone(),
                column: "id".into(),
                identity: true,
            }),
            owner: "owner".into(),
            ..Default::default()
        });
        let mut constraints = vec![Constraint {
            name: format!("{name}_pkey"),
            kind: ConstraintKind::PrimaryKey,
            definition: t("PRIMARY KEY (id)"),
            validated: true,
            local: true,
            ..Default::default()
        }];
        for k in 1..=2 {
            if i >= k {
                constraints.push(Constraint {
                    name: format!("{name}_fk{k}"),
                    kind: ConstraintKind::ForeignKey,
                    definition: t(&format!(
                        "FOREIGN KEY (col_{k}) REFERENCES table_{:04}(id)",
                        i - k
                    )),
                    validated: true,
                    local: true,
                    ..Default::default()
                });
            }
        }
        s.tables.push(Table {
            name: name.clone(),
            access_method: Some("heap".into()),
            columns,
            constraints,
            indexes: vec![
                Index { name: format!("{name}_pkey"), unique: true, definition: t("USING btree (id)"), constraint: Some(format!("{name}_pkey")), valid: true, ..Default::default() },
                Index { name: format!("{name}_col_1_idx"), definition: t("USING btree (col_1)"), valid: true, ..Default::default() },
                Index { name: format!("{name}_lower_idx"), definition: t("USING btree (lower(col_0)) WHERE (col_2 > 0)"), valid: true, ..Default::default() },
            ],
            triggers: vec![Trigger {
                name: "touch".into(),
                definition: SqlText::deparsed_with(&format!("CREATE TRIGGER touch BEFORE UPDATE ON bench.{name} FOR EACH ROW EXECUTE FUNCTION touch()"), "bench", &["on", "from"]),
                ..Default::default()
            }],
            policies: vec![
                Policy { name: "own".into(), permissive: true, roles: vec![Grantee::Public], using: Some(t("(col_1 = 1)")), ..Default::default() },
                Policy { name: "guard".into(), permissive: false, roles: vec![Grantee::Public], using: Some(t("(col_2 > 0)")), with_check: Some(t("(col_2 > 0)")), ..Default::default() },
            ],
            row_security: true,
            force_row_security: true,
            owner: "owner".into(),
            acl: Some(Acl(vec![
                Grant { grantee: Grantee::Role("owner".into()), privilege: Privilege::Select, grantable: false },
                Grant { grantee: Grantee::Role("app".into()), privilege: Privilege::Select, grantable: false },
            ])),
            comment: Some("a table".into()),
            ..Default::default()
        });
        for k in 1..=2 {
            if i >= k {
                // Check constraints and defaults of later tables often call earlier functions or
                // read types; keep the graph dense like a real schema's.
                s.dependencies.push(Dependency {
                    from: ObjectKey::named(NodeKind::Table, &name),
                    to: ObjectKey::named(NodeKind::Table, &format!("table_{:04}", i - k)),
                });
            }
        }
    }
    for f in 0..200 {
        let name = format!("fn_{f:03}");
        s.functions.push(Function {
            name: name.clone(),
            identity_arguments: t("x integer"),
            arguments: t("x integer"),
            result: Some(t("bigint")),
            language: "sql".into(),
            cost: "100".into(),
            rows: "0".into(),
            body: FunctionBody::Text(SqlText::body(
                &format!(" SELECT count(*) FROM bench.table_{f:04} WHERE col_1 = x "),
                "bench",
            )),
            owner: "owner".into(),
            ..Default::default()
        });
        if f < tables {
            s.dependencies.push(Dependency {
                from: ObjectKey::named(NodeKind::Table, &format!("table_{f:04}")),
                to: ObjectKey::routine(
                    NodeKind::Function,
                    &format!("fn_{:03}", (f + 100) % 200),
                    &t("x integer"),
                ),
            });
        }
    }
    for v in 0..300 {
        let name = format!("view_{v:03}");
        let a = v % tables;
        s.views.push(View {
            name: name.clone(),
            definition: SqlText::deparsed(&format!(" WITH table_{a:04} AS (SELECT * FROM bench.table_{a:04}) SELECT id, col_0 FROM table_{a:04}"), "bench"),
            columns: vec![Column { name: "id".into(), data_type: t("bigint"), ..Default::default() }],
            owner: "owner".into(),
            ..Default::default()
        });
        s.dependencies.push(Dependency {
            from: ObjectKey::named(NodeKind::View, &name),
            to: ObjectKey::named(NodeKind::Table, &format!("table_{a:04}")),
        });
    }
    s.normalize();
    s
}

fn planner(c: &mut Criterion) {
    let m = model(1000);
    let copy = m.clone();
    let mut changed = m.clone();
    changed.tables[500].columns[3].not_null ^= true;
    c.bench_function("order 1000 tables", |b| {
        b.iter(|| creation_order(black_box(&m)).unwrap())
    });
    c.bench_function("render 1000 tables", |b| {
        b.iter(|| plan(black_box(&m), "tenant_acme").unwrap())
    });
    c.bench_function("diff 1000 tables, equal", |b| {
        b.iter(|| diff(black_box(&m), black_box(&copy), &Options::exact()))
    });
    c.bench_function("diff 1000 tables, one difference", |b| {
        b.iter(|| diff(black_box(&m), black_box(&changed), &Options::exact()))
    });
    c.bench_function("drift 1000 tables, pinned", |b| {
        let pin = qft_schema::pin::schema_pin();
        let values = vec![("tenant_id".to_string(), "7".to_string())];
        let tenant = pin.apply(&m, &values);
        let opts = Options::drift(pin, values);
        b.iter(|| diff(black_box(&m), black_box(&tenant), &opts))
    });
    c.bench_function("mark a view definition", |b| {
        b.iter(|| SqlText::deparsed(black_box(" WITH orders AS (SELECT o.id FROM app.orders o) SELECT orders.id FROM orders JOIN app.x ON x.id = orders.id"), "app"))
    });
}

criterion_group!(benches, planner);
criterion_main!(benches);
