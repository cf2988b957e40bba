//! Ordinary and partitioned tables: the sequences owned by their columns (serial), the table
//! with its columns, defaults, identity and generated columns, persistence, partitioning or
//! inheritance, column settings, its validated check / primary key / unique / exclusion
//! constraints (inside CREATE TABLE where that is the same, [`constraints_inline`]), sequence
//! ownership and owner. Foreign keys are written in CREATE TABLE where they can be
//! ([`inline_foreign_keys`]), the others, NOT VALID checks, indexes, triggers, row security,
//! comments and grants are later steps of the plan.

use super::{options, owner_statement, q, sequence};
use crate::ident::quote_ident;
use crate::model::*;
use crate::plan::PlanError;
use crate::SqlText;

fn storage_word(s: Storage) -> &'static str {
    match s {
        Storage::Plain => "PLAIN",
        Storage::Main => "MAIN",
        Storage::External => "EXTERNAL",
        Storage::Extended => "EXTENDED",
    }
}

/// The parent a column's settings are inherited from, when it is a table of this schema.
fn parent_column<'a>(schema: &'a Schema, t: &Table, column: &str) -> Option<&'a Column> {
    let parent = t
        .partition_of
        .as_ref()
        .map(|p| &p.parent)
        .or(t.inherits.first())?;
    if parent.schema.is_some() {
        return None;
    }
    schema
        .table(&parent.name)?
        .columns
        .iter()
        .find(|c| c.name == column)
}

/// Whether the partition is created with `PARTITION OF` (columns from the parent) or as a table
/// of its own that is then attached (its columns were its own in the source: `attislocal`).
fn attach_later(t: &Table) -> bool {
    t.partition_of.is_some() && t.columns.iter().any(|c| c.local)
}

fn column_definition(
    schema: &Schema,
    t: &Table,
    c: &Column,
    target: &str,
) -> Result<String, PlanError> {
    let mut s = format!("{} {}", quote_ident(&c.name), c.data_type.render(target));
    if let Some(coll) = &c.collation {
        s += &format!(" COLLATE {}", coll.render(target));
    }
    if let Some(identity) = c.identity {
        let seq = schema
            .sequences
            .iter()
            .find(|s| {
                s.owned_by
                    .as_ref()
                    .is_some_and(|o| o.identity && o.table == t.name && o.column == c.name)
            })
            .ok_or_else(|| {
                PlanError::Invalid(format!(
                    "identity column {}.{} has no sequence in the model",
                    quote_ident(&t.name),
                    quote_ident(&c.name)
                ))
            })?;
        s += &format!(
            " GENERATED {} AS IDENTITY (SEQUENCE NAME {} {})",
            match identity {
                Identity::Always => "ALWAYS",
                Identity::ByDefault => "BY DEFAULT",
            },
            q(target, &seq.name),
            sequence::options(seq, target, false)
        );
    } else if let Some(g) = &c.generated {
        s += &format!(
            " GENERATED ALWAYS AS ({}) {}",
            g.render(target),
            if c.generated_virtual {
                "VIRTUAL"
            } else {
                "STORED"
            }
        );
    } else if let Some(d) = &c.default {
        s += &format!(" DEFAULT {}", d.render(target));
    }
    match &c.not_null_constraint {
        // A NOT VALID one is added after the rows (not_valid_checks); an inherited one comes
        // with the parent.
        Some(k) if !k.validated || !k.local => {}
        Some(k) => {
            s += &format!(" CONSTRAINT {} NOT NULL", quote_ident(&k.name));
            if k.no_inherit {
                s += " NO INHERIT";
            }
        }
        None if c.not_null => s += " NOT NULL",
        None => {}
    }
    Ok(s)
}

fn trailer(t: &Table, target: &str) -> String {
    let mut s = String::new();
    if let Some(k) = &t.partition_key {
        s += &format!(" PARTITION BY {}", k.render(target));
    }
    if let Some(am) = &t.access_method {
        if !t.partitioned {
            s += &format!(" USING {}", quote_ident(am));
        }
    }
    let mut opts = options(&t.options, "");
    opts.extend(options(&t.toast_options, "toast."));
    if !opts.is_empty() {
        s += &format!(" WITH ({})", opts.join(", "));
    }
    if let Some(ts) = &t.tablespace {
        s += &format!(" TABLESPACE {}", quote_ident(ts));
    }
    s
}

