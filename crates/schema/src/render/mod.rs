//! One renderer per object kind: each turns one model object into the statements that create it
//! in schema `target`. Identifiers are quoted (`quote_ident`), values written as literals
//! (`quote_literal`); catalog text is rendered from its schema-relative form
//! ([`crate::SqlText::render`]). Statements run with [`crate::plan::search_path`] and
//! `check_function_bodies = off` (see [`crate::plan`]).

pub mod collation;
pub mod comment;
pub mod function;
pub mod grant;
pub mod index;
pub mod operator;
pub mod policy;
pub mod sequence;
pub mod statistics;
pub mod table;
pub mod textsearch;
pub mod trigger;
pub mod types;
pub mod view;

use crate::ident::quote_ident;

/// `schema.name`, both quoted.
pub(crate) fn q(target: &str, name: &str) -> String {
    crate::ident::quote_qualified(target, name)
}

/// `ALTER <word> <reference> OWNER TO <owner>`.
pub(crate) fn owner_statement(word: &str, reference: &str, owner: &str) -> String {
    format!("ALTER {word} {reference} OWNER TO {}", quote_ident(owner))
}

/// `reloptions`-style `name=value` items as the inside of `WITH (...)`: names quoted, values as
/// literals; `prefix` (`toast.`) before each name.
pub(crate) fn options(opts: &[String], prefix: &str) -> Vec<String> {
    opts.iter()
        .filter(|o| !o.starts_with("pg_attver="))
        .map(|o| {
            let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
            format!(
                "{prefix}{}={}",
                quote_ident(k),
                crate::ident::quote_literal(v)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_quoted() {
        assert_eq!(
            options(&["fillfactor=70".into(), "Odd Key=a'b".into()], "toast."),
            ["toast.fillfactor='70'", "toast.\"Odd Key\"='a''b'"]
        );
    }
}
