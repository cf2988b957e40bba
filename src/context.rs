//! The tenant context: who the session is acting for, how it gets there, and the cheap getter
//! every policy calls.
//!
//! The context lives in the superuser-only setting `qualityfoundry_tenant.tenant_id`, so
//! PostgreSQL's GUC machinery provides transaction-local scope, ROLLBACK, RESET and propagation to
//! parallel workers. The functions here are the only way an application role can change it, and
//! they authorise first. The registry is read through a per-backend cache that a relcache
//! invalidation of `tenant.tenants` clears (triggers on the registry tables send one at commit), so
//! suspending a tenant, binding, unbinding or changing a role's rules takes effect in every session
//! from its next statement.
//!
//! A role's rules (its binding, `require_signed_context`, `context_scope`, the cross-tenant
//! allowance of a binding) come from the registry (`tenant.role_bindings`, `tenant.role_rules`),
//! which no client setting can shadow; the `ALTER ROLE ... SET` settings are honoured too, and the
//! stricter of the two wins. A bound session's tenant is read from the registry by the getter
//! itself, so it follows rebinding, unbinding and `SET SESSION AUTHORIZATION`.
//!
//! Identity inside the tenant (0.2.0): a context entered with a token (`set_tenant_jwt`,
//! `set_tenant_signed`) also carries the end user and tenant role the token names, in a second
//! superuser-only setting (`qualityfoundry_tenant.identity`) set with the same scope in the same
//! call. It names the tenant context it was set with, and the getters honour it only while that
//! context is the one in force, so any later setter, `RESET`, a rollback or another session user
//! leaves no stale identity behind. `require_membership` (a role rule like
//! `require_signed_context`) makes every entry name a member of the tenant (`tenant.memberships`).

use crate::error;
use crate::privilege::{self, TENANT_SUPERUSER, TENANT_USER};
use crate::settings::{self, ContextScope};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Clone, Debug)]
pub struct TenantRow {
    pub id: i64,
    pub slug: String,
    pub active: bool,
    pub schema: Option<String>,
    pub uuid: [u8; 16],
}

/// A registry row as cached: shared, so the setters' lookups copy no strings.
pub type Tenant = Rc<TenantRow>;

/// What the registry says about one role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleRules {
    pub binding: Option<i64>,
    pub allow_cross_tenant: bool,
    pub require_signed: bool,
    pub transaction_scope: bool,
    pub require_membership: bool,
}

/// Hashes the integer keys of the registry cache (tenant ids, role oids, key ids) with one
/// multiplication (Fibonacci hashing) instead of SipHash: the setters look a tenant up on every
/// call. Keys that are not integers go through the same mixing byte by byte.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_i32(&mut self, v: i32) {
        self.write_u64(v as u32 as u64);
    }
}

type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Cache {
    generation: u64,
    by_id: IdMap<i64, Option<Tenant>>,
    by_slug: HashMap<String, Option<i64>>,
    by_uuid: HashMap<[u8; 16], Option<i64>>,
    rules: IdMap<u32, RoleRules>,
    keys: IdMap<i32, Option<SigningKey>>,
}

/// A signing key's secret and when it stops being accepted (unix seconds), if ever.
#[derive(Clone)]
pub struct SigningKey {
    pub secret: Vec<u8>,
    pub retired_at: Option<i64>,
}

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

static GENERATION: Backend<Cell<u64>> = Backend(Cell::new(1));
static TENANTS_RELID: Backend<Cell<u32>> = Backend(Cell::new(0));
static CACHE: Backend<RefCell<Option<Cache>>> = Backend(RefCell::new(None));
/// The hot path: the last tenant found active, with the generation it was found in.
static LAST_ACTIVE: Backend<Cell<(i64, u64)>> = Backend(Cell::new((0, 0)));
/// The hot path of current_tenant_uuid(): the last tenant's uuid, with its id and generation.
static LAST_UUID: Backend<Cell<(i64, u64, [u8; 16])>> = Backend(Cell::new((0, 0, [0; 16])));
/// The hot path: what the getters need to know about the session user, with the session user
/// and generation it is for.
#[derive(Clone, Copy)]
struct SessionRules {
    user: u32,
    generation: u64,
    binding: Option<i64>,
    allow_cross_tenant: bool,
    /// The registry or the role's stored settings say context_scope = transaction: a
    /// session-scope value (set before the rule) is void.
    transaction_scope: bool,
}
static SESSION_RULES: Backend<Cell<SessionRules>> = Backend(Cell::new(SessionRules {
    user: 0,
    generation: 0,
    binding: None,
    allow_cross_tenant: false,
    transaction_scope: false,
}));

/// Whether a plan made by this backend may hold a folded tenant getter (a bound session's
/// tenant as a constant, see `bound_fold`): then every registry change resets the plan cache.
static FOLDED: Backend<Cell<bool>> = Backend(Cell::new(false));

#[pg_guard]
unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: Oid) {
    // No catalog access and no allocation here: just make every cached answer stale.
    let known = TENANTS_RELID.0.get();
    if relid == pg_sys::InvalidOid || known == 0 || relid.to_u32() == known {
        GENERATION.0.set(GENERATION.0.get().wrapping_add(1));
        forget_folded_plans();
    }
    // The Citus node keys and the routing fold's table cache (PostgreSQL has 10 relcache
    // callback slots per backend, Citus takes several: one callback for the whole library).
    crate::citus::relcache_changed(relid);
    crate::routing::relcache_changed(relid);
}

/// Makes every cached plan of this backend that may hold a folded tenant getter re-plan before
/// its next run (only flags are flipped: safe in an invalidation callback).
pub fn forget_folded_plans() {
    if FOLDED.0.get() {
        FOLDED.0.set(false);
        unsafe { pg_sys::ResetPlanCache() };
    }
}

pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), pg_sys::Datum::from(0));
        pg_sys::RegisterXactCallback(Some(role_xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(role_subxact_callback), std::ptr::null_mut());
    };
    privilege::init();
}

/// The registry generation: changes whenever any backend changes the registry (or a key table).
pub fn generation() -> u64 {
    GENERATION.0.get()
}

fn with_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    let mut slot = CACHE.0.borrow_mut();
    let generation = GENERATION.0.get();
    if slot.as_ref().map(|c| c.generation) != Some(generation) {
        *slot = Some(Cache {
            generation,
            ..Default::default()
        });
    }
    f(slot.as_mut().expect("cache was just filled"))
}

/// Stores a lookup made while `generation` was current; a lookup that raced an invalidation is
/// simply not kept.
fn remember(generation: u64, f: impl FnOnce(&mut Cache)) {
    if GENERATION.0.get() == generation {
        with_cache(f);
    }
}

fn lookup_failed(e: pgrx::spi::Error) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("registry lookup failed: {e}"),
        None,
        None,
    )
}

// Run by as_owner, so search_path is pg_catalog, pg_temp.
const TENANT_BY_ID: &str = "SELECT id, slug, status = 'active', schema_name::text, \
     'tenant.tenants'::regclass::oid, uuid FROM tenant.tenants WHERE id = $1";
const TENANT_BY_SLUG: &str = "SELECT id, slug, status = 'active', schema_name::text, \
     'tenant.tenants'::regclass::oid, uuid FROM tenant.tenants WHERE slug = $1";
const TENANT_BY_UUID: &str = "SELECT id, slug, status = 'active', schema_name::text, \
     'tenant.tenants'::regclass::oid, uuid FROM tenant.tenants WHERE uuid = $1";
