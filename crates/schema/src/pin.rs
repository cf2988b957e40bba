//! Policy templates: the row security and policies that pinning (schema per tenant) or
//! `enable_isolation` (shared tables) put on a table, as data with `{placeholder}`s, so that
//! `schema_drift` and the isolation checker compare tables with what the template makes instead
//! of carrying their own copies of it.

use crate::model::{Grantee, Policy, PolicyCommand, Schema};
use crate::SqlText;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTemplate {
    pub name: String,
    pub permissive: bool,
    pub command: PolicyCommand,
    pub roles: Vec<Grantee>,
    /// The expression as `pg_get_expr` prints it, with `{name}` placeholders.
    pub using: Option<String>,
    pub with_check: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinTemplate {
    pub row_security: bool,
    pub force_row_security: bool,
    pub policies: Vec<PolicyTemplate>,
}

/// `text` with every `{name}` replaced by its value (values are inserted as given: the caller
/// passes them as the SQL they stand for, e.g. a quoted literal or identifier).
pub fn fill(text: &str, values: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

impl PinTemplate {
    /// The policies the template makes with these values.
    pub fn policies(&self, values: &[(String, String)]) -> Vec<Policy> {
        let mut out: Vec<Policy> = self
            .policies
            .iter()
            .map(|p| {
                let mut roles = p.roles.clone();
                roles.sort();
                Policy {
                    name: p.name.clone(),
                    permissive: p.permissive,
                    command: p.command,
                    roles,
                    using: p.using.as_ref().map(|u| SqlText::plain(fill(u, values))),
                    with_check: p
                        .with_check
                        .as_ref()
                        .map(|w| SqlText::plain(fill(w, values))),
                    comment: None,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `s` as pinning leaves it: every table with the template's row security flags and its
    /// policies (replacing policies of the same name, keeping the others).
    pub fn apply(&self, s: &Schema, values: &[(String, String)]) -> Schema {
        let mut out = s.clone();
        let pinned = self.policies(values);
        for t in &mut out.tables {
            t.row_security |= self.row_security;
            t.force_row_security |= self.force_row_security;
            t.policies
                .retain(|p| !pinned.iter().any(|q| q.name == p.name));
            t.policies.extend(pinned.iter().cloned());
            t.policies.sort_by(|a, b| a.name.cmp(&b.name));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Table;

    pub fn schema_pin() -> PinTemplate {
        PinTemplate {
            row_security: true,
            force_row_security: true,
            policies: vec![PolicyTemplate {
                name: "qft_schema_tenant".into(),
                permissive: true,
                command: PolicyCommand::All,
                roles: vec![Grantee::Public],
                using: Some("(tenant.current_tenant_id() = '{tenant_id}'::bigint)".into()),
                with_check: Some("(tenant.current_tenant_id() = '{tenant_id}'::bigint)".into()),
            }],
        }
    }

    #[test]
    fn applying_a_pin() {
        let s = Schema {
            tables: vec![Table {
                name: "t".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let pinned = schema_pin().apply(&s, &[("tenant_id".into(), "7".into())]);
        let t = &pinned.tables[0];
        assert!(t.row_security && t.force_row_security);
        assert_eq!(t.policies.len(), 1);
        assert_eq!(
            t.policies[0].using.as_ref().unwrap().to_string(),
            "(tenant.current_tenant_id() = '7'::bigint)"
        );
        // Applying twice changes nothing more.
        assert_eq!(
            schema_pin().apply(&pinned, &[("tenant_id".into(), "7".into())]),
            pinned
        );
    }
}