/// The statements that create table `t`, its foreign keys left for [`foreign_keys`].
pub fn create(schema: &Schema, t: &Table, target: &str) -> Result<Vec<String>, PlanError> {
    create_with(schema, t, target, &[])
}

/// The statements that change the columns of `t` after its CREATE TABLE: the default and NOT NULL
/// of a column a partition or child did not define itself, storage, compression, statistics
/// target and options that differ from what CREATE gives.
fn column_statements(schema: &Schema, t: &Table, name: &str, target: &str) -> Vec<String> {
    let mut out = Vec::new();
    let inherited_from_parent = t.partition_of.is_some() || !t.inherits.is_empty();
    for c in &t.columns {
        let col = format!(
            "ALTER TABLE ONLY {name} ALTER COLUMN {}",
            quote_ident(&c.name)
        );
        let parent = parent_column(schema, t, &c.name);
        // Columns a partition or child did not define itself: its own default and NOT NULL.
        if inherited_from_parent && !c.local && c.generated.is_none() {
            match (&c.default, parent.map(|p| &p.default)) {
                (Some(d), Some(pd)) if Some(d) == pd.as_ref() => {}
                (Some(d), _) => out.push(format!("{col} SET DEFAULT {}", d.render(target))),
                (None, Some(Some(_))) | (None, None) => out.push(format!("{col} DROP DEFAULT")),
                (None, Some(None)) => {}
            }
            if c.not_null && !parent.is_some_and(|p| p.not_null) {
                match &c.not_null_constraint {
                    Some(k) if !k.validated => {}
                    Some(k) => out.push(format!(
                        "ALTER TABLE ONLY {name} ADD CONSTRAINT {} NOT NULL {}{}",
                        quote_ident(&k.name),
                        quote_ident(&c.name),
                        if k.no_inherit { " NO INHERIT" } else { "" }
                    )),
                    None => out.push(format!("{col} SET NOT NULL")),
                }
            }
        }
        // What the column has after CREATE: inherited at creation from the parent (PARTITION OF,
        // INHERITS), else the type's default.
        let created_from = parent.filter(|_| c.inherited > 0 && !attach_later(t));
        let expected_storage = created_from.map_or(c.type_storage, |p| p.storage);
        if c.storage != expected_storage {
            out.push(format!("{col} SET STORAGE {}", storage_word(c.storage)));
        }
        let expected_compression = created_from.and_then(|p| p.compression);
        if c.compression != expected_compression {
            out.push(format!(
                "{col} SET COMPRESSION {}",
                match c.compression {
                    Some(Compression::Pglz) => "pglz",
                    Some(Compression::Lz4) => "lz4",
                    None => "default",
                }
            ));
        }
        if let Some(s) = c.statistics {
            out.push(format!("{col} SET STATISTICS {s}"));
        }
        let opts = options(&c.options, "");
        if !opts.is_empty() {
            out.push(format!("{col} SET ({})", opts.join(", ")));
        }
    }
    out
}

/// The table's own validated check, primary key, unique and exclusion constraints (not those a
/// partition has from its parent), keys first, then by name.
fn own_constraints(t: &Table) -> Vec<&Constraint> {
    let mut own: Vec<&Constraint> = t
        .constraints
        .iter()
        .filter(|k| {
            matches!(
                k.kind,
                ConstraintKind::Check
                    | ConstraintKind::PrimaryKey
                    | ConstraintKind::Unique
                    | ConstraintKind::Exclusion
            ) && k.local
                && k.parent.is_none()
                && k.validated
        })
        .collect();
    own.sort_by_key(|k| {
        (
            match k.kind {
                ConstraintKind::PrimaryKey => 0,
                ConstraintKind::Unique => 1,
                ConstraintKind::Exclusion => 2,
                _ => 3,
            },
            k.name.clone(),
        )
    });
    own
}

