//! The one object inventory: every object of a schema model, how it is named in messages and in
//! DDL, who owns it, and the key under which it is ordered. The planner, the diff and (in the
//! extension) pinning and ownership all walk the schema through [`Schema::objects`].

use crate::ident::{quote_ident, quote_qualified};
use crate::model::*;

impl NodeKind {
    /// As a person reads it, and as PostgreSQL's `pg_describe_object` starts.
    pub fn label(self) -> &'static str {
        match self {
            NodeKind::Collation => "collation",
            NodeKind::Type => "type",
            NodeKind::Sequence => "sequence",
            NodeKind::Table => "table",
            NodeKind::Function => "function",
            NodeKind::Aggregate => "aggregate",
            NodeKind::Operator => "operator",
            NodeKind::OperatorFamily => "operator family",
            NodeKind::OperatorClass => "operator class",
            NodeKind::TextSearchDictionary => "text search dictionary",
            NodeKind::TextSearchConfiguration => "text search configuration",
            NodeKind::View => "view",
            NodeKind::MaterializedView => "materialized view",
        }
    }
}

impl ObjectKey {
    pub fn new(kind: NodeKind, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            kind,
            name: name.into(),
        }
    }

    /// A function's or aggregate's key: its quoted name and identity arguments.
    pub fn routine(kind: NodeKind, name: &str, identity_arguments: &crate::SqlText) -> ObjectKey {
        ObjectKey::new(kind, format!("{}({identity_arguments})", quote_ident(name)))
    }

    /// An operator's key: `op(left, right)` (`NONE` for a prefix operator).
    pub fn operator(
        name: &str,
        left: &Option<crate::SqlText>,
        right: &crate::SqlText,
    ) -> ObjectKey {
        let left = left.as_ref().map_or("NONE".to_string(), |l| l.to_string());
        ObjectKey::new(NodeKind::Operator, format!("{name}({left}, {right})"))
    }

    /// An operator family's or class's key: `name USING method`.
    pub fn opfamily(kind: NodeKind, name: &str, method: &str) -> ObjectKey {
        ObjectKey::new(
            kind,
            format!("{} USING {}", quote_ident(name), quote_ident(method)),
        )
    }

    pub fn named(kind: NodeKind, name: &str) -> ObjectKey {
        ObjectKey::new(kind, quote_ident(name))
    }
}

