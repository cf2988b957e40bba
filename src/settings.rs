//! Every `qualityfoundry_tenant.*` setting, declared in one place.
//!
//! The tenant context and the cross-tenant flag are `SUSET` settings: PostgreSQL itself then refuses
//! `SET`, `SET LOCAL`, `set_config()`, `ALTER ROLE ... SET`, function `SET` clauses and startup
//! options from non-superusers, and the only way in for an application role is the extension's own
//! setter functions, which authorise first. Their defaults mean "no tenant" / "off", because
//! `RESET ALL` (and so `DISCARD ALL`) resets them without any privilege check.
//!
//! Both values also name who set them, so a value cannot outlive the session it was made for:
//! the context is stored as `<tenant id>@<session user oid>[/local]` (shown as the bare id) and is
//! void once `SET SESSION AUTHORIZATION` makes another role the session user; the cross-tenant flag
//! is `<backend pid>.<backend start>.<session user oid>[/local]` (shown as `on`/`off`), so a value that did not
//! come from `enter_cross_tenant()` in this very session (a role or database default, a startup
//! option, a pooled predecessor with another session user) is not honoured. The values travel to
//! parallel workers as text, so the workers read the same owner. `/local` marks a value set for
//! the transaction only: a session-scope value is void once the role's rules say
//! `context_scope = transaction` (so changing the rule reaches pooled connections at once).
//!
//! `require_signed_context` and `context_scope` are only the convenience half of a role's rules:
//! a startup option or a placeholder can shadow them when the library is not preloaded, so the
//! rules that cannot be switched off live in the registry (`tenant.role_rules`, see context.rs)
//! and the stricter of the two wins.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::PostgresGucEnum;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};

/// Setting names; SPI text and `set_config_option` use these, never ad-hoc literals.
pub const TENANT_ID: &CStr = c"qualityfoundry_tenant.tenant_id";
pub const CROSS_TENANT: &CStr = c"qualityfoundry_tenant.cross_tenant";
pub const PREFIX: &CStr = c"qualityfoundry_tenant";
/// Who the context is for inside its tenant (end user, tenant role); set with the context.
pub const IDENTITY: &CStr = c"qualityfoundry_tenant.identity";
/// The request id the audit log records (transaction-local, `tenant.set_request_id`).
pub const REQUEST_ID: &CStr = c"qualityfoundry_tenant.request_id";

#[derive(Clone, Copy, PartialEq, Eq, Debug, PostgresGucEnum)]
pub enum ContextScope {
    #[name = c"session"]
    Session,
    #[name = c"transaction"]
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

// Backend-local; PostgreSQL backends are single-threaded.
struct Backend<T>(T);
unsafe impl<T> Sync for Backend<T> {}

// The context is a string (tenant ids are bigint, integer settings are 32-bit); the assign hook
// parses it once into TENANT_ID_VALUE so the policy function never parses per row.
static TENANT_ID_SETTING: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static TENANT_ID_VALUE: Backend<Cell<TenantSetting>> = Backend(Cell::new(NO_TENANT));
const NO_TENANT: TenantSetting = TenantSetting {
    id: 0,
    owner: 0,
    local: false,
};
const LOCAL_SUFFIX: &str = "/local";
static CROSS_TENANT_SETTING: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static CROSS_TENANT_VALUE: Backend<Cell<Option<SessionKey>>> = Backend(Cell::new(None));
/// What the show hooks return (PostgreSQL copies it before the next call).
static SHOWN: Backend<RefCell<Option<CString>>> = Backend(RefCell::new(None));

static IDENTITY_SETTING: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static IDENTITY_VALUE: Backend<RefCell<Option<IdentitySetting>>> = Backend(RefCell::new(None));
static CROSS_TENANT_REASON: Backend<RefCell<Option<String>>> = Backend(RefCell::new(None));
static REQUEST_ID_SETTING: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
// The claims set_tenant_jwt reads. Defaults are the names; a client that shadows a DBA's
// value (a startup option when the library is not preloaded) can only bring back the default.
static JWT_TENANT_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"tenant_id"));
static JWT_ROLE_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"tenant_role"));
/// Clock skew allowed for exp/nbf/iat: small, so an expired token is not honoured for long.
static JWT_LEEWAY: GucSetting<i32> = GucSetting::<i32>::new(30);
static REQUIRE_MEMBERSHIP: GucSetting<bool> = GucSetting::<bool>::new(false);
static REQUIRE_SIGNED: GucSetting<bool> = GucSetting::<bool>::new(false);
static CONTEXT_SCOPE: GucSetting<ContextScope> =
    GucSetting::<ContextScope>::new(ContextScope::Session);
