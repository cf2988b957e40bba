//! `migrate_all`: the parts that need C-level access. The procedure, the ledger and the per-schema
//! step are plpgsql in `sql/migrate.sql`; this module provides
//!
//! - the run lock: a session-level lock that outlives the procedure's COMMITs and is released by
//!   an abort callback when the procedure fails (a plpgsql procedure cannot catch its own errors
//!   around COMMIT, so it could not release a session lock itself);
//! - the step runner: each schema's migration SQL runs as the caller, with `search_path` set to
//!   the schema and that schema's tenant as a context the migration cannot change, and every
//!   setting it changes (`SET ROLE` included) rolled back when the step ends;
//! - the parallel mode: dynamic background workers (no `shared_preload_libraries` needed) that
//!   claim schemas from the ledger and apply them exactly as the serial loop does, and the
//!   leader's wait (a second at a time, committing in between) that reports progress and stops
//!   its workers if it is cancelled.
//!
//! Locks. They are *object* locks on the extension itself (`pg_locks`: `locktype = 'object'`,
//! `classid = 'pg_extension'::regclass`, `objid` = the extension's oid, `objsubid` below), taken
//! through the lock manager from C. No SQL function takes such a lock, so no application role can
//! take one to block a run (advisory locks, which any role can take with any key, are not used),
//! and a migration that calls `pg_advisory_unlock_all()` releases nothing of ours.
//! - `objsubid = 1`: the run lock, exclusive, held by the leader for the whole run;
//! - `objsubid = 2`: held shared by every worker for its lifetime; a new run takes it exclusively
//!   before taking over `running` rows, so it never takes over a row a live worker still owns;
//! - `objsubid = 3`: the template lock, transaction-level: exclusive while the template is
//!   migrated, shared while `create_tenant(with_schema => true)` copies it;
//! - `objsubid = 16`: held by the usage worker of the database (src/quota.rs) for its life.

use crate::error;
use crate::privilege::{self, TENANT_ADMIN};
use crate::settings;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::time::{Duration, Instant};

/// The `objsubid` of each of the extension's locks (see the module documentation).
pub const RUN_LOCK: u32 = 1;
pub const WORKERS_LOCK: u32 = 2;
pub const TEMPLATE_LOCK: u32 = 3;

const WORKER_FUNCTION: &str = "qft_migrate_worker";
const WORKER_TYPE: &str = "qualityfoundry_tenant migrate";

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

static RUN_LOCK_HELD: Backend<Cell<bool>> = Backend(Cell::new(false));
static CALLBACK_REGISTERED: Backend<Cell<bool>> = Backend(Cell::new(false));
/// Set in a migration worker: it applies schemas claimed for its leader's run.
static IN_WORKER: Backend<Cell<bool>> = Backend(Cell::new(false));

pub fn extension_oid() -> pg_sys::Oid {
    unsafe { pg_sys::get_extension_oid(c"qualityfoundry_tenant".as_ptr(), false) }
}

/// The lock tag of one of the extension's locks: an object lock on the extension in this database.
fn lock_tag(key: u32) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: pg_sys::ExtensionRelationId.to_u32(),
        locktag_field3: extension_oid().to_u32(),
        locktag_field4: key as u16,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

fn run_lock_tag() -> pg_sys::LOCKTAG {
    lock_tag(RUN_LOCK)
}

/// Takes the extension's lock `key` (see the module documentation) for this session without
/// waiting; false when another session holds it. It is released when the process exits. For a
/// background worker that must be alone in its database (the usage worker, src/quota.rs), which no
/// application role can then keep from starting by taking a guessable advisory key.
pub fn try_session_lock(key: u32) -> bool {
    let got =
        unsafe { pg_sys::LockAcquire(&lock_tag(key), pg_sys::ExclusiveLock as i32, true, true) };
    if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
        return false;
    }
    unsafe { pg_sys::before_shmem_exit(Some(release_session_locks), pg_sys::Datum::from(0)) };
    true
}

/// Whether some session of `database` holds the extension's lock `key`.
pub fn lock_held(database: pg_sys::Oid, key: u32) -> bool {
    privilege::as_owner(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_locks l \
              WHERE l.locktype OPERATOR(pg_catalog.=) 'object' AND l.granted \
                AND l.database OPERATOR(pg_catalog.=) $1 \
                AND l.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass \
                AND l.objid OPERATOR(pg_catalog.=) $2 AND l.objsubid OPERATOR(pg_catalog.=) $3)",
            &[database.into(), extension_oid().into(), (key as i32).into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false)
}

fn release_run_lock() {
    if RUN_LOCK_HELD.0.get() {
        RUN_LOCK_HELD.0.set(false);
        let tag = run_lock_tag();
        unsafe { pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, true) };
    }
}

