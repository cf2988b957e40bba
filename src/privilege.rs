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
        let role_oid = role_oid(role);
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

/// A session restoring a dump: pg_restore, or psql running pg_dump's output, as a superuser. Both
/// turn check_function_bodies off first (PostgreSQL's documented setting for loading definitions
/// made elsewhere). A restore re-creates isolation exactly as it was dumped -- policies, defaults,
/// triggers and the registry rows -- so the event triggers (sql/isolation.sql, sql/lifecycle.sql)
/// must not act on the tables it creates: they would collide with it. Only superusers count: the
/// extension can only be restored by one, and a non-superuser must not be able to switch
/// auto_isolate off for its own new tables this way. Native: the event triggers ask it after
/// every DDL command, where a SQL function (planned on each call, its view over pg_authid
/// included) cost about 0.16 ms.
#[pg_extern(schema = "tenant", name = "_restoring", stable, parallel_safe)]
fn restoring() -> bool {
    let off = unsafe {
        let v = pg_sys::GetConfigOption(c"check_function_bodies".as_ptr(), false, false);
        !v.is_null() && CStr::from_ptr(v).to_bytes() == b"off"
    };
    off && unsafe { pg_sys::superuser_arg(pg_sys::GetSessionUserId()) }
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

/// The oids of the extension's three roles, looked up by name once per backend (the setters check
/// membership on every call); any change to pg_authid clears them.
static ROLE_OIDS: Backend<std::cell::Cell<[Oid; 3]>> =
    Backend(std::cell::Cell::new([pg_sys::InvalidOid; 3]));

/// A role's oid (InvalidOid when it does not exist); the extension's own roles through the cache.
fn role_oid(role: &CStr) -> Oid {
    let slot = [TENANT_USER, TENANT_SUPERUSER, TENANT_ADMIN]
        .iter()
        .position(|r| *r == role);
    let mut cached = ROLE_OIDS.0.get();
    if let Some(i) = slot {
        if cached[i] != pg_sys::InvalidOid {
            return cached[i];
        }
    }
    let oid = unsafe { pg_sys::get_role_oid(role.as_ptr(), true) };
    if let Some(i) = slot {
        cached[i] = oid;
        ROLE_OIDS.0.set(cached);
    }
    oid
}

#[pg_guard]
unsafe extern "C-unwind" fn roles_changed(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    ROLE_OIDS.0.set([pg_sys::InvalidOid; 3]);
}

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
        );
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::AUTHOID as i32,
            Some(roles_changed),
            pg_sys::Datum::from(0),
        );
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

/// [`as_owner`] for statements prepared once per backend and run with parameters many times in
/// one loop (migrate_all's per-schema statements): `plan_cache_mode = force_generic_plan` too, so
/// the plan cache never re-plans them per execution. A custom plan is planned from scratch on
/// every call, and planning opens — and locks to the end of the transaction — every index of
/// every table in the query, which the step that follows then carries.
pub fn as_owner_generic_plan<R>(f: impl FnOnce() -> R) -> R {
    restricted(
        registry_owner(),
        0,
        &[PINNED_PATH, (c"plan_cache_mode", c"force_generic_plan")],
        f,
    )
}

/// Runs `f` as `role` the way [`as_owner`] runs it as the registry owner (search_path pinned, a
/// security-restricted operation, so code `f` reaches runs with that role's rights and cannot
/// `SET ROLE` or leave temporary objects behind), with `extra` security-context flags: e.g.
/// `SECURITY_NOFORCE_RLS`, with which a table's owner reads all its rows despite FORCE ROW LEVEL
/// SECURITY, as PostgreSQL's referential-integrity checks do.
pub fn as_role<R>(role: Oid, extra: u32, f: impl FnOnce() -> R) -> R {
    restricted(role, extra, &[PINNED_PATH], f)
}

/// The `search_path` of every restricted run, as a function SET clause would pin it.
const PINNED_PATH: (&CStr, &CStr) = (c"search_path", c"pg_catalog, pg_temp");

/// A security-restricted run of `f` as `role` (plus `extra` flags) with `settings` applied for it.
fn restricted<R>(role: Oid, extra: u32, settings: &[(&CStr, &CStr)], f: impl FnOnce() -> R) -> R {
    with_user_and_settings(
        role,
        (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION | extra)
            as i32,
        settings,
        AfterRun::KeepSettings,
        f,
    )
}

/// How a restricted run treats row security on tables the role owns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OwnRows {
    /// As for any statement: FORCE ROW LEVEL SECURITY applies to the owner.
    Policies,
    /// The owner reads and writes all its rows (`SECURITY_NOFORCE_RLS`, what PostgreSQL's own
    /// referential-integrity checks use): for maintenance the extension does on a table's behalf.
    All,
}