static AUTO_ISOLATE: GucSetting<AutoIsolate> = GucSetting::<AutoIsolate>::new(AutoIsolate::Off);
static TEMPLATE_SCHEMA: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"tenant_template"));

/// The parsed context setting: tenant id (0: none) and the session user that set it (0: a value
/// written by a superuser as a bare id, honoured for any session user).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TenantSetting {
    pub id: i64,
    pub owner: u32,
    pub local: bool,
}

/// The session a cross-tenant entry belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SessionKey {
    pub pid: i32,
    pub started: i64,
    pub owner: u32,
    pub local: bool,
}

/// Who a context is for inside its tenant: the tenant context it was set with (same owner and
/// scope) and the end user and tenant role it carries. Valid only while the context is that
/// tenant's: a later plain set_tenant, clear_tenant, RESET or another session user voids it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentitySetting {
    pub tenant: TenantSetting,
    pub user: Option<String>,
    pub role: Option<String>,
}

const BAD_TENANT: &str = "the tenant context must be a positive tenant id";
const BAD_IDENTITY: &str = "the identity is set only by the extension's context functions";

fn encode_part(v: Option<&str>) -> String {
    use base64::Engine;
    v.map(|v| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v))
        .unwrap_or_default()
}

fn decode_part(v: &str) -> Result<Option<String>, ()> {
    use base64::Engine;
    if v.is_empty() {
        return Ok(None);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v)
        .map_err(|_| ())?;
    let text = String::from_utf8(bytes).map_err(|_| ())?;
    // Canonical only, so one identity has one spelling.
    if text.is_empty() || encode_part(Some(&text)) != v {
        return Err(());
    }
    Ok(Some(text))
}

/// The identity setting's text: `<tenant setting>;<base64url user>;<base64url role>` (an empty
/// part is NULL), or "" when the context carries no identity.
pub fn render_identity(tenant: TenantSetting, user: Option<&str>, role: Option<&str>) -> String {
    if user.is_none() && role.is_none() {
        return String::new();
    }
    format!(
        "{};{};{}",
        render_tenant_setting(tenant.id, tenant.owner, tenant.local),
        encode_part(user),
        encode_part(role)
    )
}

pub fn parse_identity(text: &str) -> Result<Option<IdentitySetting>, &'static str> {
    if text.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(';').collect();
    let [tenant, user, role] = parts[..] else {
        return Err(BAD_IDENTITY);
    };
    let tenant = parse_tenant_setting(tenant).map_err(|_| BAD_IDENTITY)?;
    let user = decode_part(user).map_err(|_| BAD_IDENTITY)?;
    let role = decode_part(role).map_err(|_| BAD_IDENTITY)?;
    if tenant.id == 0 || tenant.owner == 0 || (user.is_none() && role.is_none()) {
        return Err(BAD_IDENTITY);
    }
    Ok(Some(IdentitySetting { tenant, user, role }))
}

fn positive_id(text: &str) -> Result<i64, &'static str> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_TENANT);
    }
    match text.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(BAD_TENANT),
    }
}

fn oid_text(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|&o| o != 0)
}

/// Parses the context setting's text: empty means "no tenant"; otherwise a positive decimal id,
/// optionally followed by `@<session user oid>` and `/local`. Pure so it is unit-tested without a
/// backend.
pub fn parse_tenant_setting(text: &str) -> Result<TenantSetting, &'static str> {
    if text.is_empty() {
        return Ok(NO_TENANT);
    }
    let (text, local) = match text.strip_suffix(LOCAL_SUFFIX) {
        Some(t) if t.contains('@') => (t, true),
        Some(_) => return Err(BAD_TENANT),
        None => (text, false),
    };
    let (id, owner) = match text.split_once('@') {
        Some((id, owner)) => (id, Some(owner)),
        None => (text, None),
    };
    let id = positive_id(id)?;
    let owner = match owner {
        None => 0,
        Some(o) => oid_text(o).ok_or(BAD_TENANT)?,
    };
    Ok(TenantSetting { id, owner, local })
}

