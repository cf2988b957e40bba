//! The clone plan: the statements that recreate a schema model as schema `target`, in phases.
//!
//! 1. objects, in dependency order ([`crate::order`]): collations, types, sequences, tables (with
//!    owned sequences and validated constraints, and — structure only — the foreign keys to tables
//!    created before them, in CREATE TABLE as the template's own DDL has them: no ALTER TABLE, no
//!    check of the new table's rows), functions, aggregates, operators, operator
//!    families and classes, text search dictionaries and configurations, views, materialized
//!    views;
//! 2. (when copying data: rows, then sequence positions);
//! 3. indexes no constraint creates (partitioned parents first), their attachments, per-column
//!    statistics targets, CLUSTER, REPLICA IDENTITY;
//! 4. extended statistics; 5. NOT VALID checks of tables and domains; 6. the other foreign keys;
//! 7. triggers; 8. row security; 9. policies; (when copying data: materialized views refreshed,
//!    in creation order, once the copy's policies exist); 10. comments; 11. the objects' owners
//!    (every `ALTER ... OWNER TO` of the phases above, deferred: the builder of the copy owns
//!    what it still alters); 12. privileges and default privileges; 13. the schema's owner and
//!    privileges.
//!
//! [`Phase::as_builder`] says which statements evaluate user-shaped expressions and so must run
//! with the rights of the role that builds the copy (the extension runs them in a
//! security-restricted operation), and which evaluate nothing and may run as the extension owner.
//!
//! Every statement runs with [`search_path`]`(target)` = `pg_catalog, <target>, pg_temp`, the
//! setting the catalog text was deparsed with (for the source), so that a name PostgreSQL left
//! unqualified means the same object of the copy; and with `check_function_bodies = off` (bodies
//! may name objects created later, as in pg_dump). The target schema itself is created by the
//! caller.

use crate::acl::{sync_statements, AclKind};
use crate::ident::{quote_ident, quote_literal, quote_qualified};
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
    SequencePosition,
    Index,
    Statistics,
    Constraint,
    ForeignKey,
    Trigger,
    RowSecurity,
    Policy,
    Refresh,
    Comment,
    Owner,
    Grant,
    Schema,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Object => "object",
            Phase::Data => "data",
            Phase::SequencePosition => "sequence position",
            Phase::Index => "index",
            Phase::Statistics => "statistics",
            Phase::Constraint => "constraint",
            Phase::ForeignKey => "foreign key",
            Phase::Trigger => "trigger",
            Phase::RowSecurity => "row security",
            Phase::Policy => "policy",
            Phase::Refresh => "refresh",
            Phase::Comment => "comment",
            Phase::Owner => "owner",
            Phase::Grant => "grant",
            Phase::Schema => "schema",
        }
    }

    /// Whether statements of this phase can evaluate an expression the source's owner shaped
    /// (a CHECK, a default, a generated column, an index expression, a materialized view, a
    /// function called by them) and so must run with the builder's rights, never the extension
    /// owner's. The others evaluate nothing: ownership, privileges, the schema's owner, and
    /// foreign keys (whose check PostgreSQL runs as the referenced table's owner; the builder may
    /// lack REFERENCES on tables outside the schema). Rows are copied through
    /// `tenant._copy_rows`, which runs the copy as the new table's owner (the builder) itself.
    pub fn as_builder(self) -> bool {
        !matches!(
            self,
            Phase::Data | Phase::ForeignKey | Phase::Owner | Phase::Grant | Phase::Schema
        )
    }
}

/// Whether `sql` is an `ALTER <kind> <object> OWNER TO <role>` statement, as
/// `render::owner_statement` writes them (the role one identifier, quoted when it must be).
pub fn is_owner_statement(sql: &str) -> bool {
    owner_statement_role(sql).is_some()
}

/// The role an `ALTER <kind> <object> OWNER TO <role>` statement (as `render::owner_statement`
/// writes them) hands its object to, unquoted; `None` for any other statement.
pub fn owner_statement_role(sql: &str) -> Option<String> {
    if !sql.starts_with("ALTER ") {
        return None;
    }
    let (_, role) = sql.rsplit_once(" OWNER TO ")?;
    if let Some(inner) = role.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        (!inner.is_empty() && !inner.replace("\"\"", "").contains('"'))
            .then(|| inner.replace("\"\"", "\""))
    } else {
        (!role.is_empty()
            && role
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
            && quote_ident(role) == role)
            .then(|| role.to_string())
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
    /// Adds statements; ownership changes go to [`Phase::Owner`] (run after everything the
    /// builder still alters, in the order they were planned).
    fn add(&mut self, phase: Phase, object: &str, sqls: impl IntoIterator<Item = String>) {
        for sql in sqls {
            let phase = if is_owner_statement(&sql) {
                Phase::Owner
            } else {
                phase
            };
            self.steps.push(Step {
                phase,
                object: object.to_string(),
                sql,
            });
        }
    }
}

/// The statements that recreate `s` as schema `target` (which exists and is empty), structure
/// only.
pub fn plan(s: &Schema, target: &str) -> Result<Vec<Step>, PlanError> {
    plan_copy(s, target, false)
}