const RULES_OF: &str = "SELECT b.tenant_id, COALESCE(b.allow_cross_tenant, false), \
     COALESCE(r.require_signed_context, false), COALESCE(r.context_scope = 'transaction', false), \
     'tenant.tenants'::regclass::oid, COALESCE(r.require_membership, false) \
     FROM (SELECT $1::oid AS role) x \
     LEFT JOIN tenant.role_bindings b ON b.role::oid = x.role \
     LEFT JOIN tenant.role_rules r ON r.role::oid = x.role";

fn select_tenant(query: &str, arg: pgrx::datum::DatumWithOid) -> Option<Tenant> {
    let row = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(query, Some(1), &[arg])?;
            if t.is_empty() {
                return Ok::<_, pgrx::spi::Error>(None);
            }
            let t = t.first();
            Ok(Some((
                TenantRow {
                    id: t.get::<i64>(1)?.unwrap_or(0),
                    slug: t.get::<String>(2)?.unwrap_or_default(),
                    active: t.get::<bool>(3)?.unwrap_or(false),
                    schema: t.get::<String>(4)?,
                    uuid: t
                        .get::<pgrx::datum::Uuid>(6)?
                        .map(|u| *u.as_bytes())
                        .unwrap_or([0; 16]),
                },
                t.get::<Oid>(5)?.map(|o| o.to_u32()).unwrap_or(0),
            )))
        })
    })
    .unwrap_or_else(|e| lookup_failed(e));
    row.map(|(tenant, relid)| {
        TENANTS_RELID.0.set(relid);
        Rc::new(tenant)
    })
}

pub fn tenant_by_id(id: i64) -> Option<Tenant> {
    if let Some(hit) = with_cache(|c| c.by_id.get(&id).cloned()) {
        return hit;
    }
    let generation = GENERATION.0.get();
    let row = select_tenant(TENANT_BY_ID, id.into());
    let stored = row.clone();
    remember(generation, |c| {
        c.by_id.insert(id, stored);
    });
    row
}

/// A signing key by id through the registry cache; `fetch` reads it on a miss. The cache is
/// dropped whenever `tenant.signing_keys` changes (its trigger invalidates like the registry's).
pub fn cached_signing_key(
    key_id: i32,
    fetch: impl FnOnce() -> Option<SigningKey>,
) -> Option<SigningKey> {
    if let Some(hit) = with_cache(|c| c.keys.get(&key_id).cloned()) {
        return hit;
    }
    let generation = GENERATION.0.get();
    let key = fetch();
    let stored = key.clone();
    remember(generation, |c| {
        c.keys.insert(key_id, stored);
    });
    key
}

/// The first column of the first row, or None when there is no row.
pub fn first_value<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(
    t: pgrx::spi::SpiTupleTable<'_>,
) -> pgrx::spi::Result<Option<T>> {
    if t.is_empty() {
        Ok(None)
    } else {
        t.first().get_one::<T>()
    }
}

/// Whether an argument names a tenant by id (digits) rather than by slug (which starts with a
/// letter, so the two never collide).
pub fn looks_like_id(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A tenant's uuid in its canonical text form (8-4-4-4-12 hex digits, any case); slugs cannot
/// contain '-', so the two never collide. Other spellings PostgreSQL accepts are not taken, as a
/// 32-digit one could be a slug.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Resolves a `tenant text` argument: the slug, the id written as text, or the uuid.
pub fn resolve(text: &str) -> Option<Tenant> {
    if looks_like_id(text) {
        return text.parse::<i64>().ok().and_then(tenant_by_id);
    }
    if let Some(uuid) = parse_uuid(text) {
        if let Some(hit) = with_cache(|c| c.by_uuid.get(&uuid).cloned()) {
            return hit.and_then(tenant_by_id);
        }
        let generation = GENERATION.0.get();
        let row = select_tenant(TENANT_BY_UUID, pgrx::datum::Uuid::from_bytes(uuid).into());
        let (id, stored) = (row.as_ref().map(|r| r.id), row.clone());
        remember(generation, |c| {
            c.by_uuid.insert(uuid, id);
            if let Some(r) = stored {
                c.by_id.insert(r.id, Some(r));
            }
        });
        return row;
    }
    if let Some(hit) = with_cache(|c| c.by_slug.get(text).cloned()) {
        return hit.and_then(tenant_by_id);
    }
    let generation = GENERATION.0.get();
    let row = select_tenant(TENANT_BY_SLUG, text.into());
    let (slug, id, stored) = (text.to_string(), row.as_ref().map(|r| r.id), row.clone());
    remember(generation, |c| {
        c.by_slug.insert(slug, id);
        if let Some(r) = stored {
            c.by_id.insert(r.id, Some(r));
        }
    });
    row
}

/// The registry's rules for one role (binding and `tenant.role_rules`), cached per backend.
pub fn rules_of(role: Oid) -> RoleRules {
    let key = role.to_u32();
    if let Some(hit) = with_cache(|c| c.rules.get(&key).copied()) {
        return hit;
    }
    let generation = GENERATION.0.get();
    let (rules, relid) = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(RULES_OF, Some(1), &[role.into()])?.first();
            Ok::<_, pgrx::spi::Error>((
                RoleRules {
                    binding: t.get::<i64>(1)?,
                    allow_cross_tenant: t.get::<bool>(2)?.unwrap_or(false),
                    require_signed: t.get::<bool>(3)?.unwrap_or(false),
                    transaction_scope: t.get::<bool>(4)?.unwrap_or(false),
                    require_membership: t.get::<bool>(6)?.unwrap_or(false),
                },
                t.get::<Oid>(5)?.map(|o| o.to_u32()).unwrap_or(0),
            ))
        })
    })
    .unwrap_or_else(|e| lookup_failed(e));
    TENANTS_RELID.0.set(relid);
    remember(generation, |c| {
        c.rules.insert(key, rules);
    });
    rules
}

/// The tenant a login role is bound to, if any.
pub fn binding_of(role: Oid) -> Option<i64> {
    rules_of(role).binding
}

fn session_user() -> Oid {
    unsafe { pg_sys::GetSessionUserId() }
}

/// The session user's binding, cross-tenant allowance and scope rule: two cell reads on the hot
/// path.
fn session_rules(session: Oid) -> SessionRules {
    let generation = GENERATION.0.get();
    let cached = SESSION_RULES.0.get();
    if cached.user == session.to_u32() && cached.generation == generation {
        return cached;
    }
    let rules = rules_of(session);
    let fresh = SessionRules {
        user: session.to_u32(),
        generation,
        binding: rules.binding,
        allow_cross_tenant: rules.allow_cross_tenant,
        transaction_scope: rules.transaction_scope || stored_settings_of(session).transaction,
    };
    if GENERATION.0.get() == generation {
        SESSION_RULES.0.set(fresh);
    }
    fresh
}

fn session_binding(session: Oid) -> (Option<i64>, bool) {
    let r = session_rules(session);
    (r.binding, r.allow_cross_tenant)
}

/// The rules in force for a call: the registry's rules of the session user and of the calling
/// role (after SET ROLE), and the settings; the stricter wins.
struct Effective {
    require_signed: bool,
    transaction_scope: bool,
    require_membership: bool,
}