/// The text the setters store: the id tied to the session user that set it, and its scope.
pub fn render_tenant_setting(id: i64, owner: u32, local: bool) -> String {
    // By hand rather than format!: this runs on every set_tenant.
    let mut text = String::with_capacity(40);
    if id < 0 {
        text.push('-');
    }
    push_decimal(&mut text, id.unsigned_abs());
    text.push('@');
    push_decimal(&mut text, u64::from(owner));
    if local {
        text.push_str(LOCAL_SUFFIX);
    }
    text
}

fn push_decimal(text: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        text.push(char::from(d));
    }
}

/// Parses the cross-tenant flag: empty or `off` means off; `<pid>.<start>.<owner>` is an entry
/// made by `enter_cross_tenant()`. Anything else (`on` included) is refused, so a DBA who writes
/// `ALTER ROLE ... SET qualityfoundry_tenant.cross_tenant = on` is told it does nothing.
pub fn parse_cross_tenant(text: &str) -> Result<Option<SessionKey>, &'static str> {
    const BAD: &str = "cross-tenant mode is entered only with tenant.enter_cross_tenant()";
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let text = match text.split_once(';') {
        Some((key, reason)) => {
            decode_part(reason).map_err(|_| BAD)?;
            key
        }
        None => text,
    };
    let (text, local) = match text.strip_suffix(LOCAL_SUFFIX) {
        Some(t) => (t, true),
        None => (text, false),
    };
    let parts: Vec<&str> = text.split('.').collect();
    let [pid, started, owner] = parts[..] else {
        return Err(BAD);
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(started) {
        return Err(BAD);
    }
    Ok(Some(SessionKey {
        pid: pid.parse().map_err(|_| BAD)?,
        started: started.parse().map_err(|_| BAD)?,
        owner: oid_text(owner).ok_or(BAD)?,
        local,
    }))
}

/// The flag as `enter_cross_tenant()` writes it: the session key, then `;` and the reason
/// (base64url), so the reason follows the flag through scopes and ROLLBACK.
pub fn render_cross_tenant(key: SessionKey, reason: &str) -> String {
    format!(
        "{}.{}.{}{};{}",
        key.pid,
        key.started,
        key.owner,
        if key.local { LOCAL_SUFFIX } else { "" },
        encode_part(Some(reason).filter(|r| !r.is_empty()))
    )
}

/// The reason part of a cross-tenant flag (None when absent or unreadable).
pub fn cross_tenant_reason_of(text: &str) -> Option<String> {
    text.split_once(';')
        .and_then(|(_, r)| decode_part(r).ok().flatten())
}

unsafe fn hook_text<'a>(newval: *const c_char) -> &'a str {
    if newval.is_null() {
        ""
    } else {
        CStr::from_ptr(newval).to_str().unwrap_or("\u{1}")
    }
}

unsafe fn check_failed(message: &str) -> bool {
    let msg = CString::new(message).unwrap_or_default();
    pg_sys::GUC_check_errmsg_string = pg_sys::pstrdup(msg.as_ptr());
    false
}

