//! Privileges: the default ACL PostgreSQL gives an object's owner (`acldefault`), ACLs as
//! comparable text, and the GRANT / REVOKE statements that turn a new object's default ACL into
//! the one the model holds.

use crate::ident::quote_ident;
use crate::model::{Acl, DefaultPrivileges, Grant, Grantee, Privilege};
use std::collections::BTreeMap;

/// What kind of object an ACL belongs to: it decides the owner's default privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclKind {
    /// Tables, views, materialized views.
    Relation,
    Sequence,
    /// Functions, procedures, aggregates.
    Routine,
    /// Types and domains.
    Type,
    Schema,
    /// A column: no default privileges.
    Column,
}

/// `acldefault(kind, owner)`, exploded.
pub fn default_acl(kind: AclKind, owner: &str) -> Acl {
    use Privilege::*;
    let own = |ps: &[Privilege]| -> Vec<Grant> {
        ps.iter()
            .map(|&p| Grant {
                grantee: Grantee::Role(owner.to_string()),
                privilege: p,
                grantable: false,
            })
            .collect()
    };
    let public = |p: Privilege| Grant {
        grantee: Grantee::Public,
        privilege: p,
        grantable: false,
    };
    let mut grants = match kind {
        AclKind::Relation => own(&[
            Insert, Select, Update, Delete, Truncate, References, Trigger,
        ]),
        AclKind::Sequence => own(&[Usage, Select, Update]),
        AclKind::Routine => {
            let mut g = own(&[Execute]);
            g.push(public(Execute));
            g
        }
        AclKind::Type => {
            let mut g = own(&[Usage]);
            g.push(public(Usage));
            g
        }
        AclKind::Schema => own(&[Usage, Create]),
        AclKind::Column => Vec::new(),
    };
    grants.sort();
    Acl(grants)
}

/// The ACL in effect: the model's, or the owner's default.
pub fn effective(acl: &Option<Acl>, kind: AclKind, owner: &str) -> Acl {
    match acl {
        Some(a) => {
            let mut a = a.clone();
            a.0.sort();
            a
        }
        None => default_acl(kind, owner),
    }
}

/// `grantee=PRIVILEGE[*] ...`, sorted (`*`: with grant option).
pub fn acl_text(acl: &Acl) -> String {
    let mut items: Vec<String> = acl
        .0
        .iter()
        .map(|g| {
            format!(
                "{}={}{}",
                g.grantee.sql(),
                g.privilege.sql(),
                if g.grantable { "*" } else { "" }
            )
        })
        .collect();
    items.sort();
    items.join(" ")
}

fn by_key(acl: &Acl) -> BTreeMap<(Grantee, Privilege), bool> {
    let mut m = BTreeMap::new();
    for g in &acl.0 {
        let e = m.entry((g.grantee.clone(), g.privilege)).or_insert(false);
        *e |= g.grantable;
    }
    m
}

/// The statements that make the ACL of a just-created object (owned by `owner`, so holding the
/// default ACL of `kind`) equal to `wanted`. `object` is what follows `ON` (e.g.
/// `TABLE s.t`, `FUNCTION s.f(integer)`); `column` restricts them to one column.
pub fn sync_statements(
    object: &str,
    column: Option<&str>,
    kind: AclKind,
    owner: &str,
    wanted: &Option<Acl>,
) -> Vec<String> {
    let have = by_key(&default_acl(kind, owner));
    let want = by_key(&effective(wanted, kind, owner));
    let cols = column.map_or(String::new(), |c| format!(" ({})", quote_ident(c)));
    let mut revoke: BTreeMap<Grantee, Vec<&'static str>> = BTreeMap::new();
    let mut revoke_option: BTreeMap<Grantee, Vec<&'static str>> = BTreeMap::new();
    let mut grant: BTreeMap<(Grantee, bool), Vec<&'static str>> = BTreeMap::new();
    for ((g, p), has_option) in &have {
        match want.get(&(g.clone(), *p)) {
            None => revoke.entry(g.clone()).or_default().push(p.sql()),
            Some(&wants_option) if *has_option && !wants_option => {
                revoke_option.entry(g.clone()).or_default().push(p.sql())
            }
            _ => {}
        }
    }
    for ((g, p), wants_option) in &want {
        match have.get(&(g.clone(), *p)) {
            Some(&has_option) if has_option || !wants_option => {}
            _ => grant
                .entry((g.clone(), *wants_option))
                .or_default()
                .push(p.sql()),
        }
    }
    let mut out = Vec::new();
    for (g, ps) in revoke {
        out.push(format!(
            "REVOKE {}{cols} ON {object} FROM {} CASCADE",
            ps.join(", "),
            g.sql()
        ));
    }
    for (g, ps) in revoke_option {
        out.push(format!(
            "REVOKE GRANT OPTION FOR {}{cols} ON {object} FROM {} CASCADE",
            ps.join(", "),
            g.sql()
        ));
    }
    for ((g, option), ps) in grant {
        out.push(format!(
            "GRANT {}{cols} ON {object} TO {}{}",
            ps.join(", "),
            g.sql(),
            if option { " WITH GRANT OPTION" } else { "" }
        ));
    }
    out
}