fn effective_rules(caller: Oid) -> Effective {
    let session = session_user();
    let mut rules = rules_of(session);
    if caller != session {
        let c = rules_of(caller);
        rules.require_signed |= c.require_signed;
        rules.transaction_scope |= c.transaction_scope;
        rules.require_membership |= c.require_membership;
    }
    let stored = stored_settings_of(session);
    Effective {
        require_signed: rules.require_signed || stored.signed || settings::require_signed_context(),
        transaction_scope: rules.transaction_scope
            || stored.transaction
            || settings::context_scope() == ContextScope::Transaction,
        require_membership: rules.require_membership
            || stored.membership
            || settings::require_membership(),
    }
}

// What `ALTER ROLE/DATABASE ... SET` stored for the session user in this database (role and
// database, role alone, database alone), read from pg_db_role_setting itself: the value in the
// session can have been shadowed by a startup option or a discarded placeholder, the catalog
// cannot. The stricter entry wins. PostgreSQL applies these at login only, so one read per
// backend and role is exact (kept for the backend's life).
const STORED_SETTINGS: &str = "SELECT      COALESCE(pg_catalog.bool_or(cfg OPERATOR(pg_catalog.~*) '^qualityfoundry_tenant\\.require_signed_context=(on|t|tr|tru|true|y|ye|yes|1)$'), false),      COALESCE(pg_catalog.bool_or(cfg OPERATOR(pg_catalog.~*) '^qualityfoundry_tenant\\.context_scope=transaction$'), false),      COALESCE(pg_catalog.bool_or(cfg OPERATOR(pg_catalog.~*) '^qualityfoundry_tenant\\.require_membership=(on|t|tr|tru|true|y|ye|yes|1)$'), false)      FROM pg_catalog.pg_db_role_setting d CROSS JOIN LATERAL pg_catalog.unnest(d.setconfig) AS cfg      WHERE (d.setrole OPERATOR(pg_catalog.=) $1 AND d.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0, $2]::pg_catalog.oid[]))         OR (d.setrole OPERATOR(pg_catalog.=) 0 AND d.setdatabase OPERATOR(pg_catalog.=) $2)";

/// The rules as `ALTER ROLE/DATABASE ... SET` stored them for a role.
#[derive(Clone, Copy, Debug, Default)]
struct Stored {
    signed: bool,
    transaction: bool,
    membership: bool,
}
type StoredSettings = HashMap<u32, Stored>;
static STORED: Backend<RefCell<Option<StoredSettings>>> = Backend(RefCell::new(None));

fn stored_settings_of(role: Oid) -> Stored {
    let key = role.to_u32();
    if let Some(hit) = STORED
        .0
        .borrow()
        .as_ref()
        .and_then(|m| m.get(&key).copied())
    {
        return hit;
    }
    let database = unsafe { pg_sys::MyDatabaseId };
    let found = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c
                .select(STORED_SETTINGS, Some(1), &[role.into(), database.into()])?
                .first();
            Ok::<_, pgrx::spi::Error>(Stored {
                signed: t.get::<bool>(1)?.unwrap_or(false),
                transaction: t.get::<bool>(2)?.unwrap_or(false),
                membership: t.get::<bool>(3)?.unwrap_or(false),
            })
        })
    })
    .unwrap_or_else(|e| lookup_failed(e));
    STORED
        .0
        .borrow_mut()
        .get_or_insert_with(HashMap::new)
        .insert(key, found);
    found
}

fn require_local_flag(is_local: Option<bool>) -> bool {
    is_local.unwrap_or_else(|| {
        error::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "is_local must not be NULL".into(),
            None,
            Some("Pass true (until the end of the transaction) or false (the session).".into()),
        )
    })
}

/// The local transaction a "local outside a transaction block" WARNING was given in.
static WARNED_IN: Backend<Cell<u32>> = Backend(Cell::new(0));

/// A local change outside a transaction block ends with its own statement: say so, as PostgreSQL
/// does for SET LOCAL (once per statement's transaction, so a function looping over set_tenant
/// does not repeat it).
pub(crate) fn warn_if_pointless(local: bool, what: &str) {
    if local && !unsafe { pg_sys::IsTransactionBlock() } {
        // PostgreSQL 17 moved the local transaction id into PGPROC.vxid.
        #[cfg(feature = "pg15")]
        let lxid = unsafe { (*pg_sys::MyProc).lxid };
        #[cfg(feature = "pg18")]
        let lxid = unsafe { (*pg_sys::MyProc).vxid.lxid };
        if WARNED_IN.0.get() == lxid {
            return;
        }
        WARNED_IN.0.set(lxid);
        let report = pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_NO_ACTIVE_SQL_TRANSACTION,
            format!(
                "a transaction-local {what} outside a transaction block ends with this statement"
            ),
            "qualityfoundry_tenant",
        )
        .set_hint("Call it after BEGIN. Roles with context_scope = transaction are always local.");
        report.report(PgLogLevel::WARNING);
    }
}

fn bound_elsewhere(bound: i64) -> ! {
    let session = session_user();
    let t = tenant_by_id(bound)
        .map(|t| t.slug.clone())
        .unwrap_or_else(|| bound.to_string());
    error::denied(
        format!(
            "role \"{}\" is bound to tenant \"{t}\" and cannot leave or switch it",
            privilege::role_name(session)
        ),
        None,
        Some("A tenant_admin can release the role with tenant.unbind_role().".into()),
    )
}

fn suspended(slug: &str) -> ! {
    error::denied(
        format!("tenant \"{slug}\" is suspended"),
        None,
        Some("A tenant_admin can call tenant.resume_tenant().".into()),
    )
}

/// The tenant a verified token names: by id (the extension's own tokens) or as the text of a
/// JWT claim (slug, id or uuid).
pub enum TokenTenant {
    Id(i64),
    Text(String),
}

/// A verified token: its tenant and the identity it carries. `kind` names it in messages.
pub struct Token {
    pub tenant: TokenTenant,
    pub user: Option<String>,
    pub role: Option<String>,
    pub kind: &'static str,
}

/// What a setter was asked for: a tenant argument as given, or one named by a verified token.
enum Target<'a> {
    Text(Option<&'a str>),
    /// `set_tenant(bigint)`: looked up by id, never rendered and parsed back.
    Id(i64),
    Token(Token),
}

const MEMBER: &str = "SELECT EXISTS (SELECT FROM tenant.memberships m WHERE m.tenant_id = $1 \
     AND m.user_id = $2 AND ($3::text IS NULL OR m.tenant_role = $3))";

/// Whether `user` is a member of the tenant (with `role`, when the token names one).
fn is_member(tenant: i64, user: &str, role: Option<&str>) -> bool {
    // Read-only SPI (pgrx's get_one would assign the transaction an id).
    privilege::as_owner(|| {
        Spi::connect(|c| {
            first_value::<bool>(c.select(
                MEMBER,
                Some(1),
                &[tenant.into(), user.into(), role.into()],
            )?)
        })
    })
    .unwrap_or_else(|e| lookup_failed(e))
    .unwrap_or(false)
}

