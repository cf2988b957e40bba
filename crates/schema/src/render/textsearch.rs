//! Text search dictionaries and configurations (parsers and templates are C code that belongs
//! in an extension: refused).

use super::{owner_statement, q};
use crate::ident::quote_ident;
use crate::model::{TextSearchConfiguration, TextSearchDictionary};

pub fn create_dictionary(d: &TextSearchDictionary, target: &str) -> Vec<String> {
    let name = q(target, &d.name);
    let options = d
        .options
        .as_ref()
        .map_or(String::new(), |o| format!(", {o}"));
    vec![
        format!(
            "CREATE TEXT SEARCH DICTIONARY {name} (TEMPLATE = {}{options})",
            d.template.render(target)
        ),
        owner_statement("TEXT SEARCH DICTIONARY", &name, &d.owner),
    ]
}

pub fn create_configuration(c: &TextSearchConfiguration, target: &str) -> Vec<String> {
    let name = q(target, &c.name);
    let mut out = vec![format!(
        "CREATE TEXT SEARCH CONFIGURATION {name} (PARSER = {})",
        c.parser.render(target)
    )];
    for m in &c.mappings {
        out.push(format!(
            "ALTER TEXT SEARCH CONFIGURATION {name} ADD MAPPING FOR {} WITH {}",
            quote_ident(&m.token),
            m.dictionaries
                .iter()
                .map(|d| d.render(target))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push(owner_statement(
        "TEXT SEARCH CONFIGURATION",
        &name,
        &c.owner,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TextSearchMapping;
    use crate::SqlText;

    #[test]
    fn text_search() {
        let d = TextSearchDictionary {
            name: "simple_en".into(),
            template: SqlText::plain("pg_catalog.simple"),
            options: Some("stopwords = 'english'".into()),
            owner: "o".into(),
            comment: None,
        };
        assert_eq!(
            create_dictionary(&d, "t")[0],
            "CREATE TEXT SEARCH DICTIONARY t.simple_en (TEMPLATE = pg_catalog.simple, stopwords = 'english')"
        );
        let c = TextSearchConfiguration {
            name: "docs".into(),
            parser: SqlText::plain("pg_catalog.\"default\""),
            mappings: vec![TextSearchMapping {
                token: "asciiword".into(),
                dictionaries: vec![
                    SqlText::from_marked("\0.simple_en".into()),
                    SqlText::plain("pg_catalog.simple"),
                ],
            }],
            owner: "o".into(),
            comment: None,
        };
        assert_eq!(
            create_configuration(&c, "t"),
            [
                "CREATE TEXT SEARCH CONFIGURATION t.docs (PARSER = pg_catalog.\"default\")",
                "ALTER TEXT SEARCH CONFIGURATION t.docs ADD MAPPING FOR asciiword WITH t.simple_en, pg_catalog.simple",
                "ALTER TEXT SEARCH CONFIGURATION t.docs OWNER TO o",
            ]
        );
    }
}
