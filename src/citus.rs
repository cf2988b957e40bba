//! The tenant context on a Citus cluster.
//!
//! Citus runs each shard's copy of an isolation policy on the worker that holds the shard, in a
//! backend Citus opened as the querying role. The context setting (superuser-only, set from C by
//! the authorising setters) never reaches that backend: Citus propagates only `SET LOCAL`
//! *statements*, and a propagated `SET LOCAL` of a superuser-only setting is refused on the
//! application's worker connection. And an application role can run SQL on every worker
//! (`run_command_on_*` is executable by PUBLIC, a worker's port may be reachable), so a worker
//! must be able to tell by itself whether a context is genuine.
//!
//! So, on a Citus coordinator, a transaction-local context entered through the sanctioned setters
//! (`set_tenant(t, is_local => true)` and its signed, JWT and bound variants;
//! `enter_cross_tenant(reason, is_local => true)`) also gets a *node context*: a short-lived token
//! minted here, `n1.<tenant id>.<expires at>.<flags>.<role, hex>.<HMAC-SHA256>`, stored in the
//! user-settable setting `qualityfoundry_tenant.node_context` with a `SET LOCAL` statement run
//! through ProcessUtility while `citus.propagate_set_commands = 'local'`, which Citus then sends to every
//! worker connection of the transaction (and after every later remote BEGIN). The key is the
//! cluster's node key (`tenant.node_keys`, identical on every node through
//! `tenant.citus_sync_keys()`, readable by no role but the extension owner). Every node that is a
//! Citus worker (its local group is not 0) honours a node context whose MAC verifies, that has not
//! expired and that names the worker backend's session user: a value the application can set but
//! cannot compute. Anywhere else (the coordinator, a node without Citus) the setting is ignored,
//! so single-node behaviour is unchanged and the coordinator's own rules (bindings, scope rules,
//! suspension) are never bypassed. The per-row check on a worker is one comparison of the
//! setting's assignment counter with the last verified one, plus the expiry.
//!
//! A session-scope context gets no node context: on distributed tables it fails closed (zero
//! rows, writes refused by the shards' WITH CHECK).
//!
//! `<flags>`: 1 cross-tenant mode; 2 the tenant was write-limited by its storage quota (and the
//! role not exempt) when the token was minted, so the workers refuse its INSERT and UPDATE of
//! isolated shards (src/quota.rs), also when it is replayed there directly.
//!
//! A token minted while rate limits exist, for a tenant and a role they apply to, has one more
//! part before the MAC, `<rates>` (`RateClaims`): the tenant's slug and, per rate-limited table,
//! its name and the tenant's limit there, so the node holding the tenant's rows counts its inserts
//! (src/quota.rs). Without rate limits the token is as above.

use crate::error;
use crate::privilege;
use crate::signed::{now_unix, random_bytes};
use hmac::{Hmac, Mac};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;
use sha2::Sha256;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};

type HmacSha256 = Hmac<Sha256>;

pub const NODE_CONTEXT: &CStr = c"qualityfoundry_tenant.node_context";
const FLAG_CROSS: u32 = 1;
/// The tenant was write-limited (over its storage quota, src/quota.rs) and the role not exempt
/// when the coordinator minted the token: a worker refuses INSERT and UPDATE of isolated shards
/// under it, so a write sent straight to a worker cannot pass the limit.
const FLAG_WRITE_LIMITED: u32 = 2;

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

static NODE_CONTEXT_SETTING: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static SCHEMA_OWNER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static NODE_CONTEXT_TTL: GucSetting<i32> = GucSetting::<i32>::new(300);
/// Bumped by the assign hook: a verification result is valid while this has not moved.
static ASSIGNED: Backend<Cell<u64>> = Backend(Cell::new(1));
static VERIFIED: Backend<Cell<(u64, Option<NodeClaims>)>> = Backend(Cell::new((0, None)));
/// This node's part in a Citus cluster, read once per backend once Citus is installed.
static ROLE: Backend<Cell<NodeRole>> = Backend(Cell::new(NodeRole::Unknown));
static LOADED: Backend<Cell<Option<bool>>> = Backend(Cell::new(None));
static INSTALLED: Backend<Cell<(u32, bool)>> = Backend(Cell::new((0, false)));
static IN_ROLE_CHECK: Backend<Cell<bool>> = Backend(Cell::new(false));
static IN_VERIFY: Backend<Cell<bool>> = Backend(Cell::new(false));
/// The node keys (id, secret), newest first, as this backend last read them.
type NodeKeys = Vec<(i32, Vec<u8>)>;
static KEYS: Backend<RefCell<Option<NodeKeys>>> = Backend(RefCell::new(None));

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NodeRole {
    Unknown,
    /// No Citus in this database, or Citus without metadata saying it is a worker.
    Coordinator,
    Worker,
}

/// What a verified node context says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NodeClaims {
    pub tenant: i64,
    pub expires_at: i64,
    pub cross: bool,
    pub write_limited: bool,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_node_context(newval: *const c_char, _extra: *mut c_void) {
    ASSIGNED.0.set(ASSIGNED.0.get().wrapping_add(1));
    let value = if newval.is_null() {
        ""
    } else {
        CStr::from_ptr(newval).to_str().unwrap_or("")
    };
    // What the token claims, unverified: parsed once for the three readers below.
    let claim = claims_of(value);
    let cross = claim.is_some_and(|(_, flags)| flags & FLAG_CROSS != 0);
    // Plans folded for another tenant re-plan.
    crate::routing::on_node_context(claim.map(|(tenant, _)| (tenant, cross)));
    if claim.is_some_and(|(_, flags)| flags & FLAG_WRITE_LIMITED != 0) {
        // Remembered for the transaction (src/quota.rs): a statement that assigns a token and
        // then writes, clearing it before it ends, is still refused at its end.
        WRITE_LIMIT_SEEN.0.set(Some(local_xid()));
    }
    if cross && CROSS_FOLDED.0.replace(false) {
        // Plans of this backend folded cross_tenant_active() to false (`fold_cross_tenant`)
        // re-plan before their next run, now that a node context claims cross-tenant mode.
        // Only flags are flipped, which is safe in an assign hook.
        pg_sys::ResetPlanCache();
    }
}

