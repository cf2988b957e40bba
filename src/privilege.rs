//! Who is calling, what they may do, and the one controlled way to read the registry as its owner.
//!
//! Rust entry points run as SECURITY INVOKER, so `GetUserId()` is the caller. The hand-written SQL
//! functions run as SECURITY DEFINER; for them the caller is the *outer* user (the role after
//! `SET ROLE`), which a SECURITY DEFINER switch does not change.

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

pub const TENANT_USER: &CStr = c"tenant_user";
pub const TENANT_SUPERUSER: &CStr = c"tenant_superuser";
pub const TENANT_ADMIN: &CStr = c"tenant_admin";

pub fn role_name(role: Oid) -> String {
    unsafe {
        let p = pg_sys::GetUserNameFromId(role, true);
        if p.is_null() {
            format!("oid {}", role.to_u32())
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Superusers, and roles holding the privileges of `role` (membership with INHERIT, as the
/// EXECUTE check itself).
pub fn has_role(user: Oid, role: &CStr) -> bool {
    unsafe {
        if pg_sys::superuser_arg(user) {
            return true;
        }
        let role_oid = pg_sys::get_role_oid(role.as_ptr(), true);
        role_oid != pg_sys::InvalidOid && pg_sys::has_privs_of_role(user, role_oid)
    }
}

pub fn require_role_of(user: Oid, role: &CStr, action: &str) {
    if !has_role(user, role) {
        crate::error::raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {action}"),
            Some(format!(
                "Role \"{}\" is not a member of {}.",
                role_name(user),
                role.to_string_lossy()
            )),
            Some(format!(
                "GRANT {} TO the role that needs it.",
                role.to_string_lossy()
            )),
        );
    }
}

/// The caller of a Rust (SECURITY INVOKER) entry point.
pub fn caller() -> Oid {
    unsafe { pg_sys::GetUserId() }
}

/// The role that called one of our SECURITY DEFINER SQL functions.
pub fn outer_caller() -> Oid {
    unsafe { pg_sys::GetOuterUserId() }
}

/// Membership check for the SQL (SECURITY DEFINER) functions: raises 42501 unless the outer
/// caller is a superuser or holds `role`.
#[pg_extern(schema = "tenant", name = "_require_member", volatile, parallel_unsafe)]
fn require_member_sql(role: &str, action: &str) {
    let role = CString::new(role).unwrap_or_default();
    require_role_of(outer_caller(), &role, action);
}

/// The role accountable for the current call, for the audit log.
#[pg_extern(schema = "tenant", name = "_acting_role", stable, parallel_safe)]
fn acting_role_sql() -> String {
    role_name(outer_caller())
}

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

/// The registry owner, cached per backend (the setters run as_owner on their hot path); any
/// change to pg_namespace clears it.
static OWNER: Backend<std::cell::Cell<Oid>> = Backend(std::cell::Cell::new(pg_sys::InvalidOid));

#[pg_guard]
unsafe extern "C-unwind" fn namespace_changed(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    OWNER.0.set(pg_sys::InvalidOid);
}

/// Registers the owner cache's invalidation; called once from _PG_init.
pub fn init() {
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(namespace_changed),
            pg_sys::Datum::from(0),
        )
    };
}

/// The owner of schema `tenant` (the role that ran CREATE EXTENSION); it owns the registry.
fn registry_owner() -> Oid {
    let cached = OWNER.0.get();
    if cached != pg_sys::InvalidOid {
        return cached;
    }
    let owner = lookup_registry_owner();
    OWNER.0.set(owner);
    owner
}

fn lookup_registry_owner() -> Oid {
    // select (read-only): this also runs inside parallel workers, where a writing SPI call fails.
    let owner = Spi::connect(|c| {
        c.select(
            "SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'tenant'",
            Some(1),
            &[],
        )?
        .first()
        .get_one::<Oid>()
    });
    match owner {
        Ok(Some(o)) => o,
        _ => crate::error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            "schema \"tenant\" does not exist".to_string(),
            None,
            Some("Run CREATE EXTENSION qualityfoundry_tenant in this database.".to_string()),
        ),
    }
}

/// Runs `f` (SPI reads and writes of the registry) as the registry owner, the way PostgreSQL's own
/// referential-integrity triggers switch user, with `search_path` pinned to `pg_catalog, pg_temp`
/// as a function SET clause would pin it (the caller's path must not resolve names for the owner).
/// On success both are restored here; on error, the (sub)transaction abort restores them.
pub fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    as_role(registry_owner(), 0, f)
}

/// Runs `f` as `role` the way [`as_owner`] runs it as the registry owner (search_path pinned, a
/// security-restricted operation, so code `f` reaches runs with that role's rights and cannot
/// `SET ROLE` or leave temporary objects behind), with `extra` security-context flags: e.g.
/// `SECURITY_NOFORCE_RLS`, with which a table's owner reads all its rows despite FORCE ROW LEVEL
/// SECURITY, as PostgreSQL's referential-integrity checks do.
pub fn as_role<R>(role: Oid, extra: u32, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_ctx: i32 = 0;
    let nest_level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        // GUC_ACTION_SAVE is the one action allowed in parallel mode (it is what SET clauses use).
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_ctx
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32
                | extra as i32,
        );
    }
    let result = PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_others(|e| {
            unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx) };
            e.rethrow()
        })
        .execute();
    unsafe {
        pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx);
        pg_sys::AtEOXact_GUC(true, nest_level);
    }
    result
}