/// Runs `f` as `role` inside a security-restricted operation, the way PostgreSQL itself runs the
/// expressions of CREATE INDEX, ANALYZE and REFRESH MATERIALIZED VIEW as the table's owner: the
/// user id is switched with `SECURITY_RESTRICTED_OPERATION`, so code reached from `f` (a CHECK,
/// a default, a trigger, an index expression, SQL text) runs with that role's rights and cannot
/// `SET ROLE`, `SET SESSION AUTHORIZATION` or create temporary objects. `settings` are applied at
/// a new GUC nest level, and every setting changed inside — by `f` or by code it reached — is rolled
/// back on return (`AtEOXact_GUC(false, ...)`, as `RefreshMatViewByOid` does). On error the
/// user id is restored here and the (sub)transaction abort unwinds the settings.
pub fn as_role_restricted<R>(
    role: Oid,
    own_rows: OwnRows,
    settings: &[(&CStr, &CStr)],
    f: impl FnOnce() -> R,
) -> R {
    let mut flags = pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
    if own_rows == OwnRows::All {
        flags |= pg_sys::SECURITY_NOFORCE_RLS as i32;
    }
    with_user_and_settings(role, flags, settings, AfterRun::RollBackSettings, f)
}

/// Sets `name` to `value` at the current GUC nest level, as a function's SET clause does
/// (GUC_ACTION_SAVE, the one action allowed in parallel mode): undone by `AtEOXact_GUC` for that
/// level, or by the (sub)transaction abort. Trusted callers only (superuser context).
pub fn save_setting(name: &CStr, value: &CStr) {
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// What becomes of the settings changed during a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AfterRun {
    /// Kept, as a function's SET clause keeps what it did not set itself (registry access).
    KeepSettings,
    /// All rolled back, as RefreshMatViewByOid does: nothing the run reached outlives it.
    RollBackSettings,
}

/// Runs `f` as `role` with the security-context bits `flags` added (0: none) and `settings`
/// applied at a new GUC nest level (GUC_ACTION_SAVE, the one action allowed in parallel mode, as
/// SET clauses use); afterwards the settings changed at that level — by `settings`, by `f`, or by
/// SQL it ran (`SET`, `SET ROLE`) — are kept or rolled back as `after` says, and the user id is
/// restored. On error the user id is restored here and the (sub)transaction abort unwinds the
/// settings.
pub fn with_user_and_settings<R>(
    role: Oid,
    flags: i32,
    settings: &[(&CStr, &CStr)],
    after: AfterRun,
    f: impl FnOnce() -> R,
) -> R {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_ctx: i32 = 0;
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        save_setting(name, value);
    }
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(role, saved_ctx | flags);
    }
    let result = PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_others(|e| {
            unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx) };
            e.rethrow()
        })
        .execute();
    unsafe {
        pg_sys::AtEOXact_GUC(after == AfterRun::KeepSettings, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx);
    }
    result
}

/// `tenant._exec_as(role, sql, args, search_path, row_security, own_rows)`: runs SQL the extension
/// generated from the catalogs (never text from a caller) as `role` in a security-restricted
/// operation (see [`as_role_restricted`]), with `search_path` and `row_security` set for the run
/// and `check_function_bodies` off (function bodies are checked when they run, as in a restore).
/// `args`, when not NULL, is bound as `$1`. Not granted to anyone: only the extension's own
/// SECURITY DEFINER functions call it, to evaluate user-shaped DDL and DML with the rights of the
/// role it belongs to — never with the extension owner's.
#[pg_extern(schema = "tenant", name = "_exec_as", volatile, parallel_unsafe)]
fn exec_as_sql(
    role: Oid,
    sql: &str,
    args: Option<Vec<Option<String>>>,
    search_path: &str,
    row_security: bool,
    own_rows: bool,
) {
    let path = CString::new(search_path).unwrap_or_default();
    let rls: &CStr = if row_security { c"on" } else { c"off" };
    let settings = [
        (c"search_path", path.as_c_str()),
        (c"row_security", rls),
        (c"check_function_bodies", c"off"),
    ];
    let mode = if own_rows {
        OwnRows::All
    } else {
        OwnRows::Policies
    };
    as_role_restricted(role, mode, &settings, || {
        let done = match args {
            None => Spi::run(sql),
            Some(a) => Spi::run_with_args(sql, &[a.into()]),
        };
        done.unwrap_or_else(|e| {
            crate::error::raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("statement failed: {e}"),
                None,
                None,
            )
        })
    });
}

/// The role accountable for the current call (the outer user, after any SET ROLE), as an oid.
#[pg_extern(schema = "tenant", name = "_caller", stable, parallel_safe)]
fn caller_sql() -> Oid {
    outer_caller()
}
