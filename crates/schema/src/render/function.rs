//! Functions, procedures and aggregates, rendered from their parts (the header names the target;
//! a `search_path` setting that named the source names the target).

use super::{owner_statement, q};
use crate::ident::{dollar_quote, quote_ident, quote_literal};
use crate::inventory::{aggregate_signature, Object};
use crate::model::*;

/// Settings whose value is a list of names, written element by element (PostgreSQL's
/// GUC_LIST_QUOTE settings).
fn setting_sql(s: &Setting, target: &str) -> String {
    let value = match &s.value {
        SettingValue::List(items) => items
            .iter()
            .map(|e| match e {
                PathEntry::Own => quote_literal(target),
                PathEntry::Name(n) => quote_literal(n),
            })
            .collect::<Vec<_>>()
            .join(", "),
        SettingValue::Value(v) => quote_literal(v),
        SettingValue::Empty => "''".to_string(),
    };
    format!("SET {} TO {value}", quote_ident(&s.name))
}

pub fn create(f: &Function, target: &str) -> Vec<String> {
    let procedure = f.kind == FunctionKind::Procedure;
    let mut sql = format!(
        "CREATE {} {}({})",
        if procedure { "PROCEDURE" } else { "FUNCTION" },
        q(target, &f.name),
        f.arguments.render(target)
    );
    if let Some(r) = &f.result {
        sql += &format!(" RETURNS {}", r.render(target));
    }
    sql += &format!(" LANGUAGE {}", quote_ident(&f.language));
    if !procedure {
        if f.kind == FunctionKind::Window {
            sql += " WINDOW";
        }
        sql += match f.volatility {
            Volatility::Immutable => " IMMUTABLE",
            Volatility::Stable => " STABLE",
            Volatility::Volatile => " VOLATILE",
        };
        if f.strict {
            sql += " STRICT";
        }
    }
    if f.security_definer {
        sql += " SECURITY DEFINER";
    }
    if !procedure {
        if f.leakproof {
            sql += " LEAKPROOF";
        }
        sql += match f.parallel {
            Parallel::Safe => " PARALLEL SAFE",
            Parallel::Restricted => " PARALLEL RESTRICTED",
            Parallel::Unsafe => " PARALLEL UNSAFE",
        };
        sql += &format!(" COST {}", f.cost);
        if f.rows != "0" && !f.rows.is_empty() {
            sql += &format!(" ROWS {}", f.rows);
        }
        if let Some(s) = &f.support {
            sql += &format!(" SUPPORT {}", s.render(target));
        }
    }
    for s in &f.config {
        sql += &format!(" {}", setting_sql(s, target));
    }
    match &f.body {
        FunctionBody::Sql(body) => sql += &format!(" {}", body.render(target)),
        FunctionBody::Text(body) => {
            sql += &format!(" AS {}", dollar_quote(&body.render(target), "function"))
        }
        FunctionBody::Object { file, symbol } => {
            sql += &format!(" AS {}, {}", quote_literal(file), quote_literal(symbol))
        }
        FunctionBody::Missing => {}
    }
    let (word, reference) = Object::Function(f).reference(target);
    vec![sql, owner_statement(word, &reference, &f.owner)]
}