/// The local transaction in which a node context claiming a write-limit was assigned, if any.
static WRITE_LIMIT_SEEN: Backend<Cell<Option<u32>>> = Backend(Cell::new(None));

fn local_xid() -> u32 {
    #[cfg(feature = "pg15")]
    let lxid = unsafe { (*pg_sys::MyProc).lxid };
    #[cfg(feature = "pg18")]
    let lxid = unsafe { (*pg_sys::MyProc).vxid.lxid };
    lxid
}

/// Whether this transaction was ever given a node context that claims a write-limit (claimed,
/// not verified: a forged claim only limits the one who forged it). For the worker's write
/// check (src/quota.rs), so the write-limit cannot be escaped by clearing the token within the
/// writing statement.
pub fn write_limit_seen() -> bool {
    WRITE_LIMIT_SEEN.0.get() == Some(local_xid())
}

/// Whether a plan made by this backend may hold cross_tenant_active() folded to false.
static CROSS_FOLDED: Backend<Cell<bool>> = Backend(Cell::new(false));

/// For the planner support of `cross_tenant_active()` where Citus is loaded: on a worker, whose
/// cross-tenant mode is the verified node context's, a call may be folded to `false` while that
/// context is not in cross-tenant mode (so the shards' OR'ed copies of the policies reduce to the
/// one tenant match, which PostgreSQL then merges into an index condition). A plan folded so is
/// re-planned once a node context claims cross-tenant mode (`assign_node_context`), and a plan
/// that escaped that could only show fewer rows. Never on a coordinator (which runs no shard's
/// policy and whose mode also depends on its own settings).
pub fn fold_cross_tenant() -> bool {
    if node() != Node::Worker || node_cross_tenant() {
        return false;
    }
    CROSS_FOLDED.0.set(true);
    true
}

/// The oid of tenant.node_keys once this backend has read it (0 before).
static NODE_KEYS_RELID: Backend<Cell<u32>> = Backend(Cell::new(0));

/// Part of the library's one relcache callback (context.rs registers it: the slots are few).
pub fn relcache_changed(relid: pg_sys::Oid) {
    // The key functions invalidate tenant.node_keys's relcache entry on every node when they
    // change a key (a rotation, a retirement): forget the keys and what they verified. No
    // catalog access here.
    let citus = CITUS_METADATA_RELID.0.get();
    if relid == pg_sys::InvalidOid || relid.to_u32() == citus {
        CITUS_METADATA_RELID.0.set(0);
        INSTALLED.0.set((0, false));
    }
    let known = NODE_KEYS_RELID.0.get();
    if relid == pg_sys::InvalidOid || known == 0 || relid.to_u32() == known {
        if let Ok(mut keys) = KEYS.0.try_borrow_mut() {
            *keys = None;
        }
        VERIFIED.0.set((0, None));
    }
}

/// Tells every backend of this node's database that the node keys changed (at commit).
fn keys_changed() {
    let relid = unsafe {
        pg_sys::get_relname_relid(
            c"node_keys".as_ptr(),
            pg_sys::get_namespace_oid(c"tenant".as_ptr(), false),
        )
    };
    if relid != pg_sys::InvalidOid {
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    }
    *KEYS.0.borrow_mut() = None;
    VERIFIED.0.set((0, None));
}

/// Defined before settings::init() reserves the prefix.
pub fn init() {
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            NODE_CONTEXT,
            c"The tenant context as Citus carries it to workers (set by the extension's setters on a coordinator).",
            c"Honoured only on Citus workers, only with a valid HMAC from the cluster's node key, naming the session user, unexpired.",
            &NODE_CONTEXT_SETTING,
            GucContext::Userset,
            GucFlags::NO_SHOW_ALL,
            None,
            Some(assign_node_context),
            None,
        );
    }
    GucRegistry::define_string_guc(
        c"qualityfoundry_tenant.schema_owner",
        c"The role that owns tenant schemas and their objects (default tenant_admin).",
        c"On Citus: a login role Citus can connect as for shard moves, held by no application role.",
        &SCHEMA_OWNER,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"qualityfoundry_tenant.node_context_ttl",
        c"Seconds a node context minted on a Citus coordinator is honoured by the workers.",
        c"Transactions on distributed tables longer than this see nothing on the workers.",
        &NODE_CONTEXT_TTL,
        10,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
}

// ------------------------------------------------------------------------------------------
// The token (pure: tested without a backend)

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn payload(key_id: i32, claims: &NodeClaims, role: &str, rates: &str) -> String {
    let flags = if claims.cross { FLAG_CROSS } else { 0 }
        | if claims.write_limited {
            FLAG_WRITE_LIMITED
        } else {
            0
        };
    let base = format!(
        "n1.{key_id}.{}.{}.{flags}.{}",
        claims.tenant,
        claims.expires_at,
        hex(role.as_bytes())
    );
    if rates.is_empty() {
        base
    } else {
        format!("{base}.{rates}")
    }
}