/// A top-level abort while the run lock is held means the procedure failed (a tenant's failure
/// is caught in a subtransaction and never aborts the top level): release the lock with it, and
/// stop this session's workers (each rolls back the schema it is on). TerminateBackgroundWorker
/// only flags the slot and signals the postmaster, which is safe this late in an abort.
#[pg_guard]
unsafe extern "C-unwind" fn release_on_abort(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::XactEvent::XACT_EVENT_ABORT
        || event == pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
    {
        if let Ok(mut workers) = WORKERS.0.try_borrow_mut() {
            for w in workers.drain(..) {
                let _ = w.terminate();
            }
        }
        release_run_lock();
    }
}

/// Takes the run lock for this session, waiting for a run in another session to finish
/// (`lock_timeout` and cancel apply to the wait).
#[pg_extern(schema = "tenant", name = "_migration_lock", volatile, parallel_unsafe)]
fn migration_lock() {
    privilege::require_role_of(privilege::outer_caller(), TENANT_ADMIN, "run migrations");
    if RUN_LOCK_HELD.0.get() {
        error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            "a migration run is already in progress in this session".to_string(),
            None,
            Some("migrate_all and retry_failed cannot be nested.".to_string()),
        );
    }
    if !CALLBACK_REGISTERED.0.get() {
        unsafe {
            pg_sys::RegisterXactCallback(Some(release_on_abort), std::ptr::null_mut());
            // The run lock is a session lock of the regular lock method: never left behind by a
            // session that ends (PostgreSQL releases such locks only when a transaction aborts).
            pg_sys::before_shmem_exit(Some(release_session_locks), pg_sys::Datum::from(0));
        }
        CALLBACK_REGISTERED.0.set(true);
    }
    let tag = run_lock_tag();
    let mode = pg_sys::ExclusiveLock as i32;
    let got = unsafe { pg_sys::LockAcquire(&tag, mode, true, true) };
    if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
        let holder = Spi::get_one_with_args::<i32>(
            "SELECT l.pid FROM pg_catalog.pg_locks l \
             WHERE l.locktype OPERATOR(pg_catalog.=) 'object' AND l.granted \
               AND l.database OPERATOR(pg_catalog.=) $1 \
               AND l.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass \
               AND l.objid OPERATOR(pg_catalog.=) $2 AND l.objsubid OPERATOR(pg_catalog.=) $3 LIMIT 1",
            &[
                unsafe { pg_sys::MyDatabaseId }.into(),
                extension_oid().into(),
                (RUN_LOCK as i32).into(),
            ],
        )
        .ok()
        .flatten();
        let who = holder.map_or_else(|| "another session".to_string(), |p| format!("backend {p}"));
        pgrx::notice!("waiting for the migration run in {who} to finish");
        unsafe { pg_sys::LockAcquire(&tag, mode, true, false) };
    }
    RUN_LOCK_HELD.0.set(true);
}

#[pg_extern(
    schema = "tenant",
    name = "_migration_unlock",
    volatile,
    parallel_unsafe
)]
fn migration_unlock() {
    release_run_lock();
}

/// The ledger-writing steps are callable by tenant_admin members (the procedures are SECURITY
/// INVOKER); this keeps them from being used outside a run, i.e. without the run lock.
#[pg_extern(
    schema = "tenant",
    name = "_migration_require_lock",
    volatile,
    parallel_unsafe
)]
fn require_lock() {
    if !RUN_LOCK_HELD.0.get() {
        error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "this step runs only inside tenant.migrate_all or tenant.retry_failed".to_string(),
            None,
            Some("CALL tenant.migrate_all(...) or tenant.retry_failed(...).".to_string()),
        );
    }
}

/// COMMIT inside the procedure fails in a transaction block; say so before anything is done.
#[pg_extern(
    schema = "tenant",
    name = "_migration_require_top_level",
    volatile,
    parallel_unsafe
)]
fn require_top_level(what: &str) {
    if unsafe { pg_sys::IsTransactionBlock() } {
        error::raise(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!("{what} cannot run inside a transaction block"),
            Some("It commits once per schema.".to_string()),
            Some(format!("CALL {what} on its own, outside BEGIN ... COMMIT.")),
        );
    }
}

/// The template lock for the current transaction: exclusive while the template is migrated,
/// shared while `create_tenant(with_schema => true)` copies it and records its versions.
#[pg_extern(
    schema = "tenant",
    name = "_migration_template_lock",
    volatile,
    parallel_unsafe
)]
fn template_lock(exclusive: bool) {
    privilege::require_role_of(privilege::outer_caller(), TENANT_ADMIN, "run migrations");
    let mode = if exclusive {
        pg_sys::ExclusiveLock
    } else {
        pg_sys::ShareLock
    };
    unsafe { pg_sys::LockAcquire(&lock_tag(TEMPLATE_LOCK), mode as i32, false, false) };
}