pub fn create_aggregate(a: &Aggregate, target: &str) -> Vec<String> {
    let mut opts = vec![
        format!("SFUNC = {}", a.transition.render(target)),
        format!("STYPE = {}", a.state_type.render(target)),
    ];
    let modify = |m: FinalModify| match m {
        FinalModify::ReadOnly => "READ_ONLY",
        FinalModify::Shareable => "SHAREABLE",
        FinalModify::ReadWrite => "READ_WRITE",
    };
    if a.state_space != 0 {
        opts.push(format!("SSPACE = {}", a.state_space));
    }
    if let Some(f) = &a.final_function {
        opts.push(format!("FINALFUNC = {}", f.render(target)));
        if a.final_extra {
            opts.push("FINALFUNC_EXTRA".into());
        }
        opts.push(format!("FINALFUNC_MODIFY = {}", modify(a.final_modify)));
    }
    for (word, f) in [
        ("COMBINEFUNC", &a.combine),
        ("SERIALFUNC", &a.serial),
        ("DESERIALFUNC", &a.deserial),
    ] {
        if let Some(f) = f {
            opts.push(format!("{word} = {}", f.render(target)));
        }
    }
    if let Some(i) = &a.initial_value {
        opts.push(format!("INITCOND = {}", quote_literal(i)));
    }
    if let Some(m) = &a.moving {
        opts.push(format!("MSFUNC = {}", m.transition.render(target)));
        opts.push(format!("MINVFUNC = {}", m.inverse.render(target)));
        opts.push(format!("MSTYPE = {}", m.state_type.render(target)));
        if m.state_space != 0 {
            opts.push(format!("MSSPACE = {}", m.state_space));
        }
        if let Some(f) = &m.final_function {
            opts.push(format!("MFINALFUNC = {}", f.render(target)));
            if m.final_extra {
                opts.push("MFINALFUNC_EXTRA".into());
            }
            opts.push(format!("MFINALFUNC_MODIFY = {}", modify(m.final_modify)));
        }
        if let Some(i) = &m.initial_value {
            opts.push(format!("MINITCOND = {}", quote_literal(i)));
        }
    }
    if let Some(op) = &a.sort_operator {
        opts.push(format!("SORTOP = {}", op.render(target)));
    }
    opts.push(format!(
        "PARALLEL = {}",
        match a.parallel {
            Parallel::Safe => "SAFE",
            Parallel::Restricted => "RESTRICTED",
            Parallel::Unsafe => "UNSAFE",
        }
    ));
    if a.kind == AggregateKind::Hypothetical {
        opts.push("HYPOTHETICAL".into());
    }
    let args = a.arguments.render(target);
    vec![
        format!(
            "CREATE AGGREGATE {}({}) ({})",
            q(target, &a.name),
            if args.is_empty() {
                "*".to_string()
            } else {
                args
            },
            opts.join(", ")
        ),
        owner_statement(
            "AGGREGATE",
            &format!("{}({})", q(target, &a.name), aggregate_signature(a, target)),
            &a.owner,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlText;

    fn function() -> Function {
        Function {
            name: "touch".into(),
            kind: FunctionKind::Function,
            identity_arguments: SqlText::plain(""),
            arguments: SqlText::plain(""),
            result: Some(SqlText::plain("trigger")),
            language: "plpgsql".into(),
            cost: "100".into(),
            rows: "0".into(),
            owner: "o".into(),
            ..Default::default()
        }
    }

    #[test]
    fn function_headers_settings_and_bodies() {
        let mut f = function();
        f.config = vec![Setting {
            name: "search_path".into(),
            value: SettingValue::List(vec![PathEntry::Own, PathEntry::Name("pg_temp".into())]),
        }];
        f.body = FunctionBody::Text(SqlText::body(
            " BEGIN INSERT INTO src.log VALUES ($$x$$); END ",
            "src",
        ));
        assert_eq!(
            create(&f, "Tenant A"),
            [
                "CREATE FUNCTION \"Tenant A\".touch() RETURNS trigger LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE COST 100 SET search_path TO 'Tenant A', 'pg_temp' AS $function$ BEGIN INSERT INTO \"Tenant A\".log VALUES ($$x$$); END $function$",
                "ALTER FUNCTION \"Tenant A\".touch() OWNER TO o",
            ]
        );
        let mut g = function();
        g.name = "double_it".into();
        g.identity_arguments = SqlText::plain("x posint");
        g.arguments = SqlText::plain("x posint");
        g.result = Some(SqlText::plain("integer"));
        g.language = "sql".into();
        g.volatility = Volatility::Immutable;
        g.strict = true;
        g.leakproof = true;
        g.parallel = Parallel::Safe;
        g.body = FunctionBody::Sql(SqlText::plain("RETURN (x * 2)"));
        assert_eq!(
            create(&g, "t")[0],
            "CREATE FUNCTION t.double_it(x posint) RETURNS integer LANGUAGE sql IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE COST 100 RETURN (x * 2)"
        );
        let mut p = function();
        p.kind = FunctionKind::Procedure;
        p.result = None;
        p.body = FunctionBody::Text(SqlText::plain("BEGIN END"));
        p.security_definer = true;
        assert_eq!(
            create(&p, "t"),
            [
                "CREATE PROCEDURE t.touch() LANGUAGE plpgsql SECURITY DEFINER AS $function$BEGIN END$function$",
                "ALTER PROCEDURE t.touch() OWNER TO o",
            ]
        );
        let mut c = function();
        c.language = "c".into();
        c.body = FunctionBody::Object {
            file: "$libdir/x".into(),
            symbol: "f".into(),
        };
        c.rows = "1000".into();
        assert!(create(&c, "t")[0].ends_with("COST 100 ROWS 1000 AS '$libdir/x', 'f'"));
    }

    #[test]
    fn aggregates() {
        let a = Aggregate {
            name: "group_concat".into(),
            identity_arguments: SqlText::plain("text"),
            arguments: SqlText::plain("text"),
            transition: SqlText::plain("concat_step"),
            state_type: SqlText::plain("text"),
            final_function: Some(SqlText::plain("concat_final")),
            initial_value: Some(String::new()),
            sort_operator: Some(SqlText::plain("OPERATOR(pg_catalog.>)")),
            owner: "o".into(),
            ..Default::default()
        };
        assert_eq!(
            create_aggregate(&a, "t"),
            [
                "CREATE AGGREGATE t.group_concat(text) (SFUNC = concat_step, STYPE = text, FINALFUNC = concat_final, FINALFUNC_MODIFY = READ_ONLY, INITCOND = '', SORTOP = OPERATOR(pg_catalog.>), PARALLEL = UNSAFE)",
                "ALTER AGGREGATE t.group_concat(text) OWNER TO o",
            ]
        );
        let star = Aggregate {
            name: "n".into(),
            ..a.clone()
        };
        assert!(create_aggregate(
            &Aggregate {
                identity_arguments: SqlText::plain(""),
                arguments: SqlText::plain(""),
                ..star
            },
            "t"
        )[0]
        .starts_with("CREATE AGGREGATE t.n(*) ("));
    }
}