/// What a node context says about rate limits: the tenant's slug (for the refusal's message) and
/// the tenant's limit per rate-limited table (`schema.table` as `format('%I.%I')` renders it;
/// None: counted, not limited).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RateClaims {
    pub slug: String,
    pub limits: Vec<(String, Option<i32>)>,
}

/// `<hex slug>;<hex table>,<limit or ->;...`: no dot (the token's separator), nothing to quote.
pub fn encode_rates(rates: &RateClaims) -> String {
    let mut out = hex(rates.slug.as_bytes());
    for (table, limit) in &rates.limits {
        out.push(';');
        out.push_str(&hex(table.as_bytes()));
        out.push(',');
        match limit {
            Some(n) => out.push_str(&n.to_string()),
            None => out.push('-'),
        }
    }
    out
}

pub fn decode_rates(text: &str) -> Option<RateClaims> {
    let mut parts = text.split(';');
    let slug = String::from_utf8(unhex(parts.next()?)?).ok()?;
    let mut limits = Vec::new();
    for entry in parts {
        let (table, limit) = entry.split_once(',')?;
        let table = String::from_utf8(unhex(table)?).ok()?;
        let limit = match limit {
            "-" => None,
            n => Some(n.parse::<i32>().ok().filter(|&n| n > 0)?),
        };
        limits.push((table, limit));
    }
    (!slug.is_empty() && !limits.is_empty()).then_some(RateClaims { slug, limits })
}

fn mac_of(key: &[u8], payload: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(b"qualityfoundry_tenant node context\0");
    mac.update(payload.as_bytes());
    mac
}

pub fn mint(key_id: i32, key: &[u8], claims: &NodeClaims, role: &str, rates: &str) -> String {
    let payload = payload(key_id, claims, role, rates);
    let tag = mac_of(key, &payload).finalize().into_bytes();
    format!("{payload}.{}", hex(&tag))
}

/// The key id a token names (to find its key), without trusting anything else.
pub fn key_id_of(token: &str) -> Option<i32> {
    let mut parts = token.split('.');
    (parts.next()? == "n1").then_some(())?;
    parts.next()?.parse().ok()
}

/// The tenant and the flags a token *claims*, unverified (None: not a node context): for plan
/// invalidation and the write-limit's transaction mark only.
fn claims_of(token: &str) -> Option<(i64, u32)> {
    let parts: Vec<&str> = token.split('.').collect();
    let ([version, _, tenant, _, flags, _, _] | [version, _, tenant, _, flags, _, _, _]) =
        parts.as_slice()
    else {
        return None;
    };
    (*version == "n1").then_some(())?;
    Some((tenant.parse().ok()?, flags.parse().ok()?))
}

/// Verifies a token for session user `role` at time `now` with `key`.
pub fn verify(token: &str, key: &[u8], role: &str, now: i64) -> Option<NodeClaims> {
    let parts: Vec<&str> = token.split('.').collect();
    let (version, key_id, tenant, expires, flags, role_hex, rates, tag) = match parts.as_slice() {
        [v, k, t, e, f, r, tag] => (v, k, t, e, f, r, "", tag),
        [v, k, t, e, f, r, rates, tag] => (v, k, t, e, f, r, *rates, tag),
        _ => return None,
    };
    if *version != "n1" || (!rates.is_empty() && decode_rates(rates).is_none()) {
        return None;
    }
    let key_id: i32 = key_id.parse().ok()?;
    let flags = flags.parse::<u32>().ok()?;
    if flags & !(FLAG_CROSS | FLAG_WRITE_LIMITED) != 0 {
        return None;
    }
    let claims = NodeClaims {
        tenant: tenant.parse().ok().filter(|t: &i64| *t >= 0)?,
        expires_at: expires.parse().ok()?,
        cross: flags & FLAG_CROSS != 0,
        write_limited: flags & FLAG_WRITE_LIMITED != 0,
    };
    // The canonical rendering only: no second spelling of the same claims verifies.
    if payload(key_id, &claims, role, rates) != token[..token.len() - tag.len() - 1]
        || *role_hex != hex(role.as_bytes())
    {
        return None;
    }
    mac_of(key, &token[..token.len() - tag.len() - 1])
        .verify_slice(&unhex(tag)?)
        .ok()?;
    (now < claims.expires_at).then_some(claims)
}

// ------------------------------------------------------------------------------------------
// The node

fn node_role() -> NodeRole {
    let known = ROLE.0.get();
    if known != NodeRole::Unknown {
        return known;
    }
    if !citus_installed() {
        return NodeRole::Coordinator; // not cached: Citus may be created later in this session
    }
    if IN_ROLE_CHECK.0.replace(true) {
        // Reached again from inside the lookup below (Citus's hooks on it): not a worker
        // until the lookup says so, so no node context is honoured meanwhile.
        return NodeRole::Coordinator;
    }
    let group = PgTryBuilder::new(|| {
        // A read-only SPI client: pgrx's Spi::get_one assigns the transaction an id.
        privilege::as_owner(|| {
            Spi::connect(|c| {
                c.select(
                    "SELECT groupid FROM pg_catalog.pg_dist_local_group",
                    Some(1),
                    &[],
                )?
                .first()
                .get_one::<i32>()
            })
        })
        .unwrap_or(None)
    })
    .finally(|| IN_ROLE_CHECK.0.set(false))
    .execute();
    let role = match group {
        Some(g) if g != 0 => NodeRole::Worker,
        _ => NodeRole::Coordinator,
    };
    // Kept for the backend's life: a node's part changes only when citus_add_node makes a fresh
    // node a worker, and Citus opens its connections to a worker after that.
    ROLE.0.set(role);
    role
}

