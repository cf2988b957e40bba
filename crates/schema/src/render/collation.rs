//! `CREATE COLLATION`.

use super::q;
use crate::ident::quote_literal;
use crate::model::{Collation, CollationProvider};

pub fn create(c: &Collation, target: &str) -> Vec<String> {
    let mut opts = Vec::new();
    match c.provider {
        CollationProvider::Icu => {
            opts.push("PROVIDER = icu".to_string());
            if let Some(l) = &c.icu_locale {
                opts.push(format!("LOCALE = {}", quote_literal(l)));
            }
        }
        CollationProvider::Builtin => {
            opts.push("PROVIDER = builtin".to_string());
            if let Some(l) = &c.icu_locale {
                opts.push(format!("LOCALE = {}", quote_literal(l)));
            }
        }
        CollationProvider::Libc | CollationProvider::Default => {
            opts.push("PROVIDER = libc".to_string());
            if let Some(l) = &c.collate {
                opts.push(format!("LC_COLLATE = {}", quote_literal(l)));
            }
            if let Some(l) = &c.ctype {
                opts.push(format!("LC_CTYPE = {}", quote_literal(l)));
            }
        }
    }
    if !c.deterministic {
        opts.push("DETERMINISTIC = false".to_string());
    }
    vec![format!(
        "CREATE COLLATION {} ({})",
        q(target, &c.name),
        opts.join(", ")
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collations() {
        let icu = Collation {
            name: "Ci".into(),
            provider: CollationProvider::Icu,
            deterministic: false,
            icu_locale: Some("und-u-ks-level2".into()),
            ..Default::default()
        };
        let libc = Collation {
            name: "c2".into(),
            provider: CollationProvider::Libc,
            deterministic: true,
            collate: Some("C".into()),
            ctype: Some("C".into()),
            ..Default::default()
        };
        assert_eq!(
            create(&icu, "t"),
            ["CREATE COLLATION t.\"Ci\" (PROVIDER = icu, LOCALE = 'und-u-ks-level2', DETERMINISTIC = false)"]
        );
        let builtin = Collation {
            name: "b".into(),
            provider: CollationProvider::Builtin,
            deterministic: true,
            icu_locale: Some("C.UTF-8".into()),
            ..Default::default()
        };
        assert_eq!(
            create(&builtin, "t"),
            ["CREATE COLLATION t.b (PROVIDER = builtin, LOCALE = 'C.UTF-8')"]
        );
        assert_eq!(
            create(&libc, "t"),
            ["CREATE COLLATION t.c2 (PROVIDER = libc, LC_COLLATE = 'C', LC_CTYPE = 'C')"]
        );
    }
}
