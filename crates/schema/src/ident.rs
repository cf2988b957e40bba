//! Identifiers and literals as PostgreSQL writes and reads them: `quote_ident`, `quote_literal`,
//! and the folding the parser applies to an unquoted identifier.

/// PostgreSQL 15's keywords that `quote_ident` quotes: every keyword that is not unreserved
/// (reserved, column-name and type/function-name keywords), from `src/include/parser/kwlist.h`.
/// Sorted, for binary search. The integration tests compare `quote_ident` with the server's for
/// every row of `pg_get_keywords()`.
const QUOTED_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes); longer ones are truncated.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Whether `word` (already lower case) is a keyword that `quote_ident` must quote.
pub fn is_quoted_keyword(word: &str) -> bool {
    QUOTED_KEYWORDS.binary_search(&word).is_ok()
}

/// `name` as an SQL identifier, quoted exactly when PostgreSQL's `quote_ident` quotes it: unless it
/// is all lower-case ASCII letters, digits and underscores, does not start with a digit and is not
/// a keyword that needs quoting. Double quotes inside are doubled.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !is_quoted_keyword(name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `schema.name`, each part quoted as needed.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// `value` as an SQL string literal, as PostgreSQL's `quote_literal` writes it: quotes doubled,
/// and when a backslash occurs, backslashes doubled and the `E` prefix (correct whatever
/// `standard_conforming_strings` says).
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The name an unquoted identifier denotes: ASCII letters folded to lower case (PostgreSQL
/// leaves other characters alone in a multi-byte encoding), truncated to 63 bytes at a character
/// boundary.
pub fn fold_unquoted(word: &str) -> String {
    truncate(word.to_ascii_lowercase())
}

/// A name truncated as PostgreSQL truncates identifiers.
pub fn truncate(mut name: String) -> String {
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// A string safe to put between dollar quotes: `$tag$body$tag$` with the first tag of
/// `tag`, `tag_1`, `tag_2`, ... that does not occur in `body`.
pub fn dollar_quote(body: &str, tag: &str) -> String {
    let mut candidate = tag.to_string();
    let mut n = 0;
    while body.contains(&format!("${candidate}$")) || body.ends_with(&format!("${candidate}")) {
        n += 1;
        candidate = format!("{tag}_{n}");
    }
    format!("${candidate}${body}${candidate}$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_list_is_sorted() {
        assert!(QUOTED_KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn quote_ident_cases() {
        for (name, quoted) in [
            ("customers", "customers"),
            ("_x1", "_x1"),
            ("Customers", "\"Customers\""),
            ("with space", "\"with space\""),
            ("1abc", "\"1abc\""),
            ("a\"b", "\"a\"\"b\""),
            ("order", "\"order\""),
            ("user", "\"user\""),
            ("name", "name"),           // unreserved keyword
            ("between", "\"between\""), // column-name keyword
            ("left", "\"left\""),       // type/function-name keyword
            ("", "\"\""),
            ("é", "\"é\""),
            ("a$", "\"a$\""),
        ] {
            assert_eq!(quote_ident(name), quoted, "{name:?}");
        }
    }

    #[test]
    fn quote_literal_cases() {
        for (value, quoted) in [
            ("abc", "'abc'"),
            ("it's", "'it''s'"),
            ("a\\b", "E'a\\\\b'"),
            ("", "''"),
        ] {
            assert_eq!(quote_literal(value), quoted, "{value:?}");
        }
    }

    #[test]
    fn folding_and_truncation() {
        assert_eq!(fold_unquoted("Edge_CASE"), "edge_case");
        assert_eq!(fold_unquoted("ÉX"), "Éx");
        assert_eq!(fold_unquoted(&"a".repeat(70)), "a".repeat(63));
        // 21 three-byte characters are 63 bytes; a 22nd is cut whole.
        assert_eq!(truncate("€".repeat(22)), "€".repeat(21));
    }

    #[test]
    fn dollar_quoting_avoids_the_body() {
        assert_eq!(dollar_quote("select 1", "body"), "$body$select 1$body$");
        assert_eq!(
            dollar_quote("a $body$ b", "body"),
            "$body_1$a $body$ b$body_1$"
        );
        assert_eq!(dollar_quote("x$body", "body"), "$body_1$x$body$body_1$");
    }
}
