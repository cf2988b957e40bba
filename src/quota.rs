//! Usage and quotas: the parts of `sql/quotas.sql` that need C-level access.
//!
//! - **The storage guard** (`tenant._storage_guard()`): a `BEFORE INSERT OR UPDATE ... FOR EACH
//!   STATEMENT` trigger on every isolated and pinned table. Outside cross-tenant mode row security
//!   already confines a statement's writes to the current tenant, so one look at that tenant's flag
//!   per statement decides, whatever the number of rows. The flags come from `tenant.quota_state`
//!   through a per-backend cache that a statement trigger on that table invalidates (a relcache
//!   invalidation of it, sent at commit to every backend, as the registry cache in context.rs), so
//!   the hot path is the tenant getter plus a lookup in an (almost always empty) map.
//! - **Counting rows per tenant** (`tenant._table_usage()`) as the table's owner in a
//!   security-restricted operation with `SECURITY_NOFORCE_RLS`: the owner sees every tenant's rows
//!   despite FORCE ROW LEVEL SECURITY, and nothing the table's owner planted (an index predicate,
//!   a function in it) runs with the extension owner's rights.
//! - **The usage worker**: a dynamic background worker per database that runs the sweep
//!   (`tenant._refresh_usage()`) every `qualityfoundry_tenant.usage_refresh_interval`. Nothing has
//!   to be preloaded: a backend that reloads the flags (or calls set_limits) and finds the last
//!   sweep older than two intervals, while some tenant has a storage limit, starts one; a
//!   session-level lock of the extension's own (src/migrate.rs, which no application role can
//!   take) keeps it to one per database.
//! - **Citus**, where no trigger may stand on a table: the storage limit checked by the executor
//!   on the coordinator and the workers, and rate limits counted by the executor on the node that
//!   stores the rows, against the limits the coordinator's node context carries (below).
//! - The settings `qualityfoundry_tenant.max_tenants` and `usage_refresh_interval`.

use crate::context;
use crate::error;
use crate::privilege;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

pub const MIB: i64 = 1024 * 1024;
/// The extension's lock (`objsubid` 16, src/migrate.rs) the usage worker holds for its life: one
/// per database.
pub const WORKER_LOCK: u32 = 16;
const WORKER_FUNCTION: &str = "qft_usage_worker";
const WORKER_TYPE: &str = "qualityfoundry_tenant usage";

/// Default -1: no cap. Superuser-only, like every setting that guards something.
static MAX_TENANTS: GucSetting<i32> = GucSetting::<i32>::new(-1);
/// Default 0: no worker; the flags change with `CALL tenant.refresh_usage()` (from cron, say)
/// and `tenant.set_limits()`. Set in postgresql.conf (SIGHUP), so every database and the worker
/// read the same value.
static REFRESH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Defines the settings. Called from `_PG_init` before `settings::init()` reserves the prefix:
/// reserving removes placeholders, and a value postgresql.conf gave before the library loaded
/// must be adopted by the definition first.
pub fn init() {
    GucRegistry::define_int_guc(
        c"qualityfoundry_tenant.max_tenants",
        c"The most tenants tenant.create_tenant() may create in a database (-1: no cap).",
        c"Counted over tenant.tenants, suspended tenants included; past it create_tenant fails with 53400.",
        &MAX_TENANTS,
        -1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"qualityfoundry_tenant.usage_refresh_interval",
        c"How often the usage worker recomputes every tenant's usage and storage flag (0: no worker).",
        c"A tenant over its storage limit is write-limited at most about this long after crossing it.",
        &REFRESH_INTERVAL,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(quota_state_changed), pg_sys::Datum::from(0))
    };
}

// ---------------------------------------------------------------------------------------------
// Pure rules (unit-tested below, without a backend).

/// Whether `bytes` exceed a limit of `max_mb` MiB. No limit: never.
pub fn over_storage_limit(bytes: i64, max_mb: Option<i32>) -> bool {
    max_mb.is_some_and(|m| i128::from(bytes) > i128::from(m) * i128::from(MIB))
}

/// A table's share of `bytes` for `rows` of its `table_rows` rows, rounded down; never more than
/// the table's bytes (an estimated total can be below a tenant's exact count).
pub fn apportion(bytes: i64, rows: i64, table_rows: i64) -> i64 {
    if bytes <= 0 || rows <= 0 || table_rows <= 0 {
        return 0;
    }
    let share = i128::from(bytes) * i128::from(rows.min(table_rows)) / i128::from(table_rows);
    share as i64
}

/// The planner's way of estimating a table's rows now: the density measured by the last VACUUM or
/// ANALYZE (`reltuples` / `relpages`) times the pages it has now. None when that density is
/// unknown (never analyzed, or analyzed empty and grown since).
pub fn estimate_rows(reltuples: f64, relpages: i64, pages_now: i64) -> Option<i64> {
    if reltuples < 0.0 || pages_now < 0 {
        return None;
    }
    if relpages <= 0 {
        return if pages_now == 0 {
            Some(0)
        } else if reltuples > 0.0 {
            Some(reltuples.round() as i64)
        } else {
            None
        };
    }
    Some((reltuples / relpages as f64 * pages_now as f64).round() as i64)
}

/// Bytes for people: "812 bytes", "96 kB", "1.6 MB", "2.3 GB" (binary units, as pg_size_pretty).
pub fn size_text(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes.abs() < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} {}", value.round() as i64, UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The refusal of a write-limited tenant's INSERT or UPDATE.
pub fn storage_refusal(slug: &str, bytes: i64, max_mb: i32) -> String {
    format!(
        "tenant \"{slug}\" is over its storage quota: {} used, limit {max_mb} MB",
        size_text(bytes)
    )
}

/// Whether the sweep is overdue: a worker is configured (`interval_s` > 0) and the last sweep
/// (microseconds, as TimestampTz) is missing or older than two intervals at `now`.
pub fn sweep_overdue(last: Option<i64>, now: i64, interval_s: i32) -> bool {
    if interval_s <= 0 {
        return false;
    }
    match last {
        None => true,
        Some(t) => now.saturating_sub(t) > 2 * i64::from(interval_s) * 1_000_000,
    }
}

/// The interval a backend goes by: its setting, or, when that reads 0, the one the usage worker
/// last ran with (`tenant.quota_status`). A client option can shadow the setting (to its default,
/// 0) in a session that had not loaded the library; the table it cannot, and the worker itself
/// records 0 when a DBA turns it off.
pub fn effective_interval(setting: i32, worker_ran_with: Option<i32>) -> i32 {
    if setting > 0 {
        setting
    } else {
        worker_ran_with.unwrap_or(0).max(0)
    }
}

/// A stored `max_tenants` value ("12", "-1"); None for anything else.
pub fn parse_cap(text: &str) -> Option<i32> {
    let t = text.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<i32>().ok().filter(|&v| v >= -1)
}