/// Whether the Citus library is loaded in this backend: it must be preloaded
/// (`shared_preload_libraries`), so the answer is fixed for the backend's life. Without it, no
/// catalog is ever consulted (single-node servers pay one cell read per call).
pub fn loaded() -> bool {
    citus_loaded()
}

fn citus_loaded() -> bool {
    if let Some(known) = LOADED.0.get() {
        return known;
    }
    let loaded =
        unsafe { !pg_sys::GetConfigOption(c"citus.node_conninfo".as_ptr(), true, false).is_null() };
    LOADED.0.set(Some(loaded));
    loaded
}

/// The oid of Citus's `pg_dist_partition` while this backend knows Citus is installed (0: not
/// known; asked again once per transaction).
static CITUS_METADATA_RELID: Backend<Cell<u32>> = Backend(Cell::new(0));

fn citus_installed() -> bool {
    if !citus_loaded() {
        return false;
    }
    // Once found, known until Citus's metadata table changes: DROP EXTENSION citus drops it,
    // which invalidates its relcache entry on every backend (Citus's own cache of the same fact
    // is invalidated the same way), and `relcache_changed` forgets it. The getters call this per
    // row, the setters per call: a catalog scan per transaction was a measurable part of
    // set_tenant on Citus.
    if CITUS_METADATA_RELID.0.get() != 0 {
        return true;
    }
    // Not installed (yet): asked at most once per transaction (CREATE EXTENSION citus sends no
    // invalidation this could wait for).
    #[cfg(feature = "pg15")]
    let lxid = unsafe { (*pg_sys::MyProc).lxid };
    #[cfg(feature = "pg18")]
    let lxid = unsafe { (*pg_sys::MyProc).vxid.lxid };
    let (at, known) = INSTALLED.0.get();
    if at == lxid && lxid != 0 {
        return known;
    }
    let installed =
        unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::InvalidOid };
    INSTALLED.0.set((lxid, installed));
    if installed {
        let relid = unsafe {
            pg_sys::get_relname_relid(
                c"pg_dist_partition".as_ptr(),
                pg_sys::PG_CATALOG_NAMESPACE.into(),
            )
        };
        CITUS_METADATA_RELID.0.set(relid.to_u32());
    }
    installed
}

/// Where the getters stand: no Citus (single node: nothing changes), a coordinator (a context
/// counts only when the node context the workers get agrees with it), a worker (the node context
/// is the context).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Node {
    Single,
    Coordinator,
    Worker,
}

pub fn node() -> Node {
    if !citus_installed() {
        return Node::Single;
    }
    match node_role() {
        NodeRole::Worker => Node::Worker,
        _ => Node::Coordinator,
    }
}

fn session_user_name() -> String {
    privilege::role_name(unsafe { pg_sys::GetSessionUserId() })
}

fn spi_failed(e: pgrx::spi::Error) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("node key access failed: {e}"),
        None,
        None,
    )
}