/// Waits, for the current transaction, until no worker of an earlier run is alive (each holds
/// the workers lock shared for its lifetime). Only inside a run.
#[pg_extern(
    schema = "tenant",
    name = "_migration_workers_gone",
    volatile,
    parallel_unsafe
)]
fn workers_gone() {
    privilege::require_role_of(privilege::outer_caller(), TENANT_ADMIN, "run migrations");
    require_lock();
    unsafe {
        pg_sys::LockAcquire(
            &lock_tag(WORKERS_LOCK),
            pg_sys::ExclusiveLock as i32,
            false,
            false,
        )
    };
}

// ---------------------------------------------------------------------------------------------
// The migration step. While it runs, the tenant context is the schema's tenant (none for the
// template) and cannot be changed: the context setters in src/context.rs ask `refuse_in_step()`
// first, and `current_tenant_id()` answers `step_tenant()` (so neither RESET ALL nor a suspended
// tenant changes what the step sees).
// ---------------------------------------------------------------------------------------------

/// The prepared query of [`claimed_step`], kept for the backend's life.
static CLAIMED_STEP: Backend<RefCell<Option<pgrx::spi::OwnedPreparedStatement>>> =
    Backend(RefCell::new(None));

/// None: no step runs in this backend; Some(t): a step runs with tenant t (None: the template).
static STEP: Backend<Cell<Option<Option<i64>>>> = Backend(Cell::new(None));

/// The tenant context of the running migration step, if one runs in this backend.
#[inline]
pub fn step_tenant() -> Option<Option<i64>> {
    STEP.0.get()
}

/// Called by every context setter: a migration step's context is fixed for the step.
pub fn refuse_in_step() {
    if STEP.0.get().is_some() {
        error::denied(
            "the tenant context cannot be changed inside a migration".to_string(),
            Some(
                "tenant.migrate_all runs each schema's step with that schema's tenant as the context."
                    .to_string(),
            ),
            Some("Remove the context change from the migration.".to_string()),
        );
    }
}

/// The schema this backend's current transaction has claimed: (run, schema, top-level xid),
/// recorded by `tenant._migration_claim` once it holds the ledger row (FOR UPDATE SKIP LOCKED).
/// The claim is not written to the ledger: the row lock and this record are the claim, and both
/// end with the transaction (the xid no longer matches), so a killed run leaves the row `pending`.
static CLAIMED: Backend<RefCell<Option<Claim>>> = Backend(RefCell::new(None));

/// A claim: the run, the schema, the claiming transaction and the ledger row's ctid. The row is
/// locked FOR UPDATE by that transaction, so the ctid stays its address until the transaction
/// writes it: the step and the outcome find the row by it (a TID scan), never through an index
/// over the run's pending rows, whose cost would grow with the queue.
struct Claim {
    run: i64,
    schema: String,
    xid: pg_sys::TransactionId,
    row: String,
}

/// Records the claim of `schema` in `run` for the current transaction. Called by the SECURITY
/// DEFINER `tenant._migration_claim` only (EXECUTE is granted to nobody).
#[pg_extern(
    schema = "tenant",
    name = "_migration_claimed",
    volatile,
    parallel_unsafe
)]
fn migration_claimed(run: i64, schema: &str, row: &str) {
    // The FOR UPDATE of the claim has given the transaction its xid.
    let xid = unsafe { pg_sys::GetTopTransactionId() };
    *CLAIMED.0.borrow_mut() = Some(Claim {
        run,
        schema: schema.to_string(),
        xid,
        row: row.to_string(),
    });
    *LAST_CLAIMED.0.borrow_mut() = Some((extension_oid(), run, schema.to_string()));
}

/// The last schema this backend claimed in a run, across its transactions: a claim reads the queue
/// from there on. Every pending row before it is taken: claimed by this backend (and finished: a
/// transaction that fails outside the step's own error handling ends the run or the worker), or
/// skipped while another backend held it — a worker's, which that worker finishes, or if it dies
/// the leader applies after the workers (its own claims start from the beginning). So no claim
/// steps over the dead index entries of the schemas done before it (which the leader's snapshot,
/// up to a second old, keeps from being pruned while workers run). Keyed by the extension's oid
/// too: a re-created extension numbers its runs from 1 again.
static LAST_CLAIMED: Backend<RefCell<Option<(pg_sys::Oid, i64, String)>>> =
    Backend(RefCell::new(None));

/// `tenant._migration_claimed_after(run)`: the schema name the next claim of this backend in
/// `run` starts after ('' for the first). Called by `tenant._migration_claim` only.
#[pg_extern(
    schema = "tenant",
    name = "_migration_claimed_after",
    stable,
    parallel_unsafe
)]
fn migration_claimed_after(run: i64) -> String {
    match &*LAST_CLAIMED.0.borrow() {
        Some((e, r, s)) if *r == run && *e == extension_oid() => s.clone(),
        _ => String::new(),
    }
}