/// Whether the table's own constraints are written inside its CREATE TABLE (as the template's
/// DDL would have them) rather than added by an ALTER TABLE after it: a statement less, and a
/// lock, an event-trigger round and a relcache rebuild of the new table less. Only for a table
/// that is neither a partition nor an inheritance child (a constraint merged with an inherited
/// one, or a key an ATTACH PARTITION would adopt as its parent's index, keep the order they have
/// had) and whose columns need no ALTER after CREATE (an index copies its columns' storage when
/// it is built: a key built before `SET STORAGE` would differ from one built after).
pub fn constraints_inline(schema: &Schema, t: &Table) -> bool {
    writes_inline(t, &column_statements(schema, t, "t", "c"))
}

fn writes_inline(t: &Table, column_statements: &[String]) -> bool {
    t.partition_of.is_none() && t.inherits.is_empty() && column_statements.is_empty()
}

/// The table a foreign key definition (`FOREIGN KEY (a) REFERENCES t(id) ...`, deparsed with
/// the schema on the search path after `pg_catalog`) references when it names it unqualified:
/// a table of the schema. `None` for a qualified name (a table in another schema, or one of
/// the schema's own that PostgreSQL had to qualify).
pub fn referenced_table(definition: &SqlText) -> Option<String> {
    use crate::lexer::{tokenize, Kind};
    let text = definition.as_marked();
    let tokens: Vec<_> = tokenize(text)
        .into_iter()
        .filter(|t| t.is_significant())
        .collect();
    let at = tokens.iter().position(|t| t.is_word("references"))?;
    let name = tokens.get(at + 1).filter(|t| t.kind == Kind::Ident)?;
    let qualified = tokens.get(at + 2).is_none_or(|t| !t.is_punct(text, "("));
    (!qualified).then(|| name.value.clone())
}

/// The foreign keys of `t` that can be written inside its CREATE TABLE, when the tables it
/// references are created first (`created_before(name)`; a self-reference needs nothing):
/// PostgreSQL then adds them without checking rows (the table is new) where an ALTER TABLE
/// would run a query per key to check the table's (no) rows. Only validated keys of a table
/// whose constraints are inline ([`constraints_inline`]), between tables that are neither
/// partitioned nor partitions, and only when every unique index of the referenced table is a
/// constraint's (created with the table, before the key): a unique index created later could
/// otherwise have been the one PostgreSQL picks for the key. Never for a copy with data: its
/// keys are added after the rows, checked once per key. They run with the CREATE TABLE, as the
/// builder of the copy, who owns every table of it while it is built; keys to tables elsewhere
/// (on which the builder may lack REFERENCES) stay in the foreign-key phase.
pub fn inline_foreign_keys<'a>(
    schema: &'a Schema,
    t: &'a Table,
    created_before: impl Fn(&str) -> bool,
) -> Vec<&'a Constraint> {
    let plain = |r: &Table| !r.partitioned && r.partition_of.is_none();
    if !plain(t) || !constraints_inline(schema, t) {
        return Vec::new();
    }
    t.constraints
        .iter()
        .filter(|k| {
            k.kind == ConstraintKind::ForeignKey && k.local && k.parent.is_none() && k.validated
        })
        .filter(|k| {
            let Some(name) = referenced_table(&k.definition) else {
                return false;
            };
            let referenced = if name == t.name {
                Some(t)
            } else if created_before(&name) {
                schema.table(&name)
            } else {
                None
            };
            referenced.is_some_and(|r| {
                plain(r)
                    && r.indexes
                        .iter()
                        .all(|i| !i.unique || i.constraint.is_some())
            })
        })
        .collect()
}

