//! Privileges of every object and column, and the schema's default privileges.

use crate::acl::{default_privileges_statements, sync_statements, AclKind};
use crate::inventory::Object;
use crate::model::{Column, Schema};

fn columns(relation: &str, cols: &[Column], out: &mut Vec<(String, String)>) {
    for c in cols {
        for sql in sync_statements(relation, Some(&c.name), AclKind::Column, "", &c.acl) {
            out.push((format!("column {}", c.name), sql));
        }
    }
}

/// (what, statement) for every ACL that differs from its owner's default.
pub fn statements(s: &Schema, target: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for o in s.objects() {
        let (word, reference) = o.reference(target);
        let (kind, acl, object) = match o {
            Object::Type(t) => (AclKind::Type, &t.acl, format!("{word} {reference}")),
            Object::Sequence(q) => (AclKind::Sequence, &q.acl, format!("SEQUENCE {reference}")),
            Object::Table(t) => {
                columns(&format!("TABLE {reference}"), &t.columns, &mut out);
                (AclKind::Relation, &t.acl, format!("TABLE {reference}"))
            }
            Object::View(v) => {
                columns(&format!("TABLE {reference}"), &v.columns, &mut out);
                (AclKind::Relation, &v.acl, format!("TABLE {reference}"))
            }
            Object::Function(f) => (AclKind::Routine, &f.acl, format!("{word} {reference}")),
            Object::Aggregate(a) => (AclKind::Routine, &a.acl, format!("FUNCTION {reference}")),
            _ => continue,
        };
        for sql in sync_statements(&object, None, kind, o.owner(), acl) {
            out.push((o.label(), sql));
        }
    }
    for d in &s.default_privileges {
        for sql in default_privileges_statements(d, target) {
            out.push((format!("default privileges for {}", d.role), sql));
        }
    }
    out
}
