//! The tenant context: who the session is acting for, how it gets there, and the cheap getter
//! every policy calls.
//!
//! The context lives in the superuser-only setting `qualityfoundry_tenant.tenant_id`, so
//! PostgreSQL's GUC machinery provides transaction-local scope, ROLLBACK, RESET and propagation to
//! parallel workers. The functions here are the only way an application role can change it, and
//! they authorise first. The registry is read through a per-backend cache that a relcache
//! invalidation of `tenant.tenants` clears (triggers on the registry tables send one at commit), so
//! suspending a tenant takes effect in every session from its next statement.

use crate::error;
use crate::privilege::{self, TENANT_SUPERUSER, TENANT_USER};
use crate::settings::{self, ContextScope};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct TenantRow {
    pub id: i64,
    pub slug: String,
    pub active: bool,
    pub schema: Option<String>,
}

#[derive(Default)]
struct Cache {
    generation: u64,
    by_id: HashMap<i64, Option<TenantRow>>,
    by_slug: HashMap<String, Option<i64>>,
    bindings: HashMap<u32, Option<i64>>,
    keys: HashMap<i32, Option<SigningKey>>,
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

#[pg_guard]
unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: Oid) {
    // No catalog access and no allocation here: just make every cached answer stale.
    let known = TENANTS_RELID.0.get();
    if relid == pg_sys::InvalidOid || known == 0 || relid.to_u32() == known {
        GENERATION.0.set(GENERATION.0.get().wrapping_add(1));
    }
}

pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), pg_sys::Datum::from(0))
    };
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

// Run by as_owner, so search_path is pg_catalog, pg_temp.
const TENANT_BY_ID: &str = "SELECT id, slug, status = 'active', schema_name::text, \
     'tenant.tenants'::regclass::oid FROM tenant.tenants WHERE id = $1";
const TENANT_BY_SLUG: &str = "SELECT id, slug, status = 'active', schema_name::text, \
     'tenant.tenants'::regclass::oid FROM tenant.tenants WHERE slug = $1";

fn select_tenant(query: &str, arg: pgrx::datum::DatumWithOid) -> Option<TenantRow> {
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
                },
                t.get::<Oid>(5)?.map(|o| o.to_u32()).unwrap_or(0),
            )))
        })
    })
    .unwrap_or_else(|e| {
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("registry lookup failed: {e}"),
            None,
            None,
        )
    });
    row.map(|(tenant, relid)| {
        TENANTS_RELID.0.set(relid);
        tenant
    })
}

pub fn tenant_by_id(id: i64) -> Option<TenantRow> {
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

/// Resolves a `tenant text` argument: the slug, or the id written as text.
pub fn resolve(text: &str) -> Option<TenantRow> {
    if looks_like_id(text) {
        return text.parse::<i64>().ok().and_then(tenant_by_id);
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

/// The tenant a login role is bound to, if any.
pub fn binding_of(role: Oid) -> Option<i64> {
    let key = role.to_u32();
    if let Some(hit) = with_cache(|c| c.bindings.get(&key).cloned()) {
        return hit;
    }
    let generation = GENERATION.0.get();
    let bound = privilege::as_owner(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT tenant_id FROM tenant.role_bindings WHERE role::oid = $1",
                Some(1),
                &[role.into()],
            )
            .and_then(first_value::<i64>)
        })
    })
    .unwrap_or_else(|e| {
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("registry lookup failed: {e}"),
            None,
            None,
        )
    });
    remember(generation, |c| {
        c.bindings.insert(key, bound);
    });
    bound
}

fn require_tenant(text: Option<&str>) -> TenantRow {
    let Some(text) = text else {
        error::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "tenant must not be NULL".into(),
            None,
            Some("Use tenant.clear_tenant() to leave the tenant context.".into()),
        )
    };
    match resolve(text) {
        Some(t) => t,
        None => error::invalid(
            format!("tenant \"{text}\" does not exist"),
            Some("Pass a slug or an id from tenant.tenants.".into()),
        ),
    }
}

fn ensure_not_bound_elsewhere(target: Option<i64>) -> Option<i64> {
    let session_user = unsafe { pg_sys::GetSessionUserId() };
    let bound = binding_of(session_user)?;
    if target != Some(bound) {
        let t = tenant_by_id(bound)
            .map(|t| t.slug)
            .unwrap_or_else(|| bound.to_string());
        error::denied(
            format!(
                "role \"{}\" is bound to tenant \"{t}\" and cannot leave or switch it",
                privilege::role_name(session_user)
            ),
            None,
            Some("A tenant_admin can release the role with tenant.unbind_role().".into()),
        );
    }
    Some(bound)
}