/// The ctid of the ledger row of `schema` in `run` if the current transaction has claimed it.
fn claimed_row(run: i64, schema: &str) -> Option<String> {
    let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() };
    match &*CLAIMED.0.borrow() {
        Some(c)
            if xid != pg_sys::InvalidTransactionId
                && c.run == run
                && c.schema == schema
                && c.xid == xid =>
        {
            Some(c.row.clone())
        }
        _ => None,
    }
}

/// `tenant._migration_claimed_row(run, schema)`: the ctid of the ledger row the current
/// transaction has claimed, NULL when it has not claimed `schema` in `run`. For
/// `tenant._migration_finish` (SECURITY DEFINER; EXECUTE is granted to nobody).
#[pg_extern(
    schema = "tenant",
    name = "_migration_claimed_row",
    volatile,
    parallel_unsafe
)]
fn migration_claimed_row(run: i64, schema: &str) -> Option<String> {
    claimed_row(run, schema)
}

/// Whether the leader `leader` of a worker's run is still running it: its process exists and the
/// run lock is held. (A leader that releases the run lock has stopped its workers or seen them
/// exit first: release_on_abort, or the end of `_migration_execute`.) Read without pg_locks, whose
/// snapshot of the whole lock table every claim of every worker would otherwise take.
#[pg_extern(
    schema = "tenant",
    name = "_migration_leader_alive",
    volatile,
    parallel_unsafe
)]
fn leader_alive(leader: i32) -> bool {
    if unsafe { pg_sys::BackendPidGetProc(leader) }.is_null() {
        return false;
    }
    let tag = run_lock_tag();
    let mode = pg_sys::ShareLock as i32;
    let got = unsafe { pg_sys::LockAcquire(&tag, mode, false, true) };
    if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
        return true;
    }
    // Nobody holds it: the run is over. Give back what was just taken.
    unsafe { pg_sys::LockRelease(&tag, mode, false) };
    false
}

/// What a claimed schema's step needs, read in one prepared query ([`claimed_step`]).
struct ClaimedStep {
    /// The migration SQL of the run's version.
    sql: String,
    version: String,
    /// The schema's tenant (None: no registry row names the schema).
    tenant: Option<i64>,
    /// The schema's oid (None: it does not exist).
    namespace: Option<pg_sys::Oid>,
    /// The fingerprint recorded when the schema was last pinned and checked, when that check
    /// found no problems (tenant.schema_checks); None: never checked, or problems were found.
    clean_fingerprint: Option<String>,
}

/// The step of the schema this backend has claimed in `run`, or a 55000 error when it has
/// claimed none of that name: a step runs only for the pending ledger row this very transaction
/// has claimed ([`CLAIMED`]). Takes the schema's activity lock (see [`hold_activity_lock`]).
fn claimed_step(run: i64, schema: &str) -> ClaimedStep {
    let row = claimed_row(run, schema);
    // Prepared once per backend and run with its generic plan (planning this join cost more than
    // the rest of a small step).
    let step = privilege::as_owner_generic_plan(|| {
        Spi::connect(|c| {
            let mut slot = CLAIMED_STEP.0.borrow_mut();
            if slot.is_none() {
                let stmt = c.prepare(
                    "SELECT m.sql, t.id, n.oid, r.version, \
                            CASE WHEN k.problems OPERATOR(pg_catalog.=) '{}' THEN k.fingerprint END \
                       FROM tenant.migration_runs r \
                       JOIN tenant.migrations m ON m.version OPERATOR(pg_catalog.=) r.version \
                       JOIN tenant.schema_migrations s ON s.ctid OPERATOR(pg_catalog.=) $3::pg_catalog.tid \
                        AND s.version OPERATOR(pg_catalog.=) r.version AND s.run_id OPERATOR(pg_catalog.=) r.id \
                       LEFT JOIN tenant.tenants t ON t.schema_name OPERATOR(pg_catalog.=) s.schema_name \
                       LEFT JOIN tenant.schema_checks k ON k.tenant_id OPERATOR(pg_catalog.=) t.id \
                       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) s.schema_name \
                      WHERE r.id OPERATOR(pg_catalog.=) $1 AND s.schema_name OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                        AND s.status OPERATOR(pg_catalog.=) 'pending'",
                    &[
                        PgOid::BuiltIn(pg_sys::BuiltinOid::INT8OID),
                        PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID),
                        PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID),
                    ],
                )?;
                *slot = Some(stmt.keep());
            }
            let stmt = slot.as_ref().expect("prepared above");
            let Some(claimed) = &row else {
                return Ok(None);
            };
            let t = c.select(stmt, Some(1), &[run.into(), schema.into(), claimed.as_str().into()])?;
            if t.is_empty() {
                return Ok(None);
            }
            let t = t.first();
            Ok(Some(ClaimedStep {
                sql: t.get::<String>(1)?.unwrap_or_default(),
                tenant: t.get::<i64>(2)?,
                namespace: t.get::<pg_sys::Oid>(3)?,
                version: t.get::<String>(4)?.unwrap_or_default(),
                clean_fingerprint: t.get::<String>(5)?,
            }))
        })
        .inspect_err(|_: &pgrx::spi::Error| {
            // A failed plan may be stale (the extension was re-created in this session).
            CLAIMED_STEP.0.borrow_mut().take();
        })
    });
    match step {
        Ok(Some(step)) => {
            if let Some(namespace) = step.namespace {
                hold_activity_lock(namespace);
            }
            step
        }
        _ => error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "schema {} is not being migrated by run {run} in this session",
                pgrx::spi::quote_identifier(schema)
            ),
            None,
            Some("CALL tenant.migrate_all(...) or tenant.retry_failed(...).".to_string()),
        ),
    }
}

