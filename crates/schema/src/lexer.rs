//! A tokenizer for PostgreSQL's SQL syntax, enough to find identifiers and qualified names in
//! text PostgreSQL deparsed (view definitions, expressions, index and trigger definitions) or a
//! user wrote (function bodies): comments, string literals of every form, dollar quoting, quoted
//! identifiers and operators are recognised so that nothing inside them is taken for a name.

/// What a token is. `Ident` covers keywords too: the parser decides what a word means, and so do
/// the callers here, from the folded value and the position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An unquoted word or a double-quoted identifier.
    Ident,
    /// Any string literal: '...', E'...', B'...', X'...', N'...', U&'...', $tag$...$tag$.
    String,
    Number,
    /// `$1`, `$2`, ...
    Param,
    /// An operator (`=`, `<>`, `||`, `->>`, ...).
    Operator,
    /// One of `( ) [ ] , ; .` or `::` or `:`.
    Punct,
    Whitespace,
    Comment,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    /// Byte range in the text.
    pub start: usize,
    pub end: usize,
    /// For identifiers: the name it denotes (unquoted: folded; quoted: as written, `""` undone).
    pub value: String,
    /// For identifiers: whether it was double-quoted.
    pub quoted: bool,
}

impl Token {
    pub fn is_significant(&self) -> bool {
        !matches!(self.kind, Kind::Whitespace | Kind::Comment)
    }

    /// An unquoted word equal to `keyword` (lower case).
    pub fn is_word(&self, keyword: &str) -> bool {
        self.kind == Kind::Ident && !self.quoted && self.value == keyword
    }

    pub fn is_punct(&self, text: &str, p: &str) -> bool {
        self.kind == Kind::Punct && &text[self.start..self.end] == p
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

const OPERATOR_CHARS: &str = "+-*/<>=~!@#%^&|`?";

/// The tokens of `text`, covering it without gaps. Unterminated literals, identifiers and
/// comments run to the end of the text (the tokenizer never fails: its callers only look for
/// names, and PostgreSQL's own output is well formed).
pub fn tokenize(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let char_at = |i: usize| text[i..].chars().next().unwrap_or('\0');
    while i < text.len() {
        let c = char_at(i);
        let start = i;
        let mut value = String::new();
        let mut quoted = false;
        let kind;
        if c.is_whitespace() {
            while i < text.len() && char_at(i).is_whitespace() {
                i += char_at(i).len_utf8();
            }
            kind = Kind::Whitespace;
        } else if text[i..].starts_with("--") {
            i = text[i..].find('\n').map_or(text.len(), |n| i + n);
            kind = Kind::Comment;
        } else if text[i..].starts_with("/*") {
            // Block comments nest in PostgreSQL.
            let mut depth = 0;
            while i < text.len() {
                if text[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += char_at(i).len_utf8();
                }
            }
            kind = Kind::Comment;
        } else if c == '\'' {
            i = quoted_end(text, i, '\'', false);
            kind = Kind::String;
        } else if (c == 'e' || c == 'E') && bytes.get(i + 1) == Some(&b'\'') {
            i = quoted_end(text, i + 1, '\'', true);
            kind = Kind::String;
        } else if matches!(c, 'b' | 'B' | 'x' | 'X' | 'n' | 'N') && bytes.get(i + 1) == Some(&b'\'')
        {
            i = quoted_end(text, i + 1, '\'', false);
            kind = Kind::String;
        } else if (c == 'u' || c == 'U')
            && bytes.get(i + 1) == Some(&b'&')
            && matches!(bytes.get(i + 2), Some(b'\'') | Some(b'"'))
        {
            let q = bytes[i + 2] as char;
            i = quoted_end(text, i + 2, q, false);
            if q == '"' {
                // U&"..." identifiers: kept as written (escapes are not decoded; PostgreSQL's own
                // output never uses them).
                value = text[start + 3..i.saturating_sub(1).max(start + 3)].replace("\"\"", "\"");
                quoted = true;
                kind = Kind::Ident;
            } else {
                kind = Kind::String;
            }
        } else if c == '"' {
            i = quoted_end(text, i, '"', false);
            let inner_end = if text[..i].ends_with('"') && i > start + 1 {
                i - 1
            } else {
                i
            };
            value = text[start + 1..inner_end].replace("\"\"", "\"");
            quoted = true;
            kind = Kind::Ident;
        } else if c == '$' {
            if let Some(end) = dollar_end(text, i) {
                i = end;
                kind = Kind::String;
            } else if bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()) {
                i += 1;
                while i < text.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                kind = Kind::Param;
            } else {
                i += 1;
                kind = Kind::Operator;
            }
        } else if is_ident_start(c) {
            while i < text.len() && is_ident_char(char_at(i)) {
                i += char_at(i).len_utf8();
            }
            value = crate::ident::fold_unquoted(&text[start..i]);
            kind = Kind::Ident;
        } else if c.is_ascii_digit()
            || (c == '.' && bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()))
        {
            while i < text.len() {
                let b = bytes[i];
                let part_of_number = b.is_ascii_alphanumeric()
                    || b == b'_'
                    || (b == b'.' && !text[i..].starts_with(".."))
                    || ((b == b'+' || b == b'-') && matches!(bytes[i - 1], b'e' | b'E'));
                if !part_of_number {
                    break;
                }
                i += 1;
            }
            kind = Kind::Number;
        } else if text[i..].starts_with("::") {
            i += 2;
            kind = Kind::Punct;
        } else if "()[],;.:".contains(c) {
            i += 1;
            kind = Kind::Punct;
        } else if OPERATOR_CHARS.contains(c) {
            while i < text.len()
                && OPERATOR_CHARS.contains(char_at(i))
                && !text[i..].starts_with("--")
                && !text[i..].starts_with("/*")
            {
                i += 1;
            }
            kind = Kind::Operator;
        } else {
            i += c.len_utf8();
            kind = Kind::Operator;
        }
        out.push(Token {
            kind,
            start,
            end: i,
            value,
            quoted,
        });
    }
    out
}