/// The stricter of two caps (-1, or any negative: none).
pub fn stricter_cap(a: i32, b: i32) -> i32 {
    match (a >= 0, b >= 0) {
        (true, true) => a.min(b),
        (true, false) => a,
        (false, true) => b,
        (false, false) => -1,
    }
}

// ---------------------------------------------------------------------------------------------
// The per-backend cache of write-limited tenants.

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

#[derive(Clone, Debug)]
struct Over {
    slug: String,
    bytes: i64,
    max_mb: i32,
    measured_at: String,
}

struct Flags {
    generation: u64,
    /// Statement start time (TimestampTz) after which the flags are read again even without an
    /// invalidation: a worker that died (a restart) sends none, and this is where a backend
    /// notices and starts another. i64::MAX without a worker.
    expires_at: i64,
    over: HashMap<i64, Over>,
}

static GENERATION: Backend<Cell<u64>> = Backend(Cell::new(1));
static STATE_RELID: Backend<Cell<u32>> = Backend(Cell::new(0));
static FLAGS: Backend<RefCell<Option<Flags>>> = Backend(RefCell::new(None));
/// When this backend last tried to start a worker (TimestampTz), so a dead worker costs one
/// attempt per interval per backend at most.
static LAST_START_ATTEMPT: Backend<Cell<i64>> = Backend(Cell::new(i64::MIN));

#[pg_guard]
unsafe extern "C-unwind" fn quota_state_changed(_arg: pg_sys::Datum, relid: Oid) {
    // No catalog access and no allocation here: just make the cached flags stale.
    let known = STATE_RELID.0.get();
    if relid == pg_sys::InvalidOid
        || known == 0
        || relid.to_u32() == known
        || rated_relation_changed(relid)
    {
        GENERATION.0.set(GENERATION.0.get().wrapping_add(1));
    }
}

fn spi_failed(what: &str, e: pgrx::spi::Error) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("{what} failed: {e}"),
        None,
        None,
    )
}

/// Runs `f` with a snapshot taken now, not the transaction's: a REPEATABLE READ transaction that
/// began before a sweep must still read the flags the sweep committed (else it would cache stale
/// ones under the new generation).
fn with_latest_snapshot<R>(f: impl FnOnce() -> R) -> R {
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let result = PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_others(|e| {
            unsafe { pg_sys::PopActiveSnapshot() };
            e.rethrow()
        })
        .execute();
    unsafe { pg_sys::PopActiveSnapshot() };
    result
}

/// What a reload reads besides the flags.
struct Status {
    last_refresh_at: Option<i64>,
    worker_interval: Option<i32>,
    any_storage_limit: bool,
    owner: Oid,
}

const STATUS: &str = "SELECT 'tenant.quota_state'::regclass::oid, \
     (SELECT ((pg_catalog.date_part('epoch', s.last_refresh_at) - 946684800) * 1000000)::int8 \
        FROM tenant.quota_status s), \
     (SELECT s.worker_interval_s FROM tenant.quota_status s), \
     EXISTS (SELECT FROM tenant.tenants t WHERE t.max_storage_mb IS NOT NULL), \
     (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'tenant')";
const OVER: &str = "SELECT q.tenant_id, t.slug, q.bytes, q.max_storage_mb, q.measured_at::text \
     FROM tenant.quota_state q JOIN tenant.tenants t ON t.id = q.tenant_id WHERE q.over_quota";

fn load_flags() -> (HashMap<i64, Over>, Status) {
    privilege::as_owner(|| {
        with_latest_snapshot(|| {
            Spi::connect(|c| {
                let s = c.select(STATUS, Some(1), &[])?.first();
                let relid = s.get::<Oid>(1)?.map(|o| o.to_u32()).unwrap_or(0);
                let status = Status {
                    last_refresh_at: s.get::<i64>(2)?,
                    worker_interval: s.get::<i32>(3)?,
                    any_storage_limit: s.get::<bool>(4)?.unwrap_or(false),
                    owner: s.get::<Oid>(5)?.unwrap_or(pg_sys::InvalidOid),
                };
                STATE_RELID.0.set(relid);
                let mut over = HashMap::new();
                for row in c.select(OVER, None, &[])? {
                    let id = row.get::<i64>(1)?.unwrap_or(0);
                    over.insert(
                        id,
                        Over {
                            slug: row.get::<String>(2)?.unwrap_or_default(),
                            bytes: row.get::<i64>(3)?.unwrap_or(0),
                            max_mb: row.get::<i32>(4)?.unwrap_or(0),
                            measured_at: row.get::<String>(5)?.unwrap_or_default(),
                        },
                    );
                }
                Ok::<_, pgrx::spi::Error>((over, status))
            })
        })
    })
    .unwrap_or_else(|e| spi_failed("reading the storage flags", e))
}

fn statement_start() -> i64 {
    unsafe { pg_sys::GetCurrentStatementStartTimestamp() }
}

/// The write-limit of `tenant`, if it has one, from the cache (reloaded after an invalidation or
/// once its expiry passed).
fn over_quota(tenant: i64) -> Option<Over> {
    let now = statement_start();
    {
        let flags = FLAGS.0.borrow();
        if let Some(f) = flags.as_ref() {
            if f.generation == GENERATION.0.get() && now < f.expires_at {
                if f.over.is_empty() {
                    return None;
                }
                return f.over.get(&tenant).cloned();
            }
        }
    }
    let generation = GENERATION.0.get();
    let (over, status) = load_flags();
    let interval = effective_interval(REFRESH_INTERVAL.get(), status.worker_interval);
    let expires_at = if interval > 0 {
        now.saturating_add(i64::from(interval) * 1_000_000)
    } else {
        i64::MAX
    };
    let hit = over.get(&tenant).cloned();
    // A lookup that raced an invalidation is used once, not kept.
    if GENERATION.0.get() == generation {
        *FLAGS.0.borrow_mut() = Some(Flags {
            generation,
            expires_at,
            over,
        });
    }
    maybe_start_worker(&status, now);
    hit
}

/// Whether the role acting (the outer one) is exempt from quotas: tenant_admin members and
/// superusers. For the rate guard; the storage guard asks the same.
#[pg_extern(schema = "tenant", name = "_quota_exempt", stable, parallel_safe)]
fn quota_exempt() -> bool {
    privilege::has_role(privilege::outer_caller(), privilege::TENANT_ADMIN)
}

/// Refuses the statement if the current tenant is write-limited. Statement level: outside
/// cross-tenant mode row security confines the statement's rows to the current tenant.
#[pg_trigger(sql = false)]
fn storage_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    if !matches!(trigger.level(), PgTriggerLevel::Statement) {
        // Returning NULL from a row trigger would drop rows silently.
        error::raise(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "tenant._storage_guard() must be fired FOR EACH STATEMENT".into(),
            None,
            Some(
                "tenant.enable_isolation() and pinning install it; do not attach it by hand."
                    .into(),
            ),
        );
    }
    let Some(tenant) = context::current_tenant_id() else {
        // No tenant: row security refuses the write (or the role bypasses it and is not a tenant).
        return Ok(None);
    };
    if let Some(over) = over_quota(tenant) {
        if !exempt() {
            refuse_write(&over);
        }
    }
    Ok(None)
}

