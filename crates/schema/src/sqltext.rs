//! SQL text relative to the schema it belongs to.
//!
//! The model stores catalog text (deparsed expressions, view and index definitions, function
//! bodies) with every reference to the schema itself replaced by a marker, so that a schema and
//! its clone have *equal* models, and so that rendering the text for another schema is a
//! substitution, not a search. The marker is a NUL character: PostgreSQL text can never contain
//! one, so it cannot collide with anything a user wrote.
//!
//! Two ways of finding the references:
//!
//! - [`SqlText::deparsed`], for text PostgreSQL itself printed (`pg_get_viewdef`, `pg_get_expr`,
//!   ...) with `search_path = pg_catalog, <schema>, pg_temp`. Objects of the schema then come out
//!   unqualified, except where PostgreSQL must qualify them: a table shadowed by a CTE of the same
//!   name or by a catalog table, a function or type a catalog one of the same name would capture,
//!   an operator written `OPERATOR(s.op)`. A
//!   qualified name is rewritten only where the grammar makes its first part a schema: three or
//!   more parts, a function call or type modifier (`s.f(`), a type after `::` or `AS`, an
//!   operator, or a relation (after FROM, JOIN, ONLY, ..., or `,` in a FROM list). A two-part name
//!   in an expression is a column of a table alias, even when the alias is spelled like the schema.
//! - [`SqlText::body`], for text a user wrote and PostgreSQL keeps as is (function bodies in
//!   PL/pgSQL or SQL text): every `<schema>.` at an identifier boundary, quoted or unquoted in any
//!   letter case, also inside string literals (dynamic SQL), as the PL/pgSQL cloner did.

use crate::ident::{fold_unquoted, quote_ident};
use crate::lexer::{tokenize, Kind, Token};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The marker for "this schema" in model text.
pub const SELF: char = '\0';
/// How the marker is shown to a person (diff output).
pub const SELF_DISPLAY: &str = "@schema@";

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SqlText(String);

impl SqlText {
    /// Text that cannot name the schema (a literal, a keyword, a name in another schema).
    pub fn plain(text: impl Into<String>) -> SqlText {
        SqlText(text.into().replace(SELF, ""))
    }

    /// Text PostgreSQL deparsed with `schema` on the search path (after `pg_catalog`).
    pub fn deparsed(text: &str, schema: &str) -> SqlText {
        SqlText(mark_deparsed(text, schema, &[]))
    }

    /// Like [`SqlText::deparsed`], where the given words at the top level (outside parentheses)
    /// introduce a relation, as `ON` and `FROM` do in a trigger definition.
    pub fn deparsed_with(text: &str, schema: &str, relation_words: &[&str]) -> SqlText {
        SqlText(mark_deparsed(text, schema, relation_words))
    }

    /// Text made of type, function, operator class and other object names and of expressions
    /// without table aliases (`format_type`, `regproc` output, index and partition key
    /// definitions, argument types): every qualified name whose first part is the schema.
    pub fn names(text: &str, schema: &str) -> SqlText {
        SqlText(mark_names(text, schema))
    }

    /// `pg_get_function_arguments`: names and types ([`SqlText::names`]), and after `DEFAULT`
    /// expressions ([`SqlText::deparsed`]).
    pub fn arguments(text: &str, schema: &str) -> SqlText {
        SqlText(mark_arguments(text, schema))
    }

    /// Text a user wrote (a function body kept as text).
    pub fn body(text: &str, schema: &str) -> SqlText {
        SqlText(mark_body(text, schema))
    }

    /// The text for schema `target`: the marker replaced by its quoted name.
    pub fn render(&self, target: &str) -> String {
        if self.0.contains(SELF) {
            self.0.replace(SELF, &quote_ident(target))
        } else {
            self.0.clone()
        }
    }

    /// The schema-relative text, with the marker as a NUL character.
    pub fn as_marked(&self) -> &str {
        &self.0
    }

    /// Whether the text names its own schema somewhere.
    pub fn names_self(&self) -> bool {
        self.0.contains(SELF)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds text from pieces: `own` adds a qualified reference to an object of the schema.
    pub fn own_qualified(name: &str) -> SqlText {
        SqlText(format!("{SELF}.{}", quote_ident(name)))
    }

    pub fn from_marked(text: String) -> SqlText {
        SqlText(text)
    }
}

impl fmt::Display for SqlText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.replace(SELF, SELF_DISPLAY))
    }
}

