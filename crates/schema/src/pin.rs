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

impl PolicyCommand {
    /// From `pg_policy.polcmd` (`*`, `r`, `a`, `w`, `d`).
    pub fn from_polcmd(c: char) -> PolicyCommand {
        match c {
            'r' => PolicyCommand::Select,
            'a' => PolicyCommand::Insert,
            'w' => PolicyCommand::Update,
            'd' => PolicyCommand::Delete,
            _ => PolicyCommand::All,
        }
    }

    /// As `pg_policy.polcmd` spells it.
    pub fn polcmd(self) -> char {
        match self {
            PolicyCommand::All => '*',
            PolicyCommand::Select => 'r',
            PolicyCommand::Insert => 'a',
            PolicyCommand::Update => 'w',
            PolicyCommand::Delete => 'd',
        }
    }
}

impl PolicyTemplate {
    /// One row of `tenant._policy_template` / `tenant._policy_shape` (sql/isolation.sql): the
    /// policy template as the extension defines it, read as data. `roles`: role names, `PUBLIC`
    /// for every role.
    pub fn from_row(
        name: String,
        permissive: bool,
        polcmd: char,
        roles: Vec<String>,
        using: Option<String>,
        with_check: Option<String>,
    ) -> PolicyTemplate {
        PolicyTemplate {
            name,
            permissive,
            command: PolicyCommand::from_polcmd(polcmd),
            roles: roles
                .into_iter()
                .map(|r| {
                    if r == "PUBLIC" {
                        Grantee::Public
                    } else {
                        Grantee::Role(r)
                    }
                })
                .collect(),
            using,
            with_check,
        }
    }
}

impl PinTemplate {
    /// What pinning (and `enable_isolation`) makes of a table: row security enabled and forced,
    /// and these policies.
    pub fn forced(policies: Vec<PolicyTemplate>) -> PinTemplate {
        PinTemplate {
            row_security: true,
            force_row_security: true,
            policies,
        }
    }
}

fn policy(
    name: &str,
    permissive: bool,
    command: PolicyCommand,
    role: Option<&str>,
    using: Option<&str>,
    with_check: Option<&str>,
) -> PolicyTemplate {
    PolicyTemplate {
        name: name.to_string(),
        permissive,
        command,
        roles: vec![role.map_or(Grantee::Public, |r| Grantee::Role(r.to_string()))],
        using: using.map(str::to_string),
        with_check: with_check.map(str::to_string),
    }
}

const CROSS: &str = "tenant.cross_tenant_active()";

/// What `tenant._pin_table` (sql/schemas.sql) puts on every table of a tenant schema, as
/// `pg_get_expr` prints it; `{tenant_id}` is the tenant's id. The extension itself reads the
/// template from `tenant._policy_template` ([`PolicyTemplate::from_row`]); this copy is what the
/// unit tests run on, and the integration tests check that it equals the SQL template.
pub fn schema_pin() -> PinTemplate {
    let mine = "(tenant.current_tenant_id() = '{tenant_id}'::bigint)";
    let guard =
        "((tenant.current_tenant_id() = '{tenant_id}'::bigint) OR tenant.cross_tenant_active())";
    PinTemplate {
        row_security: true,
        force_row_security: true,
        policies: vec![
            policy(
                "qft_schema_tenant",
                true,
                PolicyCommand::All,
                None,
                Some(mine),
                Some(mine),
            ),
            policy(
                "qft_cross_tenant",
                true,
                PolicyCommand::All,
                Some("tenant_superuser"),
                Some(CROSS),
                Some(CROSS),
            ),
            policy(
                "qft_schema_guard",
                false,
                PolicyCommand::All,
                None,
                Some(guard),
                Some(guard),
            ),
        ],
    }
}