/// Quotas limit what a tenant's application writes: audited cross-tenant mode, and tenant_admin
/// members (migrations, DBAs) acting in a tenant's context, go through. The role asked is the
/// outer one, so a SECURITY DEFINER function the application calls does not lend its owner's
/// exemption.
fn exempt() -> bool {
    context::cross_tenant_active()
        || privilege::has_role(privilege::outer_caller(), privilege::TENANT_ADMIN)
}

// ---------------------------------------------------------------------------------------------
// Citus: no triggers on its tables, so the executor checks instead (hooks in cross_audit.rs).
//
// - On a coordinator, every statement whose plan writes (INSERT or UPDATE rights asked, which
//   covers ON CONFLICT, MERGE, writable CTEs and INSERT ... SELECT: Citus keeps the original range
//   table in its plans for the permission check) to an isolated or pinned table, and every COPY
//   FROM one, is refused while the current tenant is write-limited, with the exemptions of the
//   trigger. The hot path: a cell read (Citus loaded?), a walk over the range table, and the flag
//   lookup, which for a tenant that is not limited is one hash lookup.
// - On a worker, which has no flags, a write under a node context minted while the tenant was
//   write-limited (the token says so, `citus::FLAG_WRITE_LIMITED`) into a table carrying the
//   extension's policies (a shard of an isolated or pinned table) is refused: a write sent to a
//   worker directly, or through run_command_on_*, with a token replayed from the coordinator
//   cannot pass the limit either.

/// Whether the coordinator must tell the workers that `tenant` is write-limited for the role
/// acting (the node context's flag): over its limit, and the role not exempt.
pub fn write_limited(tenant: i64) -> bool {
    over_quota(tenant).is_some()
        && !privilege::has_role(privilege::outer_caller(), privilege::TENANT_ADMIN)
}

/// The relations a plan asks INSERT or UPDATE rights on.
unsafe fn written_relations(stmt: *const pg_sys::PlannedStmt) -> Vec<Oid> {
    let mut out = Vec::new();
    if stmt.is_null() {
        return out;
    }
    let wanted = pg_sys::AclMode::from(pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE);
    #[cfg(feature = "pg15")]
    {
        let rtable = pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg((*stmt).rtable);
        for rte in rtable.iter_ptr() {
            if !rte.is_null()
                && (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION
                && (*rte).requiredPerms & wanted != 0
                && !out.contains(&(*rte).relid)
            {
                out.push((*rte).relid);
            }
        }
    }
    #[cfg(feature = "pg18")]
    {
        let infos = pgrx::PgList::<pg_sys::RTEPermissionInfo>::from_pg((*stmt).permInfos);
        for info in infos.iter_ptr() {
            if !info.is_null()
                && (*info).requiredPerms & wanted != 0
                && !out.contains(&(*info).relid)
            {
                out.push((*info).relid);
            }
        }
    }
    out
}

fn refuse_write(over: &Over) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        storage_refusal(&over.slug, over.bytes, over.max_mb),
        Some(format!(
            "Measured at {}. While over its limit the tenant may read and DELETE, but not INSERT or UPDATE.",
            over.measured_at
        )),
        Some(
            "Delete rows and CALL tenant.refresh_usage(), or raise the limit with tenant.set_limits()."
                .into(),
        ),
    )
}

/// The coordinator's check of one write to `relids`: the trigger's rule, for tables that have none.
fn coordinator_check(relids: &[Oid]) {
    if relids.is_empty() {
        return;
    }
    let Some(tenant) = context::current_tenant_id() else {
        return; // no tenant: row security refuses the write, or the role is in none
    };
    let Some(over) = over_quota(tenant) else {
        return;
    };
    if exempt() {
        return;
    }
    let governed = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(
                "SELECT pg_catalog.bool_or(tenant._quota_governed(r.oid::pg_catalog.regclass) \
                        OR EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(r.oid::pg_catalog.regclass) a \
                                    WHERE tenant._quota_governed(a.relid))) \
                   FROM pg_catalog.unnest($1::pg_catalog.oid[]) r(oid)",
                Some(1),
                &[relids.to_vec().into()],
            )?;
            context::first_value::<bool>(t)
        })
    })
    .unwrap_or_else(|e| spi_failed("looking up the tables a write reaches", e));
    if governed == Some(true) {
        refuse_write(&over);
    }
}

/// A worker's check: the node context's write-limit flag, for shards carrying the extension's
/// policies.
fn worker_check(relids: &[Oid]) {
    if relids.is_empty() {
        return;
    }
    let claims = crate::citus::node_claims();
    let limited = claims.is_some_and(|c| c.write_limited && !c.cross);
    if !limited && !crate::citus::write_limit_seen() {
        return;
    }
    let tenant = claims.map(|c| c.tenant).unwrap_or(0);
    let isolated = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_policy p \
                                 WHERE p.polrelid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) \
                                   AND p.polname OPERATOR(pg_catalog.~) '^qft_')",
                Some(1),
                &[relids.to_vec().into()],
            )?;
            context::first_value::<bool>(t)
        })
    })
    .unwrap_or_else(|e| spi_failed("looking up the shards a write reaches", e));
    if isolated == Some(true) {
        error::raise(
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            format!(
                "tenant {tenant} is over its storage quota: this Citus worker refuses its INSERT and UPDATE"
            ),
            Some("The node context was minted on the coordinator while the tenant was write-limited.".into()),
            Some("Write through the coordinator; delete rows there and CALL tenant.refresh_usage(), or raise the limit with tenant.set_limits().".into()),
        );
    }
}

/// From the executor start hook (cross_audit.rs), for every plan run where Citus is loaded.
#[pg_guard]
pub unsafe extern "C-unwind" fn check_citus_write(qd: *mut pg_sys::QueryDesc) {
    if qd.is_null() {
        return;
    }
    let relids = written_relations((*qd).plannedstmt);
    if relids.is_empty() {
        return;
    }
    match crate::citus::node() {
        crate::citus::Node::Single => {}
        crate::citus::Node::Coordinator => coordinator_check(&relids),
        crate::citus::Node::Worker => worker_check(&relids),
    }
}

/// From the executor finish hook (cross_audit.rs) where Citus is loaded: on a worker, the same
/// check again once the statement has run, for a token assigned (and perhaps cleared again)
/// within it.
#[pg_guard]
pub unsafe extern "C-unwind" fn check_citus_write_done(qd: *mut pg_sys::QueryDesc) {
    if qd.is_null() || !crate::citus::write_limit_seen() {
        return;
    }
    let relids = written_relations((*qd).plannedstmt);
    if !relids.is_empty() && crate::citus::node() == crate::citus::Node::Worker {
        worker_check(&relids);
    }
}

