//! Extended statistics.

use super::{owner_statement, q};
use crate::model::Statistics;

pub fn create(s: &Statistics, target: &str) -> Vec<String> {
    let name = q(target, &s.name);
    let mut out = vec![format!(
        "CREATE STATISTICS {name}{}",
        s.definition.render(target)
    )];
    if let Some(t) = s.target {
        out.push(format!("ALTER STATISTICS {name} SET STATISTICS {t}"));
    }
    out.push(owner_statement("STATISTICS", &name, &s.owner));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlText;

    #[test]
    fn statistics() {
        let s = Statistics {
            name: "St".into(),
            table: "e".into(),
            definition: SqlText::plain(" ON id, v FROM \"Edge Case\""),
            target: Some(50),
            owner: "o".into(),
            comment: None,
        };
        assert_eq!(
            create(&s, "c"),
            [
                "CREATE STATISTICS c.\"St\" ON id, v FROM \"Edge Case\"",
                "ALTER STATISTICS c.\"St\" SET STATISTICS 50",
                "ALTER STATISTICS c.\"St\" OWNER TO o",
            ]
        );
    }
}