/// Words after which a name is a relation, in a query.
const RELATION_WORDS: &[&str] = &[
    "join", "only", "lateral", "into", "update", "table", "using",
];
/// Words that end a FROM list at their level.
const END_FROM_WORDS: &[&str] = &[
    "where",
    "group",
    "having",
    "window",
    "order",
    "limit",
    "offset",
    "fetch",
    "union",
    "intersect",
    "except",
    "returning",
    "for",
    "set",
    "values",
];

struct Scope {
    /// A SELECT (or DELETE) began at this level: FROM here is a clause.
    query: bool,
    /// Inside a FROM list at this level.
    from_list: bool,
}

fn mark_deparsed(text: &str, schema: &str, top_relation_words: &[&str]) -> String {
    let tokens = tokenize(text);
    let sig: Vec<&Token> = tokens.iter().filter(|t| t.is_significant()).collect();
    let mut marks: Vec<(usize, usize)> = Vec::new();
    let mut scopes = vec![Scope {
        query: false,
        from_list: false,
    }];
    for k in 0..sig.len() {
        let t = sig[k];
        let prev = k.checked_sub(1).map(|p| sig[p]);
        if t.is_punct(text, "(") {
            scopes.push(Scope {
                query: false,
                from_list: false,
            });
            continue;
        }
        if t.is_punct(text, ")") {
            if scopes.len() > 1 {
                scopes.pop();
            }
            continue;
        }
        let depth = scopes.len() - 1;
        let scope = scopes.last_mut().expect("a scope");
        if t.is_word("select") || t.is_word("delete") {
            scope.query = true;
            scope.from_list = false;
        } else if t.is_word("from") {
            let after_distinct = prev.is_some_and(|p| p.is_word("distinct"));
            scope.from_list = prev.is_some_and(|p| p.is_word("delete"))
                || (scope.query && !after_distinct)
                || (depth == 0 && top_relation_words.contains(&"from"));
        } else if END_FROM_WORDS.iter().any(|w| t.is_word(w)) {
            scope.from_list = false;
        }
        if t.kind != Kind::Ident || prev.is_some_and(|p| p.is_punct(text, ".")) {
            continue;
        }
        // A qualified name starts here: count its parts.
        let mut parts = 1;
        let mut j = k;
        let mut operator_part = false;
        let mut star = false;
        while sig.get(j + 1).is_some_and(|d| d.is_punct(text, ".")) {
            let Some(n) = sig.get(j + 2) else { break };
            if n.kind == Kind::Operator && &text[n.start..n.end] == "*" {
                // `x.*`: the row of x (an alias, or a table after a schema).
                star = true;
            } else if n.kind == Kind::Operator {
                operator_part = true;
            } else if n.kind != Kind::Ident {
                break;
            }
            parts += 1;
            j += 2;
            if operator_part || star {
                break;
            }
        }
        if parts < 2 || t.value != schema {
            continue;
        }
        let next = sig.get(j + 1);
        let prev_word = |w: &str| prev.is_some_and(|p| p.is_word(w));
        // `s.*` is the row of an alias; `s.t.*` has a schema.
        let star = star && parts == 2;
        let is_schema = parts >= 3
            || operator_part
            || next.is_some_and(|n| n.is_punct(text, "("))
            || prev.is_some_and(|p| p.is_punct(text, "::"))
            || prev_word("as")
            || (prev_word("from") && scope.from_list)
            || RELATION_WORDS.iter().any(|w| prev_word(w))
            || (depth == 0 && top_relation_words.iter().any(|w| prev_word(w)))
            || (prev.is_some_and(|p| p.is_punct(text, ",")) && scope.from_list);
        if is_schema && !star {
            marks.push((t.start, t.end));
        }
    }
    apply_marks(text, &marks)
}

/// The first part of every qualified name that starts with an identifier equal to `schema`.
fn name_marks(text: &str, tokens: &[Token], schema: &str) -> Vec<(usize, usize)> {
    let sig: Vec<&Token> = tokens.iter().filter(|t| t.is_significant()).collect();
    let mut marks = Vec::new();
    for k in 0..sig.len() {
        let t = sig[k];
        let qualifies = t.kind == Kind::Ident
            && t.value == schema
            && !(k > 0 && sig[k - 1].is_punct(text, "."))
            && sig.get(k + 1).is_some_and(|d| d.is_punct(text, "."));
        if qualifies {
            marks.push((t.start, t.end));
        }
    }
    marks
}

fn mark_names(text: &str, schema: &str) -> String {
    let tokens = tokenize(text);
    let marks = name_marks(text, &tokens, schema);
    apply_marks(text, &marks)
}