/// From the utility hook (cross_audit.rs) where Citus is loaded: `COPY ... FROM` into an
/// isolated table on a coordinator (Citus runs it, not the executor). On a worker row security
/// refuses COPY FROM into a shard by itself.
#[pg_guard]
pub unsafe extern "C-unwind" fn check_citus_copy(pstmt: *mut pg_sys::PlannedStmt) {
    if pstmt.is_null() || !pgrx::is_a((*pstmt).utilityStmt, pg_sys::NodeTag::T_CopyStmt) {
        return;
    }
    let copy = (*pstmt).utilityStmt.cast::<pg_sys::CopyStmt>();
    if !(*copy).is_from || (*copy).relation.is_null() {
        return;
    }
    if crate::citus::node() != crate::citus::Node::Coordinator {
        return;
    }
    let relid = pg_sys::RangeVarGetRelidExtended(
        (*copy).relation,
        pg_sys::NoLock as _,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    );
    if relid != pg_sys::InvalidOid {
        coordinator_check(&[relid]);
    }
}

// ---------------------------------------------------------------------------------------------
// Rate limits on Citus: no trigger counts there (Citus refuses triggers on its tables, and to
// distribute a table that has one), so the executor counts, after each INSERT, where the rows
// are stored:
//
// - On a worker, an INSERT into a shard whose table (its partition root) the node context names
//   among its rate limits (`citus::RateClaims`: the coordinator put the tenant's limit per
//   rate-limited table in the token, under the MAC, unless the role is exempt or in cross-tenant
//   mode) is counted in the worker's own counters (`tenant._node_rate_record`). A tenant's rows
//   of a table distributed by its tenant column, or of a distributed tenant schema, are on one
//   node, and each placement of a reference table counts the same inserts, so the count is the
//   tenant's whole (limit_rate refuses a table distributed by another column). An INSERT sent
//   to the worker directly, or through run_command_on_*, with a replayed context is counted
//   the same way: it is the same statement on the same shard.
// - On a coordinator, an INSERT into a rate-limited table whose rows stay there (local to the
//   coordinator, and a shard the coordinator holds) is counted as the trigger counts on one node
//   (`tenant._rate_record`); one into a distributed or reference table is left to the nodes
//   holding its shards.
// - The count is the statement's processed rows (`es_processed`): an `INSERT ... ON CONFLICT DO
//   UPDATE` counts the rows it updated too. Where the count would not be the statement's own —
//   an INSERT in a WITH clause, MERGE — a statement writing a rate-limited table is refused.

struct Rated {
    generation: u64,
    /// Every table of tenant.rate_limits (the limited ones and their partitions).
    relids: Vec<Oid>,
    /// What node contexts carry per tenant (`node_rates_for`), read once per generation.
    per_tenant: HashMap<i64, Option<crate::citus::RateClaims>>,
}
static RATED: Backend<RefCell<Option<Rated>>> = Backend(RefCell::new(None));

/// The rate-limited tables, through a cache the trigger on tenant.rate_limits invalidates (with
/// the storage flags' generation).
fn with_rated<R>(f: impl FnOnce(&[Oid]) -> R) -> R {
    {
        let rated = RATED.0.borrow();
        if let Some(r) = rated
            .as_ref()
            .filter(|r| r.generation == GENERATION.0.get())
        {
            return f(&r.relids);
        }
    }
    let generation = GENERATION.0.get();
    let relids = load_rated();
    let out = f(&relids);
    if GENERATION.0.get() == generation {
        *RATED.0.borrow_mut() = Some(Rated {
            generation,
            relids,
            per_tenant: HashMap::new(),
        });
    }
    out
}

/// Part of the relcache callback: a rate-limited table's entry invalidated (renamed, altered,
/// dropped) makes the cached names stale. No catalog access here.
fn rated_relation_changed(relid: Oid) -> bool {
    RATED
        .0
        .try_borrow()
        .map(|r| r.as_ref().is_some_and(|r| r.relids.contains(&relid)))
        .unwrap_or(true)
}

