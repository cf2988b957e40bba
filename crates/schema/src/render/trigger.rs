//! Triggers (those a partitioned parent's trigger cloned onto a partition come with it) and
//! their enabled state.

use super::q;
use crate::ident::quote_ident;
use crate::model::{Trigger, TriggerEnabled};

pub fn create(table: &str, g: &Trigger, target: &str) -> Vec<String> {
    if g.from_parent {
        return Vec::new();
    }
    let mut out = vec![g.definition.render(target)];
    let state = match g.enabled {
        TriggerEnabled::Origin => None,
        TriggerEnabled::Disabled => Some("DISABLE"),
        TriggerEnabled::Replica => Some("ENABLE REPLICA"),
        TriggerEnabled::Always => Some("ENABLE ALWAYS"),
    };
    if let Some(state) = state {
        out.push(format!(
            "ALTER TABLE {} {state} TRIGGER {}",
            q(target, table),
            quote_ident(&g.name)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlText;

    #[test]
    fn triggers() {
        let g = Trigger {
            name: "p_trg".into(),
            definition: SqlText::deparsed_with(
                "CREATE TRIGGER p_trg BEFORE UPDATE ON \"Edge Case\".parent FOR EACH ROW EXECUTE FUNCTION trg()",
                "Edge Case",
                &["on", "from"],
            ),
            enabled: TriggerEnabled::Disabled,
            ..Default::default()
        };
        assert_eq!(
            create("parent", &g, "Edge Copy"),
            [
                "CREATE TRIGGER p_trg BEFORE UPDATE ON \"Edge Copy\".parent FOR EACH ROW EXECUTE FUNCTION trg()",
                "ALTER TABLE \"Edge Copy\".parent DISABLE TRIGGER p_trg",
            ]
        );
        assert!(create(
            "p",
            &Trigger {
                from_parent: true,
                ..g
            },
            "x"
        )
        .is_empty());
    }
}
