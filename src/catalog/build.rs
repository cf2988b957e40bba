//! From catalog rows to the model: deparse what PostgreSQL stores as oids and node trees (with
//! the schema on the search path, [`qft_schema::plan::search_path`]), make the text
//! schema-relative, and type every code.

use super::deparse as d;
use super::raw::{self, Oid};
use qft_schema::ident::{quote_ident, quote_qualified};
use qft_schema::model::*;
use qft_schema::SqlText;
use std::cell::RefCell;
use std::collections::BTreeMap;

fn ch(s: &str) -> char {
    s.chars().next().unwrap_or('\0')
}

fn acl(a: &raw::Acl) -> Option<Acl> {
    a.as_ref().map(|grants| {
        let mut g: Vec<Grant> = grants
            .iter()
            .filter_map(|g| {
                Some(Grant {
                    grantee: g.grantee.clone().map_or(Grantee::Public, Grantee::Role),
                    privilege: Privilege::from_sql(&g.privilege)?,
                    grantable: g.grantable,
                })
            })
            .collect();
        g.sort();
        Acl(g)
    })
}

/// `pg_get_constraintdef` without the ` NOT VALID` it appends to a constraint not validated (the
/// model keeps that as `validated`).
fn constraint_definition(o: Oid) -> String {
    let def = d::constraintdef(o);
    def.strip_suffix(" NOT VALID")
        .map_or(def.clone(), str::to_string)
}

fn rel_ref(r: &raw::Ref) -> RelationRef {
    RelationRef {
        schema: r.schema.clone(),
        name: r.name.clone(),
    }
}

/// `schema.name` for a name that must be qualified (operator classes, families, templates):
/// its own schema marked.
fn qualified(r: &raw::Ref) -> SqlText {
    match &r.schema {
        None => SqlText::own_qualified(&r.name),
        Some(s) => SqlText::plain(quote_qualified(s, &r.name)),
    }
}

/// An operator named for `OPERATOR(schema.op)` or `schema.op`.
fn operator_name(o: &raw::OperatorName, own: &str, wrap: bool) -> SqlText {
    let schema = if o.schema == own {
        qft_schema::sqltext::SELF.to_string()
    } else {
        quote_ident(&o.schema)
    };
    let text = format!("{schema}.{}", o.name);
    SqlText::from_marked(if wrap {
        format!("OPERATOR({text})")
    } else {
        text
    })
}

fn schema_of(name: &raw::OperatorName, own: &str) -> raw::Ref {
    raw::Ref {
        schema: (name.schema != own).then(|| name.schema.clone()),
        name: name.name.clone(),
    }
}

/// The elements of a `search_path` value (`a, "B c", $user`), unquoted.
pub fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = r.char_indices();
            let mut end = r.len();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if r[i + 1..].starts_with('"') {
                        value.push('"');
                        chars.next();
                    } else {
                        end = i + 1;
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
            out.push(value);
            rest = r[end..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let item = rest[..end].trim();
            if !item.is_empty() {
                out.push(qft_schema::ident::fold_unquoted(item));
            }
            rest = &rest[end..];
        }
        rest = rest
            .trim_start()
            .strip_prefix(',')
            .unwrap_or(rest)
            .trim_start();
    }
    out
}

const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
];

fn setting(item: &str, own: &str) -> Setting {
    let (name, value) = item.split_once('=').unwrap_or((item, ""));
    let value = if LIST_SETTINGS.contains(&name) {
        SettingValue::List(
            split_path(value)
                .into_iter()
                .map(|e| {
                    if e == own {
                        PathEntry::Own
                    } else {
                        PathEntry::Name(e)
                    }
                })
                .collect(),
        )
    } else {
        SettingValue::Value(value.to_string())
    };
    Setting {
        name: name.to_string(),
        value,
    }
}

struct Reader<'a> {
    own: &'a str,
    unsupported: Vec<Unsupported>,
    /// `format_type` by (type, typmod), marked: a schema's columns use few types, and each call
    /// looks its type up and each text is tokenized to be marked. (Within one read the catalogs
    /// and the search_path do not change.)
    types: RefCell<BTreeMap<(Oid, Option<i32>), SqlText>>,
    /// Column defaults by their node tree without its `:location` fields, when it has no column
    /// reference (a default cannot have one): deparsed the same for any table.
    defaults: RefCell<BTreeMap<String, SqlText>>,
}