fn load_rated() -> Vec<Oid> {
    // A database where the extension is not installed (a preloaded library) has no limits.
    let installed = unsafe {
        let ns = pg_sys::get_namespace_oid(c"tenant".as_ptr(), true);
        ns != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(c"rate_limits".as_ptr(), ns) != pg_sys::InvalidOid
    };
    if !installed {
        return Vec::new();
    }
    privilege::as_owner(|| {
        with_latest_snapshot(|| {
            Spi::connect(|c| {
                let mut out = Vec::new();
                for row in c.select(
                    "SELECT l.relid::pg_catalog.oid FROM tenant.rate_limits l",
                    None,
                    &[],
                )? {
                    out.extend(row.get::<Oid>(1)?);
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
        })
    })
    .unwrap_or_else(|e| spi_failed("reading the rate limits", e))
}

/// What a Citus coordinator puts in the node context for `tenant`: its slug and its limit on
/// every rate-limited table (the table's own, else the tenant's max_runs_per_day). None when no
/// table is rate-limited or the role acting is exempt (tenant_admin members, superusers).
pub fn node_rates_for(tenant: i64) -> Option<crate::citus::RateClaims> {
    if with_rated(|r| r.is_empty())
        || privilege::has_role(privilege::outer_caller(), privilege::TENANT_ADMIN)
    {
        return None;
    }
    let generation = GENERATION.0.get();
    let cached = RATED.0.borrow().as_ref().and_then(|r| {
        (r.generation == generation)
            .then(|| r.per_tenant.get(&tenant).cloned())
            .flatten()
    });
    if let Some(hit) = cached {
        return hit;
    }
    let rates = read_node_rates(tenant);
    if GENERATION.0.get() == generation {
        if let Some(r) = RATED.0.borrow_mut().as_mut() {
            if r.generation == generation {
                r.per_tenant.insert(tenant, rates.clone());
            }
        }
    }
    rates
}

fn read_node_rates(tenant: i64) -> Option<crate::citus::RateClaims> {
    let rows = privilege::as_owner(|| {
        with_latest_snapshot(|| {
            Spi::connect(|c| {
                let mut out = Vec::new();
                for row in c.select(
                    "SELECT t.slug, l.relid::pg_catalog.oid, COALESCE(l.max_inserts_per_day, t.max_runs_per_day) \
                   FROM tenant.rate_limits l \
                   JOIN tenant.tenants t ON t.id OPERATOR(pg_catalog.=) $1 \
                  WHERE l.relid OPERATOR(pg_catalog.=) l.counted_as",
                    None,
                    &[tenant.into()],
                )? {
                    out.push((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<Oid>(2)?,
                        row.get::<i32>(3)?,
                    ));
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
        })
    })
    .unwrap_or_else(|e| spi_failed("reading the tenant's rate limits", e));
    let slug = rows.first()?.0.clone();
    let mut limits: Vec<(String, Option<i32>)> = rows
        .into_iter()
        .filter_map(|(_, relid, limit)| Some((table_key(relid?)?, limit)))
        .collect();
    limits.sort();
    (!limits.is_empty()).then_some(crate::citus::RateClaims { slug, limits })
}

/// The relations a plan inserts into, each with whether the statement's count is not its own:
/// an INSERT in a data-modifying WITH (its ModifyTable does not set the count), or MERGE. A
/// ModifyTable is the top of its query level's plan: the statement's, or a WITH query's subplan.
unsafe fn insert_targets(stmt: *const pg_sys::PlannedStmt) -> Vec<(Oid, bool)> {
    let mut out = Vec::new();
    let rtable = pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg((*stmt).rtable);
    let subplans = pgrx::PgList::<pg_sys::Plan>::from_pg((*stmt).subplans);
    let plans = std::iter::once((*stmt).planTree).chain(subplans.iter_ptr());
    for plan in plans {
        if plan.is_null() || !pgrx::is_a(plan.cast(), pg_sys::NodeTag::T_ModifyTable) {
            continue;
        }
        let mt = plan.cast::<pg_sys::ModifyTable>();
        let indirect = match (*mt).operation {
            pg_sys::CmdType::CMD_INSERT => !(*mt).canSetTag,
            pg_sys::CmdType::CMD_MERGE => true,
            _ => continue,
        };
        for index in pgrx::PgList::<i32>::from_pg((*mt).resultRelations).iter_int() {
            let rte = usize::try_from(index - 1)
                .ok()
                .and_then(|i| rtable.get_ptr(i));
            if let Some(rte) = rte {
                if (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION {
                    out.push(((*rte).relid, indirect));
                }
            }
        }
    }
    out
}

/// The shard id a relation's name ends with (`<table>_<shard id>`), if it could be a Citus shard.
pub fn shard_id_of(name: &str) -> Option<i64> {
    let (_, digits) = name.rsplit_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A relation's schema and name from the syscache, each as `quote_ident` renders it: the one
/// spelling of a table's name a coordinator puts in node contexts and a worker matches. Never a
/// query over pg_class: Citus filters every pg_class scan through `relation_is_a_known_shard`
/// (it hides shards from clients), which made one such lookup cost milliseconds.
fn quoted_name(relid: Oid) -> Option<(String, String)> {
    unsafe {
        let rel = pg_sys::get_rel_name(relid);
        if rel.is_null() {
            return None;
        }
        let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if ns.is_null() {
            return None;
        }
        let quote = |p: *const std::ffi::c_char| {
            std::ffi::CStr::from_ptr(pg_sys::quote_identifier(p))
                .to_string_lossy()
                .into_owned()
        };
        Some((quote(ns), quote(rel)))
    }
}

/// `schema.table`, quoted as `quote_ident` would.
pub fn table_key(relid: Oid) -> Option<String> {
    quoted_name(relid).map(|(ns, rel)| format!("{ns}.{rel}"))
}

/// The Citus table a shard belongs to and that table's partition root, as
/// (root oid, `schema.table`), if `relid` is a shard this node knows: its name ends in a shard
/// id whose `shard_name` is this relation's, in its table's schema.
fn shard_root(relid: Oid) -> Option<(Oid, String)> {
    let (ns, rel) = quoted_name(relid)?;
    let raw = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_rel_name(relid)) };
    let shard = shard_id_of(&raw.to_string_lossy())?;
    let found = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(
                "SELECT s.logicalrelid::pg_catalog.oid, pg_catalog.shard_name(s.logicalrelid, s.shardid), \
                        COALESCE(pg_catalog.pg_partition_root(s.logicalrelid), s.logicalrelid)::pg_catalog.oid \
                   FROM pg_catalog.pg_dist_shard s WHERE s.shardid OPERATOR(pg_catalog.=) $1",
                Some(1),
                &[shard.into()],
            )?;
            if t.is_empty() {
                return Ok(None);
            }
            let row = t.first();
            Ok::<_, pgrx::spi::Error>(
                match (row.get::<Oid>(1)?, row.get::<String>(2)?, row.get::<Oid>(3)?) {
                    (Some(table), Some(name), Some(root)) => Some((table, name, root)),
                    _ => None,
                },
            )
        })
    })
    .unwrap_or_else(|e| spi_failed("looking up a shard's table", e))?;
    let (table, name, root) = found;
    // shard_name qualifies the name outside public; the shard is in its table's schema.
    let same_schema =
        unsafe { pg_sys::get_rel_namespace(table) == pg_sys::get_rel_namespace(relid) };
    let named = name == rel || name == format!("{ns}.{rel}");
    (same_schema && named).then_some(())?;
    Some((root, table_key(root)?))
}

fn refuse_indirect(relid: Oid) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!(
            "an INSERT into rate-limited table {} inside WITH or MERGE is not supported in a database with Citus",
            table_key(relid).unwrap_or_else(|| relid.to_u32().to_string())
        ),
        Some("Rate limits on Citus count a statement's own rows; a data-modifying WITH or a MERGE does not report them.".into()),
        Some("Insert with a plain INSERT statement.".into()),
    )
}

/// The coordinator's count: rows stored here (a local table, a shard held here), as one node.
fn count_on_coordinator(targets: &[(Oid, bool)], n: u64) {
    for &(relid, indirect) in targets {
        let limited = with_rated(|r| r.contains(&relid));
        let counted_as = if limited {
            Some(relid)
        } else if with_rated(|r| r.is_empty()) {
            None
        } else {
            shard_root(relid)
                .map(|(root, _)| root)
                .filter(|root| with_rated(|r| r.contains(root)))
        };
        let Some(counted_as) = counted_as else {
            continue;
        };
        let stored_here = privilege::as_owner(|| {
            Spi::connect(|c| {
                let t = c.select(
                    "SELECT $2 OR (tenant._citus_kind($1::pg_catalog.oid::pg_catalog.regclass) IS NULL \
                                   OR tenant._citus_kind($1::pg_catalog.oid::pg_catalog.regclass) OPERATOR(pg_catalog.=) 'local') \
                        AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g \
                                         WHERE g.tgrelid OPERATOR(pg_catalog.=) $1 AND g.tgname OPERATOR(pg_catalog.=) 'qft_rate_limit')",
                    Some(1),
                    &[relid.into(), (counted_as != relid).into()],
                )?;
                context::first_value::<bool>(t)
            })
        })
        .unwrap_or_else(|e| spi_failed("looking up a rate-limited table", e));
        if stored_here != Some(true) {
            continue; // a distributed or reference table: the nodes holding its shards count
        }
        if indirect {
            refuse_indirect(relid);
        }
        record_as_owner(
            "SELECT tenant._rate_record($1::pg_catalog.oid::pg_catalog.regclass, $2)",
            &[counted_as.into(), (n as i64).into()],
        );
    }
}