/// With require_membership, a token's user must be a member of its tenant with its role.
fn require_member(rules: &Effective, superuser: bool, tenant: &TenantRow, token: &Token) {
    if !rules.require_membership || superuser {
        return;
    }
    let hint = Some("A tenant_admin adds members: INSERT INTO tenant.memberships (tenant_id, user_id, tenant_role) VALUES (...).".to_string());
    let Some(user) = token.user.as_deref() else {
        error::denied(
            format!(
                "the {} names no user, and this role may enter a tenant only as one of its members",
                token.kind
            ),
            Some(
                "require_membership is on for this role (tenant.role_rules or ALTER ROLE ... SET)."
                    .into(),
            ),
            hint,
        )
    };
    if !is_member(tenant.id, user, token.role.as_deref()) {
        let with_role = token
            .role
            .as_deref()
            .map(|r| format!(" with role \"{r}\""))
            .unwrap_or_default();
        error::denied(
            format!(
                "user \"{user}\" is not a member of tenant \"{}\"{with_role}",
                tenant.slug
            ),
            Some(
                "require_membership is on for this role (tenant.role_rules or ALTER ROLE ... SET)."
                    .into(),
            ),
            hint,
        );
    }
}

/// Sets (or clears) the identity that goes with a context just set, with the same scope.
fn apply_identity(tenant: i64, session: Oid, local: bool, token: Option<&Token>) {
    let (user, role) = token
        .map(|t| (t.user.as_deref(), t.role.as_deref()))
        .unwrap_or((None, None));
    if user.is_none() && role.is_none() && settings::with_identity(|i| i.is_none()) {
        return; // nothing to clear: the plain setters stay as cheap as before
    }
    let value = settings::render_identity(
        settings::TenantSetting {
            id: tenant,
            owner: session.to_u32(),
            local,
        },
        user,
        role,
    );
    settings::apply(settings::IDENTITY, &value, local);
}

/// Authorises, then sets the context. Every refusal that depends on who the caller is comes
/// before the tenant is looked up, so a role that may not enter a tenant learns nothing about
/// which tenants exist (the same 42501 for an existing and an unknown tenant).
fn enter(target: Target, is_local: Option<bool>) -> i64 {
    crate::migrate::refuse_in_step(); // migrate_all hook (issue 11)
    let local = require_local_flag(is_local);
    let caller = privilege::caller();
    privilege::require_role_of(caller, TENANT_USER, "set the tenant context");
    let session = session_user();
    let rules = effective_rules(caller);
    let superuser = unsafe { pg_sys::superuser_arg(caller) };
    let local = local || rules.transaction_scope;
    let lookup = |target: &Target| -> Option<Tenant> {
        match target {
            Target::Id(id) => tenant_by_id(*id),
            Target::Text(Some(text)) => resolve(text),
            Target::Text(None) => None,
            Target::Token(Token {
                tenant: TokenTenant::Id(id),
                ..
            }) => tenant_by_id(*id),
            Target::Token(Token {
                tenant: TokenTenant::Text(text),
                ..
            }) => resolve(text),
        }
    };
    let token = match &target {
        Target::Token(t) => Some(t),
        Target::Text(_) | Target::Id(_) => None,
    };
    // Role folding: whether this call changes the tenant role of a context that was set (which
    // the end of the transaction or a rollback can bring back), from the settings as they are.
    let role_after = token.and_then(|t| t.role.as_deref());
    let role_revertible = (settings::tenant_id_setting() != 0
        || session_rules(session).binding.is_some())
        && settings::with_identity(|i| i.and_then(|i| i.role.as_deref()) != role_after);
    if let (Some(bound), _) = session_binding(session) {
        if let Target::Text(None) = target {
            bound_elsewhere(bound);
        }
        match lookup(&target) {
            Some(t) if t.id == bound && t.active => {
                if let Some(token) = token {
                    require_member(&rules, superuser, &t, token);
                }
                apply_identity(bound, session, local, token);
                role_entered(role_revertible, role_after);
                publish_node_context(local.then_some(bound)); // Citus (src/citus.rs)
                return bound;
            }
            Some(t) if t.id == bound => suspended(&t.slug),
            _ => bound_elsewhere(bound),
        }
    }
    if token.is_none() && !superuser {
        if rules.require_signed {
            error::denied(
                "this role may enter a tenant only with a signed context token".into(),
                Some(
                    "require_signed_context is on for this role (tenant.role_rules or ALTER ROLE ... SET)."
                        .into(),
                ),
                Some("Call tenant.set_tenant_signed() with a token from tenant.sign_context(), or tenant.set_tenant_jwt().".into()),
            );
        }
        if rules.require_membership {
            error::denied(
                "this role may enter a tenant only with a token naming one of its members".into(),
                Some(
                    "require_membership is on for this role (tenant.role_rules or ALTER ROLE ... SET)."
                        .into(),
                ),
                Some("Call tenant.set_tenant_jwt() or tenant.set_tenant_signed().".into()),
            );
        }
    }
    let tenant = match (&target, lookup(&target)) {
        (_, Some(t)) => t,
        (Target::Text(None), _) => error::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "tenant must not be NULL".into(),
            None,
            Some("Use tenant.clear_tenant() to leave the tenant context.".into()),
        ),
        (Target::Text(Some(text)), None) => error::invalid(
            format!("tenant \"{text}\" does not exist"),
            Some("Pass a slug, an id or a uuid from tenant.tenants.".into()),
        ),
        (Target::Id(id), None) => error::invalid(
            format!("tenant \"{id}\" does not exist"),
            Some("Pass a slug, an id or a uuid from tenant.tenants.".into()),
        ),
        (Target::Token(t), None) => error::denied(
            match &t.tenant {
                TokenTenant::Id(id) => {
                    format!("the {} names tenant {id}, which does not exist", t.kind)
                }
                TokenTenant::Text(text) => {
                    format!(
                        "the {} names tenant \"{text}\", which does not exist",
                        t.kind
                    )
                }
            },
            None,
            None,
        ),
    };
    if !tenant.active {
        suspended(&tenant.slug);
    }
    if let Some(token) = token {
        require_member(&rules, superuser, &tenant, token);
    }
    warn_if_pointless(local, "tenant context");
    route_search_path(tenant.schema.as_deref(), local);
    settings::apply(
        settings::TENANT_ID,
        &settings::render_tenant_setting(tenant.id, session.to_u32(), local),
        local,
    );
    apply_identity(tenant.id, session, local, token);
    role_entered(role_revertible, role_after);
    LAST_ACTIVE.0.set((tenant.id, GENERATION.0.get()));
    publish_node_context(local.then_some(tenant.id)); // Citus (src/citus.rs)
    if !local {
        crate::citus::warn_session_scope();
    }
    tenant.id
}

/// The local part of the context as a Citus coordinator's workers must see it (src/citus.rs):
/// `tenant` when the tenant context is transaction-local, and cross-tenant mode when it was
/// entered for the transaction.
fn publish_node_context(tenant: Option<i64>) {
    let cross = settings::cross_tenant_entry() == Some(true) && cross_tenant_entered_here();
    crate::citus::publish(tenant, cross);
}

/// The tenant of a transaction-local context, if that is what is in force.
fn local_tenant() -> Option<i64> {
    let s = settings::tenant_setting();
    if s.local && s.id != 0 {
        current_tenant_id()
    } else {
        None
    }
}

#[pg_extern(schema = "tenant", name = "set_tenant", volatile, parallel_unsafe)]
fn set_tenant_text(tenant: Option<&str>, is_local: default!(Option<bool>, false)) -> i64 {
    enter(Target::Text(tenant), is_local)
}

