//! Every `qualityfoundry_tenant.*` setting, declared in one place.
//!
//! The tenant context and the cross-tenant flag are `SUSET` settings: PostgreSQL itself then refuses
//! `SET`, `SET LOCAL`, `set_config()`, `ALTER ROLE ... SET`, function `SET` clauses and startup
//! options from non-superusers, and the only way in for an application role is the extension's own
//! setter functions, which authorise first. Their defaults mean "no tenant" / "off", because
//! `RESET ALL` (and so `DISCARD ALL`) resets them without any privilege check.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::PostgresGucEnum;
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};

/// Setting names; SPI text and `set_config_option` use these, never ad-hoc literals.
pub const TENANT_ID: &CStr = c"qualityfoundry_tenant.tenant_id";
pub const CROSS_TENANT: &CStr = c"qualityfoundry_tenant.cross_tenant";
pub const PREFIX: &CStr = c"qualityfoundry_tenant";

#[derive(Clone, Copy, PartialEq, Eq, Debug, PostgresGucEnum)]
pub enum ContextScope {
    Session,
    Transaction,
}

/// What the `qft_auto_isolate` event trigger does with a new table (read in SQL, `sql/isolation.sql`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, PostgresGucEnum)]
pub enum AutoIsolate {
    #[name = c"off"]
    Off,
    /// Isolate new tables that have a `tenant_id` column.
    #[name = c"on"]
    On,
    /// Also reject new tables without one in schemas that hold isolated tables.
    #[name = c"strict"]
    Strict,
    /// Instead of rejecting such a table, give it `tenant_id` (defaulting to the context) and
    /// isolate it: for tables a framework creates without asking (Django's many-to-many tables).
    #[name = c"add_column"]
    AddColumn,
}

// The context is a string (tenant ids are bigint, integer settings are 32-bit); the assign hook
// parses it once into TENANT_ID_VALUE so the policy function never parses per row.
static TENANT_ID_SETTING: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(None);
// Backend-local; PostgreSQL backends are single-threaded.
struct BackendCell(Cell<i64>);
unsafe impl Sync for BackendCell {}
static TENANT_ID_VALUE: BackendCell = BackendCell(Cell::new(0));

static CROSS_TENANT_SETTING: GucSetting<bool> = GucSetting::<bool>::new(false);
static REQUIRE_SIGNED: GucSetting<bool> = GucSetting::<bool>::new(false);
static CONTEXT_SCOPE: GucSetting<ContextScope> =
    GucSetting::<ContextScope>::new(ContextScope::Session);
static AUTO_ISOLATE: GucSetting<AutoIsolate> = GucSetting::<AutoIsolate>::new(AutoIsolate::Off);
static TEMPLATE_SCHEMA: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"tenant_template"));

/// Parses the context setting's text: empty means "no tenant"; anything else must be a positive
/// decimal id. Pure so it is unit-tested without a backend.
pub fn parse_tenant_setting(text: &str) -> Result<i64, &'static str> {
    if text.is_empty() {
        return Ok(0);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the tenant context must be a positive tenant id");
    }
    match text.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err("the tenant context must be a positive tenant id"),
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_tenant_id(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let text = if newval.is_null() || (*newval).is_null() {
        ""
    } else {
        CStr::from_ptr(*newval).to_str().unwrap_or("x")
    };
    parse_tenant_setting(text).is_ok()
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_tenant_id(newval: *const c_char, _extra: *mut c_void) {
    let text = if newval.is_null() {
        ""
    } else {
        CStr::from_ptr(newval).to_str().unwrap_or("")
    };
    TENANT_ID_VALUE
        .0
        .set(parse_tenant_setting(text).unwrap_or(0));
}

pub fn init() {
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            TENANT_ID,
            c"The current tenant id (empty: no tenant). Set it with tenant.set_tenant().",
            c"Superuser-only: application roles change it only through the extension's authorising functions.",
            &TENANT_ID_SETTING,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_tenant_id),
            Some(assign_tenant_id),
            None,
        );
    }
    GucRegistry::define_bool_guc(
        CROSS_TENANT,
        c"Whether the audited cross-tenant mode is active. Use tenant.enter_cross_tenant().",
        c"Superuser-only: set only by tenant.enter_cross_tenant()/exit_cross_tenant().",
        &CROSS_TENANT_SETTING,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"qualityfoundry_tenant.require_signed_context",
        c"Roles with this on can enter a tenant only with a token from tenant.sign_context().",
        c"Set by a superuser per role or database (ALTER ROLE ... SET).",
        &REQUIRE_SIGNED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"qualityfoundry_tenant.context_scope",
        c"session: set_tenant lasts for the session; transaction: every set_tenant is local.",
        c"transaction is the safe choice behind a transaction-pooling PgBouncer.",
        &CONTEXT_SCOPE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"qualityfoundry_tenant.auto_isolate",
        c"off | on (isolate new tables with the tenant column) | strict (also reject new tables without one) | add_column (give them one instead).",
        c"Applied by the extension's event trigger.",
        &AUTO_ISOLATE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"qualityfoundry_tenant.template_schema",
        c"The schema create_tenant(with_schema => true) clones.",
        c"",
        &TEMPLATE_SCHEMA,
        GucContext::Suset,
        GucFlags::default(),
    );
    unsafe { pg_sys::MarkGUCPrefixReserved(PREFIX.as_ptr()) };
}

/// The tenant id in the context setting, 0 when none. No parsing: the assign hook did it.
#[inline]
pub fn tenant_id_setting() -> i64 {
    TENANT_ID_VALUE.0.get()
}

pub fn cross_tenant() -> bool {
    CROSS_TENANT_SETTING.get()
}

pub fn require_signed_context() -> bool {
    REQUIRE_SIGNED.get()
}

pub fn context_scope() -> ContextScope {
    CONTEXT_SCOPE.get()
}

/// Changes a superuser-only setting on behalf of an already-authorised caller.
/// `local` lasts until the end of the transaction; ROLLBACK restores the prior value either way.
pub fn apply(name: &CStr, value: &str, local: bool) {
    let value = std::ffi::CString::new(value).expect("setting values never contain NUL");
    let action = if local {
        pg_sys::GucAction::GUC_ACTION_LOCAL
    } else {
        pg_sys::GucAction::GUC_ACTION_SET
    };
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            pgrx::PgLogLevel::ERROR as i32,
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::parse_tenant_setting;

    #[test]
    fn empty_means_no_tenant() {
        assert_eq!(parse_tenant_setting(""), Ok(0));
    }

    #[test]
    fn positive_ids_parse() {
        assert_eq!(parse_tenant_setting("42"), Ok(42));
        assert_eq!(parse_tenant_setting("9223372036854775807"), Ok(i64::MAX));
    }

    #[test]
    fn junk_zero_negative_and_overflow_are_rejected() {
        for bad in [
            "0",
            "-1",
            " 1",
            "1 ",
            "1e3",
            "abc",
            "9223372036854775808",
            "+5",
        ] {
            assert!(parse_tenant_setting(bad).is_err(), "{bad:?} accepted");
        }
    }
}