/// Runs one of the counting functions as the extension owner (its refusal is the statement's).
fn record_as_owner(sql: &str, args: &[pgrx::datum::DatumWithOid]) {
    privilege::as_owner(|| Spi::connect(|c| c.select(sql, None, args).map(|_| ())))
        .unwrap_or_else(|e| spi_failed("counting a rate-limited insert", e));
}

/// A worker's count, under a node context that carries rate limits.
fn count_on_worker(targets: &[(Oid, bool)], n: u64) {
    let Some((tenant, rates)) = crate::citus::node_rates() else {
        return;
    };
    for &(relid, indirect) in targets {
        let Some((root, name)) = shard_root(relid) else {
            continue;
        };
        let Some(&(_, limit)) = rates.limits.iter().find(|(t, _)| *t == name) else {
            continue;
        };
        if indirect {
            refuse_indirect(relid);
        }
        record_as_owner(
            "SELECT tenant._node_rate_record($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5)",
            &[
                root.into(),
                tenant.into(),
                rates.slug.as_str().into(),
                limit.into(),
                (n as i64).into(),
            ],
        );
    }
}

/// From the executor finish hook (cross_audit.rs) where Citus is loaded, once the statement has
/// run: counts its inserts into rate-limited tables where the rows are stored.
#[pg_guard]
pub unsafe extern "C-unwind" fn count_citus_inserts(qd: *mut pg_sys::QueryDesc) {
    if qd.is_null() || (*qd).plannedstmt.is_null() || (*qd).estate.is_null() {
        return;
    }
    let stmt = (*qd).plannedstmt;
    if (*stmt).resultRelations.is_null() {
        return; // nothing written
    }
    let targets = insert_targets(stmt);
    if targets.is_empty() {
        return; // no INSERT (UPDATE and DELETE insert nothing)
    }
    let n = (*(*qd).estate).es_processed;
    match crate::citus::node() {
        crate::citus::Node::Single => {}
        crate::citus::Node::Coordinator => count_on_coordinator(&targets, n),
        crate::citus::Node::Worker => count_on_worker(&targets, n),
    }
}

/// Called by the statement trigger on `tenant.quota_state`: every backend drops its cached flags
/// at commit (and this one at the end of the command).
#[pg_extern(schema = "tenant", name = "_quota_changed", volatile, parallel_unsafe)]
fn quota_changed() {
    let relid =
        Spi::get_one::<Oid>("SELECT 'tenant.quota_state'::pg_catalog.regclass::pg_catalog.oid");
    if let Ok(Some(relid)) = relid {
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    }
}

// What `ALTER ROLE/DATABASE ... SET` and the configuration files say about the cap for the
// session user in this database, most specific first (as PostgreSQL applies them at login).
const STORED_CAP: &str = "SELECT s.v FROM ( \
       SELECT pg_catalog.substr(cfg, 35) AS v, \
              CASE WHEN d.setrole <> 0 AND d.setdatabase <> 0 THEN 1 WHEN d.setrole <> 0 THEN 2 ELSE 3 END AS prio \
         FROM pg_catalog.pg_db_role_setting d CROSS JOIN LATERAL pg_catalog.unnest(d.setconfig) AS cfg \
        WHERE cfg LIKE 'qualityfoundry\\_tenant.max\\_tenants=%' \
          AND ((d.setrole = $1 AND d.setdatabase IN (0, $2)) OR (d.setrole = 0 AND d.setdatabase = $2)) \
       UNION ALL \
       SELECT f.setting, 4 FROM pg_catalog.pg_file_settings f \
        WHERE f.name = 'qualityfoundry_tenant.max_tenants' AND f.applied \
     ) s ORDER BY s.prio LIMIT 1";

/// The cap in force for this call. Read here, so the library is loaded first (loading discards a
/// placeholder a non-superuser SET before it was). For a non-superuser the configured cap also
/// holds when a client option shadowed it: in a session that had not loaded the library, a
/// startup option (`-c qualityfoundry_tenant.max_tenants=...`) replaces the ALTER ROLE/DATABASE or
/// postgresql.conf value in the placeholder and is then discarded, leaving the default (no cap).
/// So the configured value is read from the catalog and the files too, and the stricter wins.
#[pg_extern(
    schema = "tenant",
    name = "_quota_max_tenants",
    stable,
    parallel_unsafe
)]
fn max_tenants() -> i32 {
    let session = MAX_TENANTS.get();
    if unsafe { pg_sys::superuser_arg(privilege::outer_caller()) } {
        return session;
    }
    let stored = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(
                STORED_CAP,
                Some(1),
                &[
                    unsafe { pg_sys::GetSessionUserId() }.into(),
                    unsafe { pg_sys::MyDatabaseId }.into(),
                ],
            )?;
            context::first_value::<String>(t)
        })
    })
    .unwrap_or_else(|e| spi_failed("reading the configured tenant cap", e));
    match stored.as_deref().and_then(parse_cap) {
        Some(cap) => stricter_cap(session, cap),
        None => session,
    }
}

#[pg_extern(
    schema = "tenant",
    name = "_over_storage_limit",
    immutable,
    parallel_safe
)]
fn over_storage_limit_sql(bytes: i64, max_storage_mb: Option<i32>) -> bool {
    over_storage_limit(bytes, max_storage_mb)
}

#[pg_extern(schema = "tenant", name = "_estimated_rows", immutable, parallel_safe)]
fn estimated_rows_sql(reltuples: f32, relpages: i32, pages_now: i64) -> Option<i64> {
    estimate_rows(f64::from(reltuples), i64::from(relpages), pages_now)
}

// ---------------------------------------------------------------------------------------------
// Rows and bytes of one shared table per tenant.

struct TableInfo {
    /// `schema.table` as `quote_ident` wrote both parts (TABLE_INFO): safe to splice into SQL.
    quoted_name: String,
    owner: Oid,
    kind: String,
    column_type: Option<String>,
    reltuples: f64,
    relpages: i64,
    pages_now: i64,
    bytes: i64,
}

const TABLE_INFO: &str = "SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' \
            OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), \
        c.relowner, c.relkind::text, \
        (SELECT pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped), \
        c.reltuples::float8, c.relpages::int8, \
        pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int8, \
        pg_catalog.pg_total_relation_size(c.oid) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.oid = $1";

