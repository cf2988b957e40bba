//! Row security policies.

use super::q;
use crate::ident::quote_ident;
use crate::model::{Policy, PolicyCommand};

pub fn command_word(c: PolicyCommand) -> &'static str {
    match c {
        PolicyCommand::All => "ALL",
        PolicyCommand::Select => "SELECT",
        PolicyCommand::Insert => "INSERT",
        PolicyCommand::Update => "UPDATE",
        PolicyCommand::Delete => "DELETE",
    }
}

pub fn create(table: &str, p: &Policy, target: &str) -> String {
    let roles = if p.roles.is_empty() {
        "PUBLIC".to_string()
    } else {
        p.roles
            .iter()
            .map(|r| r.sql())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut sql = format!(
        "CREATE POLICY {} ON {} AS {} FOR {} TO {roles}",
        quote_ident(&p.name),
        q(target, table),
        if p.permissive {
            "PERMISSIVE"
        } else {
            "RESTRICTIVE"
        },
        command_word(p.command)
    );
    if let Some(u) = &p.using {
        sql += &format!(" USING ({})", u.render(target));
    }
    if let Some(w) = &p.with_check {
        sql += &format!(" WITH CHECK ({})", w.render(target));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Grantee;
    use crate::SqlText;

    #[test]
    fn policies() {
        let p = Policy {
            name: "docs owner".into(),
            permissive: false,
            command: PolicyCommand::Select,
            roles: vec![Grantee::Role("bi".into()), Grantee::Role("Nobody".into())],
            using: Some(SqlText::deparsed(
                "(EXISTS ( SELECT 1 FROM src.customers c WHERE (c.name = docs.owner_name)))",
                "src",
            )),
            with_check: None,
            comment: None,
        };
        assert_eq!(
            create("docs", &p, "acme"),
            "CREATE POLICY \"docs owner\" ON acme.docs AS RESTRICTIVE FOR SELECT TO bi, \"Nobody\" USING ((EXISTS ( SELECT 1 FROM acme.customers c WHERE (c.name = docs.owner_name))))"
        );
        let all = Policy {
            roles: vec![],
            permissive: true,
            command: PolicyCommand::All,
            using: None,
            with_check: Some(SqlText::plain("(id > 0)")),
            ..p
        };
        assert_eq!(
            create("docs", &all, "a"),
            "CREATE POLICY \"docs owner\" ON a.docs AS PERMISSIVE FOR ALL TO PUBLIC WITH CHECK ((id > 0))"
        );
    }
}