/// The lock that shows a schema as being migrated (`tenant.migration_activity`, the `running`
/// count of `migration_status()`): an object lock of this transaction with classid
/// `tenant.schema_migrations` and objid the schema's oid. PostgreSQL takes object locks only with
/// catalog classids and no SQL function takes one, so nothing else holds or fakes it; it goes
/// with the transaction, so a killed run shows nothing running.
fn hold_activity_lock(namespace: pg_sys::Oid) {
    let ledger = unsafe {
        pg_sys::get_relname_relid(
            c"schema_migrations".as_ptr(),
            pg_sys::get_namespace_oid(c"tenant".as_ptr(), false),
        )
    };
    let tag = pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: ledger.to_u32(),
        locktag_field3: namespace.to_u32(),
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    // Exclusive, transaction-level, never waited for: the ledger row is already this
    // transaction's (FOR UPDATE), so no other transaction asks for the same schema's lock.
    unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, true) };
}

/// Runs `migration` in `schema` as the calling role: `search_path` = the schema, then
/// `pg_catalog`, `pg_temp`; the tenant context = `tenant` (transaction-local, fixed for the step,
/// cross-tenant mode off, no end user or tenant role, no parallel workers, which would not share
/// the fixed context); every
/// setting the migration changes (`SET ROLE`, `SET search_path`, ...) is rolled back afterwards
/// and the user id restored, so nothing of it outlives the step or the CALL.
fn run_step(schema: &str, migration: &str, tenant: Option<i64>) {
    let path = CString::new(format!(
        "{}, pg_catalog, pg_temp",
        pgrx::spi::quote_identifier(schema)
    ))
    .unwrap_or_default();
    // Tied to this session user and transaction-local, as a setter would write it.
    let session_user = unsafe { pg_sys::GetSessionUserId() }.to_u32();
    let context = CString::new(
        tenant
            .map(|t| settings::render_tenant_setting(t, session_user, true))
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    let guc = [
        (c"search_path", path.as_c_str()),
        (settings::TENANT_ID, context.as_c_str()),
        (settings::CROSS_TENANT, c"off"),
        // A step acts for its tenant, not for an end user the calling session may carry.
        (settings::IDENTITY, c""),
        (c"max_parallel_workers_per_gather", c"0"),
    ];
    // As the calling role itself (no security-context bits): a migration may SET ROLE.
    privilege::with_user_and_settings(
        privilege::caller(),
        0,
        &guc,
        privilege::AfterRun::RollBackSettings,
        || {
            STEP.0.set(Some(tenant));
            // A bound caller's plans may hold its tenant as a constant (context::bound_fold);
            // the step's context is its schema's tenant.
            crate::context::forget_folded_plans();
            PgTryBuilder::new(|| {
            Spi::run(migration).unwrap_or_else(|e| {
                let code = match e {
                    pgrx::spi::SpiError::SpiError(pgrx::spi::SpiErrorCodes::Transaction) => {
                        PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION
                    }
                    _ => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                };
                error::raise(
                    code,
                    format!("the migration cannot run: {e}"),
                    None,
                    Some(
                        "A migration must not contain transaction control (COMMIT, ROLLBACK, VACUUM, CONCURRENTLY)."
                            .to_string(),
                    ),
                )
            })
        })
        .catch_others(|e| {
            STEP.0.set(None);
            e.rethrow()
        })
        .execute();
            STEP.0.set(None);
        },
    );
}

/// One tenant schema's step of `run`: the migration of the run's version, in the schema this
/// backend has claimed (a leader holding the run lock, or one of its workers), with the schema's
/// tenant as the context.
#[pg_extern(
    schema = "tenant",
    name = "_migration_run_step",
    volatile,
    parallel_unsafe
)]
fn migration_run_step(run: i64, schema: &str) {
    privilege::require_role_of(privilege::outer_caller(), TENANT_ADMIN, "run migrations");
    if !IN_WORKER.0.get() {
        require_lock();
    }
    refuse_nested_step();
    let step = claimed_step(run, schema);
    run_step(schema, &step.sql, step.tenant);
}

