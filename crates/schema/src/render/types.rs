//! Enum, domain, composite and range types.

use super::q;
use crate::ident::{quote_ident, quote_literal};
use crate::model::{Type, TypeDefinition};

/// The statements that create the type (a domain with its validated constraints; NOT VALID
/// ones come after the data, [`not_valid_constraints`]).
pub fn create(t: &Type, target: &str) -> Vec<String> {
    let name = q(target, &t.name);
    match &t.definition {
        TypeDefinition::Enum { labels } => vec![format!(
            "CREATE TYPE {name} AS ENUM ({})",
            labels
                .iter()
                .map(|l| quote_literal(l))
                .collect::<Vec<_>>()
                .join(", ")
        )],
        TypeDefinition::Domain {
            base,
            not_null,
            not_null_name,
            default,
            collation,
            constraints,
        } => {
            let mut sql = format!("CREATE DOMAIN {name} AS {}", base.render(target));
            if let Some(c) = collation {
                sql += &format!(" COLLATE {}", c.render(target));
            }
            if let Some(d) = default {
                sql += &format!(" DEFAULT {}", d.render(target));
            }
            if *not_null {
                if let Some(n) = not_null_name {
                    sql += &format!(" CONSTRAINT {}", quote_ident(n));
                }
                sql += " NOT NULL";
            }
            let mut out = vec![sql];
            for c in constraints.iter().filter(|c| c.validated) {
                out.push(format!(
                    "ALTER DOMAIN {name} ADD CONSTRAINT {} {}",
                    quote_ident(&c.name),
                    c.definition.render(target)
                ));
            }
            out
        }
        TypeDefinition::Composite { attributes } => vec![format!(
            "CREATE TYPE {name} AS ({})",
            attributes
                .iter()
                .map(|a| {
                    let mut s = format!("{} {}", quote_ident(&a.name), a.data_type.render(target));
                    if let Some(c) = &a.collation {
                        s += &format!(" COLLATE {}", c.render(target));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(", ")
        )],
        TypeDefinition::Range {
            subtype,
            subtype_opclass,
            collation,
            canonical,
            subtype_diff,
            multirange,
        } => {
            let mut opts = vec![
                format!("SUBTYPE = {}", subtype.render(target)),
                format!("SUBTYPE_OPCLASS = {}", subtype_opclass.render(target)),
            ];
            if let Some(c) = collation {
                opts.push(format!("COLLATION = {}", c.render(target)));
            }
            if let Some(c) = canonical {
                opts.push(format!("CANONICAL = {}", c.render(target)));
            }
            if let Some(d) = subtype_diff {
                opts.push(format!("SUBTYPE_DIFF = {}", d.render(target)));
            }
            opts.push(format!("MULTIRANGE_TYPE_NAME = {}", q(target, multirange)));
            vec![format!("CREATE TYPE {name} AS RANGE ({})", opts.join(", "))]
        }
        TypeDefinition::Invalid => Vec::new(),
    }
}

/// `ALTER DOMAIN ... ADD CONSTRAINT ... NOT VALID` for the constraints not validated.
pub fn not_valid_constraints(t: &Type, target: &str) -> Vec<String> {
    match &t.definition {
        TypeDefinition::Domain { constraints, .. } => constraints
            .iter()
            .filter(|c| !c.validated)
            .map(|c| {
                format!(
                    "ALTER DOMAIN {} ADD CONSTRAINT {} {} NOT VALID",
                    q(target, &t.name),
                    quote_ident(&c.name),
                    c.definition.render(target)
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attribute, DomainConstraint};
    use crate::SqlText;

    fn t(name: &str, definition: TypeDefinition) -> Type {
        Type {
            name: name.into(),
            definition,
            ..Default::default()
        }
    }

    #[test]
    fn each_kind_of_type() {
        let s = |x: &str| SqlText::deparsed(x, "src");
        let cases = vec![
            (
                t("mood", TypeDefinition::Enum { labels: vec!["sad".into(), "it's".into()] }),
                vec!["CREATE TYPE \"T s\".mood AS ENUM ('sad', 'it''s')"],
            ),
            (
                t(
                    "posint",
                    TypeDefinition::Domain {
                        base: s("integer"),
                        not_null: true,
                        not_null_name: None,
                        default: Some(s("1")),
                        collation: None,
                        constraints: vec![
                            DomainConstraint { name: "pos".into(), definition: s("CHECK ((VALUE > 0))"), validated: true, comment: None },
                            DomainConstraint { name: "later".into(), definition: s("CHECK ((VALUE < 9))"), validated: false, comment: None },
                        ],
                    },
                ),
                vec![
                    "CREATE DOMAIN \"T s\".posint AS integer DEFAULT 1 NOT NULL",
                    "ALTER DOMAIN \"T s\".posint ADD CONSTRAINT pos CHECK ((VALUE > 0))",
                ],
            ),
            (
                t(
                    "address",
                    TypeDefinition::Composite {
                        attributes: vec![
                            Attribute { name: "Street".into(), data_type: s("text"), collation: Some(s("\"C\"")), comment: None },
                            Attribute { name: "zip".into(), data_type: s("posint"), collation: None, comment: None },
                        ],
                    },
                ),
                vec!["CREATE TYPE \"T s\".address AS (\"Street\" text COLLATE \"C\", zip posint)"],
            ),
            (
                t(
                    "span",
                    TypeDefinition::Range {
                        subtype: s("double precision"),
                        subtype_opclass: s("pg_catalog.float8_ops"),
                        collation: None,
                        canonical: None,
                        subtype_diff: Some(s("float8mi")),
                        multirange: "span_multirange".into(),
                    },
                ),
                vec!["CREATE TYPE \"T s\".span AS RANGE (SUBTYPE = double precision, SUBTYPE_OPCLASS = pg_catalog.float8_ops, SUBTYPE_DIFF = float8mi, MULTIRANGE_TYPE_NAME = \"T s\".span_multirange)"],
            ),
        ];
        for (ty, expected) in cases {
            assert_eq!(create(&ty, "T s"), expected, "{}", ty.name);
        }
    }
}