fn table_info(tbl: Oid, column: &str) -> Option<TableInfo> {
    privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(TABLE_INFO, Some(1), &[tbl.into(), column.into()])?;
            if t.is_empty() {
                return Ok::<_, pgrx::spi::Error>(None);
            }
            let t = t.first();
            Ok(Some(TableInfo {
                quoted_name: t.get::<String>(1)?.unwrap_or_default(),
                owner: t.get::<Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                kind: t.get::<String>(3)?.unwrap_or_default(),
                column_type: t.get::<String>(4)?,
                reltuples: t.get::<f64>(5)?.unwrap_or(-1.0),
                relpages: t.get::<i64>(6)?.unwrap_or(0),
                pages_now: t.get::<i64>(7)?.unwrap_or(0),
                bytes: t.get::<i64>(8)?.unwrap_or(0),
            }))
        })
    })
    .unwrap_or_else(|e| spi_failed("reading the table's catalog entry", e))
}

/// Rows per tenant key (the tenant column as text) of one table — its own rows only (`ONLY`) —
/// and the share of its bytes (heap, indexes, TOAST) apportioned by rows. `tenant_key` NULL: every
/// key, one pass over the table (the tenant index, index-only when the visibility map allows),
/// exact counts and an exact total. A key: that tenant's rows (a range of the tenant index), the
/// total estimated as the planner would (exact when the table was never analyzed).
///
/// Counted as the table's owner in a security-restricted operation with SECURITY_NOFORCE_RLS: the
/// owner sees every row despite FORCE ROW LEVEL SECURITY, and nothing in the table (index
/// predicates, functions they call) runs with the extension owner's rights. Superusers only (the
/// SECURITY DEFINER usage functions): it reads any table.
#[pg_extern(schema = "tenant", name = "_table_usage", volatile, parallel_unsafe)]
fn table_usage(
    tbl: Oid,
    tenant_column: &str,
    tenant_key: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(tenant_key, Option<String>),
        name!(rows, i64),
        name!(bytes, i64),
    ),
> {
    if !unsafe { pg_sys::superuser() } {
        error::denied(
            "permission denied to count rows for tenant usage".into(),
            None,
            Some("Use tenant.usage().".into()),
        );
    }
    let Some(info) = table_info(tbl, tenant_column) else {
        error::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation with oid {} does not exist", tbl.to_u32()),
            None,
            None,
        );
    };
    if info.kind != "r" {
        error::raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{} is not a table with storage", info.quoted_name),
            None,
            None,
        );
    }
    let cast = match info.column_type.as_deref() {
        Some("smallint") => "int2",
        Some("integer") => "int4",
        Some("bigint") => "int8",
        Some("uuid") => "uuid",
        Some(other) => error::raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "tenant column {tenant_column} of {} is of type {other}",
                info.quoted_name
            ),
            None,
            None,
        ),
        None => error::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!(
                "column {tenant_column} of {} does not exist",
                info.quoted_name
            ),
            None,
            None,
        ),
    };
    let col = pgrx::spi::quote_identifier(tenant_column);
    let rows: Vec<(Option<String>, i64, i64)> =
        privilege::as_role(info.owner, pg_sys::SECURITY_NOFORCE_RLS, || {
            Spi::connect(|c| {
                let mut out = Vec::new();
                match tenant_key {
                    None => {
                        let q = format!(
                            "SELECT x.{col}::pg_catalog.text, pg_catalog.count(*) FROM ONLY {} x GROUP BY x.{col}",
                            info.quoted_name
                        );
                        let mut counted = Vec::new();
                        for row in c.select(&q, None, &[])? {
                            counted.push((row.get::<String>(1)?, row.get::<i64>(2)?.unwrap_or(0)));
                        }
                        let total: i64 = counted.iter().map(|(_, n)| n).sum();
                        for (key, n) in counted {
                            out.push((key, n, apportion(info.bytes, n, total)));
                        }
                    }
                    Some(key) => {
                        let q = format!(
                            "SELECT pg_catalog.count(*) FROM ONLY {} x \
                             WHERE x.{col} OPERATOR(pg_catalog.=) $1::pg_catalog.{cast}",
                            info.quoted_name
                        );
                        let n = c.select(&q, Some(1), &[key.into()])?.first().get_one::<i64>()?;
                        let n = n.unwrap_or(0);
                        if n > 0 {
                            let total = match estimate_rows(info.reltuples, info.relpages, info.pages_now)
                            {
                                Some(t) => t.max(n),
                                None => c
                                    .select(
                                        &format!("SELECT pg_catalog.count(*) FROM ONLY {}", info.quoted_name),
                                        Some(1),
                                        &[],
                                    )?
                                    .first()
                                    .get_one::<i64>()?
                                    .unwrap_or(n),
                            };
                            out.push((Some(key.to_string()), n, apportion(info.bytes, n, total)));
                        }
                    }
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
        })
        .unwrap_or_else(|e| spi_failed(&format!("counting the rows of {}", info.quoted_name), e));
    TableIterator::new(rows)
}

// ---------------------------------------------------------------------------------------------
// The usage worker.

fn worker_alive(database: Oid) -> bool {
    crate::migrate::lock_held(database, WORKER_LOCK)
}

/// Starts this database's usage worker when one is configured, some tenant has a storage limit,
/// the last sweep is overdue and no worker holds the lock. At most one attempt per interval per
/// backend. Never fails the caller's statement: a full max_worker_processes is a WARNING.
fn maybe_start_worker(status: &Status, now: i64) {
    let interval = effective_interval(REFRESH_INTERVAL.get(), status.worker_interval);
    if !status.any_storage_limit || !sweep_overdue(status.last_refresh_at, now, interval) {
        return;
    }
    let last = LAST_START_ATTEMPT.0.get();
    if last != i64::MIN && now.saturating_sub(last) < i64::from(interval) * 1_000_000 {
        return;
    }
    LAST_START_ATTEMPT.0.set(now);
    let database = unsafe { pg_sys::MyDatabaseId };
    if status.owner == pg_sys::InvalidOid || worker_alive(database) {
        return;
    }
    let extra = format!("{} {}", database.to_u32(), status.owner.to_u32());
    let started = BackgroundWorkerBuilder::new(&format!("{WORKER_TYPE} {}", database.to_u32()))
        .set_type(WORKER_TYPE)
        .set_library("qualityfoundry_tenant")
        .set_function(WORKER_FUNCTION)
        .set_extra(&extra)
        .enable_spi_access()
        .load_dynamic();
    if started.is_err() {
        pgrx::warning!(
            "qualityfoundry_tenant: could not start the usage worker (max_worker_processes is exhausted); \
             storage flags change only with CALL tenant.refresh_usage() until one starts"
        );
    }
}

/// For set_limits and refresh_usage: start the worker if it is due (see `maybe_start_worker`).
#[pg_extern(
    schema = "tenant",
    name = "_usage_worker_check",
    volatile,
    parallel_unsafe
)]
fn usage_worker_check() {
    let (_, status) = load_flags();
    maybe_start_worker(&status, statement_start());
}