/// The end (exclusive) of a literal or identifier opened by `q` at `open`; a doubled `q` stands
/// for itself, and with `backslash` a backslash escapes the next character.
fn quoted_end(text: &str, open: usize, q: char, backslash: bool) -> usize {
    let mut i = open + 1;
    let bytes = text.as_bytes();
    while i < text.len() {
        let b = bytes[i];
        if backslash && b == b'\\' {
            i += 2;
        } else if b as char == q {
            if bytes.get(i + 1) == Some(&(q as u8)) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    text.len()
}

/// `$tag$ ... $tag$` starting at `i`: its end, or None when `$` does not open a dollar quote.
fn dollar_end(text: &str, i: usize) -> Option<usize> {
    let rest = &text[i + 1..];
    let tag_len = rest
        .char_indices()
        .take_while(|&(n, c)| {
            if n == 0 {
                is_ident_start(c)
            } else {
                is_ident_char(c) && c != '$'
            }
        })
        .map(|(n, c)| n + c.len_utf8())
        .last()
        .unwrap_or(0);
    if !rest[tag_len..].starts_with('$') {
        return None;
    }
    let delimiter = &text[i..i + tag_len + 2];
    let body = i + delimiter.len();
    Some(
        text[body..]
            .find(delimiter)
            .map_or(text.len(), |n| body + n + delimiter.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        tokenize(text)
            .into_iter()
            .filter(|t| t.is_significant())
            .map(|t| (t.kind, &text[t.start..t.end]))
            .collect()
    }

    #[test]
    fn tokens_of_each_kind() {
        use Kind::*;
        let cases: Vec<(&str, Vec<(Kind, &str)>)> = vec![
            ("a.b", vec![(Ident, "a"), (Punct, "."), (Ident, "b")]),
            (
                "\"A b\".\"c\"\"d\"",
                vec![(Ident, "\"A b\""), (Punct, "."), (Ident, "\"c\"\"d\"")],
            ),
            (
                "'it''s' E'a\\'b' x",
                vec![(String, "'it''s'"), (String, "E'a\\'b'"), (Ident, "x")],
            ),
            ("$$a 'b' c$$ d", vec![(String, "$$a 'b' c$$"), (Ident, "d")]),
            ("$fn$ $x$ $fn$", vec![(String, "$fn$ $x$ $fn$")]),
            (
                "$1 + $2",
                vec![(Param, "$1"), (Operator, "+"), (Param, "$2")],
            ),
            (
                "x::text",
                vec![(Ident, "x"), (Punct, "::"), (Ident, "text")],
            ),
            ("a--c\nb", vec![(Ident, "a"), (Ident, "b")]),
            ("a/* /* n */ */b", vec![(Ident, "a"), (Ident, "b")]),
            ("1.5e-3 .5", vec![(Number, "1.5e-3"), (Number, ".5")]),
            ("a<>b", vec![(Ident, "a"), (Operator, "<>"), (Ident, "b")]),
            ("B'101' X'ff'", vec![(String, "B'101'"), (String, "X'ff'")]),
            ("U&'x' U&\"y\"", vec![(String, "U&'x'"), (Ident, "U&\"y\"")]),
            ("e.x", vec![(Ident, "e"), (Punct, "."), (Ident, "x")]),
            (
                "OPERATOR(s.+)",
                vec![
                    (Ident, "OPERATOR"),
                    (Punct, "("),
                    (Ident, "s"),
                    (Punct, "."),
                    (Operator, "+"),
                    (Punct, ")"),
                ],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(kinds(text), expected, "{text}");
        }
    }

    #[test]
    fn identifier_values_fold_or_keep() {
        let t = tokenize("Edge \"Edge Case\" \"a\"\"b\"");
        let idents: Vec<(&str, bool)> = t
            .iter()
            .filter(|t| t.kind == Kind::Ident)
            .map(|t| (t.value.as_str(), t.quoted))
            .collect();
        assert_eq!(
            idents,
            [("edge", false), ("Edge Case", true), ("a\"b", true)]
        );
    }

    #[test]
    fn tokens_cover_the_text() {
        let text = "SELECT 'x' -- c\n, \"q\" FROM $a$ b $a$ /* d */ WHERE ü = 1";
        let t = tokenize(text);
        assert_eq!(t.first().map(|t| t.start), Some(0));
        assert!(t.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(t.last().map(|t| t.end), Some(text.len()));
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for text in ["'abc", "\"abc", "$q$ abc", "/* abc", "E'\\", "U&\"", "\""] {
            let t = tokenize(text);
            assert_eq!(t.last().map(|t| t.end), Some(text.len()), "{text}");
        }
    }
}
