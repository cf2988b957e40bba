//! Sequences: free-standing ones, those owned by a column (serial), and the options of identity
//! columns.

use super::q;
use crate::model::Sequence;

/// `INCREMENT BY ... CYCLE`, with `AS type` unless for an identity column (which takes the type
/// of its column).
pub fn options(s: &Sequence, target: &str, with_type: bool) -> String {
    format!(
        "{}INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} CACHE {} {}",
        if with_type {
            format!("AS {} ", s.data_type.render(target))
        } else {
            String::new()
        },
        s.increment,
        s.min,
        s.max,
        s.start,
        s.cache,
        if s.cycle { "CYCLE" } else { "NO CYCLE" }
    )
}

pub fn create(s: &Sequence, target: &str) -> String {
    format!(
        "CREATE {}SEQUENCE {} {}",
        if s.unlogged { "UNLOGGED " } else { "" },
        q(target, &s.name),
        options(s, target, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlText;

    #[test]
    fn sequence_statements() {
        let s = Sequence {
            name: "Ticket".into(),
            data_type: SqlText::plain("integer"),
            start: 20,
            increment: 5,
            min: 10,
            max: 100000,
            cache: 3,
            cycle: true,
            unlogged: true,
            ..Default::default()
        };
        assert_eq!(
            create(&s, "t"),
            "CREATE UNLOGGED SEQUENCE t.\"Ticket\" AS integer INCREMENT BY 5 MINVALUE 10 MAXVALUE 100000 START WITH 20 CACHE 3 CYCLE"
        );
        assert_eq!(
            options(&s, "t", false),
            "INCREMENT BY 5 MINVALUE 10 MAXVALUE 100000 START WITH 20 CACHE 3 CYCLE"
        );
    }
}