/// The statements that create table `t` with the foreign keys `inline` (from
/// [`inline_foreign_keys`]) inside its CREATE TABLE.
pub fn create_with(
    schema: &Schema,
    t: &Table,
    target: &str,
    inline: &[&Constraint],
) -> Result<Vec<String>, PlanError> {
    let name = q(target, &t.name);
    let mut out = Vec::new();
    let owned: Vec<&Sequence> = schema
        .sequences
        .iter()
        .filter(|s| {
            s.owned_by
                .as_ref()
                .is_some_and(|o| !o.identity && o.table == t.name)
        })
        .collect();
    for s in &owned {
        out.push(sequence::create(s, target));
    }
    let columns = column_statements(schema, t, &name, target);
    let own = own_constraints(t);
    let in_create = writes_inline(t, &columns);
    if !inline.is_empty() && !in_create {
        return Err(PlanError::Invalid(format!(
            "foreign keys of table {} cannot be written in its CREATE TABLE",
            quote_ident(&t.name)
        )));
    }
    let clause = |k: &Constraint| {
        format!(
            "CONSTRAINT {} {}",
            quote_ident(&k.name),
            k.definition.render(target)
        )
    };
    let unlogged = if t.unlogged { "UNLOGGED " } else { "" };
    match (&t.partition_of, attach_later(t)) {
        (Some(p), false) => out.push(format!(
            "CREATE {unlogged}TABLE {name} PARTITION OF {} {}{}",
            p.parent.render(target),
            p.bound.render(target),
            trailer(t, target)
        )),
        _ => {
            let mut items = t
                .columns
                .iter()
                .filter(|c| c.local)
                .map(|c| column_definition(schema, t, c, target))
                .collect::<Result<Vec<_>, _>>()?;
            if in_create {
                items.extend(own.iter().map(|k| clause(k)));
                items.extend(inline.iter().map(|k| clause(k)));
            }
            let inherits = if t.inherits.is_empty() {
                String::new()
            } else {
                format!(
                    " INHERITS ({})",
                    t.inherits
                        .iter()
                        .map(|r| r.render(target))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            out.push(format!(
                "CREATE {unlogged}TABLE {name} ({}){inherits}{}",
                items.join(", "),
                trailer(t, target)
            ));
            if let Some(p) = &t.partition_of {
                out.push(format!(
                    "ALTER TABLE {} ATTACH PARTITION {name} {}",
                    p.parent.render(target),
                    p.bound.render(target)
                ));
            }
        }
    }
    out.extend(columns);
    // Otherwise one ALTER TABLE for all of them (PostgreSQL adds the keys' indexes and the checks
    // of one statement in passes, as it would one by one): a statement per constraint is a lock,
    // an event-trigger round and a relcache rebuild more each.
    if !in_create && !own.is_empty() {
        let adds: Vec<String> = own
            .iter()
            .map(|k| {
                format!(
                    "ADD CONSTRAINT {} {}",
                    quote_ident(&k.name),
                    k.definition.render(target)
                )
            })
            .collect();
        out.push(format!("ALTER TABLE {name} {}", adds.join(", ")));
    }
    for s in &owned {
        if let Some(o) = &s.owned_by {
            out.push(format!(
                "ALTER SEQUENCE {} OWNED BY {name}.{}",
                q(target, &s.name),
                quote_ident(&o.column)
            ));
        }
    }
    out.push(owner_statement("TABLE", &name, &t.owner));
    Ok(out)
}

/// The statements after the data: NOT VALID check constraints of the table.
pub fn not_valid_checks(t: &Table, target: &str) -> Vec<String> {
    let not_null = t.columns.iter().filter_map(|c| {
        c.not_null_constraint
            .as_ref()
            .filter(|k| !k.validated && k.local)
            .map(|k| {
                format!(
                    "ALTER TABLE ONLY {} ADD CONSTRAINT {} NOT NULL {}{} NOT VALID",
                    q(target, &t.name),
                    quote_ident(&k.name),
                    quote_ident(&c.name),
                    if k.no_inherit { " NO INHERIT" } else { "" }
                )
            })
    });
    t.constraints
        .iter()
        .filter(|k| {
            k.kind == ConstraintKind::Check && !k.validated && k.local && k.parent.is_none()
        })
        .map(|k| {
            format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}",
                q(target, &t.name),
                quote_ident(&k.name),
                k.definition.render(target)
            )
        })
        .chain(not_null)
        .collect()
}