/// The statements that recreate `s` as schema `target`; with `copy_data` also the rows (through
/// `tenant._copy_rows`, before indexes, keys and triggers exist), the sequence positions and the
/// contents of materialized views that are populated in the source (refreshed once the copy's
/// row security and policies exist). Data steps name the source schema, `s.name`.
pub fn plan_copy(s: &Schema, target: &str, copy_data: bool) -> Result<Vec<Step>, PlanError> {
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
    // Foreign keys written inside their table's CREATE TABLE (see
    // render::table::inline_foreign_keys): the tables they reference are created before it.
    let mut inline_keys: std::collections::BTreeMap<&str, Vec<&Constraint>> = Default::default();
    if !copy_data {
        let position: std::collections::BTreeMap<&str, usize> = order
            .iter()
            .enumerate()
            .filter(|(_, k)| k.kind == NodeKind::Table)
            .map(|(i, k)| (k.name.as_str(), i))
            .collect();
        for t in &s.tables {
            let at = position.get(t.name.as_str()).copied().unwrap_or(0);
            let keys = render::table::inline_foreign_keys(s, t, |name| {
                position.get(name).is_some_and(|&p| p < at)
            });
            if !keys.is_empty() {
                inline_keys.insert(t.name.as_str(), keys);
            }
        }
    }

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
            Object::Table(t) => render::table::create_with(
                s,
                t,
                target,
                inline_keys.get(t.name.as_str()).map_or(&[][..], |v| v),
            )?,
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

    if copy_data {
        let reg = |schema: &str, name: &str| {
            format!(
                "{}::pg_catalog.regclass",
                quote_literal(&quote_qualified(schema, name))
            )
        };
        for t in s.tables.iter().filter(|t| !t.partitioned) {
            out.add(
                Phase::Data,
                &format!("table {}", quote_ident(&t.name)),
                [format!(
                    "SELECT tenant._copy_rows({}, {})",
                    reg(&s.name, &t.name),
                    reg(target, &t.name)
                )],
            );
        }
        for q in &s.sequences {
            out.add(
                Phase::SequencePosition,
                &format!("sequence {}", quote_ident(&q.name)),
                [format!(
                    "SELECT pg_catalog.setval({}, s.last_value, s.is_called) FROM {} s",
                    reg(target, &q.name),
                    quote_qualified(&s.name, &q.name)
                )],
            );
        }
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
            render::table::foreign_keys(
                t,
                target,
                &inline_keys
                    .get(t.name.as_str())
                    .map(|v| v.iter().map(|k| k.name.as_str()).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
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
    if copy_data {
        for key in &order {
            if let Some(Object::View(v)) = by_key.get(key) {
                if v.materialized && v.populated {
                    out.add(
                        Phase::Refresh,
                        &format!("materialized view {}", quote_ident(&v.name)),
                        [format!(
                            "REFRESH MATERIALIZED VIEW {}",
                            quote_qualified(target, &v.name)
                        )],
                    );
                }
            }
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
    // The phases in order (a stable sort: within a phase, the order planned); ownership changes
    // wait for everything the builder still alters.
    out.steps.sort_by_key(|st| st.phase);
    Ok(out.steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_statements_are_recognised_and_nothing_else() {
        for yes in [
            "ALTER TABLE c.t OWNER TO o",
            "ALTER FUNCTION c.f(integer) OWNER TO \"Some \"\"One\"\"\"",
            "ALTER OPERATOR CLASS c.ci_ops USING btree OWNER TO tenant_admin",
        ] {
            assert!(is_owner_statement(yes), "{yes}");
        }
        for no in [
            "CREATE TABLE c.t (a int)",
            "ALTER TABLE c.t ADD CONSTRAINT k CHECK (a <> ' OWNER TO x')",
            "ALTER TABLE c.t OWNER TO o; DROP TABLE x",
            "ALTER TABLE c.t OWNER TO \"o\" x",
            "ALTER TABLE c.t OWNER TO Upper",
            "ALTER TABLE c.t OWNER TO select",
            "GRANT SELECT ON c.t TO o",
        ] {
            assert!(!is_owner_statement(no), "{no}");
        }
    }

    #[test]
    fn owner_statements_name_their_role_unquoted() {
        for (sql, role) in [
            ("ALTER TABLE c.t OWNER TO o", "o"),
            (
                "ALTER FUNCTION c.f(integer) OWNER TO \"Some \"\"One\"\"\"",
                "Some \"One\"",
            ),
            ("ALTER SCHEMA c OWNER TO \"select\"", "select"),
        ] {
            assert_eq!(owner_statement_role(sql).as_deref(), Some(role), "{sql}");
        }
        assert_eq!(owner_statement_role("ALTER TABLE c.t OWNER TO Upper"), None);
        assert_eq!(owner_statement_role("GRANT SELECT ON c.t TO o"), None);
    }

    #[test]
    fn the_builder_runs_what_evaluates_expressions() {
        for p in [
            Phase::Object,
            Phase::SequencePosition,
            Phase::Index,
            Phase::Statistics,
            Phase::Constraint,
            Phase::Trigger,
            Phase::RowSecurity,
            Phase::Policy,
            Phase::Refresh,
            Phase::Comment,
        ] {
            assert!(p.as_builder(), "{}", p.name());
        }
        for p in [
            Phase::Data,
            Phase::ForeignKey,
            Phase::Owner,
            Phase::Grant,
            Phase::Schema,
        ] {
            assert!(!p.as_builder(), "{}", p.name());
        }
    }
}
