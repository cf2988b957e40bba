//! Backups must never come out silently empty.
//!
//! `pg_dump` reads every table with row level security in force when it is given
//! `--enable-row-security` (without it PostgreSQL itself refuses to dump a table whose policies
//! apply to the dumping role). A role with no tenant context then reads *no* row of any isolated
//! or pinned table, and pg_dump would exit 0 with empty tables: a backup that restores to nothing.
//! The policy getter calls [`reading_without_context`] whenever it finds no context, and in
//! pg_dump's session that is an error instead of an empty table. pg_dump prints server WARNINGs
//! and NOTICEs only with `--verbose`, so nothing softer than an error would be seen.
//!
//! pg_dump's session is recognised by its `application_name` (`pg_dump`, or `pg_dumpall`), which
//! both set unless `PGAPPNAME` overrides it. The check costs a short string comparison and runs
//! only on the no-context path, which sees no rows anyway.

use crate::error;
use pgrx::pg_sys;
use std::ffi::CStr;

/// Whether `application_name` is that of pg_dump's or pg_dumpall's own connections. Pure, so it
/// is unit-tested without a backend.
pub fn is_dump_session(application_name: &[u8]) -> bool {
    matches!(application_name, b"pg_dump" | b"pg_dumpall")
}

/// Called by `tenant.current_tenant_id()` when the session has no tenant context.
pub fn reading_without_context() {
    // SAFETY: a GUC string variable, always a valid C string (possibly empty) in a backend.
    let name = unsafe {
        let p = pg_sys::application_name;
        if p.is_null() {
            return;
        }
        CStr::from_ptr(p).to_bytes()
    };
    if !is_dump_session(name) {
        return;
    }
    error::denied(
        "pg_dump is reading an isolated table without a tenant context: the dump would hold none of its rows".into(),
        Some(
            "Row level security is on in this session (pg_dump --enable-row-security) and no tenant is set, so every isolated or pinned table reads as empty."
                .into(),
        ),
        Some(
            "For a full backup, dump as a role with BYPASSRLS and pg_read_all_data (README: Backups and restores); for one tenant's rows, dump as a login role bound to that tenant."
                .into(),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::is_dump_session;

    #[test]
    fn pg_dump_and_pg_dumpall_are_dump_sessions() {
        assert!(is_dump_session(b"pg_dump"));
        assert!(is_dump_session(b"pg_dumpall"));
    }

    #[test]
    fn other_clients_are_not() {
        for name in [
            &b""[..],
            b"psql",
            b"pg_dump2",
            b"PG_DUMP",
            b"pg_restore",
            b" pg_dump",
        ] {
            assert!(!is_dump_session(name), "{name:?}");
        }
    }
}
