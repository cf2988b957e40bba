//! The structural diff: two schema models described as objects with named properties, matched
//! by object and compared property by property.
//!
//! Options choose what counts: [`Options::exact`] compares everything (the clone's own
//! verification and `schema_diff`); [`Options::drift`] compares a tenant schema with its
//! template the way pinning and ownership leave it — owners and privileges are not compared, and
//! the template's tables are first given the pin template's row security and policies (passed in
//! as data, [`crate::pin::PinTemplate`]). Text is compared schema-relative, so function bodies and
//! definitions that name their own schema compare equal between a template and its copies.
//!
//! Every property of the model is described here, by exhaustive destructuring: a field added to
//! the model does not compile until it is compared (or stated not to be structure).

use crate::acl::{acl_text, default_acl, effective, AclKind};
use crate::ident::quote_ident;
use crate::inventory::Object;
use crate::model::*;
use crate::pin::PinTemplate;
use crate::SqlText;
use std::collections::BTreeMap;
use std::fmt;

/// What a property is about, for the options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Structure,
    Owner,
    Acl,
    Comment,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prop {
    pub name: &'static str,
    pub value: String,
    pub category: Category,
}

/// Every object of a schema with its properties: `"table customers" -> [...]`.
pub type Description = BTreeMap<String, Vec<Prop>>;

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub owners: bool,
    pub acls: bool,
    pub comments: bool,
    /// Compare the right side with the left side as pinning leaves it.
    pub pin: Option<(PinTemplate, Vec<(String, String)>)>,
}

impl Options {
    /// Everything.
    pub fn exact() -> Options {
        Options {
            owners: true,
            acls: true,
            comments: true,
            pin: None,
        }
    }

    /// A tenant schema against its template: structure and comments; row security and policies
    /// as `pin` with `values` makes them; owners and privileges (which pinning and tenant
    /// ownership change on purpose) not compared.
    pub fn drift(pin: PinTemplate, values: Vec<(String, String)>) -> Options {
        Options {
            owners: false,
            acls: false,
            comments: true,
            pin: Some((pin, values)),
        }
    }

