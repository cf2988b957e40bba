//! Drift: a tenant schema against its template, with pinning's policies from the pin template
//! (data) and owners and privileges not compared; and the checker's policy comparison on the
//! same diff.

mod common;
use common::*;
use qft_schema::diff::{compare_policies, diff, Options};
use qft_schema::pin::{isolation_pin, schema_pin};

fn tenant(id: i64) -> Vec<(String, String)> {
    vec![("tenant_id".to_string(), id.to_string())]
}

/// The template as create_tenant leaves a copy: pinned, owned by tenant_admin, granted to
/// tenant_user.
fn as_created(template: &qft_schema::Schema, id: i64) -> qft_schema::Schema {
    let mut s = schema_pin().apply(template, &tenant(id));
    s.name = format!("tenant_t{id}");
    s.owner = "tenant_admin".into();
    for t in &mut s.tables {
        t.owner = "tenant_admin".into();
        t.acl = None;
    }
    s
}

#[test]
fn a_fresh_tenant_has_no_drift() {
    for (name, _) in FIXTURES {
        let template = fixture(name);
        let copy = as_created(&template, 7);
        assert_eq!(
            diff(&template, &copy, &Options::drift(schema_pin(), tenant(7))),
            vec![],
            "{name}"
        );
        // Exactly: the pin and the owners are differences.
        assert!(!diff(&template, &copy, &Options::exact()).is_empty());
    }
}

#[test]
fn drift_reports_structure_comments_and_pinning() {
    let template = fixture("template");
    let opts = Options::drift(schema_pin(), tenant(7));
    let mut copy = as_created(&template, 7);
    column(&mut copy, "customers", "notes").data_type = text("varchar");
    table(&mut copy, "locked").force_row_security = false;
    table(&mut copy, "docs")
        .policies
        .retain(|p| p.name != "qft_schema_guard");
    table(&mut copy, "customers").comment = Some("changed".into());
    table(&mut copy, "a_side")
        .policies
        .iter_mut()
        .find(|p| p.name == "qft_schema_tenant")
        .unwrap()
        .using = Some(text("(tenant.current_tenant_id() = '8'::bigint)"));
    let got: Vec<(String, Option<&str>)> = diff(&template, &copy, &opts)
        .into_iter()
        .map(|d| (d.object, d.property))
        .collect();
    assert_eq!(
        got,
        [
            ("column customers.notes".to_string(), Some("type")),
            ("policy a_side.qft_schema_tenant".to_string(), Some("using")),
            ("policy docs.qft_schema_guard".to_string(), None),
            ("table customers".to_string(), Some("comment")),
            ("table locked".to_string(), Some("force row security")),
        ]
    );
    // The same copy pinned to another tenant differs in every pinned policy.
    let other = as_created(&template, 8);
    let n = diff(&template, &other, &opts).len();
    assert_eq!(
        n,
        template.tables.len() * 4,
        "using and with check of qft_schema_tenant and qft_schema_guard, every table"
    );
}

#[test]
fn the_checker_compares_policies_with_the_isolation_template() {
    let values = vec![("column".to_string(), "tenant_id".to_string())];
    let expected = isolation_pin(false).policies(&values);
    assert_eq!(compare_policies("t", &expected, &expected), vec![]);
    let mut actual = expected.clone();
    actual[1].permissive = true; // qft_tenant_guard made permissive: no longer bounds other policies
    actual.remove(0);
    let got: Vec<(String, Option<&str>)> = compare_policies("t", &expected, &actual)
        .into_iter()
        .map(|d| (d.object, d.property))
        .collect();
    assert_eq!(
        got,
        [
            ("policy t.qft_cross_tenant".to_string(), None),
            ("policy t.qft_tenant_guard".to_string(), Some("permissive"))
        ]
    );
}