/// The usage worker of one database: connects as the extension's owner, holds the worker lock
/// (another worker of the same database exits at once), and runs the sweep every interval until
/// the interval is 0, the extension is gone, or it is terminated. A failed sweep is a WARNING in
/// the server log (tenant._refresh_usage_logged); the next one runs on time.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn qft_usage_worker(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let Some((database, owner)) = parse_worker_extra(BackgroundWorker::get_extra()) else {
        pgrx::error!("qualityfoundry_tenant usage worker started without a database");
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(Oid::from(database)),
        Some(Oid::from(owner)),
    );
    let first = BackgroundWorker::transaction(|| crate::migrate::try_session_lock(WORKER_LOCK));
    if !first {
        return; // another worker serves this database
    }
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let interval = REFRESH_INTERVAL.get();
        if interval <= 0 {
            // Backends whose setting a client shadowed go by this (effective_interval).
            BackgroundWorker::transaction(|| {
                Spi::run("SELECT tenant._refresh_usage_logged(0)").expect("record the interval")
            });
            break;
        }
        let present = BackgroundWorker::transaction(|| {
            let present = Spi::get_one::<bool>(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'qualityfoundry_tenant')",
            );
            if present == Ok(Some(true)) {
                Spi::run_with_args(
                    "SELECT tenant._refresh_usage_logged($1)",
                    &[interval.into()],
                )
                .expect("sweep");
                true
            } else {
                false
            }
        });
        if !present {
            break;
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(interval as u64))) {
            break;
        }
    }
}

pub fn parse_worker_extra(text: &str) -> Option<(u32, u32)> {
    let (db, owner) = text.split_once(' ')?;
    let db: u32 = db.parse().ok()?;
    let owner: u32 = owner.parse().ok()?;
    (db != 0 && owner != 0).then_some((db, owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_exceeded_only_above_it() {
        assert!(!over_storage_limit(0, None));
        assert!(!over_storage_limit(i64::MAX, None));
        assert!(!over_storage_limit(MIB, Some(1)));
        assert!(over_storage_limit(MIB + 1, Some(1)));
        assert!(!over_storage_limit(
            i64::from(i32::MAX) * MIB,
            Some(i32::MAX)
        ));
        assert!(over_storage_limit(i64::MAX, Some(i32::MAX)));
    }

    #[test]
    fn bytes_are_apportioned_by_rows() {
        assert_eq!(apportion(1000, 1, 4), 250);
        assert_eq!(apportion(1000, 3, 4), 750);
        assert_eq!(apportion(1000, 1, 3), 333);
        assert_eq!(apportion(1000, 0, 3), 0);
        assert_eq!(apportion(1000, 5, 0), 0);
        // An estimated total below the tenant's exact rows: the whole table, never more.
        assert_eq!(apportion(1000, 9, 4), 1000);
        assert_eq!(apportion(i64::MAX, i64::MAX - 1, i64::MAX), i64::MAX - 1);
    }

    #[test]
    fn rows_are_estimated_like_the_planner() {
        assert_eq!(estimate_rows(-1.0, 0, 10), None, "never analyzed");
        assert_eq!(estimate_rows(0.0, 0, 0), Some(0));
        assert_eq!(
            estimate_rows(0.0, 0, 3),
            None,
            "analyzed empty, grown since"
        );
        assert_eq!(estimate_rows(100.0, 10, 10), Some(100));
        assert_eq!(estimate_rows(100.0, 10, 20), Some(200));
        assert_eq!(estimate_rows(100.0, 10, 0), Some(0));
        assert_eq!(estimate_rows(100.0, 10, -1), None);
    }

    #[test]
    fn sizes_read_like_pg_size_pretty() {
        assert_eq!(size_text(0), "0 bytes");
        assert_eq!(size_text(1023), "1023 bytes");
        assert_eq!(size_text(1024), "1 kB");
        assert_eq!(size_text(98_304), "96 kB");
        assert_eq!(size_text(1_677_722), "1.6 MB");
        assert_eq!(size_text(5 * 1024 * MIB / 2), "2.5 GB");
        assert_eq!(
            storage_refusal("acme", 1_677_722, 1),
            "tenant \"acme\" is over its storage quota: 1.6 MB used, limit 1 MB"
        );
    }

    #[test]
    fn a_sweep_is_overdue_after_two_intervals() {
        let s = 1_000_000;
        assert!(!sweep_overdue(None, 0, 0), "no worker configured");
        assert!(sweep_overdue(None, 0, 60), "never swept");
        assert!(!sweep_overdue(Some(0), 120 * s, 60));
        assert!(sweep_overdue(Some(0), 120 * s + 1, 60));
        assert!(
            !sweep_overdue(Some(10 * s), 0, 60),
            "a clock behind the sweep"
        );
    }

    #[test]
    fn the_interval_falls_back_to_the_workers_own() {
        assert_eq!(effective_interval(60, None), 60);
        assert_eq!(effective_interval(60, Some(5)), 60);
        assert_eq!(effective_interval(0, Some(5)), 5, "a shadowed setting");
        assert_eq!(effective_interval(0, Some(0)), 0, "turned off");
        assert_eq!(effective_interval(0, None), 0);
        assert_eq!(effective_interval(0, Some(-3)), 0);
    }

    #[test]
    fn stored_caps_parse_and_the_stricter_wins() {
        assert_eq!(parse_cap("12"), Some(12));
        assert_eq!(parse_cap("0"), Some(0));
        assert_eq!(parse_cap("-1"), Some(-1));
        for bad in ["", "-", "1e3", "12x", "-2", "99999999999", "+3"] {
            assert_eq!(parse_cap(bad), None, "{bad:?}");
        }
        assert_eq!(stricter_cap(-1, 5), 5);
        assert_eq!(stricter_cap(5, -1), 5);
        assert_eq!(stricter_cap(3, 5), 3);
        assert_eq!(stricter_cap(0, 5), 0);
        assert_eq!(stricter_cap(-1, -1), -1);
    }

    #[test]
    fn shard_ids_are_read_from_the_name_end() {
        assert_eq!(shard_id_of("projects_102008"), Some(102008));
        assert_eq!(shard_id_of("my_table_2_102041"), Some(102041));
        for name in [
            "projects",
            "projects_",
            "projects_12a",
            "_",
            "x_-1",
            "x_99999999999999999999",
        ] {
            assert_eq!(shard_id_of(name), None, "{name}");
        }
    }

    #[test]
    fn worker_arguments_round_trip_and_refuse_junk() {
        assert_eq!(parse_worker_extra("16384 10"), Some((16384, 10)));
        for bad in [
            "",
            "1",
            "0 10",
            "1 0",
            "a 1",
            "1 2 3",
            " 1 2",
            "4294967296 1",
        ] {
            assert_eq!(parse_worker_extra(bad), None, "{bad:?}");
        }
    }
}