/// What `tenant.enable_isolation` (sql/isolation.sql) puts on a shared table, as `pg_get_expr`
/// prints it (the checker's expectation); `{column}` is the quoted tenant column.
pub fn isolation_pin(allow_shared_rows: bool) -> PinTemplate {
    let mine = "({column} = tenant.current_tenant_id())";
    let guard = "(({column} = tenant.current_tenant_id()) OR tenant.cross_tenant_active())";
    let mut policies = vec![
        policy(
            "qft_tenant_isolation",
            true,
            PolicyCommand::All,
            None,
            Some(mine),
            Some(mine),
        ),
        policy(
            "qft_cross_tenant",
            true,
            PolicyCommand::All,
            Some("tenant_superuser"),
            Some(CROSS),
            Some(CROSS),
        ),
    ];
    if allow_shared_rows {
        let shared = "(({column} = tenant.current_tenant_id()) OR tenant.cross_tenant_active() OR ({column} IS NULL))";
        policies.extend([
            policy(
                "qft_shared_read",
                true,
                PolicyCommand::Select,
                None,
                Some("({column} IS NULL)"),
                None,
            ),
            policy(
                "qft_tenant_guard_select",
                false,
                PolicyCommand::Select,
                None,
                Some(shared),
                None,
            ),
            policy(
                "qft_tenant_guard_insert",
                false,
                PolicyCommand::Insert,
                None,
                None,
                Some(guard),
            ),
            policy(
                "qft_tenant_guard_update",
                false,
                PolicyCommand::Update,
                None,
                Some(guard),
                Some(guard),
            ),
            policy(
                "qft_tenant_guard_delete",
                false,
                PolicyCommand::Delete,
                None,
                Some(guard),
                None,
            ),
        ]);
    } else {
        policies.push(policy(
            "qft_tenant_guard",
            false,
            PolicyCommand::All,
            None,
            Some(guard),
            Some(guard),
        ));
    }
    PinTemplate {
        row_security: true,
        force_row_security: true,
        policies,
    }
}

/// The template schema named by the setting `qualityfoundry_tenant.template_schema`: unset means
/// the default `tenant_template`; set to the empty string is an error (no schema has that name;
/// RESET restores the default). One rule for every caller.
pub fn template_schema(setting: Option<&str>) -> Result<String, String> {
    match setting {
        None => Ok("tenant_template".to_string()),
        Some("") => Err("qualityfoundry_tenant.template_schema is empty".to_string()),
        Some(s) => Ok(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Table;

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
        assert_eq!(t.policies.len(), 3);
        assert_eq!(
            t.policies[2].using.as_ref().unwrap().to_string(),
            "(tenant.current_tenant_id() = '7'::bigint)"
        );
        // Applying twice changes nothing more.
        assert_eq!(
            schema_pin().apply(&pinned, &[("tenant_id".into(), "7".into())]),
            pinned
        );
    }

    #[test]
    fn isolation_templates_by_mode() {
        let names = |shared| -> Vec<String> {
            isolation_pin(shared)
                .policies(&[("column".into(), "tenant_id".into())])
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        assert_eq!(
            names(false),
            [
                "qft_cross_tenant",
                "qft_tenant_guard",
                "qft_tenant_isolation"
            ]
        );
        assert_eq!(names(true).len(), 7);
        let p = isolation_pin(false).policies(&[("column".into(), "\"Tenant\"".into())]);
        assert_eq!(
            p[2].using.as_ref().unwrap().to_string(),
            "(\"Tenant\" = tenant.current_tenant_id())"
        );
    }

    #[test]
    fn a_template_read_as_rows_is_the_same_template() {
        let rows = schema_pin()
            .policies(&[])
            .into_iter()
            .map(|p| {
                let cmd = p.command.polcmd();
                let roles = p
                    .roles
                    .iter()
                    .map(|g| match g {
                        Grantee::Public => "PUBLIC".to_string(),
                        Grantee::Role(r) => r.clone(),
                    })
                    .collect();
                PolicyTemplate::from_row(
                    p.name,
                    p.permissive,
                    cmd,
                    roles,
                    p.using.map(|u| u.to_string()),
                    p.with_check.map(|w| w.to_string()),
                )
            })
            .collect();
        let read = PinTemplate::forced(rows);
        let v = [("tenant_id".to_string(), "3".to_string())];
        assert_eq!(read.policies(&v), schema_pin().policies(&v));
        for c in ['*', 'r', 'a', 'w', 'd'] {
            assert_eq!(PolicyCommand::from_polcmd(c).polcmd(), c);
        }
    }

    #[test]
    fn the_template_schema_setting() {
        assert_eq!(template_schema(None).unwrap(), "tenant_template");
        assert_eq!(template_schema(Some("tpl")).unwrap(), "tpl");
        assert!(template_schema(Some("")).is_err());
    }
}