/// A step cannot start another step (a migration calling the step functions itself).
fn refuse_nested_step() {
    if STEP.0.get().is_some() {
        error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "a migration step cannot run another step".to_string(),
            None,
            Some("Remove the call of tenant._migration_* from the migration.".to_string()),
        );
    }
}

/// The prepared statement of [`finish_applied`], kept for the backend's life.
static FINISH_APPLIED: Backend<RefCell<Option<pgrx::spi::OwnedPreparedStatement>>> =
    Backend(RefCell::new(None));

/// `tenant._migration_fast_step(run, schema)`: the common case of one claimed schema, whole, in
/// the caller's (sub)transaction (`tenant._migration_apply`): a schema whose last check found it
/// pinned and clean runs the step (as [`migration_run_step`]) and, when its fingerprint is still
/// the recorded one (src/fingerprint.rs), is recorded as applied, as `tenant._migration_finish`
/// records it. Returns `applied` then; `changed` when the step ran and the fingerprint differs
/// (the caller pins and checks: `tenant._schema_check_after`); `unchecked`, having run nothing,
/// when the schema has no clean record (the caller reads its problems first). 3F000 when the
/// schema does not exist; 55000 when this transaction has not claimed it.
#[pg_extern(
    schema = "tenant",
    name = "_migration_fast_step",
    volatile,
    parallel_unsafe
)]
fn migration_fast_step(run: i64, schema: &str) -> &'static str {
    privilege::require_role_of(privilege::outer_caller(), TENANT_ADMIN, "run migrations");
    if !IN_WORKER.0.get() {
        require_lock();
    }
    refuse_nested_step();
    let step = claimed_step(run, schema);
    let Some(namespace) = step.namespace else {
        error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            format!(
                "schema {} does not exist",
                pgrx::spi::quote_identifier(schema)
            ),
            None,
            None,
        )
    };
    let Some(recorded) = &step.clean_fingerprint else {
        return "unchecked";
    };
    run_step(schema, &step.sql, step.tenant);
    let now = unsafe { crate::fingerprint::fingerprint(namespace, schema, step.tenant) };
    if &now != recorded {
        return "changed";
    }
    finish_applied(run, schema, &step.version);
    "applied"
}

/// The ledger row of a claimed schema set to applied and the tenant's `schema_version` to the
/// run's version, in one statement (what `tenant._migration_finish` does for a step without error).
fn finish_applied(run: i64, schema: &str, version: &str) {
    let row = claimed_row(run, schema).unwrap_or_default();
    let n = privilege::as_owner_generic_plan(|| {
        Spi::connect_mut(|c| {
            let mut slot = FINISH_APPLIED.0.borrow_mut();
            if slot.is_none() {
                let stmt = c.prepare_mut(
                    "WITH l AS (UPDATE tenant.schema_migrations s \
                                   SET status = 'applied', error = NULL, sqlstate = NULL, \
                                       started_at = pg_catalog.now(), finished_at = pg_catalog.clock_timestamp(), \
                                       attempts = s.attempts OPERATOR(pg_catalog.+) 1, pid = pg_catalog.pg_backend_pid() \
                                 WHERE s.ctid OPERATOR(pg_catalog.=) $4::pg_catalog.tid \
                                   AND s.schema_name OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                                   AND s.version OPERATOR(pg_catalog.=) $3 AND s.run_id OPERATOR(pg_catalog.=) $1 \
                                   AND s.status OPERATOR(pg_catalog.=) 'pending' RETURNING 1), \
                          v AS (UPDATE tenant.tenants t SET schema_version = $3 \
                                 WHERE t.schema_name OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                                   AND EXISTS (SELECT FROM l)) \
                     SELECT pg_catalog.count(*) FROM l",
                    &[
                        PgOid::BuiltIn(pg_sys::BuiltinOid::INT8OID),
                        PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID),
                        PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID),
                        PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID),
                    ],
                )?;
                *slot = Some(stmt.keep());
            }
            let stmt = slot.as_ref().expect("prepared above");
            c.update(stmt, None, &[run.into(), schema.into(), version.into(), row.as_str().into()])?
                .first()
                .get_one::<i64>()
        })
        .inspect_err(|_| {
            FINISH_APPLIED.0.borrow_mut().take();
        })
    });
    if !matches!(n, Ok(Some(1))) {
        error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "schema {} is not being migrated to {} by run {run} in this session",
                pgrx::spi::quote_identifier(schema),
                pgrx::spi::quote_literal(version)
            ),
            None,
            None,
        );
    }
}

/// The template step: `migration` in the template schema, without a tenant context (the template
/// belongs to no tenant). Only inside a run.
#[pg_extern(
    schema = "tenant",
    name = "_migration_run_template",
    volatile,
    parallel_unsafe
)]
fn migration_run_template(template: &str, migration: &str) {
    privilege::require_role_of(privilege::outer_caller(), TENANT_ADMIN, "run migrations");
    require_lock();
    run_step(template, migration, None);
}