/// Sets the context after authorisation. `signed` is true only for a verified token.
fn enter(tenant: TenantRow, is_local: bool, signed: bool) -> i64 {
    let caller = privilege::caller();
    if ensure_not_bound_elsewhere(Some(tenant.id)).is_some() {
        return tenant.id; // already there by its binding; nothing to change
    }
    privilege::require_role_of(caller, TENANT_USER, "set the tenant context");
    if !signed && settings::require_signed_context() && !unsafe { pg_sys::superuser_arg(caller) } {
        error::denied(
            "this role may enter a tenant only with a signed context token".into(),
            Some(
                "qualityfoundry_tenant.require_signed_context is on for this role or database."
                    .into(),
            ),
            Some("Call tenant.set_tenant_signed() with a token from tenant.sign_context().".into()),
        );
    }
    if !tenant.active {
        error::denied(
            format!("tenant \"{}\" is suspended", tenant.slug),
            None,
            Some("A tenant_admin can call tenant.resume_tenant().".into()),
        );
    }
    let local = is_local || settings::context_scope() == ContextScope::Transaction;
    route_search_path(tenant.schema.as_deref(), local);
    settings::apply(settings::TENANT_ID, &tenant.id.to_string(), local);
    LAST_ACTIVE.0.set((tenant.id, GENERATION.0.get()));
    tenant.id
}

#[pg_extern(name = "set_tenant", volatile, parallel_unsafe)]
fn set_tenant_text(tenant: Option<&str>, is_local: default!(bool, false)) -> i64 {
    enter(require_tenant(tenant), is_local, false)
}

#[pg_extern(name = "set_tenant", volatile, parallel_unsafe)]
fn set_tenant_id(tenant: Option<i64>, is_local: default!(bool, false)) -> i64 {
    let text = tenant.map(|t| t.to_string());
    if let Some(id) = tenant.filter(|&t| t <= 0) {
        error::invalid(
            format!("tenant id {id} is not valid"),
            Some("Tenant ids are positive.".into()),
        );
    }
    enter(require_tenant(text.as_deref()), is_local, false)
}

pub fn enter_signed(tenant_id: i64, is_local: bool) -> i64 {
    let Some(tenant) = tenant_by_id(tenant_id) else {
        error::denied(
            format!("the token names tenant {tenant_id}, which does not exist"),
            None,
            None,
        )
    };
    enter(tenant, is_local, true)
}

#[pg_extern(volatile, parallel_unsafe)]
fn clear_tenant() {
    ensure_not_bound_elsewhere(None);
    let local = settings::context_scope() == ContextScope::Transaction;
    route_search_path(None, local);
    settings::apply(settings::TENANT_ID, "", local);
}

/// The id of the current tenant, NULL when none (or when that tenant was suspended or dropped).
/// STABLE and PARALLEL SAFE: it sits in every isolation policy.
#[pg_extern(stable, parallel_safe)]
pub fn current_tenant_id() -> Option<i64> {
    let id = settings::tenant_id_setting();
    if id == 0 {
        crate::backup::reading_without_context();
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
#[pg_extern(stable, parallel_safe)]
fn current_tenant() -> Option<String> {
    current_tenant_id().and_then(tenant_by_id).map(|t| t.slug)
}

/// Whether the audited cross-tenant mode is on. Policies OR it into the tenant check; the
/// permissive policy that uses it applies only to tenant_superuser.
#[pg_extern(stable, parallel_safe)]
fn cross_tenant_active() -> bool {
    settings::cross_tenant()
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

#[pg_extern(volatile, parallel_unsafe)]
fn enter_cross_tenant(reason: Option<&str>) {
    let caller = privilege::caller();
    privilege::require_role_of(caller, TENANT_SUPERUSER, "enter cross-tenant mode");
    let reason = reason.map(str::trim).unwrap_or("");
    if reason.is_empty() {
        error::invalid(
            "a reason is required to enter cross-tenant mode".into(),
            Some("Say why, e.g. tenant.enter_cross_tenant('support ticket 1234').".into()),
        );
    }
    settings::apply(settings::CROSS_TENANT, "on", false);
    audit("cross_tenant_entered", Some(reason));
    // The server log keeps it even if the transaction rolls back.
    pgrx::log!(
        "qualityfoundry_tenant: cross-tenant mode entered by role \"{}\" (session user \"{}\"): {}",
        privilege::role_name(caller),
        privilege::role_name(unsafe { pg_sys::GetSessionUserId() }),
        reason
    );
}

#[pg_extern(volatile, parallel_unsafe)]
fn exit_cross_tenant() {
    let caller = privilege::caller();
    privilege::require_role_of(caller, TENANT_SUPERUSER, "leave cross-tenant mode");
    if !settings::cross_tenant() {
        return;
    }
    settings::apply(settings::CROSS_TENANT, "off", false);
    audit("cross_tenant_left", None);
    pgrx::log!(
        "qualityfoundry_tenant: cross-tenant mode left by role \"{}\" (session user \"{}\")",
        privilege::role_name(caller),
        privilege::role_name(unsafe { pg_sys::GetSessionUserId() })
    );
}

/// Schema mode: the tenant's schema goes first in `search_path`, ahead of the session's default
/// path; leaving a schema tenant restores that default. Same scope as the context.
fn route_search_path(schema: Option<&str>, local: bool) {
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
        None => {
            let previous = tenant_by_id(settings::tenant_id_setting()).and_then(|t| t.schema);
            if previous.is_none() {
                return;
            }
            default_path
        }
    };
    settings::apply(c"search_path", &path, local);
}

/// Called by the registry triggers: makes every backend drop its cached registry at commit.
#[pg_extern(name = "_registry_changed", volatile, parallel_unsafe)]
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