fn read_keys() -> NodeKeys {
    if NODE_KEYS_RELID.0.get() == 0 {
        let relid = unsafe {
            let ns = pg_sys::get_namespace_oid(c"tenant".as_ptr(), true);
            pg_sys::get_relname_relid(c"node_keys".as_ptr(), ns)
        };
        NODE_KEYS_RELID.0.set(relid.to_u32());
    }
    privilege::as_owner(|| {
        Spi::connect(|c| {
            let mut out = Vec::new();
            for row in c.select(
                "SELECT id, secret FROM tenant.node_keys ORDER BY id DESC",
                None,
                &[],
            )? {
                if let (Some(id), Some(secret)) = (row.get::<i32>(1)?, row.get::<Vec<u8>>(2)?) {
                    out.push((id, secret));
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    })
    .unwrap_or_else(|e| spi_failed(e))
}

fn key_by_id(id: i32) -> Option<Vec<u8>> {
    let find = |keys: &NodeKeys| keys.iter().find(|k| k.0 == id).map(|k| k.1.clone());
    if let Some(hit) = KEYS.0.borrow().as_ref().and_then(find) {
        return Some(hit);
    }
    // A key this backend has not seen (a sync after it started): read them again.
    let keys = read_keys();
    let hit = find(&keys);
    *KEYS.0.borrow_mut() = Some(keys);
    hit
}

/// The verified node context in force, if any (never on a node without Citus). A worker takes
/// it as the context; a coordinator requires it to agree with the context it set. The hot path (same assignment as last time) reads two cells and the clock.
pub fn node_claims() -> Option<NodeClaims> {
    let assigned = ASSIGNED.0.get();
    let (at, cached) = VERIFIED.0.get();
    let claims = if at == assigned {
        cached
    } else if IN_VERIFY.0.replace(true) {
        // Reached again from inside the verification (the key lookup's own statements): no
        // node context until the verification says so.
        None
    } else {
        let fresh = PgTryBuilder::new(verify_current)
            .finally(|| IN_VERIFY.0.set(false))
            .execute();
        if ASSIGNED.0.get() == assigned {
            VERIFIED.0.set((assigned, fresh));
        }
        fresh
    }?;
    let now = unsafe { pg_sys::GetCurrentStatementStartTimestamp() } / 1_000_000 + 946_684_800;
    (now < claims.expires_at).then_some(claims)
}

fn verify_current() -> Option<NodeClaims> {
    let token = NODE_CONTEXT_SETTING.get()?;
    let token = token.to_str().ok()?;
    if token.is_empty() || !citus_installed() {
        return None;
    }
    let key = key_by_id(key_id_of(token)?)?;
    verify(token, &key, &session_user_name(), now_unix())
}

/// The tenant the node context names (None for a cross-tenant-only context).
pub fn node_tenant() -> Option<i64> {
    node_claims().map(|c| c.tenant).filter(|&t| t > 0)
}

pub fn node_cross_tenant() -> bool {
    node_claims().is_some_and(|c| c.cross)
}

/// The tenant and the rate limits of the verified node context in force, if it carries any (on
/// a worker; never in cross-tenant mode). The rates are read from the setting that
/// `node_claims()` just verified for the current assignment (its MAC covers them).
pub fn node_rates() -> Option<(i64, RateClaims)> {
    let claims = node_claims().filter(|c| !c.cross && c.tenant > 0)?;
    let token = NODE_CONTEXT_SETTING.get()?;
    let rates = rates_of(token.to_str().ok()?)?;
    Some((claims.tenant, decode_rates(rates)?))
}

/// A token's `<rates>` part, unverified (None: it has none).
fn rates_of(token: &str) -> Option<&str> {
    let parts: Vec<&str> = token.split('.').collect();
    match parts.as_slice() {
        [_, _, _, _, _, _, rates, _] => Some(rates),
        _ => None,
    }
}

/// `SET LOCAL qualityfoundry_tenant.node_context = '<value>'`, handed to ProcessUtility as a
/// statement (so Citus's utility hook records it for its workers, with this text) without SPI:
/// pgrx's `Spi::run` assigns the transaction an id, which made every `set_tenant` transaction a
/// writing one (a commit record, a WAL flush with `synchronous_commit`), and a statement through
/// SPI costs a parse, an analysis and a plan. The value is digits, dots and hex (the token) or
/// empty; it is quoted anyway.
fn set_local_node_context(value: &str) {
    let sql = CString::new(format!(
        "SET LOCAL qualityfoundry_tenant.node_context = {}",
        pgrx::spi::quote_literal(value)
    ))
    .expect("a node context has no NUL");
    let value = CString::new(value).expect("a node context has no NUL");
    unsafe {
        let mut constant = PgBox::<pg_sys::A_Const>::alloc_node(pg_sys::NodeTag::T_A_Const);
        constant.val.sval = pg_sys::String {
            type_: pg_sys::NodeTag::T_String,
            sval: pg_sys::pstrdup(value.as_ptr()),
        };
        constant.location = -1;
        let mut set =
            PgBox::<pg_sys::VariableSetStmt>::alloc_node(pg_sys::NodeTag::T_VariableSetStmt);
        set.kind = pg_sys::VariableSetKind::VAR_SET_VALUE;
        set.name = pg_sys::pstrdup(NODE_CONTEXT.as_ptr());
        set.args = pg_sys::lappend(std::ptr::null_mut(), constant.into_pg().cast());
        set.is_local = true;
        let mut stmt = PgBox::<pg_sys::PlannedStmt>::alloc_node(pg_sys::NodeTag::T_PlannedStmt);
        stmt.commandType = pg_sys::CmdType::CMD_UTILITY;
        stmt.canSetTag = false;
        stmt.utilityStmt = set.into_pg().cast();
        stmt.stmt_location = 0;
        stmt.stmt_len = sql.as_bytes().len() as i32;
        let text = pg_sys::pstrdup(sql.as_ptr());
        pg_sys::ProcessUtility(
            stmt.into_pg(),
            text,
            false,
            pg_sys::ProcessUtilityContext::PROCESS_UTILITY_QUERY,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            pg_sys::None_Receiver,
            std::ptr::null_mut(),
        );
    }
}

/// Called by the setters after the context changed, with its transaction-local part (the tenant,
/// cross-tenant mode). On a Citus coordinator, inside a transaction block, that is minted into a
/// node context and propagated; nothing local (a session-scope context, a cleared one) clears a
/// node context this transaction carried, so the workers never see an older one than the
/// coordinator.
pub fn publish(tenant: Option<i64>, cross: bool) {
    if !unsafe { pg_sys::IsTransactionBlock() } || !citus_installed() {
        return;
    }
    if node_role() != NodeRole::Coordinator {
        return;
    }
    let carried = NODE_CONTEXT_SETTING
        .get()
        .is_some_and(|v| !v.as_bytes().is_empty());
    if tenant.is_none() && !cross {
        if carried {
            set_local_node_context("");
        }
        return;
    }
    if KEYS.0.borrow().is_none() {
        let keys = read_keys();
        *KEYS.0.borrow_mut() = Some(keys);
    }
    let newest = KEYS.0.borrow().as_ref().and_then(|k| k.first().cloned());
    let Some((key_id, key)) = newest else {
        // No node key yet: the workers cannot be told. Fail closed there, and say why.
        pgrx::warning!(
            "qualityfoundry_tenant: this Citus database has no node key, so no tenant context is in force on any node; a superuser runs SELECT tenant.citus_sync_keys()"
        );
        return;
    };
    let claims = NodeClaims {
        tenant: tenant.unwrap_or(0),
        expires_at: now_unix() + i64::from(NODE_CONTEXT_TTL.get()),
        cross,
        // Workers cannot read the coordinator's flags: the token says it (for the token's life).
        write_limited: !cross && tenant.is_some_and(crate::quota::write_limited),
    };
    // The node holding the tenant's rows counts its inserts into rate-limited tables: the
    // token says which and how many (none for cross-tenant mode or an exempt role).
    let rates = match tenant {
        Some(t) if !cross => crate::quota::node_rates_for(t)
            .map(|r| encode_rates(&r))
            .unwrap_or_default(),
        _ => String::new(),
    };
    // Citus connects to the workers as the current user.
    let role = privilege::role_name(privilege::caller());
    let token = mint(key_id, &key, &claims, &role, &rates);
    // Citus sends the SET LOCAL statements of a transaction block to its workers while
    // citus.propagate_set_commands is 'local'. Set for the transaction unless it already is (a
    // DBA may set it for the database), straight into the setting: Citus reads only the value,
    // and a statement would cost a parse, a plan and a pass through every utility hook.
    let propagating = unsafe {
        let v = pg_sys::GetConfigOption(c"citus.propagate_set_commands".as_ptr(), true, false);
        !v.is_null() && CStr::from_ptr(v).to_bytes() == b"local"
    };
    if !propagating {
        unsafe {
            pg_sys::set_config_option(
                c"citus.propagate_set_commands".as_ptr(),
                c"local".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_LOCAL,
                true,
                0,
                false,
            );
        }
    }
    set_local_node_context(&token);
    // What this backend would verify next is what it just minted from verified inputs: known
    // verified for this assignment, so the first getter call of the transaction needs no HMAC.
    // Only where the token names the session user: verification checks that name (after SET
    // ROLE the caller is another role, and the coordinator does not honour the token either).
    if privilege::caller() == unsafe { pg_sys::GetSessionUserId() } {
        VERIFIED.0.set((ASSIGNED.0.get(), Some(claims)));
    }
}

/// A session-scope context on a Citus coordinator is no context (no worker could be told): say so.
pub fn warn_session_scope() {
    if node() == Node::Coordinator {
        let report = pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            "a session-scope tenant context is not in force on a Citus database".to_string(),
            "qualityfoundry_tenant",
        )
        .set_hint("Enter the tenant for each transaction: BEGIN; SELECT tenant.set_tenant(t, is_local => true); ...");
        report.report(PgLogLevel::WARNING);
    }
}

fn require_superuser_coordinator(what: &str) {
    let caller = privilege::caller();
    if !unsafe { pg_sys::superuser_arg(caller) } {
        error::denied(
            format!("permission denied to {what}"),
            Some("Only a superuser may.".into()),
            None,
        );
    }
    if !citus_installed() || node_role() != NodeRole::Coordinator {
        error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{what}: this runs on a Citus coordinator"),
            None,
            Some("CREATE EXTENSION citus and add the workers first.".into()),
        );
    }
}

/// Runs `cmd` on every worker (run_command_on_workers, as the calling superuser); raises naming
/// each worker it failed on. Returns the number of workers.
fn on_workers(cmd: &str, what: &str) -> i32 {
    let (workers, failed) = Spi::connect(|c| {
        let mut failed = Vec::new();
        let mut workers = 0;
        for row in c.select(
            "SELECT nodename || ':' || nodeport, success, result FROM pg_catalog.run_command_on_workers($1)",
            None,
            &[cmd.into()],
        )? {
            workers += 1;
            if row.get::<bool>(2)? != Some(true) {
                failed.push(format!(
                    "{}: {}",
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default()
                ));
            }
        }
        Ok::<_, pgrx::spi::Error>((workers, failed))
    })
    .unwrap_or_else(|e| spi_failed(e));
    if !failed.is_empty() {
        error::raise(
            PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
            format!("could not {what} on {}", failed.join("; ")),
            None,
            Some("Check that every worker is up and has the extension, then run it again.".into()),
        );
    }
    workers
}

/// Installs every node key this node has on every worker; returns the number of workers.
fn sync_keys(keys: &NodeKeys) -> i32 {
    let mut workers = 0;
    for (id, secret) in keys {
        // Command text for run_command_on_workers (no parameters there): an i32 and a
        // quote_literal'ed hex string.
        let cmd = format!(
            "SELECT tenant._node_key_install({id}, {})",
            pgrx::spi::quote_literal(hex(secret))
        );
        workers = on_workers(&cmd, "install the node key");
    }
    workers
}

fn new_key(id: i32) -> (i32, Vec<u8>) {
    let secret = random_bytes::<32>().to_vec();
    Spi::run_with_args(
        "INSERT INTO tenant.node_keys (id, secret) VALUES ($1, $2)",
        &[id.into(), secret.clone().into()],
    )
    .unwrap_or_else(|e| spi_failed(e));
    keys_changed();
    (id, secret)
}

/// `tenant.citus_sync_keys()`: on a Citus coordinator, creates the cluster's node key if there is
/// none and installs every node key on every worker (run it after citus_add_node). Superuser only.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn citus_sync_keys() -> i32 {
    require_superuser_coordinator("synchronise the node keys");
    let mut keys = read_keys();
    if keys.is_empty() {
        keys.push(new_key(1));
    }
    sync_keys(&keys)
}

/// `tenant.citus_rotate_node_key()`: on a Citus coordinator, creates a new node key (the next id),
/// installs every key on every worker, and from then on (this transaction's commit, for every
/// backend) node contexts are minted with the new key. Node contexts minted with an older key keep
/// verifying until that key is retired (`citus_retire_node_key`) — retire it once the longest
/// transaction since the rotation has ended (at most `node_context_ttl` later). Returns the new
/// key's id. Superuser only.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn citus_rotate_node_key() -> i32 {
    require_superuser_coordinator("rotate the node key");
    let keys = read_keys();
    let next = keys
        .iter()
        .map(|k| k.0)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .unwrap_or_else(|| {
            error::raise(
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                "no node key id is left".into(),
                None,
                None,
            )
        });
    let mut keys = keys;
    keys.insert(0, new_key(next));
    sync_keys(&keys);
    next
}

