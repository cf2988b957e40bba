//! The clone plan: the statements that recreate a schema model as schema `target`, in phases.
//!
//! 1. objects, in dependency order ([`crate::order`]): collations, types, sequences, tables (with
//!    owned sequences and validated constraints), functions, aggregates, operators, operator
//!    families and classes, text search dictionaries and configurations, views, materialized
//!    views;
//! 2. (data: rows, materialized view refresh, sequence positions, when copying data);
//! 3. indexes no constraint creates (partitioned parents first), their attachments, per-column
//!    statistics targets, CLUSTER, REPLICA IDENTITY;
//! 4. extended statistics; 5. NOT VALID checks of tables and domains; 6. foreign keys;
//! 7. triggers; 8. row security; 9. policies; 10. comments; 11. privileges and default
//!    privileges; 12. the schema's owner and privileges.
//!
//! Every statement runs with [`search_path`]`(target)` = `pg_catalog, <target>, pg_temp`, the
//! setting the catalog text was deparsed with (for the source), so that a name PostgreSQL left
//! unqualified means the same object of the copy; and with `check_function_bodies = off` (bodies
//! may name objects created later, as in pg_dump). The target schema itself is created by the
//! caller.

use crate::acl::{sync_statements, AclKind};
use crate::ident::quote_ident;
use crate::inventory::Object;
use crate::model::*;
use crate::order::{topological, CycleError};
use crate::render;
use serde::Serialize;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Object,
    Data,
    Index,
    Statistics,
    Constraint,
    ForeignKey,
    Trigger,
    RowSecurity,
    Policy,
    Comment,
    Grant,
    Schema,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Object => "object",
            Phase::Data => "data",
            Phase::Index => "index",
            Phase::Statistics => "statistics",
            Phase::Constraint => "constraint",
            Phase::ForeignKey => "foreign key",
            Phase::Trigger => "trigger",
            Phase::RowSecurity => "row security",
            Phase::Policy => "policy",
            Phase::Comment => "comment",
            Phase::Grant => "grant",
            Phase::Schema => "schema",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub phase: Phase,
    /// What the statement is about (`table customers`), for messages.
    pub object: String,
    pub sql: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The schema holds objects that cannot be copied (SQLSTATE 0A000), each with the reason.
    Unsupported(Vec<String>),
    /// Objects whose dependencies form a cycle (0A000).
    Cycle(CycleError),
    /// The model is inconsistent (a bug in the reader: XX000).
    Invalid(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Unsupported(items) => {
                write!(f, "objects that cannot be copied: {}", items.join("; "))
            }
            PlanError::Cycle(c) => write!(f, "{c}"),
            PlanError::Invalid(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// The `search_path` value catalog text of `schema` is deparsed with and its plan run with:
/// `pg_catalog` first, so that nothing in the schema can capture a name PostgreSQL's own
/// deparsers (or the plan) use, then the schema, so that its objects come out unqualified unless
/// a catalog object of the same name forces the qualification (which [`crate::SqlText`] marks).
pub fn search_path(schema: &str) -> String {
    format!("pg_catalog, {}, pg_temp", quote_ident(schema))
}

/// What cannot be copied, one line each: what the reader could not model, and what the model
/// holds that no DDL here recreates faithfully.
pub fn refusals(s: &Schema) -> Vec<String> {
    let mut out: Vec<String> = s
        .unsupported
        .iter()
        .map(|u| format!("{} ({})", u.object, u.reason))
        .collect();
    for t in &s.tables {
        for p in &t.outside_partitions {
            out.push(format!(
                "table {} (its partition {p} is in another schema: copy or move it into the schema, or detach it)",
                quote_ident(&t.name)
            ));
        }
        if let Some(p) = &t.partition_of {
            if p.parent.schema.is_some() {
                out.push(format!(
                    "table {} (a partition of {}, which is in another schema)",
                    quote_ident(&t.name),
                    p.parent
                ));
            }
        }
        for r in &t.rules {
            out.push(format!(
                "rule {} on table {} (rules are not copied; use a trigger or a view)",
                quote_ident(&r.name),
                quote_ident(&t.name)
            ));
        }
    }
    for ty in &s.types {
        if let TypeDefinition::Range {
            canonical: Some(_), ..
        } = &ty.definition
        {
            out.push(format!(
                "type {} (a range type with a canonical function needs a shell type first)",
                quote_ident(&ty.name)
            ));
        }
    }
    for f in &s.functions {
        if f.body == FunctionBody::Missing {
            out.push(format!(
                "function {}({}) (no body)",
                quote_ident(&f.name),
                f.identity_arguments
            ));
        }
    }
    out.sort();
    out
}

/// The nodes of the dependency graph in creation order.
pub fn creation_order(s: &Schema) -> Result<Vec<ObjectKey>, CycleError> {
    let nodes: Vec<ObjectKey> = s.objects().iter().filter_map(|o| o.key()).collect();
    let edges: Vec<(ObjectKey, ObjectKey)> = s
        .dependencies
        .iter()
        .map(|d| (d.from.clone(), d.to.clone()))
        .collect();
    topological(&nodes, &edges)
}

struct Out {
    steps: Vec<Step>,
}

impl Out {
    fn add(&mut self, phase: Phase, object: &str, sqls: impl IntoIterator<Item = String>) {
        for sql in sqls {
            self.steps.push(Step {
                phase,
                object: object.to_string(),
                sql,
            });
        }
    }
}

/// The statements that recreate `s` as schema `target` (which exists and is empty).
pub fn plan(s: &Schema, target: &str) -> Result<Vec<Step>, PlanError> {
    let refused = refusals(s);
    if !refused.is_empty() {
        return Err(PlanError::Unsupported(refused));
    }
    let order = creation_order(s).map_err(PlanError::Cycle)?;
    let objects = s.objects();
    let by_key: std::collections::BTreeMap<ObjectKey, Object<'_>> = objects
        .iter()
        .filter_map(|o| o.key().map(|k| (k, *o)))
        .collect();
    let mut out = Out { steps: Vec::new() };

    for key in &order {
        let o = by_key[key];
        let label = o.label();
        let sqls = match o {
            Object::Collation(c) => {
                let mut v = render::collation::create(c, target);
                let (w, r) = o.reference(target);
                v.push(render::owner_statement(w, &r, &c.owner));
                v
            }
            Object::Type(t) => {
                let mut v = render::types::create(t, target);
                let (w, r) = o.reference(target);
                v.push(render::owner_statement(w, &r, &t.owner));
                v
            }
            Object::Sequence(q) => vec![
                render::sequence::create(q, target),
                render::owner_statement("SEQUENCE", &render::q(target, &q.name), &q.owner),
            ],
            Object::Table(t) => render::table::create(s, t, target)?,
            Object::View(v) => render::view::create(v, target),
            Object::Function(f) => render::function::create(f, target),
            Object::Aggregate(a) => render::function::create_aggregate(a, target),
            Object::Operator(op) => render::operator::create(op, target),
            Object::OperatorFamily(f) => render::operator::create_family(f, target),
            Object::OperatorClass(c) => render::operator::create_class(c, target),
            Object::TextSearchDictionary(d) => render::textsearch::create_dictionary(d, target),
            Object::TextSearchConfiguration(c) => {
                render::textsearch::create_configuration(c, target)
            }
            Object::Statistics(_) => Vec::new(),
        };
        out.add(Phase::Object, &label, sqls);
    }

    // Indexes of tables and materialized views: partitioned parents first, then the rest; then
    // attachments, deepest first (a partitioned index is valid once all its partitions are).
    let mut indexed: Vec<(&str, &Index)> = s
        .tables
        .iter()
        .flat_map(|t| t.indexes.iter().map(move |i| (t.name.as_str(), i)))
        .chain(
            s.views
                .iter()
                .flat_map(|v| v.indexes.iter().map(move |i| (v.name.as_str(), i))),
        )
        .collect();
    indexed.sort_by(|a, b| (!a.1.partitioned, &a.1.name).cmp(&(!b.1.partitioned, &b.1.name)));
    for (table, i) in &indexed {
        let label = format!("index {}", quote_ident(&i.name));
        out.add(
            Phase::Index,
            &label,
            render::index::create(table, i, target),
        );
    }
    let depth = |i: &Index| {
        let mut d = 0;
        let mut at = i.parent.clone();
        while let Some(p) = at.filter(|p| p.schema.is_none()) {
            d += 1;
            at = indexed
                .iter()
                .find(|(_, j)| j.name == p.name)
                .and_then(|(_, j)| j.parent.clone());
            if d > indexed.len() {
                break;
            }
        }
        d
    };
    let mut attached: Vec<(usize, &Index)> = indexed.iter().map(|(_, i)| (depth(i), *i)).collect();
    attached.sort_by(|a, b| {
        (std::cmp::Reverse(a.0), &a.1.name).cmp(&(std::cmp::Reverse(b.0), &b.1.name))
    });
    for (_, i) in attached {
        let label = format!("index {}", quote_ident(&i.name));
        out.add(Phase::Index, &label, render::index::attach(i, target));
        out.add(
            Phase::Index,
            &label,
            render::index::column_statistics(i, target),
        );
    }
    for t in &s.tables {
        out.add(
            Phase::Index,
            &format!("table {}", quote_ident(&t.name)),
            render::index::table_settings(&t.name, &t.indexes, t.replica_identity, target),
        );
    }
    for v in s.views.iter().filter(|v| v.materialized) {
        out.add(
            Phase::Index,
            &format!("materialized view {}", quote_ident(&v.name)),
            render::index::table_settings(&v.name, &v.indexes, ReplicaIdentity::Default, target),
        );
    }

    for st in &s.statistics {
        out.add(
            Phase::Statistics,
            &format!("statistics {}", quote_ident(&st.name)),
            render::statistics::create(st, target),
        );
    }
    for t in &s.tables {
        out.add(
            Phase::Constraint,
            &format!("table {}", quote_ident(&t.name)),
            render::table::not_valid_checks(t, target),
        );
    }
    for t in &s.types {
        out.add(
            Phase::Constraint,
            &format!("type {}", quote_ident(&t.name)),
            render::types::not_valid_constraints(t, target),
        );
    }
    for t in &s.tables {
        out.add(
            Phase::ForeignKey,
            &format!("table {}", quote_ident(&t.name)),
            render::table::foreign_keys(t, target),
        );
    }
    for t in &s.tables {
        for g in &t.triggers {
            out.add(
                Phase::Trigger,
                &format!("trigger {}.{}", quote_ident(&t.name), quote_ident(&g.name)),
                render::trigger::create(&t.name, g, target),
            );
        }
    }
    for t in &s.tables {
        out.add(
            Phase::RowSecurity,
            &format!("table {}", quote_ident(&t.name)),
            render::table::row_security(t, target),
        );
    }
    for t in &s.tables {
        for p in &t.policies {
            out.add(
                Phase::Policy,
                &format!("policy {}.{}", quote_ident(&t.name), quote_ident(&p.name)),
                [render::policy::create(&t.name, p, target)],
            );
        }
    }
    for (what, sql) in render::comment::statements(s, target) {
        out.add(Phase::Comment, &what, [sql]);
    }
    for (what, sql) in render::grant::statements(s, target) {
        out.add(Phase::Grant, &what, [sql]);
    }
    let schema_label = format!("schema {}", quote_ident(target));
    out.add(
        Phase::Schema,
        &schema_label,
        [format!(
            "ALTER SCHEMA {} OWNER TO {}",
            quote_ident(target),
            quote_ident(&s.owner)
        )],
    );
    out.add(
        Phase::Schema,
        &schema_label,
        sync_statements(
            &format!("SCHEMA {}", quote_ident(target)),
            None,
            AclKind::Schema,
            &s.owner,
            &s.acl,
        ),
    );
    Ok(out.steps)
}