fn mark_arguments(text: &str, schema: &str) -> String {
    // Split at top-level commas; in each argument, names and types up to a top-level DEFAULT,
    // an expression after it.
    let tokens = tokenize(text);
    let mut out = String::with_capacity(text.len());
    let mut depth = 0i32;
    let mut piece_start = 0;
    let mut default_at: Option<usize> = None;
    let flush =
        |from: usize, to: usize, default_at: Option<usize>, out: &mut String| match default_at {
            Some(d) => {
                out.push_str(&mark_names(&text[from..d], schema));
                out.push_str(&mark_deparsed(&text[d..to], schema, &[]));
            }
            None => out.push_str(&mark_names(&text[from..to], schema)),
        };
    for t in &tokens {
        if t.is_punct(text, "(") || t.is_punct(text, "[") {
            depth += 1;
        } else if t.is_punct(text, ")") || t.is_punct(text, "]") {
            depth -= 1;
        } else if depth == 0 && t.is_punct(text, ",") {
            flush(piece_start, t.end, default_at, &mut out);
            piece_start = t.end;
            default_at = None;
        } else if depth == 0 && t.is_word("default") && default_at.is_none() {
            default_at = Some(t.start);
        }
    }
    flush(piece_start, text.len(), default_at, &mut out);
    out
}