/// What a worker needs, carried in `bgw_extra` (128 bytes; five integers fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerJob {
    pub run: i64,
    pub leader_pid: i32,
    pub database: u32,
    pub session_user: u32,
    pub current_user: u32,
}

impl WorkerJob {
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.run, self.leader_pid, self.database, self.session_user, self.current_user
        )
    }

    pub fn decode(text: &str) -> Option<WorkerJob> {
        let mut it = text.split(' ');
        let job = WorkerJob {
            run: it.next()?.parse().ok()?,
            leader_pid: it.next()?.parse().ok()?,
            database: it.next()?.parse().ok()?,
            session_user: it.next()?.parse().ok()?,
            current_user: it.next()?.parse().ok()?,
        };
        if it.next().is_some() {
            return None;
        }
        Some(job)
    }
}

/// This session's workers of the current run. The handles live in TopMemoryContext, so the
/// procedure can COMMIT between waits (the leader then holds no snapshot for the length of the run).
static WORKERS: Backend<RefCell<Vec<DynamicBackgroundWorker>>> = Backend(RefCell::new(Vec::new()));

/// Whether a worker is still running or about to (anything else means it is gone).
fn alive(w: &DynamicBackgroundWorker) -> bool {
    matches!(w.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted))
}

fn spi_failed(what: &str, e: pgrx::spi::Error) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("{what} failed: {e}"),
        None,
        None,
    )
}

/// Starts the run's workers: `migration_runs.parallel` of them, at most one per queued schema.
/// Returns whether any started (not when parallel = 1, at most one schema is queued, or no worker
/// slot is free: the serial loop that follows then does the work).
#[pg_extern(
    schema = "tenant",
    name = "_migration_start_workers",
    volatile,
    parallel_unsafe
)]
fn start_workers(run: i64) -> bool {
    privilege::require_role_of(privilege::outer_caller(), TENANT_ADMIN, "run migrations");
    // Handles left by a run that failed in this session: those workers stop on their own once
    // the run lock is gone; forget them.
    WORKERS.0.borrow_mut().clear();
    let (parallel, queued) = Spi::get_two_with_args::<i32, i64>(
        "SELECT r.parallel, (SELECT pg_catalog.count(*) FROM tenant.schema_migrations s \
                             WHERE s.run_id OPERATOR(pg_catalog.=) r.id \
                               AND s.status OPERATOR(pg_catalog.=) 'pending') \
         FROM tenant.migration_runs r WHERE r.id OPERATOR(pg_catalog.=) $1",
        &[run.into()],
    )
    .unwrap_or_else(|e| spi_failed("reading the migration run", e));
    let wanted = i64::from(parallel.unwrap_or(1)).min(queued.unwrap_or(0));
    if wanted <= 1 {
        return false;
    }
    let job = WorkerJob {
        run,
        leader_pid: unsafe { pg_sys::MyProcPid },
        database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        session_user: unsafe { pg_sys::GetSessionUserId() }.to_u32(),
        current_user: privilege::caller().to_u32(),
    };
    for i in 0..wanted {
        let builder = BackgroundWorkerBuilder::new(&format!("{WORKER_TYPE} run {run} worker {i}"))
            .set_type(WORKER_TYPE)
            .set_library("qualityfoundry_tenant")
            .set_function(WORKER_FUNCTION)
            .set_extra(&job.encode())
            .enable_spi_access()
            .set_notify_pid(job.leader_pid);
        // SAFETY: only the handle (a slot number and generation) is allocated while switched.
        let started =
            unsafe { PgMemoryContexts::TopMemoryContext.switch_to(|_| builder.load_dynamic()) };
        match started {
            Ok(w) => WORKERS.0.borrow_mut().push(w),
            Err(_) => break,
        }
    }
    let started = WORKERS.0.borrow().len() as i32;
    if i64::from(started) < wanted {
        pgrx::warning!(
            "started {started} of {wanted} migration workers (max_worker_processes is exhausted); \
             this session applies what they leave"
        );
    }
    if started > 0 {
        pgrx::notice!("{started} workers are applying the migration");
    }
    started > 0
}