#[pg_extern(schema = "tenant", name = "set_tenant", volatile, parallel_unsafe)]
fn set_tenant_id(tenant: Option<i64>, is_local: default!(Option<bool>, false)) -> i64 {
    if let Some(id) = tenant.filter(|&t| t <= 0) {
        // Malformed whatever the caller may do; checked after the caller's rights, like the rest.
        let caller = privilege::caller();
        privilege::require_role_of(caller, TENANT_USER, "set the tenant context");
        if let Some(bound) = binding_of(session_user()) {
            bound_elsewhere(bound);
        }
        error::invalid(
            format!("tenant id {id} is not valid"),
            Some("Tenant ids are positive.".into()),
        );
    }
    match tenant {
        Some(id) => enter(Target::Id(id), is_local),
        None => enter(Target::Text(None), is_local),
    }
}

/// Enters the tenant a verified token names (signed.rs and jwt.rs verify it first).
pub fn enter_token(token: Token, is_local: Option<bool>) -> i64 {
    enter(Target::Token(token), is_local)
}

#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn clear_tenant() {
    crate::migrate::refuse_in_step(); // migrate_all hook (issue 11)
    if let Some(bound) = binding_of(session_user()) {
        bound_elsewhere(bound);
    }
    let local = effective_rules(privilege::caller()).transaction_scope;
    route_search_path(None, local);
    settings::apply(settings::TENANT_ID, "", local);
    if settings::with_identity(|i| i.is_some()) {
        settings::apply(settings::IDENTITY, "", local);
    }
    publish_node_context(None);
}

/// The id of the current tenant, NULL when none (or when that tenant was suspended or dropped).
/// STABLE and PARALLEL SAFE: it sits in every isolation policy. A bound session's tenant comes
/// from the registry; anyone else's from the setting, and only if the session user that set it
/// is still the session user.
#[pg_extern(schema = "tenant", stable, parallel_safe)]
pub fn current_tenant_id() -> Option<i64> {
    // migrate_all hook (issue 11): a migration step's context is its schema's tenant, fixed.
    if let Some(step) = crate::migrate::step_tenant() {
        return step;
    }
    // Citus (src/citus.rs): a worker's context is the node context the coordinator sent; a
    // coordinator's counts only while the node context agrees with it, so every placement of a
    // table (also a reference table's replicas) sees the same tenant, and a session-scope
    // context, which no worker gets, is no context anywhere.
    let citus = crate::citus::node();
    if citus == crate::citus::Node::Worker {
        return crate::citus::node_tenant();
    }
    let session = session_user();
    let rules = session_rules(session);
    let id = match rules.binding {
        Some(bound) => bound,
        None => {
            let setting = settings::tenant_setting();
            if setting.id == 0
                || (setting.owner != 0 && setting.owner != session.to_u32())
                || (rules.transaction_scope && !setting.local && setting.owner != 0)
            {
                crate::backup::reading_without_context();
                return None;
            }
            setting.id
        }
    };
    if citus == crate::citus::Node::Coordinator && crate::citus::node_tenant() != Some(id) {
        return None;
    }
    if LAST_ACTIVE.0.get() == (id, GENERATION.0.get()) {
        return Some(id);
    }
    let generation = GENERATION.0.get();
    match tenant_by_id(id) {
        Some(t) if t.active => {
            LAST_ACTIVE.0.set((id, generation));
            Some(id)
        }
        _ => None,
    }
}

/// The slug of the current tenant, NULL when none.
#[pg_extern(schema = "tenant", stable, parallel_safe)]
fn current_tenant() -> Option<String> {
    current_tenant_id()
        .and_then(tenant_by_id)
        .map(|t| t.slug.clone())
}

/// The uuid of the current tenant, NULL when none. STABLE and PARALLEL SAFE, no query once the
/// tenant is cached: it will sit in policies of uuid-keyed tables.
#[pg_extern(schema = "tenant", stable, parallel_safe)]
pub(crate) fn current_tenant_uuid() -> Option<pgrx::datum::Uuid> {
    let id = current_tenant_id()?;
    let generation = GENERATION.0.get();
    let (last, at, uuid) = LAST_UUID.0.get();
    if last == id && at == generation {
        return Some(pgrx::datum::Uuid::from_bytes(uuid));
    }
    let row = tenant_by_id(id)?;
    LAST_UUID.0.set((id, generation, row.uuid));
    Some(pgrx::datum::Uuid::from_bytes(row.uuid))
}

/// `f` of the identity in force: the one set with the current context (same tenant, same session
/// user, a scope the role's rules allow); None otherwise.
fn with_identity_in_force<R>(f: impl FnOnce(&settings::IdentitySetting) -> Option<R>) -> Option<R> {
    settings::with_identity(|i| i.is_some()).then_some(())?;
    identity_in_force_for(current_tenant_id()?, f)
}

/// As `with_identity_in_force`, `tenant` being the current tenant (already looked up).
fn identity_in_force_for<R>(
    tenant: i64,
    f: impl FnOnce(&settings::IdentitySetting) -> Option<R>,
) -> Option<R> {
    let (id, owner, local) =
        settings::with_identity(|i| i.map(|i| (i.tenant.id, i.tenant.owner, i.tenant.local)))?;
    let session = session_user();
    if id != tenant
        || owner != session.to_u32()
        || (session_rules(session).transaction_scope && !local)
    {
        return None;
    }
    settings::with_identity(|i| i.and_then(f))
}

/// The end user the context was entered for (a JWT's `sub`, a signed token's user), NULL when
/// the context carries none. STABLE, PARALLEL SAFE, no query on the hot path.
#[pg_extern(schema = "tenant", stable, parallel_safe)]
pub fn current_user_id() -> Option<String> {
    with_identity_in_force(|i| i.user.clone())
}

/// The tenant role the context carries, NULL when none.
#[pg_extern(schema = "tenant", stable, parallel_safe)]
pub fn current_tenant_role() -> Option<String> {
    with_identity_in_force(|i| i.role.clone())
}

/// Whether the audited cross-tenant mode is on: entered by this very session (not inherited
/// from a role default, a startup option or another session user), and not by a bound role
/// whose binding does not allow it. Policies OR it into the tenant check; the permissive policy
/// that uses it applies only to tenant_superuser.
#[pg_extern(schema = "tenant", stable, parallel_safe)]
pub(crate) fn cross_tenant_active() -> bool {
    // Citus (src/citus.rs): as for the tenant, the node context decides on a worker and must
    // agree on a coordinator.
    let citus = crate::citus::node();
    if citus == crate::citus::Node::Worker {
        return crate::citus::node_cross_tenant();
    }
    if citus == crate::citus::Node::Coordinator && !crate::citus::node_cross_tenant() {
        return false;
    }
    cross_tenant_entered_here()
}

/// Cross-tenant mode as this node's own settings say (without Citus's node context).
fn cross_tenant_entered_here() -> bool {
    let Some(local) = settings::cross_tenant_entry() else {
        return false;
    };
    let rules = session_rules(session_user());
    if rules.transaction_scope && !local {
        return false; // entered for the session before the rule said transaction
    }
    rules.binding.is_none() || rules.allow_cross_tenant
}

