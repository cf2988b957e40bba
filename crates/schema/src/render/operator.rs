//! Operators, operator families and operator classes.

use super::{owner_statement, q};
use crate::ident::quote_ident;
use crate::inventory::Object;
use crate::model::{Operator, OperatorClass, OperatorFamily, OperatorMember};

pub fn create(o: &Operator, target: &str) -> Vec<String> {
    let mut opts = vec![format!("FUNCTION = {}", o.function.render(target))];
    if let Some(l) = &o.left {
        opts.push(format!("LEFTARG = {}", l.render(target)));
    }
    opts.push(format!("RIGHTARG = {}", o.right.render(target)));
    for (word, v) in [
        ("COMMUTATOR", &o.commutator),
        ("NEGATOR", &o.negator),
        ("RESTRICT", &o.restrict),
        ("JOIN", &o.join),
    ] {
        if let Some(v) = v {
            opts.push(format!("{word} = {}", v.render(target)));
        }
    }
    if o.hashes {
        opts.push("HASHES".into());
    }
    if o.merges {
        opts.push("MERGES".into());
    }
    let (word, reference) = Object::Operator(o).reference(target);
    vec![
        format!(
            "CREATE OPERATOR {}.{} ({})",
            quote_ident(target),
            o.name,
            opts.join(", ")
        ),
        owner_statement(word, &reference, &o.owner),
    ]
}

fn member(m: &OperatorMember, target: &str) -> Option<String> {
    match m {
        OperatorMember::Operator {
            strategy,
            operator,
            left,
            right,
            order_family,
        } => Some(format!(
            "OPERATOR {strategy} {}({}, {}){}",
            operator.render(target),
            left.render(target),
            right.render(target),
            order_family.as_ref().map_or(String::new(), |f| format!(
                " FOR ORDER BY {}",
                f.render(target)
            ))
        )),
        OperatorMember::Function {
            number,
            left,
            right,
            function,
        } => Some(format!(
            "FUNCTION {number} ({}, {}) {}",
            left.render(target),
            right.render(target),
            function.render(target)
        )),
        OperatorMember::Invalid => None,
    }
}

/// The family, with the members that belong to it and not to one of its classes.
pub fn create_family(f: &OperatorFamily, target: &str) -> Vec<String> {
    let name = format!("{} USING {}", q(target, &f.name), quote_ident(&f.method));
    let mut out = vec![format!("CREATE OPERATOR FAMILY {name}")];
    let members: Vec<String> = f.members.iter().filter_map(|m| member(m, target)).collect();
    if !members.is_empty() {
        out.push(format!(
            "ALTER OPERATOR FAMILY {name} ADD {}",
            members.join(", ")
        ));
    }
    out.push(owner_statement("OPERATOR FAMILY", &name, &f.owner));
    out
}

pub fn create_class(c: &OperatorClass, target: &str) -> Vec<String> {
    let mut items: Vec<String> = c.members.iter().filter_map(|m| member(m, target)).collect();
    if let Some(s) = &c.storage {
        items.push(format!("STORAGE {}", s.render(target)));
    }
    let name = format!("{} USING {}", q(target, &c.name), quote_ident(&c.method));
    vec![
        format!(
            "CREATE OPERATOR CLASS {}{} FOR TYPE {} USING {} FAMILY {} AS {}",
            q(target, &c.name),
            if c.default { " DEFAULT" } else { "" },
            c.data_type.render(target),
            quote_ident(&c.method),
            c.family.render(target),
            items.join(", ")
        ),
        owner_statement("OPERATOR CLASS", &name, &c.owner),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlText;

    #[test]
    fn operators_families_classes() {
        let o = Operator {
            name: "===".into(),
            left: Some(SqlText::plain("text")),
            right: SqlText::plain("text"),
            result: SqlText::plain("boolean"),
            function: SqlText::plain("ci_eq"),
            commutator: Some(SqlText::from_marked("OPERATOR(\0.===)".into())),
            hashes: false,
            merges: false,
            owner: "o".into(),
            ..Default::default()
        };
        assert_eq!(
            create(&o, "T"),
            [
                "CREATE OPERATOR \"T\".=== (FUNCTION = ci_eq, LEFTARG = text, RIGHTARG = text, COMMUTATOR = OPERATOR(\"T\".===))",
                "ALTER OPERATOR \"T\".===(text, text) OWNER TO o",
            ]
        );
        let member_op = OperatorMember::Operator {
            strategy: 3,
            operator: SqlText::from_marked("\0.===".into()),
            left: SqlText::plain("text"),
            right: SqlText::plain("text"),
            order_family: None,
        };
        let member_fn = OperatorMember::Function {
            number: 1,
            left: SqlText::plain("text"),
            right: SqlText::plain("text"),
            function: SqlText::from_marked("\0.ci_cmp(text, text)".into()),
        };
        let c = OperatorClass {
            name: "ci_ops".into(),
            method: "btree".into(),
            data_type: SqlText::plain("text"),
            default: false,
            family: SqlText::from_marked("\0.ci_ops".into()),
            storage: None,
            members: vec![member_op, member_fn],
            owner: "o".into(),
            comment: None,
        };
        assert_eq!(
            create_class(&c, "t"),
            [
                "CREATE OPERATOR CLASS t.ci_ops FOR TYPE text USING btree FAMILY t.ci_ops AS OPERATOR 3 t.===(text, text), FUNCTION 1 (text, text) t.ci_cmp(text, text)",
                "ALTER OPERATOR CLASS t.ci_ops USING btree OWNER TO o",
            ]
        );
        let f = OperatorFamily {
            name: "ci_ops".into(),
            method: "btree".into(),
            members: vec![],
            owner: "o".into(),
            comment: None,
        };
        assert_eq!(
            create_family(&f, "t"),
            [
                "CREATE OPERATOR FAMILY t.ci_ops USING btree",
                "ALTER OPERATOR FAMILY t.ci_ops USING btree OWNER TO o",
            ]
        );
    }
}