    fn wants(&self, c: Category) -> bool {
        match c {
            Category::Structure => true,
            Category::Owner => self.owners,
            Category::Acl => self.acls,
            Category::Comment => self.comments,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Difference {
    pub object: String,
    /// `None`: the whole object is on one side only.
    pub property: Option<&'static str>,
    pub left: Option<String>,
    pub right: Option<String>,
}

impl Difference {
    /// As `schema_diff` reports it, naming the two schemas.
    pub fn describe(&self, left: &str, right: &str) -> String {
        let (l, r) = (quote_ident(left), quote_ident(right));
        match (self.property, &self.left, &self.right) {
            (None, Some(_), None) => format!("only in {l}"),
            (None, None, Some(_)) => format!("only in {r}"),
            (Some(p), lv, rv) => {
                let v = |x: &Option<String>| match x.as_deref() {
                    None | Some("") => "(nothing)".to_string(),
                    Some(s) => s.to_string(),
                };
                format!("{p}: {l} has {} | {r} has {}", v(lv), v(rv))
            }
            _ => String::new(),
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.describe("a", "b"))
    }
}

struct Props(Vec<Prop>);

impl Props {
    fn s(&mut self, name: &'static str, v: impl ToString) -> &mut Self {
        self.0.push(Prop {
            name,
            value: v.to_string(),
            category: Category::Structure,
        });
        self
    }
    fn o(&mut self, name: &'static str, v: &Option<impl ToString>) -> &mut Self {
        self.s(name, v.as_ref().map_or(String::new(), |x| x.to_string()))
    }
    fn owner(&mut self, v: &str) -> &mut Self {
        self.0.push(Prop {
            name: "owner",
            value: quote_ident(v),
            category: Category::Owner,
        });
        self
    }
    fn acl(&mut self, acl: &Option<Acl>, kind: AclKind, owner: &str) -> &mut Self {
        let eff = effective(acl, kind, owner);
        let value = if eff == default_acl(kind, owner) {
            "default".to_string()
        } else {
            acl_text(&eff)
        };
        self.0.push(Prop {
            name: "acl",
            value,
            category: Category::Acl,
        });
        self
    }
    fn comment(&mut self, c: &Option<String>) -> &mut Self {
        self.0.push(Prop {
            name: "comment",
            value: c.clone().unwrap_or_default(),
            category: Category::Comment,
        });
        self
    }
}

fn list<T: fmt::Debug>(items: &[T]) -> String {
    format!("{items:?}")
}

fn texts(items: &[SqlText]) -> String {
    items
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn rels(items: &[RelationRef]) -> String {
    items
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn column(d: &mut Description, owner_label: &str, position: usize, c: &Column) {
    let Column {
        name,
        data_type,
        collation,
        not_null,
        default,
        identity,
        generated,
        generated_virtual,
        not_null_constraint,
        storage,
        type_storage: _, // follows from data_type
        compression,
        statistics,
        options,
        local,
        inherited,
        acl,
        comment,
    } = c;
    let mut p = Props(Vec::new());
    p.s("position", position)
        .s("type", data_type)
        .o("collation", collation)
        .s(
            "not null",
            match not_null_constraint {
                Some(k) => format!(
                    "CONSTRAINT {} NOT NULL{}{}{}",
                    quote_ident(&k.name),
                    if k.no_inherit { " NO INHERIT" } else { "" },
                    if k.validated { "" } else { " NOT VALID" },
                    if k.local { "" } else { " (inherited)" }
                ),
                None => not_null.to_string(),
            },
        )
        .o("default", default)
        .s("identity", format!("{identity:?}"))
        .o(
            "generated",
            &generated.as_ref().map(|g| {
                if *generated_virtual {
                    format!("{g} VIRTUAL")
                } else {
                    g.to_string()
                }
            }),
        )
        .s("storage", format!("{storage:?}"))
        .s("compression", format!("{compression:?}"))
        .s("statistics", format!("{statistics:?}"))
        .s("options", options.join(","))
        .s("local", local)
        .s("inherited", inherited)
        .acl(acl, AclKind::Column, "")
        .comment(comment);
    d.insert(format!("column {owner_label}.{}", quote_ident(name)), p.0);
}

fn index(d: &mut Description, i: &Index) {
    let Index {
        name,
        unique,
        partitioned,
        definition,
        constraint,
        clustered,
        replica_identity,
        valid,
        parent,
        column_statistics,
        comment,
    } = i;
    let mut p = Props(Vec::new());
    p.s("unique", unique)
        .s("partitioned", partitioned)
        .s("definition", definition)
        .o("constraint", constraint)
        .s("clustered", clustered)
        .s("replica identity", replica_identity)
        .s("valid", valid)
        .o("attached to", parent)
        .s(
            "column statistics",
            column_statistics
                .iter()
                .map(|s| format!("{}={}", s.column, s.target))
                .collect::<Vec<_>>()
                .join(","),
        )
        .comment(comment);
    d.insert(format!("index {}", quote_ident(name)), p.0);
}

fn table(d: &mut Description, t: &Table) {
    let Table {
        name,
        partitioned,
        unlogged,
        access_method,
        options,
        toast_options,
        tablespace,
        partition_key,
        partition_of,
        outside_partitions,
        inherits,
        columns,
        constraints,
        indexes,
        triggers,
        policies,
        rules,
        row_security,
        force_row_security,
        replica_identity,
        owner,
        acl,
        comment,
    } = t;
    let label = quote_ident(name);
    let mut p = Props(Vec::new());
    p.s("partitioned", partitioned)
        .s("unlogged", unlogged)
        .o("access method", access_method)
        .s("options", options.join(","))
        .s("toast options", toast_options.join(","))
        .o("tablespace", tablespace)
        .o("partition by", partition_key)
        .s(
            "partition of",
            partition_of
                .as_ref()
                .map_or(String::new(), |p| format!("{} {}", p.parent, p.bound)),
        )
        .s("partitions elsewhere", rels(outside_partitions))
        .s("inherits", rels(inherits))
        .s("row security", row_security)
        .s("force row security", force_row_security)
        .s("replica identity", format!("{replica_identity:?}"))
        .owner(owner)
        .acl(acl, AclKind::Relation, owner)
        .comment(comment);
    d.insert(format!("table {label}"), p.0);
    for (n, c) in columns.iter().enumerate() {
        column(d, &label, n + 1, c);
    }
    for k in constraints {
        let Constraint {
            name,
            kind,
            definition,
            validated,
            local,
            inherited,
            parent,
            comment,
        } = k;
        let mut p = Props(Vec::new());
        p.s("kind", format!("{kind:?}"))
            .s("definition", definition)
            .s("validated", validated)
            .s("local", local)
            .s("inherited", inherited)
            .o("parent", parent)
            .comment(comment);
        d.insert(format!("constraint {label}.{}", quote_ident(name)), p.0);
    }
    for i in indexes {
        index(d, i);
    }
    for g in triggers {
        let Trigger {
            name,
            definition,
            enabled,
            from_parent,
            comment,
        } = g;
        let mut p = Props(Vec::new());
        p.s("definition", definition)
            .s("enabled", format!("{enabled:?}"))
            .s("from parent", from_parent)
            .comment(comment);
        d.insert(format!("trigger {label}.{}", quote_ident(name)), p.0);
    }
    for pol in policies {
        policy(d, &label, pol);
    }
    for r in rules {
        let Rule {
            name,
            definition,
            comment,
        } = r;
        let mut p = Props(Vec::new());
        p.s("definition", definition).comment(comment);
        d.insert(format!("rule {label}.{}", quote_ident(name)), p.0);
    }
}

fn policy(d: &mut Description, table_label: &str, pol: &Policy) {
    let Policy {
        name,
        permissive,
        command,
        roles,
        using,
        with_check,
        comment,
    } = pol;
    let mut p = Props(Vec::new());
    p.s("permissive", permissive)
        .s("command", format!("{command:?}"))
        .s(
            "roles",
            roles.iter().map(|r| r.sql()).collect::<Vec<_>>().join(","),
        )
        .o("using", using)
        .o("with check", with_check)
        .comment(comment);
    d.insert(format!("policy {table_label}.{}", quote_ident(name)), p.0);
}

fn type_props(d: &mut Description, t: &Type) {
    let Type {
        name,
        definition,
        owner,
        acl,
        comment,
    } = t;
    let label = quote_ident(name);
    let mut p = Props(Vec::new());
    match definition {
        TypeDefinition::Enum { labels } => {
            p.s("kind", "enum").s("labels", list(labels));
        }
        TypeDefinition::Domain {
            base,
            not_null,
            not_null_name,
            default,
            collation,
            constraints,
        } => {
            p.s("kind", "domain")
                .s("base", base)
                .s(
                    "not null",
                    match not_null_name {
                        Some(n) if *not_null => format!("CONSTRAINT {} NOT NULL", quote_ident(n)),
                        _ => not_null.to_string(),
                    },
                )
                .o("default", default)
                .o("collation", collation);
            for c in constraints {
                let DomainConstraint {
                    name,
                    definition,
                    validated,
                    comment,
                } = c;
                let mut q = Props(Vec::new());
                q.s("definition", definition)
                    .s("validated", validated)
                    .comment(comment);
                d.insert(
                    format!("domain constraint {label}.{}", quote_ident(name)),
                    q.0,
                );
            }
        }
        TypeDefinition::Composite { attributes } => {
            p.s("kind", "composite");
            for (n, a) in attributes.iter().enumerate() {
                let Attribute {
                    name,
                    data_type,
                    collation,
                    comment,
                } = a;
                let mut q = Props(Vec::new());
                q.s("position", n + 1)
                    .s("type", data_type)
                    .o("collation", collation)
                    .comment(comment);
                d.insert(format!("attribute {label}.{}", quote_ident(name)), q.0);
            }
        }
        TypeDefinition::Range {
            subtype,
            subtype_opclass,
            collation,
            canonical,
            subtype_diff,
            multirange,
        } => {
            p.s("kind", "range")
                .s("subtype", subtype)
                .s("subtype opclass", subtype_opclass)
                .o("collation", collation)
                .o("canonical", canonical)
                .o("subtype diff", subtype_diff)
                .s("multirange", quote_ident(multirange));
        }
        TypeDefinition::Invalid => {
            p.s("kind", "invalid");
        }
    }
    p.owner(owner)
        .acl(acl, AclKind::Type, owner)
        .comment(comment);
    d.insert(format!("type {label}"), p.0);
}

/// Every object of `s` with its properties.
pub fn describe(s: &Schema) -> Description {
    let mut d = describe_schema(s);
    for o in s.objects() {
        describe_object(&mut d, o);
    }
    d
}

/// The properties of the schema itself: owner, privileges, comment, default privileges, and
/// what could not be read.
fn describe_schema(s: &Schema) -> Description {
    let Schema {
        name: _, // what the text is relative to
        owner,
        acl,
        comment,
        default_privileges,
        collations: _,
        types: _,
        sequences: _,
        tables: _,
        views: _,
        functions: _,
        aggregates: _,
        operators: _,
        operator_families: _,
        operator_classes: _,
        text_search_dictionaries: _,
        text_search_configurations: _,
        statistics: _, // these lists: through s.objects() below
        unsupported,
        dependencies: _, // derived from the objects
    } = s;
    let mut d = Description::new();
    let mut p = Props(Vec::new());
    p.owner(owner)
        .acl(acl, AclKind::Schema, owner)
        .comment(comment);
    d.insert("schema".to_string(), p.0);
    for dp in default_privileges {
        let DefaultPrivileges { role, objects, acl } = dp;
        d.insert(
            format!(
                "default privileges for {} on {objects:?}",
                quote_ident(role)
            ),
            vec![Prop {
                name: "acl",
                value: acl_text(acl),
                category: Category::Acl,
            }],
        );
    }
    for u in unsupported {
        let Unsupported { object, reason } = u;
        d.insert(
            format!("unsupported {object}"),
            vec![Prop {
                name: "reason",
                value: reason.clone(),
                category: Category::Structure,
            }],
        );
    }
    d
}

/// One object with its properties (and its sub-objects: columns, constraints, ...).
fn describe_object(d: &mut Description, o: Object<'_>) {
    let label = o.label();
    let mut p = Props(Vec::new());
    match o {
        Object::Table(t) => {
            table(d, t);
            return;
        }
        Object::Type(t) => {
            type_props(d, t);
            return;
        }
        Object::Collation(c) => {
            let Collation {
                name: _,
                provider,
                deterministic,
                collate,
                ctype,
                icu_locale,
                owner,
                comment,
            } = c;
            p.s("provider", format!("{provider:?}"))
                .s("deterministic", deterministic)
                .o("collate", collate)
                .o("ctype", ctype)
                .o("icu locale", icu_locale)
                .owner(owner)
                .comment(comment);
        }
        Object::Sequence(q) => {
            let Sequence {
                name: _,
                data_type,
                start,
                increment,
                min,
                max,
                cache,
                cycle,
                unlogged,
                owned_by,
                owner,
                acl,
                comment,
            } = q;
            p.s("type", data_type)
                .s("start", start)
                .s("increment", increment)
                .s("min", min)
                .s("max", max)
                .s("cache", cache)
                .s("cycle", cycle)
                .s("unlogged", unlogged)
                .s(
                    "owned by",
                    owned_by.as_ref().map_or(String::new(), |o| {
                        format!(
                            "{}.{}{}",
                            quote_ident(&o.table),
                            quote_ident(&o.column),
                            if o.identity { " (identity)" } else { "" }
                        )
                    }),
                )
                .owner(owner)
                .acl(acl, AclKind::Sequence, owner)
                .comment(comment);
        }
        Object::View(v) => {
            let View {
                name,
                materialized,
                definition,
                options,
                access_method,
                tablespace,
                columns,
                indexes,
                populated: _, // data, not structure
                owner,
                acl,
                comment,
            } = v;
            p.s("materialized", materialized)
                .s("definition", definition)
                .s("options", options.join(","))
                .o("access method", access_method)
                .o("tablespace", tablespace)
                .owner(owner)
                .acl(acl, AclKind::Relation, owner)
                .comment(comment);
            for (n, c) in columns.iter().enumerate() {
                column(d, &quote_ident(name), n + 1, c);
            }
            for i in indexes {
                index(d, i);
            }
        }
        Object::Function(f) => {
            let Function {
                name: _,
                kind,
                identity_arguments: _, // part of the object's name
                arguments,
                result,
                language,
                volatility,
                strict,
                security_definer,
                leakproof,
                parallel,
                cost,
                rows,
                support,
                config,
                body,
                owner,
                acl,
                comment,
            } = f;
            p.s("kind", format!("{kind:?}"))
                .s("arguments", arguments)
                .o("result", result)
                .s("language", quote_ident(language))
                .s("volatility", format!("{volatility:?}"))
                .s("strict", strict)
                .s("security definer", security_definer)
                .s("leakproof", leakproof)
                .s("parallel", format!("{parallel:?}"))
                .s("cost", cost)
                .s("rows", rows)
                .o("support", support)
                .s("config", config_text(config))
                .s("body", body_text(body))
                .owner(owner)
                .acl(acl, AclKind::Routine, owner)
                .comment(comment);
        }
        Object::Aggregate(a) => {
            let Aggregate {
                name: _,
                identity_arguments: _, // part of the object's name
                arguments,
                kind,
                transition,
                state_type,
                state_space,
                final_function,
                final_extra,
                final_modify,
                combine,
                serial,
                deserial,
                initial_value,
                moving,
                sort_operator,
                parallel,
                owner,
                acl,
                comment,
            } = a;
            p.s("arguments", arguments)
                .s("kind", format!("{kind:?}"))
                .s("transition", transition)
                .s("state type", state_type)
                .s("state space", state_space)
                .o("final function", final_function)
                .s("final extra", final_extra)
                .s("final modify", format!("{final_modify:?}"))
                .o("combine", combine)
                .o("serial", serial)
                .o("deserial", deserial)
                .s("initial value", format!("{initial_value:?}"))
                .s("moving", format!("{moving:?}"))
                .o("sort operator", sort_operator)
                .s("parallel", format!("{parallel:?}"))
                .owner(owner)
                .acl(acl, AclKind::Routine, owner)
                .comment(comment);
        }
        Object::Operator(op) => {
            let Operator {
                name: _,
                left: _,
                right: _, // part of the object's name
                result,
                function,
                commutator,
                negator,
                restrict,
                join,
                hashes,
                merges,
                owner,
                comment,
            } = op;
            p.s("result", result)
                .s("function", function)
                .o("commutator", commutator)
                .o("negator", negator)
                .o("restrict", restrict)
                .o("join", join)
                .s("hashes", hashes)
                .s("merges", merges)
                .owner(owner)
                .comment(comment);
        }
        Object::OperatorFamily(f) => {
            let OperatorFamily {
                name: _,
                method: _,
                members,
                owner,
                comment,
            } = f;
            p.s("members", members_text(members))
                .owner(owner)
                .comment(comment);
        }
        Object::OperatorClass(c) => {
            let OperatorClass {
                name: _,
                method: _,
                data_type,
                default,
                family,
                storage,
                members,
                owner,
                comment,
            } = c;
            p.s("type", data_type)
                .s("default", default)
                .s("family", family)
                .o("storage", storage)
                .s("members", members_text(members))
                .owner(owner)
                .comment(comment);
        }
        Object::TextSearchDictionary(t) => {
            let TextSearchDictionary {
                name: _,
                template,
                options,
                owner,
                comment,
            } = t;
            p.s("template", template)
                .o("options", options)
                .owner(owner)
                .comment(comment);
        }
        Object::TextSearchConfiguration(t) => {
            let TextSearchConfiguration {
                name: _,
                parser,
                mappings,
                owner,
                comment,
            } = t;
            p.s("parser", parser)
                .s(
                    "mappings",
                    mappings
                        .iter()
                        .map(|m| format!("{}: {}", m.token, texts(&m.dictionaries)))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
                .owner(owner)
                .comment(comment);
        }
        Object::Statistics(st) => {
            let Statistics {
                name: _,
                table,
                definition,
                target,
                owner,
                comment,
            } = st;
            p.s("table", quote_ident(table))
                .s("definition", definition)
                .s("target", format!("{target:?}"))
                .owner(owner)
                .comment(comment);
        }
    }
    d.insert(label, p.0);
}

fn config_text(config: &[Setting]) -> String {
    config
        .iter()
        .map(|s| match &s.value {
            SettingValue::List(items) => format!(
                "{}={}",
                s.name,
                items
                    .iter()
                    .map(|e| match e {
                        PathEntry::Own => crate::sqltext::SELF_DISPLAY.to_string(),
                        PathEntry::Name(n) => quote_ident(n),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            SettingValue::Value(v) => format!("{}={v}", s.name),
            SettingValue::Empty => format!("{}=", s.name),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn body_text(body: &FunctionBody) -> String {
    match body {
        FunctionBody::Sql(t) => format!("sql: {t}"),
        FunctionBody::Text(t) => format!("text: {t}"),
        FunctionBody::Object { file, symbol } => format!("object: {file} {symbol}"),
        FunctionBody::Missing => "missing".to_string(),
    }
}

fn members_text(members: &[OperatorMember]) -> String {
    members
        .iter()
        .map(|m| match m {
            OperatorMember::Operator {
                strategy,
                operator,
                left,
                right,
                order_family,
            } => format!(
                "operator {strategy} {operator}({left}, {right}){}",
                order_family
                    .as_ref()
                    .map_or(String::new(), |f| format!(" for order by {f}"))
            ),
            OperatorMember::Function {
                number,
                left,
                right,
                function,
            } => format!("function {number} ({left}, {right}) {function}"),
            OperatorMember::Invalid => "invalid".to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The differences between two descriptions, object by object, property by property.
pub fn compare(a: &Description, b: &Description, opts: &Options) -> Vec<Difference> {
    let mut out = Vec::new();
    let show = |props: &[Prop]| -> String {
        props
            .iter()
            .filter(|p| opts.wants(p.category) && !p.value.is_empty())
            .map(|p| format!("{}={}", p.name, p.value))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut ai = a.iter().peekable();
    let mut bi = b.iter().peekable();
    loop {
        match (ai.peek(), bi.peek()) {
            (None, None) => break,
            (Some((ka, pa)), None) => {
                out.push(only(ka, Some(show(pa)), None));
                ai.next();
            }
            (None, Some((kb, pb))) => {
                out.push(only(kb, None, Some(show(pb))));
                bi.next();
            }
            (Some((ka, pa)), Some((kb, pb))) => {
                if ka < kb {
                    out.push(only(ka, Some(show(pa)), None));
                    ai.next();
                } else if kb < ka {
                    out.push(only(kb, None, Some(show(pb))));
                    bi.next();
                } else {
                    for (x, y) in pa.iter().zip(pb.iter()) {
                        if x.value != y.value && opts.wants(x.category) {
                            out.push(Difference {
                                object: (*ka).clone(),
                                property: Some(x.name),
                                left: Some(x.value.clone()),
                                right: Some(y.value.clone()),
                            });
                        }
                    }
                    ai.next();
                    bi.next();
                }
            }
        }
    }
    out
}

fn only(object: &str, left: Option<String>, right: Option<String>) -> Difference {
    Difference {
        object: object.to_string(),
        property: None,
        left,
        right,
    }
}

/// Whether every object of `a` and `b` is equal as a model value: then they have no difference
/// under any options (the common case of a clone's verification, answered without describing).
fn identical(a: &Schema, b: &Schema) -> bool {
    let views_equal = a.views.len() == b.views.len()
        && a.views.iter().zip(&b.views).all(|(x, y)| {
            View {
                populated: y.populated,
                ..x.clone()
            } == *y
        });
    a.owner == b.owner
        && a.acl == b.acl
        && a.comment == b.comment
        && a.default_privileges == b.default_privileges
        && a.collations == b.collations
        && a.types == b.types
        && a.sequences == b.sequences
        && a.tables == b.tables
        && views_equal
        && a.functions == b.functions
        && a.aggregates == b.aggregates
        && a.operators == b.operators
        && a.operator_families == b.operator_families
        && a.operator_classes == b.operator_classes
        && a.text_search_dictionaries == b.text_search_dictionaries
        && a.text_search_configurations == b.text_search_configurations
        && a.statistics == b.statistics
        && a.unsupported == b.unsupported
}

/// Whether two objects of the same label are equal as model values (then they have no
/// difference under any options).
fn same(a: &Object<'_>, b: &Object<'_>) -> bool {
    match (a, b) {
        (Object::Collation(x), Object::Collation(y)) => x == y,
        (Object::Type(x), Object::Type(y)) => x == y,
        (Object::Sequence(x), Object::Sequence(y)) => x == y,
        (Object::Table(x), Object::Table(y)) => x == y,
        (Object::View(x), Object::View(y)) => x == y,
        (Object::Function(x), Object::Function(y)) => x == y,
        (Object::Aggregate(x), Object::Aggregate(y)) => x == y,
        (Object::Operator(x), Object::Operator(y)) => x == y,
        (Object::OperatorFamily(x), Object::OperatorFamily(y)) => x == y,
        (Object::OperatorClass(x), Object::OperatorClass(y)) => x == y,
        (Object::TextSearchDictionary(x), Object::TextSearchDictionary(y)) => x == y,
        (Object::TextSearchConfiguration(x), Object::TextSearchConfiguration(y)) => x == y,
        (Object::Statistics(x), Object::Statistics(y)) => x == y,
        _ => false,
    }
}

fn diff_models(a: &Schema, b: &Schema, opts: &Options) -> Vec<Difference> {
    if identical(a, b) {
        return Vec::new();
    }
    // Only objects that are not equal as values are described (a tenant schema is mostly equal
    // to its template: describing everything would cost as much as a full diff each time).
    let mut da = describe_schema(a);
    let mut db = describe_schema(b);
    let left: BTreeMap<String, Object<'_>> =
        a.objects().into_iter().map(|o| (o.label(), o)).collect();
    let right: BTreeMap<String, Object<'_>> =
        b.objects().into_iter().map(|o| (o.label(), o)).collect();
    for (label, x) in &left {
        match right.get(label) {
            Some(y) if same(x, y) => {}
            Some(y) => {
                describe_object(&mut da, *x);
                describe_object(&mut db, *y);
            }
            None => describe_object(&mut da, *x),
        }
    }
    for (label, y) in &right {
        if !left.contains_key(label) {
            describe_object(&mut db, *y);
        }
    }
    compare(&da, &db, opts)
}

/// `s` without the owners and privileges the options do not compare, so that objects that
/// differ only in those compare equal as values (the fast path of [`diff_models`]).
fn strip(s: &mut Schema, owners: bool, acls: bool) {
    fn columns(cs: &mut [Column], acls: bool) {
        for c in cs {
            if !acls {
                c.acl = None;
            }
        }
    }
    macro_rules! each {
        ($($list:ident),*) => {
            $(for o in &mut s.$list {
                if !owners {
                    o.owner.clear();
                }
            })*
        };
    }
    macro_rules! each_acl {
        ($($list:ident),*) => {
            $(for o in &mut s.$list {
                if !acls {
                    o.acl = None;
                }
            })*
        };
    }
    each!(
        collations,
        types,
        sequences,
        tables,
        views,
        functions,
        aggregates,
        operators,
        operator_families,
        operator_classes,
        text_search_dictionaries,
        text_search_configurations,
        statistics
    );
    each_acl!(types, sequences, tables, views, functions, aggregates);
    for t in &mut s.tables {
        columns(&mut t.columns, acls);
    }
    for v in &mut s.views {
        columns(&mut v.columns, acls);
    }
    if !owners {
        s.owner.clear();
    }
    if !acls {
        s.acl = None;
        s.default_privileges.clear();
    }
}

/// The structural differences between schema `a` (the reference: a template, a clone's source)
/// and schema `b`.
pub fn diff(a: &Schema, b: &Schema, opts: &Options) -> Vec<Difference> {
    if opts.owners && opts.acls {
        return match &opts.pin {
            Some((pin, values)) => diff_models(&pin.apply(a, values), b, opts),
            None => diff_models(a, b, opts),
        };
    }
    let mut x = match &opts.pin {
        Some((pin, values)) => pin.apply(a, values),
        None => a.clone(),
    };
    let mut y = b.clone();
    strip(&mut x, opts.owners, opts.acls);
    strip(&mut y, opts.owners, opts.acls);
    diff_models(&x, &y, opts)
}

/// The differences between the policies a table should have and those it has, as policy
/// objects of table `table` (for the checker: the policies enable_isolation or pinning makes,
/// from their template, against the table's).
pub fn compare_policies(table: &str, expected: &[Policy], actual: &[Policy]) -> Vec<Difference> {
    let label = quote_ident(table);
    let mut a = Description::new();
    let mut b = Description::new();
    for p in expected {
        policy(&mut a, &label, p);
    }
    for p in actual {
        policy(&mut b, &label, p);
    }
    compare(&a, &b, &Options::exact())
}