/// Planner support for `cross_tenant_active()` (`ALTER FUNCTION ... SUPPORT`, sql/isolation.sql):
/// while this backend holds no cross-tenant entry at all, a call is folded to `false` at plan time,
/// so `match OR cross_tenant_active()` becomes `match` and merges with the permissive equality (one
/// index condition, no Filter), and a tenant_superuser member's permissive
/// `cross_tenant_active()` policy no longer ORs the index condition away. Whenever the cross-tenant
/// setting changes value (entering, leaving, a ROLLBACK restoring an entry), its assign hook resets
/// this backend's plan cache (`settings::assign_cross_tenant`), so a plan folded outside the mode is
/// re-planned before it runs again. The fold only ever says `false`: a plan that escaped the reset
/// (a cursor opened before entering) can only show fewer rows, never more. With an entry present
/// (valid or void) nothing is folded and the call is evaluated per execution as before.
#[pg_extern(
    schema = "tenant",
    name = "_cross_tenant_support",
    immutable,
    parallel_safe
)]
fn cross_tenant_support(request: pgrx::datum::Internal) -> pgrx::datum::Internal {
    let node = support_request(request);
    // SAFETY: the planner passes a support request node; only its tag is read.
    let simplify =
        !node.is_null() && unsafe { (*node).type_ } == pg_sys::NodeTag::T_SupportRequestSimplify;
    // Where Citus is loaded, a worker folds while its verified node context is not in
    // cross-tenant mode, and a coordinator never (src/citus.rs, `fold_cross_tenant`).
    let fold = if crate::citus::loaded() {
        simplify && crate::citus::fold_cross_tenant()
    } else {
        simplify && !settings::cross_tenant_value_present()
    };
    let folded = if fold {
        unsafe { pg_sys::makeBoolConst(false, false) }
    } else {
        std::ptr::null_mut()
    };
    support_answer(folded)
}

/// The simplification request of a planner call that may fold a getter: one with a query
/// (`root`; not expression_planner, whose results PostgreSQL keeps outside the plan cache), where
/// Citus is not loaded (a worker's context is the node context) and outside a migration step.
fn foldable_request(request: *mut pg_sys::Node) -> Option<*mut pg_sys::SupportRequestSimplify> {
    // SAFETY: the planner passes a support request node; its tag says which.
    if request.is_null() || unsafe { (*request).type_ } != pg_sys::NodeTag::T_SupportRequestSimplify
    {
        return None;
    }
    let req = request.cast::<pg_sys::SupportRequestSimplify>();
    if unsafe { (*req).root }.is_null()
        || crate::citus::loaded()
        || crate::migrate::step_tenant().is_some()
    {
        return None;
    }
    Some(req)
}

/// The tenant a plan may take as a constant for `current_tenant_id()`: Some(current value) only
/// for a session whose tenant cannot change without a registry change, i.e. a session user bound
/// by `tenant.role_bindings` that is the login role itself and no superuser (so `SET SESSION
/// AUTHORIZATION` cannot make another role the session user), outside a migration step and where
/// Citus is not loaded (a worker's tenant is the node context). Every registry change then resets
/// the backend's plan cache (`relcache_changed`), so suspension, unbinding and rebinding reach
/// prepared statements, generic plans and PL/pgSQL plans from their next execution. Folding is
/// refused when the planner has no query (`root` NULL: expression_planner, whose results
/// PostgreSQL keeps outside the plan cache, e.g. domain constraints in the type cache).
fn bound_fold(request: *mut pg_sys::Node) -> Option<Option<i64>> {
    foldable_request(request)?;
    let session = session_user();
    let login = unsafe { pg_sys::GetAuthenticatedUserId() };
    if session != login || unsafe { pg_sys::superuser_arg(login) } {
        return None;
    }
    session_rules(session).binding?;
    // Before the value is read: an invalidation that arrives while it is looked up resets the
    // plan being made too.
    FOLDED.0.set(true);
    Some(current_tenant_id())
}

fn support_answer(node: *mut pg_sys::Node) -> pgrx::datum::Internal {
    // A support function answers with a pointer, NULL meaning "no simplification" (never SQL NULL).
    pgrx::datum::Internal::from(Some(pg_sys::Datum::from(node)))
}

fn support_request(request: pgrx::datum::Internal) -> *mut pg_sys::Node {
    request
        .unwrap()
        .map(|d| d.cast_mut_ptr::<pg_sys::Node>())
        .unwrap_or(std::ptr::null_mut())
}

/// Planner support for `current_tenant_id()` (sql/isolation.sql): a bound session's tenant is
/// folded to a constant (`bound_fold`), so its policies cost what a hand-written `tenant_id = 5`
/// costs; a suspended or unknown tenant folds to NULL (no row).
#[pg_extern(
    schema = "tenant",
    name = "_current_tenant_support",
    immutable,
    parallel_safe
)]
fn current_tenant_support(request: pgrx::datum::Internal) -> pgrx::datum::Internal {
    let request = support_request(request);
    if let Some(role) = role_keyed_getter(request) {
        return support_answer(role_keyed_call(RoleKeyed::Id, &role));
    }
    support_answer(match bound_fold(request) {
        Some(id) => folded_const(pg_sys::INT8OID, 8, true, id.map(pg_sys::Datum::from)),
        None => std::ptr::null_mut(),
    })
}

/// A constant of type `typ` (`len` bytes, by value or not) holding `value`, or NULL of that type.
fn folded_const(
    typ: Oid,
    len: i32,
    byval: bool,
    value: Option<pg_sys::Datum>,
) -> *mut pg_sys::Node {
    // SAFETY: plain node constructors in the planner's memory context.
    unsafe {
        match value {
            Some(v) => pg_sys::makeConst(typ, -1, pg_sys::InvalidOid, len, v, false, byval).cast(),
            None => pg_sys::makeNullConst(typ, -1, pg_sys::InvalidOid).cast(),
        }
    }
}

/// Planner support for `current_tenant_uuid()`: as `current_tenant_support`, the bound tenant's
/// uuid as a constant.
#[pg_extern(
    schema = "tenant",
    name = "_current_tenant_uuid_support",
    immutable,
    parallel_safe
)]
fn current_tenant_uuid_support(request: pgrx::datum::Internal) -> pgrx::datum::Internal {
    let request = support_request(request);
    if let Some(role) = role_keyed_getter(request) {
        return support_answer(role_keyed_call(RoleKeyed::Uuid, &role));
    }
    support_answer(match bound_fold(request) {
        Some(id) => {
            let uuid = id.and(current_tenant_uuid()).map(|uuid| unsafe {
                // A uuid is passed by reference: 16 bytes in the planner's memory context.
                let bytes = pg_sys::palloc(16).cast::<u8>();
                std::ptr::copy_nonoverlapping(uuid.as_bytes().as_ptr(), bytes, 16);
                pg_sys::Datum::from(bytes)
            });
            folded_const(pg_sys::UUIDOID, 16, false, uuid)
        }
        None => std::ptr::null_mut(),
    })
}

// ---------------------------------------------------------------------------------------------
// Folding the tenant role (issue 15). A role limit's policy calls `tenant._tenant_role_in(roles)`;
// at plan time its support function folds the call to the constant answer for the tenant role in
// force, so a limited point select costs what the same select costs without the limit (no Filter,
// no call per execution). A plan folded to `true` must never serve another role: in the same
// plan, the tenant getters (`current_tenant_id()`, `current_tenant_uuid()`, in the table's
// isolation or pin policies, which every role-limited table that gets the foldable form has) are
// rewritten to `tenant._current_tenant_id_as('<role>')` / `_current_tenant_uuid_as('<role>')`,
// which return the tenant only while that role is the one in force, NULL (no row, no write)
// otherwise. The rewritten getter is the one both the permissive and the restrictive policy use,
// so they still merge into one index condition. So a plan that outlives the role it was made for
// can only hide rows; and to keep it from even hiding them, the backend's plan cache is reset
// when the role in force changes (`role_entered`, `identity_assigned`, the end of a transaction
// that changed a context's role), and not when a transaction enters the same role again (the
// common case: one JWT role, a new transaction-local context per request).
// ---------------------------------------------------------------------------------------------