/// `tenant.citus_retire_node_key(key_id)`: removes an older node key from every worker and the
/// coordinator; node contexts minted with it give zero rows from then on. The newest key (the one
/// contexts are minted with) cannot be retired: rotate first. Superuser only.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn citus_retire_node_key(key_id: Option<i32>) -> i32 {
    require_superuser_coordinator("retire a node key");
    let Some(id) = key_id else {
        error::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "key_id must not be NULL".into(),
            None,
            Some(
                "SELECT id, created_at FROM tenant.node_keys lists the keys (as a superuser)."
                    .into(),
            ),
        )
    };
    let keys = read_keys();
    if !keys.iter().any(|k| k.0 == id) {
        error::invalid(
            format!("there is no node key {id}"),
            Some(
                "SELECT id, created_at FROM tenant.node_keys lists the keys (as a superuser)."
                    .into(),
            ),
        );
    }
    if keys.first().map(|k| k.0) == Some(id) {
        error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("node key {id} is the one node contexts are signed with"),
            None,
            Some("Run SELECT tenant.citus_rotate_node_key() first, then retire this key once the transactions that started before have ended.".into()),
        );
    }
    // run_command_on_workers takes the command as text (no parameters reach the workers): the
    // only value in it is `id`, an i32, which renders as digits.
    let workers = on_workers(
        &format!("SELECT tenant._node_key_remove({id})"),
        "retire the node key",
    );
    Spi::run_with_args("DELETE FROM tenant.node_keys WHERE id = $1", &[id.into()])
        .unwrap_or_else(|e| spi_failed(e));
    keys_changed();
    workers
}