/// One object of the schema (sub-objects such as columns and indexes belong to their table).
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    Collation(&'a Collation),
    Type(&'a Type),
    Sequence(&'a Sequence),
    Table(&'a Table),
    View(&'a View),
    Function(&'a Function),
    Aggregate(&'a Aggregate),
    Operator(&'a Operator),
    OperatorFamily(&'a OperatorFamily),
    OperatorClass(&'a OperatorClass),
    TextSearchDictionary(&'a TextSearchDictionary),
    TextSearchConfiguration(&'a TextSearchConfiguration),
    Statistics(&'a Statistics),
}

impl Schema {
    /// Every object of the schema, kind by kind, each list in its model order.
    pub fn objects(&self) -> Vec<Object<'_>> {
        let mut out = Vec::new();
        out.extend(self.collations.iter().map(Object::Collation));
        out.extend(self.types.iter().map(Object::Type));
        out.extend(self.sequences.iter().map(Object::Sequence));
        out.extend(self.tables.iter().map(Object::Table));
        out.extend(self.views.iter().map(Object::View));
        out.extend(self.functions.iter().map(Object::Function));
        out.extend(self.aggregates.iter().map(Object::Aggregate));
        out.extend(self.operators.iter().map(Object::Operator));
        out.extend(self.operator_families.iter().map(Object::OperatorFamily));
        out.extend(self.operator_classes.iter().map(Object::OperatorClass));
        out.extend(
            self.text_search_dictionaries
                .iter()
                .map(Object::TextSearchDictionary),
        );
        out.extend(
            self.text_search_configurations
                .iter()
                .map(Object::TextSearchConfiguration),
        );
        out.extend(self.statistics.iter().map(Object::Statistics));
        out
    }

    /// The tables that pinning covers (ordinary and partitioned), by name.
    pub fn pinnable_tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter()
    }
}

impl Object<'_> {
    /// The key this object is ordered by, if it is created on its own (owned sequences are
    /// created with their table; statistics after every table).
    pub fn key(&self) -> Option<ObjectKey> {
        Some(match self {
            Object::Collation(c) => ObjectKey::named(NodeKind::Collation, &c.name),
            Object::Type(t) => ObjectKey::named(NodeKind::Type, &t.name),
            Object::Sequence(s) if s.owned_by.is_some() => return None,
            Object::Sequence(s) => ObjectKey::named(NodeKind::Sequence, &s.name),
            Object::Table(t) => ObjectKey::named(NodeKind::Table, &t.name),
            Object::View(v) => ObjectKey::named(
                if v.materialized {
                    NodeKind::MaterializedView
                } else {
                    NodeKind::View
                },
                &v.name,
            ),
            Object::Function(f) => {
                ObjectKey::routine(NodeKind::Function, &f.name, &f.identity_arguments)
            }
            Object::Aggregate(a) => {
                ObjectKey::routine(NodeKind::Aggregate, &a.name, &a.identity_arguments)
            }
            Object::Operator(o) => ObjectKey::operator(&o.name, &o.left, &o.right),
            Object::OperatorFamily(f) => {
                ObjectKey::opfamily(NodeKind::OperatorFamily, &f.name, &f.method)
            }
            Object::OperatorClass(c) => {
                ObjectKey::opfamily(NodeKind::OperatorClass, &c.name, &c.method)
            }
            Object::TextSearchDictionary(d) => {
                ObjectKey::named(NodeKind::TextSearchDictionary, &d.name)
            }
            Object::TextSearchConfiguration(c) => {
                ObjectKey::named(NodeKind::TextSearchConfiguration, &c.name)
            }
            Object::Statistics(_) => return None,
        })
    }

    /// How messages name it: `table customers`, `function f(x integer)`.
    pub fn label(&self) -> String {
        match self {
            Object::Collation(c) => format!("collation {}", quote_ident(&c.name)),
            Object::Type(t) => format!("type {}", quote_ident(&t.name)),
            Object::Sequence(s) => format!("sequence {}", quote_ident(&s.name)),
            Object::Table(t) => format!("table {}", quote_ident(&t.name)),
            Object::View(v) if v.materialized => {
                format!("materialized view {}", quote_ident(&v.name))
            }
            Object::View(v) => format!("view {}", quote_ident(&v.name)),
            Object::Function(f) => format!(
                "{} {}({})",
                match f.kind {
                    FunctionKind::Procedure => "procedure",
                    _ => "function",
                },
                quote_ident(&f.name),
                f.identity_arguments
            ),
            Object::Aggregate(a) => {
                format!(
                    "aggregate {}({})",
                    quote_ident(&a.name),
                    a.identity_arguments
                )
            }
            Object::Operator(o) => format!(
                "operator {}",
                ObjectKey::operator(&o.name, &o.left, &o.right).name
            ),
            Object::OperatorFamily(f) => format!(
                "operator family {} for access method {}",
                quote_ident(&f.name),
                quote_ident(&f.method)
            ),
            Object::OperatorClass(c) => format!(
                "operator class {} for access method {}",
                quote_ident(&c.name),
                quote_ident(&c.method)
            ),
            Object::TextSearchDictionary(d) => {
                format!("text search dictionary {}", quote_ident(&d.name))
            }
            Object::TextSearchConfiguration(c) => {
                format!("text search configuration {}", quote_ident(&c.name))
            }
            Object::Statistics(s) => format!("statistics {}", quote_ident(&s.name)),
        }
    }

    /// How DDL names it in schema `target`, after the object type word: for
    /// `ALTER <word> <reference> OWNER TO`, `COMMENT ON <word> <reference>`.
    pub fn reference(&self, target: &str) -> (&'static str, String) {
        let q = |n: &str| quote_qualified(target, n);
        match self {
            Object::Collation(c) => ("COLLATION", q(&c.name)),
            Object::Type(t) => (
                if matches!(t.definition, TypeDefinition::Domain { .. }) {
                    "DOMAIN"
                } else {
                    "TYPE"
                },
                q(&t.name),
            ),
            Object::Sequence(s) => ("SEQUENCE", q(&s.name)),
            Object::Table(t) => ("TABLE", q(&t.name)),
            Object::View(v) if v.materialized => ("MATERIALIZED VIEW", q(&v.name)),
            Object::View(v) => ("VIEW", q(&v.name)),
            Object::Function(f) => (
                if f.kind == FunctionKind::Procedure {
                    "PROCEDURE"
                } else {
                    "FUNCTION"
                },
                format!("{}({})", q(&f.name), f.identity_arguments.render(target)),
            ),
            Object::Aggregate(a) => (
                "AGGREGATE",
                format!("{}({})", q(&a.name), aggregate_signature(a, target)),
            ),
            Object::Operator(o) => (
                "OPERATOR",
                format!(
                    "{}.{}({}, {})",
                    quote_ident(target),
                    o.name,
                    o.left
                        .as_ref()
                        .map_or("NONE".to_string(), |l| l.render(target)),
                    o.right.render(target)
                ),
            ),
            Object::OperatorFamily(f) => (
                "OPERATOR FAMILY",
                format!("{} USING {}", q(&f.name), quote_ident(&f.method)),
            ),
            Object::OperatorClass(c) => (
                "OPERATOR CLASS",
                format!("{} USING {}", q(&c.name), quote_ident(&c.method)),
            ),
            Object::TextSearchDictionary(d) => ("TEXT SEARCH DICTIONARY", q(&d.name)),
            Object::TextSearchConfiguration(c) => ("TEXT SEARCH CONFIGURATION", q(&c.name)),
            Object::Statistics(s) => ("STATISTICS", q(&s.name)),
        }
    }

    pub fn owner(&self) -> &str {
        match self {
            Object::Collation(c) => &c.owner,
            Object::Type(t) => &t.owner,
            Object::Sequence(s) => &s.owner,
            Object::Table(t) => &t.owner,
            Object::View(v) => &v.owner,
            Object::Function(f) => &f.owner,
            Object::Aggregate(a) => &a.owner,
            Object::Operator(o) => &o.owner,
            Object::OperatorFamily(f) => &f.owner,
            Object::OperatorClass(c) => &c.owner,
            Object::TextSearchDictionary(d) => &d.owner,
            Object::TextSearchConfiguration(c) => &c.owner,
            Object::Statistics(s) => &s.owner,
        }
    }

    pub fn comment(&self) -> &Option<String> {
        match self {
            Object::Collation(c) => &c.comment,
            Object::Type(t) => &t.comment,
            Object::Sequence(s) => &s.comment,
            Object::Table(t) => &t.comment,
            Object::View(v) => &v.comment,
            Object::Function(f) => &f.comment,
            Object::Aggregate(a) => &a.comment,
            Object::Operator(o) => &o.comment,
            Object::OperatorFamily(f) => &f.comment,
            Object::OperatorClass(c) => &c.comment,
            Object::TextSearchDictionary(d) => &d.comment,
            Object::TextSearchConfiguration(c) => &c.comment,
            Object::Statistics(s) => &s.comment,
        }
    }
}

/// An aggregate's signature for ALTER and COMMENT: its identity arguments, `*` when it has none.
pub fn aggregate_signature(a: &Aggregate, target: &str) -> String {
    let args = a.identity_arguments.render(target);
    if args.is_empty() {
        "*".to_string()
    } else {
        args
    }
}