/// The tenant role (Some(None): none) that the plans this backend made since its last reset
/// assumed, if any plan folded or rewrote for one.
static FOLD_ROLE: Backend<RefCell<Option<Option<String>>>> = Backend(RefCell::new(None));
/// A setter changed the role of a context that was in force: at the end of the (sub)transaction
/// the role may revert to what the plans made meanwhile did not assume.
static RESET_AT_END: Backend<Cell<bool>> = Backend(Cell::new(false));
static RESET_AT_SUBABORT: Backend<Cell<bool>> = Backend(Cell::new(false));

/// Makes every cached plan of this backend re-plan before its next run (flags only: safe in an
/// assign hook and a transaction callback).
fn forget_role_plans() {
    if FOLD_ROLE.0.borrow_mut().take().is_some() {
        unsafe { pg_sys::ResetPlanCache() };
    }
}

/// The tenant role in force (None: no tenant or no role).
fn role_in_force() -> Option<String> {
    identity_in_force_for(current_tenant_id()?, |i| i.role.clone())
}

/// A setter has just made `after` the role in force; `revertible`: it changed the role of a
/// context that was set, which a rollback or the end of the transaction can bring back.
fn role_entered(revertible: bool, after: Option<&str>) {
    let stale = matches!(&*FOLD_ROLE.0.borrow(), Some(r) if r.as_deref() != after);
    if stale {
        forget_role_plans();
    }
    if revertible {
        RESET_AT_END.0.set(true);
        if unsafe { pg_sys::GetCurrentTransactionNestLevel() } > 1 {
            RESET_AT_SUBABORT.0.set(true);
        }
    }
}

/// From the identity setting's assign hook (a value restored by a rollback or at the end of a
/// transaction, RESET): a role other than the plans' makes them re-plan. A restored "no role" is
/// left to `role_entered` and the transaction callbacks, so the end of every transaction-local
/// context does not reset the plan cache; a plan that meets it meanwhile returns no row.
pub fn identity_assigned(role: Option<&str>) {
    if role.is_none() {
        return;
    }
    let stale = matches!(&*FOLD_ROLE.0.borrow(), Some(r) if r.as_deref() != role);
    if stale {
        forget_role_plans();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn role_xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
    ) {
        RESET_AT_SUBABORT.0.set(false);
        if RESET_AT_END.0.replace(false) {
            forget_role_plans();
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn role_subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    _my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB && RESET_AT_SUBABORT.0.get() {
        forget_role_plans();
    }
}

/// The role in force, when this planner call may fold for it (`foldable_request`) and the plans
/// made since the last reset assumed this role or none (otherwise nothing is folded until
/// the next reset: the call is evaluated per execution, as without folding).
fn role_fold(request: *mut pg_sys::Node) -> Option<Option<String>> {
    foldable_request(request)?;
    let role = role_in_force();
    let mut folded = FOLD_ROLE.0.borrow_mut();
    match &*folded {
        None => *folded = Some(role.clone()),
        Some(r) if *r == role => {}
        Some(_) => return None,
    }
    Some(role)
}

/// For the tenant getters' support functions: the role their call is rewritten for, if any.
fn role_keyed_getter(request: *mut pg_sys::Node) -> Option<String> {
    if !settings::with_identity(|i| i.is_some_and(|i| i.role.is_some())) {
        return None; // no role anywhere: nothing to key (and the bound fold stays possible)
    }
    role_fold(request).flatten()
}

#[derive(Clone, Copy)]
enum RoleKeyed {
    Id,
    Uuid,
}

/// The OIDs of `_current_tenant_id_as(text)` and `_current_tenant_uuid_as(text)`, with the
/// registry generation they were looked up in (dropping the extension changes it).
static KEYED_OIDS: Backend<Cell<(u64, Oid, Oid)>> =
    Backend(Cell::new((0, pg_sys::InvalidOid, pg_sys::InvalidOid)));

fn keyed_oid(kind: RoleKeyed) -> Oid {
    let generation = GENERATION.0.get();
    let (at, id, uuid) = KEYED_OIDS.0.get();
    let (id, uuid) = if at == generation && id != pg_sys::InvalidOid {
        (id, uuid)
    } else {
        let lookup = |signature: &std::ffi::CStr| unsafe {
            pgrx::direct_function_call::<Oid>(
                pg_sys::regprocedurein,
                &[Some(pg_sys::Datum::from(signature.as_ptr()))],
            )
            .unwrap_or(pg_sys::InvalidOid)
        };
        let found = (
            // The argument type qualified: the caller's search_path may name another `text`.
            lookup(c"tenant._current_tenant_id_as(pg_catalog.text)"),
            lookup(c"tenant._current_tenant_uuid_as(pg_catalog.text)"),
        );
        KEYED_OIDS.0.set((generation, found.0, found.1));
        found
    };
    match kind {
        RoleKeyed::Id => id,
        RoleKeyed::Uuid => uuid,
    }
}

/// `tenant._current_tenant_id_as('<role>')` (or the uuid one) as a planner node.
fn role_keyed_call(kind: RoleKeyed, role: &str) -> *mut pg_sys::Node {
    let result = match kind {
        RoleKeyed::Id => pg_sys::INT8OID,
        RoleKeyed::Uuid => pg_sys::UUIDOID,
    };
    let oid = keyed_oid(kind);
    // SAFETY: plain node constructors in the planner's memory context.
    unsafe {
        let text = pg_sys::cstring_to_text_with_len(role.as_ptr().cast(), role.len() as i32);
        let arg = pg_sys::makeConst(
            pg_sys::TEXTOID,
            -1,
            pg_sys::DEFAULT_COLLATION_OID,
            -1,
            pg_sys::Datum::from(text),
            false,
            false,
        );
        let args = pg_sys::lappend(std::ptr::null_mut(), arg.cast());
        pg_sys::makeFuncExpr(
            oid,
            result,
            args,
            pg_sys::InvalidOid,
            pg_sys::DEFAULT_COLLATION_OID,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
        .cast()
    }
}

/// The current tenant while `role` is the tenant role in force, NULL otherwise: what a plan
/// folded for `role` calls instead of `current_tenant_id()` (see above).
#[pg_extern(
    schema = "tenant",
    name = "_current_tenant_id_as",
    stable,
    parallel_safe
)]
fn current_tenant_id_as(role: &str) -> Option<i64> {
    let id = current_tenant_id()?;
    identity_in_force_for(id, |i| (i.role.as_deref() == Some(role)).then_some(id))
}

/// As `_current_tenant_id_as`, the current tenant's uuid.
#[pg_extern(
    schema = "tenant",
    name = "_current_tenant_uuid_as",
    stable,
    parallel_safe
)]
fn current_tenant_uuid_as(role: &str) -> Option<pgrx::datum::Uuid> {
    current_tenant_id_as(role)?;
    current_tenant_uuid()
}

/// Whether the tenant role in force is one of `roles` (no role: false). The policy of a role
/// limit; folded at plan time (`_tenant_role_in_support`).
#[pg_extern(schema = "tenant", name = "_tenant_role_in", stable, parallel_safe)]
fn tenant_role_in(roles: pgrx::datum::Array<&str>) -> bool {
    role_listed(current_tenant_role().as_deref(), roles)
}