/// Foreign keys (after every table exists: self-referencing and cyclic ones included), but those
/// written in the table's CREATE TABLE (`inline`, names).
pub fn foreign_keys(t: &Table, target: &str, inline: &[&str]) -> Vec<String> {
    t.constraints
        .iter()
        .filter(|k| {
            k.kind == ConstraintKind::ForeignKey
                && k.local
                && k.parent.is_none()
                && !inline.contains(&k.name.as_str())
        })
        .map(|k| {
            format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}{}",
                q(target, &t.name),
                quote_ident(&k.name),
                k.definition.render(target),
                if k.validated { "" } else { " NOT VALID" }
            )
        })
        .collect()
}

/// Row security flags.
pub fn row_security(t: &Table, target: &str) -> Vec<String> {
    let mut out = Vec::new();
    if t.row_security {
        out.push(format!(
            "ALTER TABLE {} ENABLE ROW LEVEL SECURITY",
            q(target, &t.name)
        ));
    }
    if t.force_row_security {
        out.push(format!(
            "ALTER TABLE {} FORCE ROW LEVEL SECURITY",
            q(target, &t.name)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlText;

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            data_type: SqlText::plain(ty),
            storage: Storage::Extended,
            type_storage: Storage::Extended,
            local: true,
            ..Default::default()
        }
    }

    fn schema_with(tables: Vec<Table>, sequences: Vec<Sequence>) -> Schema {
        Schema {
            name: "src".into(),
            tables,
            sequences,
            ..Default::default()
        }
    }

    #[test]
    fn a_table_with_every_column_kind() {
        let mut id = col("id", "bigint");
        id.identity = Some(Identity::Always);
        id.not_null = true;
        id.storage = Storage::Plain;
        id.type_storage = Storage::Plain;
        let mut name = col("Name", "text");
        name.collation = Some(SqlText::plain("\"C\""));
        name.not_null = true;
        let mut upper = col("upper", "text");
        upper.generated = Some(SqlText::plain("upper(\"Name\")"));
        let mut lower = col("lower", "text");
        lower.generated = Some(SqlText::plain("lower(\"Name\")"));
        lower.generated_virtual = true;
        let mut ticket = col("ticket", "integer");
        ticket.default = Some(SqlText::plain("nextval('ticket_seq'::regclass)"));
        ticket.storage = Storage::Plain;
        ticket.type_storage = Storage::Plain;
        let mut notes = col("notes", "text");
        notes.storage = Storage::External;
        notes.statistics = Some(500);
        notes.options = vec!["n_distinct=10".into()];
        notes.compression = Some(Compression::Pglz);
        let t = Table {
            name: "customers".into(),
            columns: vec![id, name, upper, lower, ticket, notes],
            options: vec!["fillfactor=70".into()],
            toast_options: vec!["autovacuum_enabled=false".into()],
            access_method: Some("heap".into()),
            constraints: vec![
                Constraint {
                    name: "customers_pkey".into(),
                    kind: ConstraintKind::PrimaryKey,
                    definition: SqlText::plain("PRIMARY KEY (id)"),
                    validated: true,
                    local: true,
                    ..Default::default()
                },
                Constraint {
                    name: "blank".into(),
                    kind: ConstraintKind::Check,
                    definition: SqlText::plain("CHECK ((\"Name\" <> ''::text))"),
                    validated: true,
                    local: true,
                    ..Default::default()
                },
                Constraint {
                    name: "fk".into(),
                    kind: ConstraintKind::ForeignKey,
                    definition: SqlText::plain("FOREIGN KEY (id) REFERENCES customers(id)"),
                    validated: true,
                    local: true,
                    ..Default::default()
                },
            ],
            owner: "o".into(),
            ..Default::default()
        };
        let seq = |name: &str, column: &str, identity: bool| Sequence {
            name: name.into(),
            data_type: SqlText::plain("bigint"),
            start: 1,
            increment: 1,
            min: 1,
            max: 9,
            cache: 1,
            owned_by: Some(OwnedBy {
                table: "customers".into(),
                column: column.into(),
                identity,
            }),
            ..Default::default()
        };
        let s = schema_with(
            vec![t.clone()],
            vec![
                seq("customers_id_seq", "id", true),
                seq("ticket_seq", "ticket", false),
            ],
        );
        assert_eq!(
            create(&s, &t, "Copy").unwrap(),
            [
                "CREATE SEQUENCE \"Copy\".ticket_seq AS bigint INCREMENT BY 1 MINVALUE 1 MAXVALUE 9 START WITH 1 CACHE 1 NO CYCLE",
                "CREATE TABLE \"Copy\".customers (id bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME \"Copy\".customers_id_seq INCREMENT BY 1 MINVALUE 1 MAXVALUE 9 START WITH 1 CACHE 1 NO CYCLE) NOT NULL, \"Name\" text COLLATE \"C\" NOT NULL, upper text GENERATED ALWAYS AS (upper(\"Name\")) STORED, lower text GENERATED ALWAYS AS (lower(\"Name\")) VIRTUAL, ticket integer DEFAULT nextval('ticket_seq'::regclass), notes text) USING heap WITH (fillfactor='70', toast.autovacuum_enabled='false')",
                "ALTER TABLE ONLY \"Copy\".customers ALTER COLUMN notes SET STORAGE EXTERNAL",
                "ALTER TABLE ONLY \"Copy\".customers ALTER COLUMN notes SET COMPRESSION pglz",
                "ALTER TABLE ONLY \"Copy\".customers ALTER COLUMN notes SET STATISTICS 500",
                "ALTER TABLE ONLY \"Copy\".customers ALTER COLUMN notes SET (n_distinct='10')",
                "ALTER TABLE \"Copy\".customers ADD CONSTRAINT customers_pkey PRIMARY KEY (id), ADD CONSTRAINT blank CHECK ((\"Name\" <> ''::text))",
                "ALTER SEQUENCE \"Copy\".ticket_seq OWNED BY \"Copy\".customers.ticket",
                "ALTER TABLE \"Copy\".customers OWNER TO o",
            ]
        );
        assert_eq!(
            foreign_keys(&t, "Copy", &[]),
            ["ALTER TABLE \"Copy\".customers ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES customers(id)"]
        );
    }

    #[test]
    fn partitions_and_children() {
        let mut parent_amount = col("amount", "integer");
        parent_amount.default = Some(SqlText::plain("0"));
        let parent = Table {
            name: "m".into(),
            partitioned: true,
            partition_key: Some(SqlText::plain("LIST (region)")),
            columns: vec![col("region", "text"), parent_amount.clone()],
            owner: "o".into(),
            ..Default::default()
        };
        let inherited = |c: &Column| Column {
            local: false,
            inherited: 1,
            ..c.clone()
        };
        let mut child_amount = inherited(&parent_amount);
        child_amount.default = Some(SqlText::plain("7"));
        let part = Table {
            name: "m_eu".into(),
            partition_of: Some(PartitionOf {
                parent: RelationRef::own("m"),
                bound: SqlText::plain("FOR VALUES IN ('eu')"),
            }),
            columns: vec![inherited(&col("region", "text")), child_amount],
            owner: "o".into(),
            ..Default::default()
        };
        let attached = Table {
            name: "m_us".into(),
            partition_of: Some(PartitionOf {
                parent: RelationRef::own("m"),
                bound: SqlText::plain("FOR VALUES IN ('us')"),
            }),
            columns: vec![
                col("region", "text"),
                Column {
                    inherited: 1,
                    ..parent_amount.clone()
                },
            ],
            owner: "o".into(),
            ..Default::default()
        };
        let s = schema_with(vec![parent.clone(), part.clone(), attached.clone()], vec![]);
        assert_eq!(
            create(&s, &part, "c").unwrap(),
            [
                "CREATE TABLE c.m_eu PARTITION OF c.m FOR VALUES IN ('eu')",
                "ALTER TABLE ONLY c.m_eu ALTER COLUMN amount SET DEFAULT 7",
                "ALTER TABLE c.m_eu OWNER TO o",
            ]
        );
        assert_eq!(
            create(&s, &attached, "c").unwrap(),
            [
                "CREATE TABLE c.m_us (region text, amount integer DEFAULT 0)",
                "ALTER TABLE c.m ATTACH PARTITION c.m_us FOR VALUES IN ('us')",
                "ALTER TABLE c.m_us OWNER TO o",
            ]
        );
        assert_eq!(
            create(&s, &parent, "c").unwrap(),
            [
                "CREATE TABLE c.m (region text, amount integer DEFAULT 0) PARTITION BY LIST (region)",
                "ALTER TABLE c.m OWNER TO o",
            ]
        );
    }

    #[test]
    fn an_identity_column_without_its_sequence_is_an_error() {
        let mut id = col("id", "bigint");
        id.identity = Some(Identity::ByDefault);
        let t = Table {
            name: "t".into(),
            columns: vec![id],
            ..Default::default()
        };
        let s = schema_with(vec![t.clone()], vec![]);
        assert!(matches!(create(&s, &t, "c"), Err(PlanError::Invalid(_))));
    }

    fn key(name: &str, kind: ConstraintKind, def: &str) -> Constraint {
        Constraint {
            name: name.into(),
            kind,
            definition: SqlText::plain(def),
            validated: true,
            local: true,
            ..Default::default()
        }
    }

    fn keyed(name: &str, constraints: Vec<Constraint>) -> Table {
        let mut id = col("id", "integer");
        id.not_null = true;
        Table {
            name: name.into(),
            columns: vec![id, col("parent", "integer")],
            constraints,
            owner: "o".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_referenced_table_is_read_from_the_key_unless_qualified() {
        for (def, table) in [
            ("FOREIGN KEY (a) REFERENCES t(id)", Some("t")),
            (
                "FOREIGN KEY (a, b) REFERENCES \"Odd T\"(x, y) ON DELETE CASCADE",
                Some("Odd T"),
            ),
            (
                "FOREIGN KEY (a) REFERENCES Upper(id) DEFERRABLE",
                Some("upper"),
            ),
            ("FOREIGN KEY (a) REFERENCES other.t(id)", None),
            ("FOREIGN KEY (a) REFERENCES \"x\".\"t\"(id)", None),
            ("CHECK ((a > 0))", None),
        ] {
            assert_eq!(
                referenced_table(&SqlText::plain(def)).as_deref(),
                table,
                "{def}"
            );
        }
        // One of the schema's own tables that PostgreSQL had to qualify (marked): left to the
        // ALTER TABLE.
        let marked = SqlText::from_marked(format!(
            "FOREIGN KEY (a) REFERENCES {}.pg_class(id)",
            crate::sqltext::SELF
        ));
        assert_eq!(referenced_table(&marked), None);
    }

    #[test]
    fn keys_checks_and_foreign_keys_are_written_in_create_table() {
        use ConstraintKind::*;
        let parent = keyed(
            "parent",
            vec![key("parent_pkey", PrimaryKey, "PRIMARY KEY (id)")],
        );
        let child = keyed(
            "child",
            vec![
                key("positive", Check, "CHECK ((id > 0))"),
                key("child_pkey", PrimaryKey, "PRIMARY KEY (id)"),
                key(
                    "to_parent",
                    ForeignKey,
                    "FOREIGN KEY (parent) REFERENCES parent(id)",
                ),
                key(
                    "to_self",
                    ForeignKey,
                    "FOREIGN KEY (parent) REFERENCES child(id) ON DELETE CASCADE",
                ),
            ],
        );
        let s = schema_with(vec![parent.clone(), child.clone()], vec![]);
        let inline = inline_foreign_keys(&s, &child, |name| name == "parent");
        let names: Vec<&str> = inline.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["to_parent", "to_self"]);
        assert_eq!(
            create_with(&s, &child, "c", &inline).unwrap(),
            [
                "CREATE TABLE c.child (id integer NOT NULL, parent integer, CONSTRAINT child_pkey PRIMARY KEY (id), CONSTRAINT positive CHECK ((id > 0)), CONSTRAINT to_parent FOREIGN KEY (parent) REFERENCES parent(id), CONSTRAINT to_self FOREIGN KEY (parent) REFERENCES child(id) ON DELETE CASCADE)",
                "ALTER TABLE c.child OWNER TO o",
            ]
        );
        assert!(foreign_keys(&child, "c", &names).is_empty());
        // Not yet created: the key waits for the foreign-key phase, the rest is inline.
        let later = inline_foreign_keys(&s, &child, |_| false);
        assert_eq!(later.len(), 1, "only the self-reference");
        assert_eq!(
            foreign_keys(&child, "c", &["to_self"]),
            ["ALTER TABLE c.child ADD CONSTRAINT to_parent FOREIGN KEY (parent) REFERENCES parent(id)"]
        );
        assert_eq!(
            create(&s, &parent, "c").unwrap(),
            [
                "CREATE TABLE c.parent (id integer NOT NULL, parent integer, CONSTRAINT parent_pkey PRIMARY KEY (id))",
                "ALTER TABLE c.parent OWNER TO o",
            ]
        );
    }

    #[test]
    fn foreign_keys_stay_after_the_tables_when_inline_could_differ() {
        use ConstraintKind::*;
        let fk = |target: &str| {
            key(
                "fk",
                ForeignKey,
                &format!("FOREIGN KEY (parent) REFERENCES {target}(id)"),
            )
        };
        let mut parent = keyed(
            "parent",
            vec![key("parent_pkey", PrimaryKey, "PRIMARY KEY (id)")],
        );
        let child = keyed("child", vec![fk("parent")]);
        let inline = |s: &Schema, t: &Table| inline_foreign_keys(s, t, |_| true).len();
        let s = schema_with(vec![parent.clone(), child.clone()], vec![]);
        assert_eq!(inline(&s, &child), 1);
        // A NOT VALID key (added after the rows, unchecked).
        let mut not_valid = child.clone();
        not_valid.constraints[0].validated = false;
        assert_eq!(inline(&s, &not_valid), 0);
        // A key cloned from a partitioned parent, or inherited.
        let mut cloned = child.clone();
        cloned.constraints[0].parent = Some("fk".into());
        assert_eq!(inline(&s, &cloned), 0);
        // A table in another schema.
        let elsewhere = keyed("child", vec![fk("other.parent")]);
        assert_eq!(inline(&s, &elsewhere), 0);
        // A referenced table with a unique index no constraint made (created later: PostgreSQL
        // might have picked it for the key).
        parent.indexes.push(Index {
            name: "parent_id_idx".into(),
            unique: true,
            definition: SqlText::plain("USING btree (id)"),
            ..Default::default()
        });
        let s2 = schema_with(vec![parent.clone(), child.clone()], vec![]);
        assert_eq!(inline(&s2, &child), 0);
        parent.indexes.clear();
        // Partitioned tables, partitions and children.
        let mut partitioned = parent.clone();
        partitioned.partitioned = true;
        partitioned.partition_key = Some(SqlText::plain("RANGE (id)"));
        let s3 = schema_with(vec![partitioned, child.clone()], vec![]);
        assert_eq!(inline(&s3, &child), 0);
        let mut partition = child.clone();
        partition.partition_of = Some(PartitionOf {
            parent: RelationRef::own("parent"),
            bound: SqlText::plain("FOR VALUES FROM (0) TO (9)"),
        });
        assert_eq!(inline(&s, &partition), 0);
        let mut inherits = child.clone();
        inherits.inherits = vec![RelationRef::own("parent")];
        assert_eq!(inline(&s, &inherits), 0);
        // A column that needs an ALTER after CREATE keeps the table's constraints in an ALTER
        // TABLE (and so its keys).
        let mut altered = child.clone();
        altered.columns[1].statistics = Some(100);
        assert_eq!(inline(&s, &altered), 0);
        assert!(!constraints_inline(&s, &altered));
        // Asked to inline what cannot be: an error, not a wrong statement.
        let k = key(
            "fk",
            ForeignKey,
            "FOREIGN KEY (parent) REFERENCES parent(id)",
        );
        assert!(matches!(
            create_with(&s, &altered, "c", &[&k]),
            Err(PlanError::Invalid(_))
        ));
    }
}