/// `ALTER DEFAULT PRIVILEGES FOR ROLE ... IN SCHEMA target GRANT ...` for one entry.
pub fn default_privileges_statements(d: &DefaultPrivileges, target: &str) -> Vec<String> {
    let objects = match d.objects {
        crate::model::DefaultObjects::Tables => "TABLES",
        crate::model::DefaultObjects::Sequences => "SEQUENCES",
        crate::model::DefaultObjects::Functions => "FUNCTIONS",
        crate::model::DefaultObjects::Types => "TYPES",
        crate::model::DefaultObjects::Schemas => "SCHEMAS",
    };
    let mut grant: BTreeMap<(Grantee, bool), Vec<&'static str>> = BTreeMap::new();
    for ((g, p), option) in by_key(&d.acl) {
        grant.entry((g, option)).or_default().push(p.sql());
    }
    grant
        .into_iter()
        .map(|((g, option), ps)| {
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON {objects} TO {}{}",
                quote_ident(&d.role),
                quote_ident(target),
                ps.join(", "),
                g.sql(),
                if option { " WITH GRANT OPTION" } else { "" }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(who: &str, p: Privilege, grantable: bool) -> Grant {
        Grant {
            grantee: if who == "PUBLIC" {
                Grantee::Public
            } else {
                Grantee::Role(who.into())
            },
            privilege: p,
            grantable,
        }
    }

    #[test]
    fn a_default_acl_needs_no_statement() {
        for kind in [
            AclKind::Relation,
            AclKind::Sequence,
            AclKind::Routine,
            AclKind::Type,
            AclKind::Schema,
            AclKind::Column,
        ] {
            assert!(sync_statements("X", None, kind, "o", &None).is_empty());
            let explicit = Some(default_acl(kind, "o"));
            assert!(sync_statements("X", None, kind, "o", &explicit).is_empty());
        }
    }

    #[test]
    fn grants_revokes_and_grant_options() {
        use Privilege::*;
        let cases: Vec<(AclKind, Vec<Grant>, Vec<&str>)> = vec![
            (
                AclKind::Routine,
                vec![grant("o", Execute, false), grant("bi", Execute, false)],
                vec![
                    "REVOKE EXECUTE ON F FROM PUBLIC CASCADE",
                    "GRANT EXECUTE ON F TO bi",
                ],
            ),
            (
                AclKind::Sequence,
                vec![
                    grant("o", Usage, false),
                    grant("o", Select, false),
                    grant("o", Update, false),
                    grant("Bi", Usage, true),
                ],
                vec!["GRANT USAGE ON F TO \"Bi\" WITH GRANT OPTION"],
            ),
            (
                AclKind::Schema,
                vec![grant("o", Usage, false)],
                vec!["REVOKE CREATE ON F FROM o CASCADE"],
            ),
        ];
        for (kind, acl, expected) in cases {
            assert_eq!(
                sync_statements("F", None, kind, "o", &Some(Acl(acl))),
                expected
            );
        }
        assert_eq!(
            sync_statements(
                "TABLE s.t",
                Some("a column"),
                AclKind::Column,
                "o",
                &Some(Acl(vec![grant("bi", Select, false)]))
            ),
            ["GRANT SELECT (\"a column\") ON TABLE s.t TO bi"]
        );
    }

    #[test]
    fn acl_text_is_sorted_and_marks_grant_options() {
        let acl = Acl(vec![
            grant("z", Privilege::Usage, true),
            grant("PUBLIC", Privilege::Usage, false),
        ]);
        assert_eq!(acl_text(&acl), "PUBLIC=USAGE z=USAGE*");
    }
}
