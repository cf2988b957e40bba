//! The engine on catalog snapshots of real schemas: every fixture plans, in a deterministic order
//! that respects its dependencies, renders for any target without naming its source, and
//! compares equal to itself.

mod common;
use common::*;
use qft_schema::diff::{diff, Options};
use qft_schema::ident::quote_ident;
use qft_schema::plan::{creation_order, plan, refusals, PlanError};

#[test]
fn every_fixture_reads_and_is_normalized() {
    for (name, schema) in FIXTURES {
        let s = fixture(name);
        assert_eq!(s.name, schema);
        assert!(s.unsupported.is_empty(), "{name}: {:?}", s.unsupported);
        let mut again = s.clone();
        again.normalize();
        assert_eq!(again, s, "{name} is stored normalized");
    }
}

#[test]
fn every_fixture_compares_equal_to_itself_and_to_a_renamed_copy() {
    for (name, _) in FIXTURES {
        let s = fixture(name);
        assert_eq!(diff(&s, &s, &Options::exact()), vec![], "{name}");
        // The model is schema-relative: the same schema under another name is the same model.
        let mut renamed = s.clone();
        renamed.name = "somewhere else".into();
        assert_eq!(diff(&s, &renamed, &Options::exact()), vec![], "{name}");
    }
}

#[test]
fn the_creation_order_respects_every_dependency_and_is_deterministic() {
    for (name, _) in FIXTURES {
        let s = fixture(name);
        let order = creation_order(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
        let pos = |k| order.iter().position(|x| x == k);
        for d in &s.dependencies {
            if let (Some(from), Some(to)) = (pos(&d.from), pos(&d.to)) {
                assert!(to < from, "{name}: {} before {}", d.to, d.from);
            }
        }
        // Reversed input lists give the same order.
        let mut shuffled = s.clone();
        shuffled.tables.reverse();
        shuffled.functions.reverse();
        shuffled.views.reverse();
        shuffled.dependencies.reverse();
        assert_eq!(creation_order(&shuffled).unwrap(), order, "{name}");
    }
}

#[test]
fn plans_depend_only_on_the_target_name() {
    for (name, _) in FIXTURES {
        let s = fixture(name);
        let a = plan(&s, "target_one").unwrap_or_else(|e| panic!("{name}: {e}"));
        let b = plan(&s, "Target Two").unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                x.sql
                    .replace("'target_one'", "'Target Two'")
                    .replace("target_one", &quote_ident("Target Two")),
                y.sql,
                "{name}: a statement that depends on more than the target's name"
            );
        }
        assert!(
            a.iter().all(|x| !x.sql.contains('\0')),
            "{name}: an unrendered marker"
        );
    }
}

#[test]
fn plans_never_name_their_source() {
    // (The awkward fixture has a table named like its schema, so its name occurs legitimately.)
    for (name, schema) in [
        ("template", "tenant_template"),
        ("kinds", "kinds"),
        ("app", "app"),
    ] {
        let s = fixture(name);
        for step in plan(&s, "copy").unwrap() {
            if step.object == "view aliased" {
                continue; // its table alias is spelled like the schema, on purpose
            }
            let tokens = qft_schema::lexer::tokenize(&step.sql);
            let sig: Vec<_> = tokens.iter().filter(|t| t.is_significant()).collect();
            for w in sig.windows(2) {
                assert!(
                    !(w[0].value == schema && w[1].is_punct(&step.sql, ".")),
                    "{name}: {} names {schema}",
                    step.sql
                );
            }
        }
    }
}

#[test]
fn the_plan_creates_every_object_once() {
    for (name, _) in FIXTURES {
        let s = fixture(name);
        let steps = plan(&s, "c").unwrap();
        let creates = |prefix: &str| steps.iter().filter(|x| x.sql.starts_with(prefix)).count();
        assert_eq!(
            creates("CREATE TABLE ") + creates("CREATE UNLOGGED TABLE "),
            s.tables.len(),
            "{name}: tables"
        );
        assert_eq!(
            creates("CREATE VIEW ") + creates("CREATE MATERIALIZED VIEW "),
            s.views.len(),
            "{name}: views"
        );
        assert_eq!(
            creates("CREATE FUNCTION ") + creates("CREATE PROCEDURE "),
            s.functions.len(),
            "{name}: functions"
        );
        assert_eq!(creates("CREATE AGGREGATE "), s.aggregates.len(), "{name}");
        assert_eq!(
            creates("CREATE OPERATOR ")
                - creates("CREATE OPERATOR CLASS ")
                - creates("CREATE OPERATOR FAMILY "),
            s.operators.len()
        );
        assert_eq!(creates("CREATE COLLATION "), s.collations.len());
        assert_eq!(creates("CREATE STATISTICS "), s.statistics.len());
        let policies: usize = s.tables.iter().map(|t| t.policies.len()).sum();
        assert_eq!(creates("CREATE POLICY "), policies, "{name}: policies");
    }
}