/// Waits up to a second for this session's workers, reporting progress. Returns the number of
/// schemas done (pass it back as `previous`), or NULL once every worker has exited — after putting
/// back rows a dead worker left `running`, for the serial loop that follows to finish.
#[pg_extern(
    schema = "tenant",
    name = "_migration_wait_workers",
    volatile,
    parallel_unsafe
)]
fn wait_workers(run: i64, previous: i32) -> Option<i32> {
    privilege::require_role_of(privilege::outer_caller(), TENANT_ADMIN, "run migrations");
    let deadline = Instant::now() + Duration::from_secs(1);
    let waited = PgTryBuilder::new(|| loop {
        let running = WORKERS.0.borrow().iter().filter(|w| alive(w)).count();
        if running == 0 || Instant::now() >= deadline {
            return running;
        }
        // The postmaster sets our latch (bgw_notify_pid) when a worker exits.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                200,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pg_sys::check_for_interrupts!();
    })
    .catch_others(|e| {
        // Cancelled while waiting: stop the workers (each rolls back the schema it is on), then
        // fail. The next run waits for them to be gone before taking over their rows.
        for w in WORKERS.0.borrow_mut().drain(..) {
            let _ = w.terminate();
        }
        e.rethrow()
    })
    .execute();
    let done = Spi::get_one_with_args::<i32>(
        "SELECT tenant._migration_progress($1, $2)",
        &[run.into(), previous.into()],
    )
    .unwrap_or_else(|e| spi_failed("reporting progress", e))
    .unwrap_or(previous);
    if waited > 0 {
        return Some(done);
    }
    WORKERS.0.borrow_mut().clear();
    Spi::run_with_args("SELECT tenant._migration_requeue($1)", &[run.into()])
        .unwrap_or_else(|e| spi_failed("requeueing after the workers", e));
    None
}

#[pg_guard]
unsafe extern "C-unwind" fn release_session_locks(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    pg_sys::AbortOutOfAnyTransaction();
    pg_sys::LockReleaseSession(pg_sys::DEFAULT_LOCKMETHOD as pg_sys::LOCKMETHODID);
}

unsafe extern "C-unwind" {
    /// PostgreSQL's own SIGTERM handler for backends (`die` in tcop/postgres.c); pgrx's binding
    /// is a Rust wrapper, and a signal handler must be the C function itself.
    #[link_name = "die"]
    fn backend_die(signal: std::ffi::c_int);
}

/// A migration worker: connects as the leader's session user (who can log in), takes the
/// leader's current role, and claims and applies schemas one transaction each until the queue is
/// empty, the run stops on a failure, or the leader is gone.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn qft_migrate_worker(_arg: pg_sys::Datum) {
    unsafe {
        // The backend's own SIGTERM handling: pg_terminate_backend ends the worker at the next
        // interrupt check, rolling back the schema it is on.
        #[cfg(feature = "pg15")]
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(backend_die));
        // PostgreSQL 18: `pqsignal` is a macro over `pqsignal_be` (which no longer returns the
        // previous handler).
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(backend_die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    // The workers lock is a session lock of the regular lock method, which PostgreSQL releases at
    // a transaction's abort but not at a background worker's exit: release it on the way out.
    unsafe { pg_sys::before_shmem_exit(Some(release_session_locks), pg_sys::Datum::from(0)) };
    let Some(job) = WorkerJob::decode(BackgroundWorker::get_extra()) else {
        pgrx::error!("qualityfoundry_tenant migration worker started without a job");
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(pg_sys::Oid::from(job.database)),
        Some(pg_sys::Oid::from(job.session_user)),
    );
    BackgroundWorker::transaction(|| {
        if job.current_user != job.session_user {
            Spi::run_with_args(
                "SELECT pg_catalog.set_config('role', r.rolname, false) \
                 FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1",
                &[pg_sys::Oid::from(job.current_user).into()],
            )
            .expect("set role");
        }
        Spi::run(
            "SELECT pg_catalog.set_config('application_name', 'qualityfoundry_tenant migrate worker', false)",
        )
        .expect("worker setup");
        unsafe {
            pg_sys::LockAcquire(
                &lock_tag(WORKERS_LOCK),
                pg_sys::ShareLock as i32,
                true,
                false,
            )
        };
    });
    IN_WORKER.0.set(true);
    // One transaction per schema, as the serial loop: claim, migrate, record, commit.
    loop {
        let claimed = BackgroundWorker::transaction(|| {
            let schema = Spi::get_one_with_args::<String>(
                "SELECT tenant._migration_claim($1, $2)::text",
                &[job.run.into(), job.leader_pid.into()],
            )
            .expect("claim");
            if let Some(schema) = &schema {
                Spi::run_with_args(
                    "SELECT tenant._migration_apply($1, $2::name)",
                    &[job.run.into(), schema.as_str().into()],
                )
                .expect("apply");
            }
            schema.is_some()
        });
        if !claimed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WorkerJob;

    #[test]
    fn job_round_trips_and_fits_bgw_extra() {
        let job = WorkerJob {
            run: i64::MAX,
            leader_pid: i32::MAX,
            database: u32::MAX,
            session_user: u32::MAX,
            current_user: u32::MAX,
        };
        let text = job.encode();
        assert!(text.len() < 128, "{text}");
        assert_eq!(WorkerJob::decode(&text), Some(job));
    }

    #[test]
    fn malformed_jobs_are_refused() {
        for bad in ["", "1 2 3 4", "1 2 3 4 5 6", "a 2 3 4 5", "1  2 3 4 5"] {
            assert_eq!(WorkerJob::decode(bad), None, "{bad:?}");
        }
    }
}
