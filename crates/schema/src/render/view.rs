//! Views and materialized views (materialized views WITH NO DATA: the data phase refreshes them).

use super::{options, owner_statement, q};
use crate::ident::quote_ident;
use crate::model::View;

pub fn create(v: &View, target: &str) -> Vec<String> {
    let name = q(target, &v.name);
    let opts = options(&v.options, "");
    let with = if opts.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", opts.join(", "))
    };
    let def = v.definition.render(target);
    if v.materialized {
        let using = v
            .access_method
            .as_ref()
            .map_or(String::new(), |am| format!(" USING {}", quote_ident(am)));
        let ts = v
            .tablespace
            .as_ref()
            .map_or(String::new(), |t| format!(" TABLESPACE {}", quote_ident(t)));
        vec![
            format!("CREATE MATERIALIZED VIEW {name}{using}{with}{ts} AS {def} WITH NO DATA"),
            owner_statement("MATERIALIZED VIEW", &name, &v.owner),
        ]
    } else {
        let mut out = vec![format!("CREATE VIEW {name}{with} AS {def}")];
        for c in &v.columns {
            if let Some(d) = &c.default {
                out.push(format!(
                    "ALTER VIEW {name} ALTER COLUMN {} SET DEFAULT {}",
                    quote_ident(&c.name),
                    d.render(target)
                ));
            }
        }
        out.push(owner_statement("VIEW", &name, &v.owner));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Column;
    use crate::SqlText;

    #[test]
    fn views_and_materialized_views() {
        let v = View {
            name: "names".into(),
            definition: SqlText::deparsed(
                " WITH customers AS (SELECT c.id FROM src.customers c) SELECT customers.id FROM customers",
                "src",
            ),
            options: vec!["security_invoker=true".into()],
            columns: vec![Column { name: "id".into(), default: Some(SqlText::plain("'x'::text")), ..Default::default() }],
            owner: "o".into(),
            ..Default::default()
        };
        assert_eq!(
            create(&v, "acme"),
            [
                "CREATE VIEW acme.names WITH (security_invoker='true') AS  WITH customers AS (SELECT c.id FROM acme.customers c) SELECT customers.id FROM customers",
                "ALTER VIEW acme.names ALTER COLUMN id SET DEFAULT 'x'::text",
                "ALTER VIEW acme.names OWNER TO o",
            ]
        );
        let m = View {
            name: "totals".into(),
            materialized: true,
            definition: SqlText::plain(" SELECT 1"),
            access_method: Some("heap".into()),
            owner: "o".into(),
            ..Default::default()
        };
        assert_eq!(
            create(&m, "acme"),
            [
                "CREATE MATERIALIZED VIEW acme.totals USING heap AS  SELECT 1 WITH NO DATA",
                "ALTER MATERIALIZED VIEW acme.totals OWNER TO o",
            ]
        );
    }
}
