//! Indexes that no constraint creates, their attachment to partitioned indexes, per-column
//! statistics targets, CLUSTER and REPLICA IDENTITY.

use super::q;
use crate::ident::quote_ident;
use crate::model::{Index, ReplicaIdentity};

pub fn create(table: &str, i: &Index, target: &str) -> Option<String> {
    if i.constraint.is_some() {
        return None;
    }
    Some(format!(
        "CREATE {}INDEX {} ON {}{} {}",
        if i.unique { "UNIQUE " } else { "" },
        quote_ident(&i.name),
        if i.partitioned { "ONLY " } else { "" },
        q(target, table),
        i.definition.render(target)
    ))
}

/// `ALTER INDEX parent ATTACH PARTITION i` (for indexes no constraint created: those are attached
/// with their constraint).
pub fn attach(i: &Index, target: &str) -> Option<String> {
    let parent = i.parent.as_ref()?;
    if i.constraint.is_some() || parent.schema.is_some() {
        return None;
    }
    Some(format!(
        "ALTER INDEX {} ATTACH PARTITION {}",
        parent.render(target),
        q(target, &i.name)
    ))
}

pub fn column_statistics(i: &Index, target: &str) -> Vec<String> {
    i.column_statistics
        .iter()
        .map(|s| {
            format!(
                "ALTER INDEX {} ALTER COLUMN {} SET STATISTICS {}",
                q(target, &i.name),
                s.column,
                s.target
            )
        })
        .collect()
}

/// CLUSTER ON and REPLICA IDENTITY of a table or materialized view.
pub fn table_settings(
    table: &str,
    indexes: &[Index],
    replica_identity: ReplicaIdentity,
    target: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(i) = indexes.iter().find(|i| i.clustered) {
        out.push(format!(
            "ALTER TABLE {} CLUSTER ON {}",
            q(target, table),
            quote_ident(&i.name)
        ));
    }
    let identity = match replica_identity {
        ReplicaIdentity::Default => None,
        ReplicaIdentity::Nothing => Some("NOTHING".to_string()),
        ReplicaIdentity::Full => Some("FULL".to_string()),
        ReplicaIdentity::Index => indexes
            .iter()
            .find(|i| i.replica_identity)
            .map(|i| format!("USING INDEX {}", quote_ident(&i.name))),
    };
    if let Some(identity) = identity {
        out.push(format!(
            "ALTER TABLE {} REPLICA IDENTITY {identity}",
            q(target, table)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ColumnStatistics, RelationRef};
    use crate::SqlText;

    #[test]
    fn index_statements() {
        let i = Index {
            name: "Lower".into(),
            unique: true,
            definition: SqlText::plain("USING btree (lower(name)) WHERE (name IS NOT NULL)"),
            clustered: true,
            parent: Some(RelationRef::own("parent_idx")),
            column_statistics: vec![ColumnStatistics {
                column: 1,
                target: 200,
            }],
            ..Default::default()
        };
        assert_eq!(
            create("t", &i, "c").unwrap(),
            "CREATE UNIQUE INDEX \"Lower\" ON c.t USING btree (lower(name)) WHERE (name IS NOT NULL)"
        );
        assert_eq!(
            attach(&i, "c").unwrap(),
            "ALTER INDEX c.parent_idx ATTACH PARTITION c.\"Lower\""
        );
        assert_eq!(
            column_statistics(&i, "c"),
            ["ALTER INDEX c.\"Lower\" ALTER COLUMN 1 SET STATISTICS 200"]
        );
        assert_eq!(
            table_settings("t", std::slice::from_ref(&i), ReplicaIdentity::Full, "c"),
            [
                "ALTER TABLE c.t CLUSTER ON \"Lower\"",
                "ALTER TABLE c.t REPLICA IDENTITY FULL"
            ]
        );
        let pk = Index {
            constraint: Some("t_pkey".into()),
            partitioned: true,
            ..i
        };
        assert_eq!(create("t", &pk, "c"), None);
        assert_eq!(attach(&pk, "c"), None);
        let on_only = Index {
            constraint: None,
            ..pk
        };
        assert!(create("t", &on_only, "c")
            .unwrap()
            .contains(" ON ONLY c.t "));
    }
}