/// A check hook's verdict on the proposed value's text (NULL reads as empty).
unsafe fn check_with(
    newval: *mut *mut c_char,
    check: impl FnOnce(&str) -> Result<(), &'static str>,
) -> bool {
    let text = if newval.is_null() {
        ""
    } else {
        hook_text(*newval)
    };
    match check(text) {
        Ok(()) => true,
        Err(e) => check_failed(e),
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_tenant_id(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    check_with(newval, |t| parse_tenant_setting(t).map(|_| ()))
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_tenant_id(newval: *const c_char, _extra: *mut c_void) {
    TENANT_ID_VALUE
        .0
        .set(parse_tenant_setting(hook_text(newval)).unwrap_or(NO_TENANT));
}

fn show(text: String) -> *const c_char {
    let mut shown = SHOWN.0.borrow_mut();
    shown
        .insert(CString::new(text).unwrap_or_default())
        .as_ptr()
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn show_tenant_id() -> *const c_char {
    let v = TENANT_ID_VALUE.0.get();
    show(if v.id == 0 {
        String::new()
    } else {
        v.id.to_string()
    })
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_cross_tenant(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    check_with(newval, |t| parse_cross_tenant(t).map(|_| ()))
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_cross_tenant(newval: *const c_char, _extra: *mut c_void) {
    let text = hook_text(newval);
    let value = parse_cross_tenant(text).unwrap_or(None);
    if value != CROSS_TENANT_VALUE.0.get() {
        // Plans folded cross_tenant_active() to false while no entry was set (see
        // context::cross_tenant_support): make every cached plan of this backend re-plan before its
        // next run. Only flags are flipped here, which is safe in an assign hook (also at abort).
        pg_sys::ResetPlanCache();
    }
    CROSS_TENANT_VALUE.0.set(value);
    *CROSS_TENANT_REASON.0.borrow_mut() = cross_tenant_reason_of(text);
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_identity(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    check_with(newval, |t| parse_identity(t).map(|_| ()))
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_identity(newval: *const c_char, _extra: *mut c_void) {
    let value = parse_identity(hook_text(newval)).unwrap_or(None);
    // Plans folded for another tenant role re-plan (context.rs, role folding; flags only).
    crate::context::identity_assigned(value.as_ref().and_then(|i| i.role.as_deref()));
    *IDENTITY_VALUE.0.borrow_mut() = value;
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn show_identity() -> *const c_char {
    let shown = IDENTITY_VALUE.0.borrow().as_ref().map(|i| {
        format!(
            "user={} role={}",
            i.user.as_deref().unwrap_or(""),
            i.role.as_deref().unwrap_or("")
        )
    });
    show(shown.unwrap_or_default())
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_request_id(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    check_with(newval, |t| {
        if t.is_empty() || qft_jwt::check_text(t, qft_jwt::MAX_REQUEST_ID_BYTES).is_ok() {
            Ok(())
        } else {
            Err("a request id is at most 200 bytes, without control characters")
        }
    })
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_claim_name(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    check_with(newval, |t| {
        qft_jwt::check_text(t, 63)
            .map_err(|_| "a claim name is 1 to 63 bytes, without control characters")
    })
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn show_cross_tenant() -> *const c_char {
    show(if cross_tenant_entered() { "on" } else { "off" }.to_string())
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
            Some(show_tenant_id),
        );
        GucRegistry::define_string_guc_with_hooks(
            CROSS_TENANT,
            c"Whether the audited cross-tenant mode is active. Use tenant.enter_cross_tenant().",
            c"Set only by tenant.enter_cross_tenant()/exit_cross_tenant(); valid only in the session that entered it.",
            &CROSS_TENANT_SETTING,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_cross_tenant),
            Some(assign_cross_tenant),
            Some(show_cross_tenant),
        );
    }
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            IDENTITY,
            c"The end user and tenant role of the tenant context (set with it by set_tenant_jwt / set_tenant_signed).",
            c"Superuser-only; valid only while the context it was set with is in force.",
            &IDENTITY_SETTING,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_identity),
            Some(assign_identity),
            Some(show_identity),
        );
        GucRegistry::define_string_guc_with_hooks(
            REQUEST_ID,
            c"The request id written to tenant.audit_log (tenant.set_request_id(), or a JWT's jti).",
            c"Transaction-local; set only through tenant.set_request_id() and set_tenant_jwt().",
            &REQUEST_ID_SETTING,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_request_id),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"qualityfoundry_tenant.jwt_tenant_claim",
            c"The JWT claim that names the tenant (a slug, an id or a uuid) for tenant.set_tenant_jwt().",
            c"Default tenant_id.",
            &JWT_TENANT_CLAIM,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_claim_name),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"qualityfoundry_tenant.jwt_role_claim",
            c"The JWT claim that names the tenant role for tenant.set_tenant_jwt().",
            c"Default tenant_role.",
            &JWT_ROLE_CLAIM,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_claim_name),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"qualityfoundry_tenant.jwt_leeway",
        c"Seconds of clock skew allowed when checking a JWT's exp, nbf and iat.",
        c"Keep it small: an expired token is honoured for this long.",
        &JWT_LEEWAY,
        0,
        300,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"qualityfoundry_tenant.require_membership",
        c"Roles with this on enter a tenant only with a token naming a member of it (tenant.memberships).",
        c"A convenience for ALTER ROLE/DATABASE ... SET; the rule that cannot be shadowed is tenant.set_role_rules().",
        &REQUIRE_MEMBERSHIP,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"qualityfoundry_tenant.require_signed_context",
        c"Roles with this on can enter a tenant only with a token from tenant.sign_context().",
        c"A convenience for ALTER ROLE/DATABASE ... SET; the rule that cannot be shadowed is tenant.set_role_rules().",
        &REQUIRE_SIGNED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"qualityfoundry_tenant.context_scope",
        c"session: set_tenant lasts for the session; transaction: every set_tenant is local.",
        c"transaction is the safe choice behind a transaction-pooling PgBouncer; tenant.set_role_rules() makes it stick.",
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

/// The context setting as parsed by the assign hook. No parsing here.
#[inline]
pub fn tenant_setting() -> TenantSetting {
    TENANT_ID_VALUE.0.get()
}

/// The tenant id in the context setting, 0 when none, whoever set it.
#[inline]
pub fn tenant_id_setting() -> i64 {
    TENANT_ID_VALUE.0.get().id
}

/// This backend's identity for a cross-tenant entry. A parallel worker answers with its leader's
/// pid (and no start time, which workers are not told), so it reads the leader's entry as its own.
pub fn this_session() -> SessionKey {
    unsafe {
        let owner = pg_sys::GetSessionUserId().to_u32();
        if pg_sys::ParallelWorkerNumber >= 0 && !pg_sys::MyProc.is_null() {
            let leader = (*pg_sys::MyProc).lockGroupLeader;
            if !leader.is_null() {
                return SessionKey {
                    pid: (*leader).pid,
                    started: -1,
                    owner,
                    local: false,
                };
            }
        }
        SessionKey {
            pid: pg_sys::MyProcPid,
            started: pg_sys::MyStartTime,
            owner,
            local: false,
        }
    }
}

/// The cross-tenant entry in force if it was made by this session (and its session user):
/// Some(local) when entered, None otherwise.
pub fn cross_tenant_entry() -> Option<bool> {
    let key = CROSS_TENANT_VALUE.0.get()?;
    let me = this_session();
    (key.pid == me.pid && key.owner == me.owner && (me.started == -1 || key.started == me.started))
        .then_some(key.local)
}

/// Whether the cross-tenant setting holds any entry at all (valid for this session or not): the
/// planner folds `cross_tenant_active()` to false only when it holds none.
#[inline]
pub fn cross_tenant_value_present() -> bool {
    CROSS_TENANT_VALUE.0.get().is_some()
}

pub fn cross_tenant_entered() -> bool {
    cross_tenant_entry().is_some()
}

pub fn require_signed_context() -> bool {
    REQUIRE_SIGNED.get()
}

pub fn require_membership() -> bool {
    REQUIRE_MEMBERSHIP.get()
}

/// Calls `f` with the identity setting, without copying it (the getters' hot path).
pub fn with_identity<R>(f: impl FnOnce(Option<&IdentitySetting>) -> R) -> R {
    f(IDENTITY_VALUE.0.borrow().as_ref())
}

/// The reason given to the cross-tenant entry in force (see `cross_tenant_entry`).
pub fn cross_tenant_reason() -> Option<String> {
    CROSS_TENANT_REASON.0.borrow().clone()
}

pub fn request_id() -> Option<String> {
    REQUEST_ID_SETTING
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.is_empty())
}

fn claim_setting(s: &GucSetting<Option<CString>>, default: &str) -> String {
    s.get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

pub fn jwt_tenant_claim() -> String {
    claim_setting(&JWT_TENANT_CLAIM, "tenant_id")
}

pub fn jwt_role_claim() -> String {
    claim_setting(&JWT_ROLE_CLAIM, "tenant_role")
}

pub fn jwt_leeway() -> i64 {
    i64::from(JWT_LEEWAY.get())
}

pub fn context_scope() -> ContextScope {
    CONTEXT_SCOPE.get()
}

/// Changes a superuser-only setting on behalf of an already-authorised caller.
/// `local` lasts until the end of the transaction; ROLLBACK restores the prior value either way.
pub fn apply(name: &CStr, value: &str, local: bool) {
    let value = CString::new(value).expect("setting values never contain NUL");
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
    use super::*;

    fn t(id: i64, owner: u32, local: bool) -> TenantSetting {
        TenantSetting { id, owner, local }
    }

    #[test]
    fn empty_means_no_tenant() {
        assert_eq!(parse_tenant_setting(""), Ok(NO_TENANT));
    }

    #[test]
    fn positive_ids_parse_with_or_without_an_owner() {
        assert_eq!(parse_tenant_setting("42"), Ok(t(42, 0, false)));
        assert_eq!(
            parse_tenant_setting("9223372036854775807@16384"),
            Ok(t(i64::MAX, 16384, false))
        );
        for local in [false, true] {
            assert_eq!(
                parse_tenant_setting(&render_tenant_setting(7, 10, local)),
                Ok(t(7, 10, local))
            );
        }
    }

    #[test]
    fn the_rendered_setting_is_the_decimal_text() {
        for (id, owner) in [
            (1, 1),
            (9, 10),
            (10, 99),
            (i64::MAX, u32::MAX),
            (1234567, 16384),
            (-5, 3),
        ] {
            for local in [false, true] {
                assert_eq!(
                    render_tenant_setting(id, owner, local),
                    format!("{id}@{owner}{}", if local { "/local" } else { "" })
                );
            }
        }
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
            "1@",
            "1@0",
            "1@x",
            "@5",
            "1@5@6",
            "1@99999999999",
            "1/local",
            "1@5/loc",
            "1@5/local/local",
        ] {
            assert!(parse_tenant_setting(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn identity_values() {
        let owner = t(7, 10, true);
        assert_eq!(render_identity(owner, None, None), "");
        assert_eq!(parse_identity(""), Ok(None));
        for (user, role) in [
            (Some("alice"), Some("viewer")),
            (Some("a;b@c/local"), None),
            (None, Some("admin")),
            (Some("\u{e9}t\u{e9}"), Some("x")),
        ] {
            let text = render_identity(owner, user, role);
            assert_eq!(
                parse_identity(&text),
                Ok(Some(IdentitySetting {
                    tenant: owner,
                    user: user.map(str::to_string),
                    role: role.map(str::to_string),
                })),
                "{text}"
            );
        }
        for bad in [
            "7@10",
            "7@10;;",
            "7;YWxpY2U;",
            "0@10;YWxpY2U;",
            "7@10;YWxpY2U",
            "7@10;YWxpY2U=;",
            "7@10;!!;",
            "7@10;YWxpY2U;;",
            "x@10;YWxpY2U;",
        ] {
            assert!(parse_identity(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cross_tenant_values() {
        assert_eq!(parse_cross_tenant(""), Ok(None));
        assert_eq!(parse_cross_tenant("off"), Ok(None));
        for local in [false, true] {
            let key = SessionKey {
                pid: 123,
                started: 1_700_000_000,
                owner: 16384,
                local,
            };
            let text = render_cross_tenant(key, "ticket 1; urgent");
            assert_eq!(parse_cross_tenant(&text), Ok(Some(key)));
            assert_eq!(
                cross_tenant_reason_of(&text).as_deref(),
                Some("ticket 1; urgent")
            );
        }
        assert_eq!(cross_tenant_reason_of("1.2.3"), None);
        assert!(parse_cross_tenant("1.2.3;!!").is_err());
        for bad in [
            "on",
            "true",
            "1",
            "1.2",
            "1.2.0",
            "a.b.c",
            "1.2.3.4",
            "-1.2.3",
            "1.2.3/local/local",
        ] {
            assert!(parse_cross_tenant(bad).is_err(), "{bad:?} accepted");
        }
    }
}