/// Run on each worker by `citus_retire_node_key()` (as the superuser that called it).
#[pg_extern(
    schema = "tenant",
    name = "_node_key_remove",
    volatile,
    parallel_unsafe
)]
fn node_key_remove(id: i32) {
    if !unsafe { pg_sys::superuser_arg(privilege::caller()) } {
        error::denied("permission denied to remove a node key".into(), None, None);
    }
    Spi::run_with_args("DELETE FROM tenant.node_keys WHERE id = $1", &[id.into()])
        .unwrap_or_else(|e| spi_failed(e));
    keys_changed();
}

/// Run on each worker by `citus_sync_keys()` (as the superuser that called it).
#[pg_extern(
    schema = "tenant",
    name = "_node_key_install",
    volatile,
    parallel_unsafe
)]
fn node_key_install(id: i32, secret_hex: &str) {
    if !unsafe { pg_sys::superuser_arg(privilege::caller()) } {
        error::denied("permission denied to install a node key".into(), None, None);
    }
    let secret = unhex(secret_hex)
        .filter(|s| s.len() >= 32)
        .unwrap_or_else(|| error::invalid("a node key is at least 32 bytes in hex".into(), None));
    Spi::run_with_args(
        "INSERT INTO tenant.node_keys (id, secret) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET secret = EXCLUDED.secret",
        &[id.into(), secret.into()],
    )
    .unwrap_or_else(|e| spi_failed(e));
    keys_changed();
}

/// Whether the statement this backend's client is running is a CREATE TABLE (or CREATE TABLE AS,
/// CREATE FOREIGN TABLE) sent by the client itself: Citus distributes the table such a top-level
/// statement makes in a distributed schema by itself, after the statement (and after the
/// extension's event trigger), and fails with "table ... is already distributed" if the event
/// trigger did it first. Nested statements (functions, DO, CALL, migrate_all's steps, background
/// workers) are not top-level for Citus, and the event trigger distributes what they make. The
/// client's statement is the active portal's; SPI and PL/pgSQL run nested statements without
/// changing it.
#[pg_extern(
    schema = "tenant",
    name = "_citus_converts_new_tables",
    volatile,
    parallel_unsafe
)]
fn citus_converts_new_tables() -> bool {
    unsafe {
        let portal = pg_sys::ActivePortal;
        if portal.is_null() {
            return false;
        }
        let stmts = pgrx::PgList::<pg_sys::Node>::from_pg((*portal).stmts);
        let found = stmts.iter_ptr().any(|n| {
            if n.is_null() || (*n).type_ != pg_sys::NodeTag::T_PlannedStmt {
                return false;
            }
            let stmt = n.cast::<pg_sys::PlannedStmt>();
            let utility = (*stmt).utilityStmt;
            (*stmt).commandType == pg_sys::CmdType::CMD_UTILITY
                && !utility.is_null()
                && matches!(
                    (*utility).type_,
                    pg_sys::NodeTag::T_CreateStmt
                        | pg_sys::NodeTag::T_CreateForeignTableStmt
                        | pg_sys::NodeTag::T_CreateTableAsStmt
                )
        });
        found
    }
}

/// `create_distributed_table(rel, NULL[, colocate_with])` run as `rel`'s owner (for the event
/// trigger that distributes tables made in a distributed tenant schema, sql/citus.sql). Citus
/// connects to the workers as the current user and refuses, in one transaction, to touch
/// colocated placements that another user modified ("cannot perform query on placements that
/// were modified in this transaction by a different user"): a migration that creates a table and
/// then alters another of the schema's tables, as its owner, needs the new table distributed by
/// that same owner, not by the event trigger's definer. A security-restricted operation with
/// search_path pinned, as everything the extension runs as another role; superuser callers only.
#[pg_extern(
    schema = "tenant",
    name = "_citus_distribute_as_owner",
    volatile,
    parallel_unsafe
)]
fn citus_distribute_as_owner(rel: pg_sys::Oid, colocate_with: Option<pg_sys::Oid>) {
    if !unsafe { pg_sys::superuser_arg(privilege::caller()) } {
        error::denied("permission denied to distribute a table".into(), None, None);
    }
    let owner = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
        &[rel.into()],
    )
    .unwrap_or_else(|e| spi_failed(e))
    .unwrap_or_else(|| error::invalid(format!("relation {} does not exist", rel.to_u32()), None));
    privilege::as_role(owner, 0, || match colocate_with {
        None => Spi::run_with_args(
            "SELECT pg_catalog.create_distributed_table($1::pg_catalog.oid::pg_catalog.regclass, NULL)",
            &[rel.into()],
        ),
        Some(peer) => Spi::run_with_args(
            "SELECT pg_catalog.create_distributed_table($1::pg_catalog.oid::pg_catalog.regclass, NULL,
                        colocate_with => $2::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text)",
            &[rel.into(), peer.into()],
        ),
    })
    .unwrap_or_else(|e| {
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("could not distribute the new table: {e}"),
            None,
            None,
        )
    });
}