/// A node tree (`pg_node_tree` text) without its `:location N` fields (offsets into the text of
/// the statement that created it, which differ between otherwise equal expressions).
fn without_locations(tree: &str) -> String {
    let mut out = String::with_capacity(tree.len());
    let mut rest = tree;
    while let Some(at) = rest.find(" :location ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + " :location ".len()..];
        let digits = after
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(after.len(), |(i, _)| i);
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

impl Reader<'_> {
    fn names(&self, text: &str) -> SqlText {
        SqlText::names(text, self.own)
    }
    fn deparsed(&self, text: &str) -> SqlText {
        SqlText::deparsed(text, self.own)
    }
    fn type_name(&self, t: Oid, typmod: Option<i32>) -> SqlText {
        if let Some(known) = self.types.borrow().get(&(t, typmod)) {
            return known.clone();
        }
        let text = self.names(&d::format_type(t, typmod));
        self.types.borrow_mut().insert((t, typmod), text.clone());
        text
    }
    /// A column default or generation expression of relation `rel`.
    fn column_expression(&self, tree: &str, rel: Oid, generated: bool) -> SqlText {
        if generated || tree.contains("{VAR ") {
            return self.deparsed(&d::expr(tree, rel));
        }
        let key = without_locations(tree);
        if let Some(known) = self.defaults.borrow().get(&key) {
            return known.clone();
        }
        let text = self.deparsed(&d::expr(tree, rel));
        self.defaults.borrow_mut().insert(key, text.clone());
        text
    }
    fn proc(&self, o: Oid) -> Option<SqlText> {
        (o != 0).then(|| self.names(&d::regproc(o)))
    }
    fn collation(&self, c: Oid) -> SqlText {
        self.names(&d::regcollation(c))
    }
    fn invalid(&mut self, object: String, reason: &str) {
        self.unsupported.push(Unsupported {
            object,
            reason: reason.to_string(),
        });
    }

    fn column(&mut self, a: &raw::Attribute) -> Column {
        let storage = |s: &str| match ch(s) {
            'p' => Storage::Plain,
            'm' => Storage::Main,
            'e' => Storage::External,
            _ => Storage::Extended,
        };
        // 's': stored, 'v': virtual (PostgreSQL 18); both keep their expression in pg_attrdef.
        let generated = a.generated == "s" || a.generated == "v";
        let expr = a
            .default
            .as_deref()
            .map(|e| self.column_expression(e, a.rel, generated));
        Column {
            name: a.name.clone(),
            data_type: self.type_name(a.typid, Some(a.typmod)),
            collation: (a.collation != a.type_collation && a.collation != 0)
                .then(|| self.collation(a.collation)),
            not_null: a.not_null,
            default: if generated { None } else { expr.clone() },
            identity: match ch(&a.identity) {
                'a' => Some(Identity::Always),
                'd' => Some(Identity::ByDefault),
                _ => None,
            },
            generated: if generated { expr } else { None },
            generated_virtual: a.generated == "v",
            not_null_constraint: a.nn.as_ref().map(|k| NotNullConstraint {
                name: k.name.clone(),
                no_inherit: k.no_inherit,
                validated: k.validated,
                local: k.local,
            }),
            storage: storage(&a.storage),
            type_storage: storage(&a.type_storage),
            compression: match ch(&a.compression) {
                'p' => Some(Compression::Pglz),
                'l' => Some(Compression::Lz4),
                _ => None,
            },
            statistics: (a.statistics >= 0).then_some(a.statistics),
            // pg_attver=... is bookkeeping some builds of PostgreSQL keep in attoptions, not a setting.
            options: a
                .options
                .iter()
                .filter(|o| !o.starts_with("pg_attver="))
                .cloned()
                .collect(),
            local: a.local,
            inherited: a.inherited,
            acl: acl(&a.acl),
            comment: a.comment.clone(),
        }
    }

    fn index(&mut self, i: &raw::Index, table: &str) -> Index {
        let def = d::indexdef(i.oid);
        let head = format!(
            "CREATE {}INDEX {} ON {}{} ",
            if i.unique { "UNIQUE " } else { "" },
            quote_ident(&i.name),
            if i.partitioned { "ONLY " } else { "" },
            quote_qualified(self.own, table)
        );
        let tail = match def.strip_prefix(&head) {
            Some(t) => t.to_string(),
            None => {
                self.invalid(
                    format!("index {}", quote_ident(&i.name)),
                    "its definition does not have the expected form",
                );
                def.clone()
            }
        };
        Index {
            name: i.name.clone(),
            unique: i.unique,
            partitioned: i.partitioned,
            definition: self.names(&tail),
            constraint: i.constraint.clone(),
            clustered: i.clustered,
            replica_identity: i.replident,
            valid: i.valid,
            parent: i.parent.as_ref().map(rel_ref),
            column_statistics: i
                .statistics
                .iter()
                .map(|s| ColumnStatistics {
                    column: s.column,
                    target: s.target,
                })
                .collect(),
            comment: i.comment.clone(),
        }
    }
}

/// The model of the schema the rows describe. Must run with
/// `search_path = `[`qft_schema::plan::search_path`]`(schema)`.
pub fn build(raw: &raw::Catalog) -> Schema {
    let own = raw.schema.name.as_str();
    let mut r = Reader {
        types: Default::default(),
        defaults: Default::default(),
        own,
        unsupported: raw
            .unsupported
            .iter()
            .map(|u| Unsupported {
                object: u.object.clone(),
                reason: u.reason.clone(),
            })
            .collect(),
    };
    let mut s = Schema {
        name: own.to_string(),
        owner: raw.schema.owner.clone(),
        acl: acl(&raw.schema.acl),
        comment: raw.schema.comment.clone(),
        ..Default::default()
    };
    for a in &raw.default_acls {
        let objects = match ch(&a.objtype) {
            'r' => DefaultObjects::Tables,
            'S' => DefaultObjects::Sequences,
            'f' => DefaultObjects::Functions,
            'T' => DefaultObjects::Types,
            _ => DefaultObjects::Schemas,
        };
        s.default_privileges.push(DefaultPrivileges {
            role: a.role.clone(),
            objects,
            acl: acl(&a.acl).unwrap_or(Acl(Vec::new())),
        });
    }

    let mut attrs: BTreeMap<Oid, Vec<&raw::Attribute>> = BTreeMap::new();
    for a in &raw.attributes {
        attrs.entry(a.rel).or_default().push(a);
    }
    // The reader returns them in no order: each relation's in column order.
    for v in attrs.values_mut() {
        v.sort_by_key(|a| a.num);
    }
    let mut table_constraints: BTreeMap<Oid, Vec<&raw::Constraint>> = BTreeMap::new();
    let mut domain_constraints: BTreeMap<Oid, Vec<&raw::Constraint>> = BTreeMap::new();
    for k in &raw.constraints {
        if k.typ != 0 {
            domain_constraints.entry(k.typ).or_default().push(k);
        } else {
            table_constraints.entry(k.rel).or_default().push(k);
        }
    }
    let sequences: BTreeMap<Oid, &raw::Sequence> =
        raw.sequences.iter().map(|q| (q.rel, q)).collect();

    let mut indexes_of: BTreeMap<Oid, Vec<&raw::Index>> = BTreeMap::new();
    for i in &raw.indexes {
        indexes_of.entry(i.rel).or_default().push(i);
    }

    for c in &raw.relations {
        // (A sequence's columns are its own, not the model's.)
        let columns: Vec<Column> = match c.kind.as_str() {
            "S" => Vec::new(),
            _ => attrs
                .get(&c.oid)
                .map(|a| a.iter().map(|a| r.column(a)).collect())
                .unwrap_or_default(),
        };
        let indexes: Vec<Index> = indexes_of
            .get(&c.oid)
            .map(|v| v.iter().map(|i| r.index(i, &c.name)).collect())
            .unwrap_or_default();
        match ch(&c.kind) {
            'r' | 'p' => {
                let constraints = table_constraints
                    .get(&c.oid)
                    .map(|ks| {
                        ks.iter()
                            .map(|k| Constraint {
                                name: k.name.clone(),
                                kind: match ch(&k.kind) {
                                    'p' => ConstraintKind::PrimaryKey,
                                    'u' => ConstraintKind::Unique,
                                    'x' => ConstraintKind::Exclusion,
                                    'f' => ConstraintKind::ForeignKey,
                                    't' => ConstraintKind::Trigger,
                                    'n' => ConstraintKind::NotNull,
                                    _ => ConstraintKind::Check,
                                },
                                definition: r.deparsed(constraint_definition(k.oid).as_str()),
                                validated: k.validated,
                                local: k.local,
                                inherited: k.inherited,
                                parent: k.parent.clone(),
                                comment: k.comment.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let triggers = raw
                    .triggers
                    .iter()
                    .filter(|g| g.rel == c.oid)
                    .map(|g| Trigger {
                        name: g.name.clone(),
                        definition: SqlText::deparsed_with(
                            &d::triggerdef(g.oid),
                            own,
                            &["on", "from"],
                        ),
                        enabled: match ch(&g.enabled) {
                            'D' => TriggerEnabled::Disabled,
                            'R' => TriggerEnabled::Replica,
                            'A' => TriggerEnabled::Always,
                            _ => TriggerEnabled::Origin,
                        },
                        from_parent: g.from_parent,
                        comment: g.comment.clone(),
                    })
                    .collect();
                let policies = raw
                    .policies
                    .iter()
                    .filter(|p| p.rel == c.oid)
                    .map(|p| {
                        let mut roles: Vec<Grantee> = p
                            .roles
                            .iter()
                            .map(|x| x.clone().map_or(Grantee::Public, Grantee::Role))
                            .collect();
                        roles.sort();
                        Policy {
                            name: p.name.clone(),
                            permissive: p.permissive,
                            command: match ch(&p.command) {
                                'r' => PolicyCommand::Select,
                                'a' => PolicyCommand::Insert,
                                'w' => PolicyCommand::Update,
                                'd' => PolicyCommand::Delete,
                                _ => PolicyCommand::All,
                            },
                            roles,
                            using: p.using.as_deref().map(|e| r.deparsed(&d::expr(e, p.rel))),
                            with_check: p
                                .with_check
                                .as_deref()
                                .map(|e| r.deparsed(&d::expr(e, p.rel))),
                            comment: p.comment.clone(),
                        }
                    })
                    .collect();
                let rules = raw
                    .rules
                    .iter()
                    .filter(|x| x.rel == c.oid)
                    .map(|x| Rule {
                        name: x.name.clone(),
                        definition: SqlText::deparsed_with(&d::ruledef(x.oid), own, &["to"]),
                        comment: x.comment.clone(),
                    })
                    .collect();
                let partition_of = if c.is_partition {
                    c.parents.first().map(|p| PartitionOf {
                        parent: rel_ref(p),
                        bound: r.deparsed(&d::expr(c.partbound.as_deref().unwrap_or(""), c.oid)),
                    })
                } else {
                    None
                };
                s.tables.push(Table {
                    name: c.name.clone(),
                    partitioned: c.kind == "p",
                    unlogged: c.persistence == "u",
                    access_method: c.am.clone(),
                    options: c.options.clone(),
                    toast_options: c.toast_options.clone(),
                    tablespace: c.tablespace.clone(),
                    partition_key: (c.kind == "p").then(|| r.names(&d::partkeydef(c.oid))),
                    partition_of,
                    outside_partitions: c.children_elsewhere.iter().map(rel_ref).collect(),
                    inherits: if c.is_partition {
                        Vec::new()
                    } else {
                        c.parents.iter().map(rel_ref).collect()
                    },
                    columns,
                    constraints,
                    indexes,
                    triggers,
                    policies,
                    rules,
                    row_security: c.row_security,
                    force_row_security: c.force_row_security,
                    replica_identity: match ch(&c.replident) {
                        'n' => ReplicaIdentity::Nothing,
                        'f' => ReplicaIdentity::Full,
                        'i' => ReplicaIdentity::Index,
                        _ => ReplicaIdentity::Default,
                    },
                    owner: c.owner.clone(),
                    acl: acl(&c.acl),
                    comment: c.comment.clone(),
                });
            }
            'v' | 'm' => {
                for x in raw.rules.iter().filter(|x| x.rel == c.oid) {
                    r.invalid(
                        format!(
                            "rule {} on view {}",
                            quote_ident(&x.name),
                            quote_ident(&c.name)
                        ),
                        "rules are not copied: use an INSTEAD OF trigger",
                    );
                }
                s.views.push(View {
                    name: c.name.clone(),
                    materialized: c.kind == "m",
                    definition: r.deparsed(&d::viewdef(c.oid)),
                    options: c.options.clone(),
                    access_method: c.am.clone(),
                    tablespace: c.tablespace.clone(),
                    columns,
                    indexes,
                    populated: c.populated,
                    owner: c.owner.clone(),
                    acl: acl(&c.acl),
                    comment: c.comment.clone(),
                })
            }
            'S' => {
                let Some(q) = sequences.get(&c.oid) else {
                    continue;
                };
                s.sequences.push(Sequence {
                    name: c.name.clone(),
                    data_type: r.type_name(q.typid, None),
                    start: q.start,
                    increment: q.increment,
                    min: q.min,
                    max: q.max,
                    cache: q.cache,
                    cycle: q.cycle,
                    unlogged: c.persistence == "u",
                    owned_by: q
                        .owned_by
                        .as_ref()
                        .filter(|o| o.same_schema)
                        .map(|o| OwnedBy {
                            table: o.table.clone(),
                            column: o.column.clone(),
                            identity: o.identity,
                        }),
                    owner: c.owner.clone(),
                    acl: acl(&c.acl),
                    comment: c.comment.clone(),
                });
            }
            _ => {}
        }
    }

    for t in &raw.types {
        let definition = match ch(&t.kind) {
            'e' => TypeDefinition::Enum {
                labels: t.labels.clone(),
            },
            'd' => TypeDefinition::Domain {
                base: r.type_name(t.basetype, Some(t.typmod)),
                not_null: t.not_null,
                not_null_name: t.not_null_name.clone(),
                default: t
                    .default
                    .as_deref()
                    .map(|e| r.deparsed(&d::expr(e, Oid(0)))),
                collation: (t.collation != 0 && Some(t.collation) != t.base_collation)
                    .then(|| r.collation(t.collation)),
                constraints: domain_constraints
                    .get(&t.oid)
                    .map(|ks| {
                        ks.iter()
                            .map(|k| DomainConstraint {
                                name: k.name.clone(),
                                definition: r.deparsed(constraint_definition(k.oid).as_str()),
                                validated: k.validated,
                                comment: k.comment.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            'c' if t.relkind.as_deref() == Some("c") => TypeDefinition::Composite {
                attributes: attrs
                    .get(&t.relid)
                    .map(|a| {
                        a.iter()
                            .map(|a| Attribute {
                                name: a.name.clone(),
                                data_type: r.type_name(a.typid, Some(a.typmod)),
                                collation: (a.collation != a.type_collation && a.collation != 0)
                                    .then(|| r.collation(a.collation)),
                                comment: a.comment.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            'r' => match &t.range {
                Some(g) => TypeDefinition::Range {
                    subtype: r.type_name(g.subtype, None),
                    subtype_opclass: qualified(&g.opclass),
                    collation: (g.collation != 0).then(|| r.collation(g.collation)),
                    canonical: r.proc(g.canonical),
                    subtype_diff: r.proc(g.subdiff),
                    multirange: g.multirange.clone(),
                },
                None => continue,
            },
            _ => continue,
        };
        s.types.push(Type {
            name: t.name.clone(),
            definition,
            owner: t.owner.clone(),
            acl: acl(&t.acl),
            comment: t.comment.clone(),
        });
    }

    let mut proc_keys: BTreeMap<Oid, ObjectKey> = BTreeMap::new();
    for f in &raw.functions {
        if f.type_owner.is_some() {
            continue; // range and multirange constructors come with their type
        }
        let parallel = match ch(&f.parallel) {
            's' => Parallel::Safe,
            'r' => Parallel::Restricted,
            _ => Parallel::Unsafe,
        };
        let identity_arguments = r.names(&d::identity_arguments(f.oid));
        let arguments = SqlText::arguments(&d::arguments(f.oid), own);
        if let Some(g) = &f.aggregate {
            proc_keys.insert(
                f.oid,
                ObjectKey::routine(NodeKind::Aggregate, &f.name, &identity_arguments),
            );
            let modify = |m: &str| match ch(m) {
                's' => FinalModify::Shareable,
                'w' => FinalModify::ReadWrite,
                _ => FinalModify::ReadOnly,
            };
            s.aggregates.push(Aggregate {
                name: f.name.clone(),
                identity_arguments,
                arguments,
                kind: match ch(&g.kind) {
                    'o' => AggregateKind::OrderedSet,
                    'h' => AggregateKind::Hypothetical,
                    _ => AggregateKind::Normal,
                },
                transition: r.proc(g.transfn).unwrap_or_default(),
                state_type: r.type_name(g.transtype, None),
                state_space: g.transspace,
                final_function: r.proc(g.finalfn),
                final_extra: g.finalextra,
                final_modify: modify(&g.finalmodify),
                combine: r.proc(g.combinefn),
                serial: r.proc(g.serialfn),
                deserial: r.proc(g.deserialfn),
                initial_value: g.initval.clone(),
                moving: (g.mtransfn != 0).then(|| MovingAggregate {
                    transition: r.proc(g.mtransfn).unwrap_or_default(),
                    inverse: r.proc(g.minvtransfn).unwrap_or_default(),
                    state_type: r.type_name(g.mtranstype, None),
                    state_space: g.mtransspace,
                    final_function: r.proc(g.mfinalfn),
                    final_extra: g.mfinalextra,
                    final_modify: modify(&g.mfinalmodify),
                    initial_value: g.minitval.clone(),
                }),
                sort_operator: g.sortop.as_ref().map(|o| operator_name(o, own, true)),
                parallel,
                owner: f.owner.clone(),
                acl: acl(&f.acl),
                comment: f.comment.clone(),
            });
            continue;
        }
        let kind = match ch(&f.kind) {
            'p' => FunctionKind::Procedure,
            'w' => FunctionKind::Window,
            'f' => FunctionKind::Function,
            _ => continue,
        };
        let body = if f.sqlbody {
            d::sqlbody(f.oid).map_or(FunctionBody::Missing, |b| FunctionBody::Sql(r.deparsed(&b)))
        } else if f.language == "c" {
            FunctionBody::Object {
                file: f.bin.clone().unwrap_or_default(),
                symbol: f.src.clone().unwrap_or_default(),
            }
        } else {
            f.src.as_deref().map_or(FunctionBody::Missing, |b| {
                FunctionBody::Text(SqlText::body(b, own))
            })
        };
        proc_keys.insert(
            f.oid,
            ObjectKey::routine(NodeKind::Function, &f.name, &identity_arguments),
        );
        s.functions.push(Function {
            name: f.name.clone(),
            kind,
            identity_arguments,
            arguments,
            result: if kind == FunctionKind::Procedure {
                None
            } else {
                d::result(f.oid).map(|t| r.names(&t))
            },
            language: f.language.clone(),
            volatility: match ch(&f.volatility) {
                'i' => Volatility::Immutable,
                's' => Volatility::Stable,
                _ => Volatility::Volatile,
            },
            strict: f.strict,
            security_definer: f.security_definer,
            leakproof: f.leakproof,
            parallel,
            cost: f.cost.clone(),
            rows: f.rows.clone(),
            support: r.proc(f.support),
            config: f.config.iter().map(|c| setting(c, own)).collect(),
            body,
            owner: f.owner.clone(),
            acl: acl(&f.acl),
            comment: f.comment.clone(),
        });
    }

    for o in &raw.operators {
        let left = (o.left != 0).then(|| r.type_name(o.left, None));
        let right = r.type_name(o.right, None);
        // Operators share the map of routines, by their own oids (pg_operator and pg_proc oids
        // never collide: both come from the one oid counter).
        proc_keys.insert(o.oid, ObjectKey::operator(&o.name, &left, &right));
        s.operators.push(Operator {
            name: o.name.clone(),
            left,
            right,
            result: r.type_name(o.result, None),
            function: r.proc(o.function).unwrap_or_default(),
            commutator: o.commutator.as_ref().map(|c| operator_name(c, own, true)),
            negator: o.negator.as_ref().map(|c| operator_name(c, own, true)),
            restrict: r.proc(o.restrict),
            join: r.proc(o.join),
            hashes: o.hashes,
            merges: o.merges,
            owner: o.owner.clone(),
            comment: o.comment.clone(),
        });
    }

    let members = |r: &Reader, family: Oid, class: Option<Oid>| -> Vec<OperatorMember> {
        let mut m: Vec<OperatorMember> = raw
            .amops
            .iter()
            .filter(|a| a.family == family && a.class == class)
            .map(|a| OperatorMember::Operator {
                strategy: a.strategy,
                operator: operator_name(&a.operator, own, false),
                left: r.type_name(a.left, None),
                right: r.type_name(a.right, None),
                order_family: a.order_family.as_ref().map(qualified),
            })
            .collect();
        m.extend(
            raw.amprocs
                .iter()
                .filter(|a| a.family == family && a.class == class)
                .map(|a| OperatorMember::Function {
                    number: a.number,
                    left: r.type_name(a.left, None),
                    right: r.type_name(a.right, None),
                    function: r.names(&d::regprocedure(a.function)),
                }),
        );
        m
    };
    for f in &raw.operator_families {
        s.operator_families.push(OperatorFamily {
            name: f.name.clone(),
            method: f.method.clone(),
            members: members(&r, f.oid, None),
            owner: f.owner.clone(),
            comment: f.comment.clone(),
        });
    }
    for c in &raw.operator_classes {
        let family = raw
            .operator_families
            .iter()
            .find(|f| c.family.schema.is_none() && f.name == c.family.name && f.method == c.method)
            .map(|f| f.oid);
        s.operator_classes.push(OperatorClass {
            name: c.name.clone(),
            method: c.method.clone(),
            data_type: r.type_name(c.data_type, None),
            default: c.default,
            family: qualified(&c.family),
            storage: (c.keytype != 0).then(|| r.type_name(c.keytype, None)),
            members: family
                .map(|f| members(&r, f, Some(c.oid)))
                .unwrap_or_default(),
            owner: c.owner.clone(),
            comment: c.comment.clone(),
        });
    }
    for c in &raw.collations {
        s.collations.push(Collation {
            name: c.name.clone(),
            provider: match ch(&c.provider) {
                'i' => CollationProvider::Icu,
                'c' => CollationProvider::Libc,
                'b' => CollationProvider::Builtin,
                _ => CollationProvider::Default,
            },
            deterministic: c.deterministic,
            collate: c.collate.clone(),
            ctype: c.ctype.clone(),
            icu_locale: c.icu_locale.clone(),
            owner: c.owner.clone(),
            comment: c.comment.clone(),
        });
    }
    for t in &raw.ts_dictionaries {
        s.text_search_dictionaries.push(TextSearchDictionary {
            name: t.name.clone(),
            template: qualified(&schema_of(&t.template, own)),
            options: t.options.clone(),
            owner: t.owner.clone(),
            comment: t.comment.clone(),
        });
    }
    for t in &raw.ts_configs {
        s.text_search_configurations.push(TextSearchConfiguration {
            name: t.name.clone(),
            parser: qualified(&schema_of(&t.parser, own)),
            mappings: t
                .mappings
                .iter()
                .map(|m| TextSearchMapping {
                    token: m.token.clone(),
                    dictionaries: m.dictionaries.iter().map(qualified).collect(),
                })
                .collect(),
            owner: t.owner.clone(),
            comment: t.comment.clone(),
        });
    }
    for x in raw.statistics.iter().filter(|x| x.same_schema) {
        let def = d::statisticsdef(x.oid);
        let head = format!("CREATE STATISTICS {}", quote_qualified(own, &x.name));
        let tail = match def.strip_prefix(&head) {
            Some(t) => t.to_string(),
            None => {
                r.invalid(
                    format!("statistics {}", quote_ident(&x.name)),
                    "its definition does not have the expected form",
                );
                def.clone()
            }
        };
        s.statistics.push(Statistics {
            name: x.name.clone(),
            table: x.table.clone(),
            definition: r.names(&tail),
            target: (x.target >= 0).then_some(x.target),
            owner: x.owner.clone(),
            comment: x.comment.clone(),
        });
    }
    s.dependencies = dependencies(raw, &s, &proc_keys);
    s.unsupported = r.unsupported;
    s.normalize();
    s
}

/// The name of a catalog the model has objects of, by its oid (`pg_depend.classid`).
fn catalog_name(class: Oid) -> Option<&'static str> {
    use raw::class::*;
    Some(match class.0 {
        PG_CLASS => "pg_class",
        PG_TYPE => "pg_type",
        PG_PROC => "pg_proc",
        PG_ATTRDEF => "pg_attrdef",
        PG_REWRITE => "pg_rewrite",
        PG_CONSTRAINT => "pg_constraint",
        PG_OPERATOR => "pg_operator",
        PG_OPFAMILY => "pg_opfamily",
        PG_OPCLASS => "pg_opclass",
        PG_AMOP => "pg_amop",
        PG_AMPROC => "pg_amproc",
        PG_COLLATION => "pg_collation",
        PG_TS_DICT => "pg_ts_dict",
        PG_TS_CONFIG => "pg_ts_config",
        _ => return None,
    })
}

/// pg_depend edges between objects of the schema, each end mapped to the object that DDL
/// creates it with (a default to its table, a constraint to its table or domain, a view's rule to
/// the view, an array or row type to its element or relation, an owned sequence to its table, an
/// operator class member to its class or family). `raw.depends` also holds dependencies on
/// objects outside the schema: only those with both ends among the objects read are kept.
fn dependencies(
    raw: &raw::Catalog,
    s: &Schema,
    proc_keys: &BTreeMap<Oid, ObjectKey>,
) -> Vec<Dependency> {
    let mut node: BTreeMap<(&str, Oid), ObjectKey> = BTreeMap::new();
    let mut rel_key: BTreeMap<Oid, ObjectKey> = BTreeMap::new();
    for c in &raw.relations {
        let key = match ch(&c.kind) {
            'r' | 'p' => ObjectKey::named(NodeKind::Table, &c.name),
            'v' => ObjectKey::named(NodeKind::View, &c.name),
            'm' => ObjectKey::named(NodeKind::MaterializedView, &c.name),
            'S' => match s.sequence(&c.name).and_then(|q| q.owned_by.as_ref()) {
                Some(o) => ObjectKey::named(NodeKind::Table, &o.table),
                None => ObjectKey::named(NodeKind::Sequence, &c.name),
            },
            _ => continue,
        };
        rel_key.insert(c.oid, key);
    }
    let mut type_key: BTreeMap<Oid, ObjectKey> = BTreeMap::new();
    for t in &raw.types {
        if matches!(ch(&t.kind), 'e' | 'd' | 'r')
            || (t.kind == "c" && t.relkind.as_deref() == Some("c"))
        {
            let k = ObjectKey::named(NodeKind::Type, &t.name);
            if t.relid != 0 {
                rel_key.insert(t.relid, k.clone());
            }
            type_key.insert(t.oid, k);
        }
    }
    // Links may chain (the array of a row type): resolve until nothing changes.
    for _ in 0..3 {
        for l in &raw.type_links {
            let k = match l.to_class.as_str() {
                "pg_class" => rel_key.get(&l.to).cloned(),
                _ => type_key.get(&l.to).cloned(),
            };
            if let Some(k) = k {
                type_key.insert(l.oid, k);
            }
        }
    }
    for (oid, k) in &rel_key {
        node.insert(("pg_class", *oid), k.clone());
    }
    for (oid, k) in &type_key {
        node.insert(("pg_type", *oid), k.clone());
    }
    for f in &raw.functions {
        let k = match f.type_owner {
            Some(t) => type_key.get(&t).cloned(),
            None => proc_keys.get(&f.oid).cloned(),
        };
        if let Some(k) = k {
            node.insert(("pg_proc", f.oid), k);
        }
    }
    for a in &raw.attributes {
        if let (Some(o), Some(k)) = (a.default_oid, rel_key.get(&a.rel)) {
            node.insert(("pg_attrdef", o), k.clone());
        }
    }
    for v in &raw.view_rules {
        if let Some(k) = rel_key.get(&v.rel) {
            node.insert(("pg_rewrite", v.oid), k.clone());
        }
    }
    for k in &raw.constraints {
        let key = if k.typ != 0 {
            type_key.get(&k.typ).cloned()
        } else if k.kind != "f" {
            rel_key.get(&k.rel).cloned()
        } else {
            None
        };
        if let Some(key) = key {
            node.insert(("pg_constraint", k.oid), key);
        }
    }
    for o in &raw.operators {
        if let Some(k) = proc_keys.get(&o.oid) {
            node.insert(("pg_operator", o.oid), k.clone());
        }
    }
    let mut family_key = BTreeMap::new();
    for f in &raw.operator_families {
        let k = ObjectKey::opfamily(NodeKind::OperatorFamily, &f.name, &f.method);
        family_key.insert(f.oid, k.clone());
        node.insert(("pg_opfamily", f.oid), k);
    }
    let mut class_key = BTreeMap::new();
    for c in &raw.operator_classes {
        let k = ObjectKey::opfamily(NodeKind::OperatorClass, &c.name, &c.method);
        class_key.insert(c.oid, k.clone());
        node.insert(("pg_opclass", c.oid), k);
    }
    for a in &raw.amops {
        let k = a
            .class
            .and_then(|c| class_key.get(&c))
            .or_else(|| family_key.get(&a.family));
        if let Some(k) = k {
            node.insert(("pg_amop", a.oid), k.clone());
        }
    }
    for a in &raw.amprocs {
        let k = a
            .class
            .and_then(|c| class_key.get(&c))
            .or_else(|| family_key.get(&a.family));
        if let Some(k) = k {
            node.insert(("pg_amproc", a.oid), k.clone());
        }
    }
    for c in &raw.collations {
        node.insert(
            ("pg_collation", c.oid),
            ObjectKey::named(NodeKind::Collation, &c.name),
        );
    }
    for t in &raw.ts_dictionaries {
        node.insert(
            ("pg_ts_dict", t.oid),
            ObjectKey::named(NodeKind::TextSearchDictionary, &t.name),
        );
    }
    for t in &raw.ts_configs {
        node.insert(
            ("pg_ts_config", t.oid),
            ObjectKey::named(NodeKind::TextSearchConfiguration, &t.name),
        );
    }
    let mut out = Vec::new();
    for dep in &raw.depends {
        let (Some(class), Some(ref_class)) = (catalog_name(dep.class), catalog_name(dep.ref_class))
        else {
            continue;
        };
        let from = node.get(&(class, dep.obj));
        let to = node.get(&(ref_class, dep.referenced));
        if let (Some(from), Some(to)) = (from, to) {
            if from != to {
                out.push(Dependency {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::without_locations;

    #[test]
    fn node_trees_compare_without_their_locations() {
        let a = "{FUNCEXPR :funcid 1299 :funcresulttype 1184 :funcformat 0 :args <> :location 212}";
        let b = "{FUNCEXPR :funcid 1299 :funcresulttype 1184 :funcformat 0 :args <> :location 7}";
        assert_eq!(without_locations(a), without_locations(b));
        assert_eq!(
            without_locations("{CONST :consttype 1700 :location -1 :constvalue 4 [ 1 2 3 4 ]}"),
            "{CONST :consttype 1700 :constvalue 4 [ 1 2 3 4 ]}"
        );
        assert_ne!(
            without_locations("{CONST :consttype 23 :location 3 :constvalue 4 [ 0 0 0 0 ]}"),
            without_locations("{CONST :consttype 23 :location 3 :constvalue 4 [ 1 0 0 0 ]}")
        );
    }
}
