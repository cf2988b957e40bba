//! `COMMENT ON` every object, and sub-object, that has a comment.

use super::q;
use crate::ident::{quote_ident, quote_literal};
use crate::inventory::Object;
use crate::model::{Column, Index, Schema, TypeDefinition};

fn comment(what: String, text: &Option<String>, out: &mut Vec<(String, String)>) {
    if let Some(t) = text {
        out.push((
            what.clone(),
            format!("COMMENT ON {what} IS {}", quote_literal(t)),
        ));
    }
}

fn columns(rel: &str, cols: &[Column], target: &str, out: &mut Vec<(String, String)>) {
    for c in cols {
        comment(
            format!("COLUMN {}.{}", q(target, rel), quote_ident(&c.name)),
            &c.comment,
            out,
        );
    }
}

fn indexes(idx: &[Index], target: &str, out: &mut Vec<(String, String)>) {
    for i in idx {
        comment(format!("INDEX {}", q(target, &i.name)), &i.comment, out);
    }
}

/// (what, statement) for every comment of the schema, object by object.
pub fn statements(s: &Schema, target: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    comment(
        format!("SCHEMA {}", quote_ident(target)),
        &s.comment,
        &mut out,
    );
    for o in s.objects() {
        let (word, reference) = o.reference(target);
        comment(format!("{word} {reference}"), o.comment(), &mut out);
        match o {
            Object::Type(t) => match &t.definition {
                TypeDefinition::Domain { constraints, .. } => {
                    for c in constraints {
                        comment(
                            format!("CONSTRAINT {} ON DOMAIN {reference}", quote_ident(&c.name)),
                            &c.comment,
                            &mut out,
                        );
                    }
                }
                TypeDefinition::Composite { attributes } => {
                    for a in attributes {
                        comment(
                            format!("COLUMN {reference}.{}", quote_ident(&a.name)),
                            &a.comment,
                            &mut out,
                        );
                    }
                }
                _ => {}
            },
            Object::Table(t) => {
                columns(&t.name, &t.columns, target, &mut out);
                for k in &t.constraints {
                    comment(
                        format!("CONSTRAINT {} ON {reference}", quote_ident(&k.name)),
                        &k.comment,
                        &mut out,
                    );
                }
                indexes(&t.indexes, target, &mut out);
                for g in &t.triggers {
                    comment(
                        format!("TRIGGER {} ON {reference}", quote_ident(&g.name)),
                        &g.comment,
                        &mut out,
                    );
                }
                for p in &t.policies {
                    comment(
                        format!("POLICY {} ON {reference}", quote_ident(&p.name)),
                        &p.comment,
                        &mut out,
                    );
                }
                for r in &t.rules {
                    comment(
                        format!("RULE {} ON {reference}", quote_ident(&r.name)),
                        &r.comment,
                        &mut out,
                    );
                }
            }
            Object::View(v) => {
                columns(&v.name, &v.columns, target, &mut out);
                indexes(&v.indexes, target, &mut out);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Constraint, Table};

    #[test]
    fn comments_of_objects_and_sub_objects() {
        let s = Schema {
            name: "src".into(),
            comment: Some("the template".into()),
            tables: vec![Table {
                name: "customers".into(),
                comment: Some("it's".into()),
                constraints: vec![Constraint {
                    name: "no blanks".into(),
                    comment: Some("x".into()),
                    ..Default::default()
                }],
                columns: vec![Column {
                    name: "Name".into(),
                    comment: Some("display".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let got: Vec<String> = statements(&s, "c")
            .into_iter()
            .map(|(_, sql)| sql)
            .collect();
        assert_eq!(
            got,
            [
                "COMMENT ON SCHEMA c IS 'the template'",
                "COMMENT ON TABLE c.customers IS 'it''s'",
                "COMMENT ON COLUMN c.customers.\"Name\" IS 'display'",
                "COMMENT ON CONSTRAINT \"no blanks\" ON c.customers IS 'x'",
            ]
        );
    }
}