/// Whether this node is a Citus worker (for the SQL side: event triggers stand aside there).
#[pg_extern(schema = "tenant", name = "_citus_worker", stable, parallel_safe)]
fn citus_worker() -> bool {
    citus_installed() && node_role() == NodeRole::Worker
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";
    const C: NodeClaims = NodeClaims {
        tenant: 7,
        expires_at: 1_000,
        cross: false,
        write_limited: false,
    };

    #[test]
    fn round_trip_and_expiry() {
        let t = mint(1, KEY, &C, "app", "");
        assert_eq!(key_id_of(&t), Some(1));
        assert_eq!(verify(&t, KEY, "app", 999), Some(C));
        assert_eq!(verify(&t, KEY, "app", 1_000), None);
        let x = NodeClaims { cross: true, ..C };
        assert_eq!(verify(&mint(1, KEY, &x, "app", ""), KEY, "app", 0), Some(x));
        assert_eq!(claims_of(&t), Some((7, 0)));
        assert_eq!(
            claims_of(&mint(1, KEY, &x, "app", "")),
            Some((7, FLAG_CROSS))
        );
        let w = NodeClaims {
            write_limited: true,
            ..C
        };
        let tw = mint(1, KEY, &w, "app", "");
        assert!(tw.contains(".2."), "{tw}");
        assert_eq!(claims_of(&tw), Some((7, FLAG_WRITE_LIMITED)));
        assert_eq!(claims_of(&t), Some((7, 0)));
        assert_eq!(claims_of(""), None);
        assert_eq!(verify(&tw, KEY, "app", 0), Some(w));
        let xw = NodeClaims { cross: true, ..w };
        assert_eq!(
            verify(&mint(1, KEY, &xw, "app", ""), KEY, "app", 0),
            Some(xw)
        );
        assert_eq!(
            claims_of(&mint(1, KEY, &xw, "app", "")),
            Some((7, FLAG_CROSS | FLAG_WRITE_LIMITED))
        );
    }

    #[test]
    fn other_role_key_or_tampering_is_refused() {
        let t = mint(1, KEY, &C, "app", "");
        assert_eq!(verify(&t, KEY, "app2", 0), None);
        assert_eq!(verify(&t, OTHER, "app", 0), None);
        for (from, to) in [
            (".7.", ".8."),
            (".1000.", ".9000."),
            (".0.", ".1."),
            ("n1.", "n2."),
            ("n1.1.", "n1.01."),
            (".7.", ".07."),
            (".1000.0.", ".1000.4."),
            (".1000.0.", ".1000.2."),
        ] {
            let forged = t.replacen(from, to, 1);
            assert_ne!(forged, t, "{from}");
            assert_eq!(verify(&forged, KEY, "app", 0), None, "{forged}");
        }
        assert_eq!(verify("", KEY, "app", 0), None);
        assert_eq!(verify("n1.1.7", KEY, "app", 0), None);
        assert_eq!(verify(&format!("{t}.x"), KEY, "app", 0), None);
        assert_eq!(verify(&t[..t.len() - 2], KEY, "app", 0), None);
    }

    #[test]
    fn rates_round_trip_under_the_mac() {
        let rates = RateClaims {
            slug: "acme".into(),
            limits: vec![
                ("public.projects".into(), Some(3)),
                ("\"we.ird;,\".t".into(), None),
            ],
        };
        let text = encode_rates(&rates);
        assert!(!text.contains('.'), "{text}");
        assert_eq!(decode_rates(&text), Some(rates.clone()));
        let t = mint(1, KEY, &C, "app", &text);
        assert_eq!(t.split('.').count(), 8, "{t}");
        assert_eq!(verify(&t, KEY, "app", 0), Some(C));
        assert_eq!(claims_of(&t), Some((7, 0)));
        assert_eq!(rates_of(&t), Some(text.as_str()));
        // Without rates the token is the seven-part one; no empty eighth part verifies.
        let plain = mint(1, KEY, &C, "app", "");
        assert_eq!(rates_of(&plain), None);
        let tag = plain.rsplit('.').next().unwrap();
        let empty = format!("{}..{tag}", &plain[..plain.len() - tag.len() - 1]);
        assert_eq!(verify(&empty, KEY, "app", 0), None, "{empty}");
        // The rates are under the MAC: removed, changed, raised.
        let stripped = t.replacen(&format!(".{text}"), "", 1);
        assert_eq!(verify(&stripped, KEY, "app", 0), None);
        let raised = t.replacen(",3", ",300", 1);
        assert_ne!(raised, t);
        assert_eq!(verify(&raised, KEY, "app", 0), None);
        // Malformed rates: no entry, a bad limit, bad hex.
        for bad in [
            "61636d65",
            "61636d65;70,0",
            "61636d65;70,x",
            "61636d65;7,3",
            ";70,3",
        ] {
            assert_eq!(decode_rates(bad), None, "{bad}");
        }
    }
}