fn role_listed(role: Option<&str>, roles: pgrx::datum::Array<&str>) -> bool {
    role.is_some_and(|r| roles.iter().any(|x| x == Some(r)))
}

/// Planner support for `_tenant_role_in(roles)`: a constant roles array is answered at plan time
/// for the role in force (`role_fold`), and the plan's tenant getters are keyed to that role
/// (`current_tenant_support`).
#[pg_extern(
    schema = "tenant",
    name = "_tenant_role_in_support",
    immutable,
    parallel_safe
)]
fn tenant_role_in_support(request: pgrx::datum::Internal) -> pgrx::datum::Internal {
    let request = support_request(request);
    let roles = roles_arg(request);
    let folded = match roles {
        Some(roles) => match role_fold(request) {
            Some(role) => unsafe {
                pg_sys::makeBoolConst(role_listed(role.as_deref(), roles), false)
            },
            None => std::ptr::null_mut(),
        },
        None => std::ptr::null_mut(),
    };
    support_answer(folded)
}

/// The constant, non-NULL text array a simplification request's call passes, if it does.
fn roles_arg<'a>(request: *mut pg_sys::Node) -> Option<pgrx::datum::Array<'a, &'a str>> {
    use pgrx::datum::FromDatum;
    let req = foldable_request(request)?;
    // SAFETY: a simplification request carries the FuncExpr being simplified.
    unsafe {
        let call = (*req).fcall;
        if call.is_null() || (*call).args.is_null() || (*(*call).args).length != 1 {
            return None;
        }
        let arg = pg_sys::list_nth((*call).args, 0).cast::<pg_sys::Node>();
        if arg.is_null() || (*arg).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let c = arg.cast::<pg_sys::Const>();
        if (*c).constisnull || (*c).consttype != pg_sys::TEXTARRAYOID {
            return None;
        }
        pgrx::datum::Array::<&str>::from_polymorphic_datum(
            (*c).constvalue,
            false,
            pg_sys::TEXTARRAYOID,
        )
    }
}

fn audit(action: &str, reason: Option<&str>) {
    let tenant = current_tenant_id();
    privilege::as_owner(|| {
        Spi::run_with_args(
            "SELECT tenant._audit($1, NULL, $2, pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('reason', $3::text)))",
            &[action.into(), tenant.into(), reason.into()],
        )
    })
    .unwrap_or_else(|e| error::raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("audit failed: {e}"), None, None));
}

/// Enters cross-tenant mode. The Rust name is 0.1.0's (`enter_cross_tenant_wrapper` is the
/// symbol its install script binds), the signature is 0.2.0's.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn enter_cross_tenant(reason: Option<&str>, is_local: default!(Option<bool>, false)) {
    let local = require_local_flag(is_local);
    crate::migrate::refuse_in_step(); // migrate_all hook (issue 11)
    let caller = privilege::caller();
    privilege::require_role_of(caller, TENANT_SUPERUSER, "enter cross-tenant mode");
    let session = session_user();
    if let (Some(bound), false) = session_binding(session) {
        let t = tenant_by_id(bound)
            .map(|t| t.slug.clone())
            .unwrap_or_else(|| bound.to_string());
        error::denied(
            format!(
                "role \"{}\" is bound to tenant \"{t}\" and may not enter cross-tenant mode",
                privilege::role_name(session)
            ),
            None,
            Some(
                "A superuser can allow it: tenant.bind_role(role, tenant, allow_cross_tenant => true)."
                    .into(),
            ),
        );
    }
    let reason = reason.map(str::trim).unwrap_or("");
    if reason.is_empty() {
        error::invalid(
            "a reason is required to enter cross-tenant mode".into(),
            Some("Say why, e.g. tenant.enter_cross_tenant('support ticket 1234').".into()),
        );
    }
    let local = local || effective_rules(caller).transaction_scope;
    warn_if_pointless(local, "cross-tenant mode");
    settings::apply(
        settings::CROSS_TENANT,
        &settings::render_cross_tenant(
            settings::SessionKey {
                local,
                ..settings::this_session()
            },
            reason,
        ),
        local,
    );
    audit("cross_tenant_entered", Some(reason));
    publish_node_context(local_tenant());
    // The server log keeps it even if the transaction rolls back.
    pgrx::log!(
        "qualityfoundry_tenant: cross-tenant mode entered by role \"{}\" (session user \"{}\", {}): {}",
        privilege::role_name(caller),
        privilege::role_name(session),
        if local { "until the end of the transaction" } else { "for the session" },
        reason
    );
}

#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn exit_cross_tenant() {
    crate::migrate::refuse_in_step(); // migrate_all hook (issue 11)
    let caller = privilege::caller();
    privilege::require_role_of(caller, TENANT_SUPERUSER, "leave cross-tenant mode");
    if !settings::cross_tenant_entered() {
        return;
    }
    settings::apply(settings::CROSS_TENANT, "", false);
    audit("cross_tenant_left", None);
    publish_node_context(local_tenant());
    pgrx::log!(
        "qualityfoundry_tenant: cross-tenant mode left by role \"{}\" (session user \"{}\")",
        privilege::role_name(caller),
        privilege::role_name(session_user())
    );
}

/// Schema mode: the tenant's schema goes first in `search_path`, ahead of the session's default
/// path; leaving a schema tenant restores that default. Same scope as the context.
fn route_search_path(schema: Option<&str>, local: bool) {
    if schema.is_none() {
        // Shared-table mode: nothing to route unless the tenant being left had a schema (no
        // string is built or copied on this path: the setters' hot path).
        let previous = settings::tenant_id_setting();
        if previous == 0 || tenant_by_id(previous).is_none_or(|t| t.schema.is_none()) {
            return;
        }
    }
    let default_path = unsafe {
        let p = pg_sys::GetConfigOptionResetString(c"search_path".as_ptr());
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    let path = match schema {
        Some(s) if default_path.is_empty() => pgrx::spi::quote_identifier(s),
        Some(s) => format!("{}, {default_path}", pgrx::spi::quote_identifier(s)),
        None => default_path,
    };
    settings::apply(c"search_path", &path, local);
}

/// Called by the registry triggers: makes every backend drop its cached registry at commit.
#[pg_extern(
    schema = "tenant",
    name = "_registry_changed",
    volatile,
    parallel_unsafe
)]
fn registry_changed() {
    let relid = Spi::connect(|c| {
        c.select(
            "SELECT 'tenant.tenants'::pg_catalog.regclass::pg_catalog.oid",
            Some(1),
            &[],
        )?
        .first()
        .get_one::<Oid>()
    });
    if let Ok(Some(relid)) = relid {
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    }
}

/// For the SQL (SECURITY DEFINER) functions: raises 42501 unless the outer caller is a superuser.
#[pg_extern(
    schema = "tenant",
    name = "_require_superuser",
    volatile,
    parallel_unsafe
)]
fn require_superuser_sql(action: &str) {
    let caller = privilege::outer_caller();
    if !unsafe { pg_sys::superuser_arg(caller) } {
        error::denied(
            format!("permission denied to {action}"),
            Some(format!(
                "Only a superuser may; role \"{}\" is not one.",
                privilege::role_name(caller)
            )),
            None,
        );
    }
}