#[test]
fn a_view_whose_cte_is_named_like_a_table_points_at_the_copy() {
    // Issue 13: pg_get_viewdef qualifies a table that a CTE of the same name shadows.
    let s = fixture("kinds");
    let v = s.views.iter().find(|v| v.name == "big_orders").unwrap();
    assert!(v.definition.names_self(), "{}", v.definition);
    let steps = plan(&s, "acme").unwrap();
    let create = steps
        .iter()
        .find(|x| x.sql.starts_with("CREATE VIEW acme.big_orders"))
        .unwrap();
    assert!(create.sql.contains("FROM acme.orders"), "{}", create.sql);
    // A table alias spelled like the schema is an alias, not the schema.
    let aliased = steps
        .iter()
        .find(|x| x.sql.starts_with("CREATE VIEW acme.aliased"))
        .unwrap();
    assert!(
        aliased.sql.contains("kinds.id") && aliased.sql.contains("FROM orders kinds"),
        "{}",
        aliased.sql
    );
    let app = fixture("app");
    let recent = app
        .views
        .iter()
        .find(|v| v.name == "recent_defects")
        .unwrap();
    assert!(
        recent.definition.render("t").contains("FROM t.defects"),
        "{}",
        recent.definition
    );
}

#[test]
fn function_bodies_that_name_their_schema_are_relative() {
    let s = fixture("template");
    let f = s
        .functions
        .iter()
        .find(|f| f.name == "customer_count")
        .unwrap();
    let steps = plan(&s, "acme").unwrap();
    let create = steps
        .iter()
        .find(|x| x.sql.starts_with("CREATE FUNCTION acme.customer_count"))
        .unwrap();
    assert!(create.sql.contains("FROM acme.customers"), "{}", create.sql);
    assert!(matches!(&f.body, qft_schema::model::FunctionBody::Text(t) if t.names_self()));
}

#[test]
fn index_column_statistics_are_planned() {
    let s = fixture("kinds");
    let steps = plan(&s, "c").unwrap();
    let stats: Vec<&str> = steps
        .iter()
        .filter(|x| x.sql.contains("SET STATISTICS") && x.sql.starts_with("ALTER INDEX"))
        .map(|x| x.sql.as_str())
        .collect();
    assert_eq!(
        stats,
        [
            "ALTER INDEX c.people_lower_idx ALTER COLUMN 1 SET STATISTICS 321",
            "ALTER INDEX c.people_lower_idx ALTER COLUMN 2 SET STATISTICS 55",
        ]
    );
}

#[test]
fn refusals_are_errors_naming_each_object() {
    let mut s = fixture("template");
    table(&mut s, "events")
        .outside_partitions
        .push(qft_schema::model::RelationRef {
            schema: Some("archive".into()),
            name: "events_2019".into(),
        });
    table(&mut s, "docs").rules.push(qft_schema::model::Rule {
        name: "r".into(),
        ..Default::default()
    });
    s.unsupported.push(qft_schema::model::Unsupported {
        object: "foreign table x".into(),
        reason: "foreign tables are not copied".into(),
    });
    let Err(PlanError::Unsupported(items)) = plan(&s, "c") else {
        panic!("planned a schema with partitions elsewhere");
    };
    assert_eq!(items, refusals(&s));
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items
        .iter()
        .any(|i| i.contains("archive.events_2019") && i.contains("another schema")));
    let mut p = fixture("template");
    table(&mut p, "events_2024")
        .partition_of
        .as_mut()
        .unwrap()
        .parent
        .schema = Some("elsewhere".into());
    assert!(matches!(plan(&p, "c"), Err(PlanError::Unsupported(i)) if i.len() == 1));
}