fn apply_marks(text: &str, marks: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(start, end) in marks {
        out.push_str(&text[at..start]);
        out.push(SELF);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

fn mark_body(text: &str, schema: &str) -> String {
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    let plain = quote_ident(schema) == schema;
    let mut marks = Vec::new();
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < text.len() {
        let c = text[i..].chars().next().expect("a char");
        let boundary = !prev.is_some_and(|p| is_ident_char(p) || p == '.' || p == '"');
        let mut matched_end = None;
        if boundary && text[i..].starts_with(&quoted) {
            matched_end = Some(i + quoted.len());
        } else if boundary && plain && (c.is_ascii_alphabetic() || c == '_') {
            let run = text[i..]
                .char_indices()
                .take_while(|&(_, c)| is_ident_char(c))
                .last()
                .map_or(i, |(n, c)| i + n + c.len_utf8());
            if fold_unquoted(&text[i..run]) == schema && text[i..run].len() == schema.len() {
                matched_end = Some(run);
            }
        }
        if let Some(end) = matched_end {
            let after = text[end..].trim_start();
            if after.starts_with('.') {
                marks.push((i, end));
                prev = text[..end].chars().last();
                i = end;
                continue;
            }
        }
        prev = Some(c);
        i += c.len_utf8();
    }
    apply_marks(text, &marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str, schema: &str) -> String {
        SqlText::deparsed(text, schema).to_string()
    }

    #[test]
    fn deparsed_text_is_marked_where_the_grammar_says_schema() {
        let cases = [
            // The case from issue 13: a CTE named like a table forces the table's qualification.
            (
                "WITH orders AS (SELECT o.id FROM app.orders o) SELECT orders.id FROM orders",
                "app",
                "WITH orders AS (SELECT o.id FROM @schema@.orders o) SELECT orders.id FROM orders",
            ),
            // A table alias spelled like the schema is a column qualifier, not a schema.
            (
                "SELECT app.id, app.* FROM app.t app WHERE app.x = 1",
                "app",
                "SELECT app.id, app.* FROM @schema@.t app WHERE app.x = 1",
            ),
            (
                "SELECT 1 FROM a, app.b, app.c",
                "app",
                "SELECT 1 FROM a, @schema@.b, @schema@.c",
            ),
            (
                "SELECT x FROM a JOIN app.b ON app.z = a.z LEFT JOIN app.c USING (k)",
                "app",
                "SELECT x FROM a JOIN @schema@.b ON app.z = a.z LEFT JOIN @schema@.c USING (k)",
            ),
            (
                "SELECT app.f(1), x::app.t, CAST(y AS app.t)",
                "app",
                "SELECT @schema@.f(1), x::@schema@.t, CAST(y AS @schema@.t)",
            ),
            (
                "SELECT (a OPERATOR(app.+) b)",
                "app",
                "SELECT (a OPERATOR(@schema@.+) b)",
            ),
            (
                "SELECT app.t.c FROM app.t",
                "app",
                "SELECT @schema@.t.c FROM @schema@.t",
            ),
            // FROM inside a function call or IS DISTINCT FROM is no FROM clause.
            (
                "SELECT EXTRACT(year FROM app.d), (a IS DISTINCT FROM app.b) FROM t app",
                "app",
                "SELECT EXTRACT(year FROM app.d), (a IS DISTINCT FROM app.b) FROM t app",
            ),
            // Literals and quoted spellings.
            (
                "SELECT 'app.t' FROM \"App\".t",
                "app",
                "SELECT 'app.t' FROM \"App\".t",
            ),
            (
                "SELECT 1 FROM \"Edge Case\".t",
                "Edge Case",
                "SELECT 1 FROM @schema@.t",
            ),
            ("SELECT 1 FROM APP.t", "app", "SELECT 1 FROM @schema@.t"),
            // Subqueries in expressions.
            (
                "(EXISTS ( SELECT 1 FROM app.c WHERE (app.n = 'x')))",
                "app",
                "(EXISTS ( SELECT 1 FROM @schema@.c WHERE (app.n = 'x')))",
            ),
            (
                "SELECT a FROM ONLY app.t",
                "app",
                "SELECT a FROM ONLY @schema@.t",
            ),
            ("other.f(1)", "app", "other.f(1)"),
        ];
        for (text, schema, expected) in cases {
            assert_eq!(d(text, schema), expected, "{text}");
        }
    }

    #[test]
    fn trigger_heads_name_their_table() {
        let def = "CREATE TRIGGER t BEFORE UPDATE ON app.parent FOR EACH ROW WHEN ((old.id IS DISTINCT FROM app.id)) EXECUTE FUNCTION trg()";
        assert_eq!(
            SqlText::deparsed_with(def, "app", &["on", "from"]).to_string(),
            "CREATE TRIGGER t BEFORE UPDATE ON @schema@.parent FOR EACH ROW WHEN ((old.id IS DISTINCT FROM app.id)) EXECUTE FUNCTION trg()"
        );
    }

    #[test]
    fn names_and_arguments() {
        assert_eq!(
            SqlText::names("app.posint[]", "app").to_string(),
            "@schema@.posint[]"
        );
        assert_eq!(
            SqlText::names(
                "USING btree (app.lower(v) app.text_ops) WHERE (x > 0)",
                "app"
            )
            .to_string(),
            "USING btree (@schema@.lower(v) @schema@.text_ops) WHERE (x > 0)"
        );
        assert_eq!(
            SqlText::arguments(
                "x app.text, lim integer DEFAULT app.f(1), y app.t DEFAULT (SELECT 1)",
                "app"
            )
            .to_string(),
            "x @schema@.text, lim integer DEFAULT @schema@.f(1), y @schema@.t DEFAULT (SELECT 1)"
        );
        assert_eq!(
            SqlText::names("TABLE(a app.t, b integer)", "app").to_string(),
            "TABLE(a @schema@.t, b integer)"
        );
    }

    #[test]
    fn bodies_are_marked_textually() {
        let cases = [
            (
                "SELECT * FROM app.t; EXECUTE 'SELECT app.f()'",
                "app",
                "SELECT * FROM @schema@.t; EXECUTE 'SELECT @schema@.f()'",
            ),
            (
                "SELECT myapp.x, app_x.y, x.app.z",
                "app",
                "SELECT myapp.x, app_x.y, x.app.z",
            ),
            ("SELECT APP . t", "app", "SELECT @schema@ . t"),
            (
                "select \"Edge Case\".t, edge.x",
                "Edge Case",
                "select @schema@.t, edge.x",
            ),
            ("select \"app\".t", "app", "select @schema@.t"),
        ];
        for (text, schema, expected) in cases {
            assert_eq!(SqlText::body(text, schema).to_string(), expected, "{text}");
        }
    }

    #[test]
    fn rendering_substitutes_the_quoted_target() {
        let t = SqlText::deparsed("SELECT 1 FROM app.t", "app");
        assert_eq!(t.render("Tenant Space"), "SELECT 1 FROM \"Tenant Space\".t");
        assert_eq!(t.render("acme"), "SELECT 1 FROM acme.t");
        assert!(t.names_self());
        assert!(!SqlText::plain("x").names_self());
    }

    #[test]
    fn a_schema_and_its_copy_mark_alike() {
        let a = SqlText::deparsed("WITH t AS (SELECT 1 FROM src.t) SELECT * FROM t", "src");
        let b = SqlText::deparsed(
            "WITH t AS (SELECT 1 FROM \"Copy\".t) SELECT * FROM t",
            "Copy",
        );
        assert_eq!(a, b);
        // A copy that still points at the source is not equal.
        let c = SqlText::deparsed("WITH t AS (SELECT 1 FROM src.t) SELECT * FROM t", "Copy");
        assert_ne!(a, c);
    }
}