#[test]
fn circular_dependencies_are_an_error() {
    let mut s = fixture("template");
    let a = s
        .dependencies
        .iter()
        .find(|d| d.from.name == "customer_names_c")
        .unwrap()
        .clone();
    // customer_names_c needs customer_names; make customer_names need customer_names_c too.
    s.dependencies.push(qft_schema::model::Dependency {
        from: a.to.clone(),
        to: a.from.clone(),
    });
    match plan(&s, "c") {
        Err(PlanError::Cycle(c)) => {
            assert_eq!(c.cycle.len(), 2, "{c}");
            assert!(c.to_string().contains("customer_names"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_copy_with_data_adds_rows_positions_and_refreshes_in_their_places() {
    use qft_schema::plan::{plan_copy, Phase};
    for (name, _) in FIXTURES {
        let s = fixture(name);
        let structure = plan(&s, "c").unwrap();
        let steps = plan_copy(&s, "c", true).unwrap();
        // The structure is the same, in the same order, but for the foreign keys: a copy with
        // data adds every one after the rows (checked once each), where the structure alone has
        // some inside their CREATE TABLE.
        let only_structure: Vec<_> = steps
            .iter()
            .filter(|x| {
                !matches!(
                    x.phase,
                    Phase::Data | Phase::SequencePosition | Phase::Refresh
                )
            })
            .cloned()
            .collect();
        let keys: Vec<(String, String)> = s
            .tables
            .iter()
            .flat_map(|t| {
                t.constraints
                    .iter()
                    .filter(|k| k.kind == qft_schema::model::ConstraintKind::ForeignKey)
                    .map(move |k| {
                        (
                            format!(
                                ", CONSTRAINT {} {}",
                                quote_ident(&k.name),
                                k.definition.render("c")
                            ),
                            format!(
                                "ALTER TABLE c.{} ADD CONSTRAINT {} {}",
                                quote_ident(&t.name),
                                quote_ident(&k.name),
                                k.definition.render("c")
                            ),
                        )
                    })
            })
            .collect();
        assert!(
            !steps
                .iter()
                .any(|x| x.sql.starts_with("CREATE ") && x.sql.contains(" FOREIGN KEY ")),
            "{name}"
        );
        let mut moved = Vec::new();
        let mut expected: Vec<_> = structure
            .iter()
            .cloned()
            .map(|mut x| {
                if x.sql.starts_with("CREATE ") {
                    for (clause, alter) in &keys {
                        if x.sql.contains(clause.as_str()) {
                            x.sql = x.sql.replacen(clause.as_str(), "", 1);
                            moved.push(alter.clone());
                        }
                    }
                }
                x
            })
            .collect();
        let fk = |v: &[qft_schema::plan::Step]| {
            let mut k: Vec<String> = v
                .iter()
                .filter(|x| x.phase == Phase::ForeignKey)
                .map(|x| x.sql.clone())
                .collect();
            k.sort();
            k
        };
        let mut expected_keys = fk(&expected);
        expected_keys.extend(moved);
        expected_keys.sort();
        assert_eq!(fk(&only_structure), expected_keys, "{name}");
        expected.retain(|x| x.phase != Phase::ForeignKey);
        let mut without_keys = only_structure.clone();
        without_keys.retain(|x| x.phase != Phase::ForeignKey);
        assert_eq!(without_keys, expected, "{name}");
        let rows = steps.iter().filter(|x| x.phase == Phase::Data).count();
        assert_eq!(
            rows,
            s.tables.iter().filter(|t| !t.partitioned).count(),
            "{name}"
        );
        assert_eq!(
            steps
                .iter()
                .filter(|x| x.phase == Phase::SequencePosition)
                .count(),
            s.sequences.len(),
            "{name}"
        );
        let refreshed = steps.iter().filter(|x| x.phase == Phase::Refresh).count();
        assert_eq!(
            refreshed,
            s.views
                .iter()
                .filter(|v| v.materialized && v.populated)
                .count(),
            "{name}"
        );
        // Phases in order: rows before any index, refreshes after every policy, and every
        // ownership change after every statement the builder runs.
        assert!(steps.windows(2).all(|w| w[0].phase <= w[1].phase), "{name}");
        let last_builder = steps.iter().rposition(|x| x.phase.as_builder());
        let first_owner = steps.iter().position(|x| x.phase == Phase::Owner);
        if let (Some(b), Some(o)) = (last_builder, first_owner) {
            assert!(b < o, "{name}: {}", steps[b].sql);
        }
        assert!(steps
            .iter()
            .filter(|x| x.phase == Phase::Owner)
            .all(|x| x.sql.contains(" OWNER TO ")));
        assert!(!steps
            .iter()
            .any(|x| x.phase != Phase::Owner && qft_schema::plan::is_owner_statement(&x.sql)));
    }
}
