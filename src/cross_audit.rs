//! The library's executor and utility hooks. They also carry the storage-quota check where Citus
//! is loaded (src/quota.rs: Citus refuses the trigger on its tables).
//!
//! Cross-tenant mode audited statement by statement, as `set_user` does for escalation: while
//! `cross_tenant_active()`, every top-level statement the session runs is written to the server
//! log (role, session user, reason, the statement's text) before it runs — so a statement that
//! fails or rolls back is still there — and, where the transaction can write, to
//! `tenant.audit_log` (`action = 'cross_tenant_statement'`) in the statement's own transaction,
//! so the table holds exactly the statements that committed.
//!
//! The hooks are installed from `_PG_init`, which runs whenever the library is loaded — at server
//! start when preloaded, else at the first use in a session; a session can only be in
//! cross-tenant mode after `enter_cross_tenant()`, which loads the library. When the mode is off
//! each hook costs one cell read. "Top level" is tracked as pg_stat_statements does: statements
//! run inside an executor or a utility (function bodies, EXECUTE, DO, CALL) are part of the
//! statement that ran them, which is the one logged. Parameters are never logged (a bind
//! parameter may be a token).

use crate::context;
use crate::nesting::Nesting;
use crate::privilege;
use crate::settings;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{c_char, c_int, CStr};

/// How deep inside an executor or utility statement we are (0: a top-level statement).
static DEPTH: Nesting = Nesting::new();

static mut PREV_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_RUN: pg_sys::ExecutorRun_hook_type = None;
static mut PREV_FINISH: pg_sys::ExecutorFinish_hook_type = None;
static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;

// PostgreSQL's own executor entry points, called directly rather than through pgrx's guarded
// bindings: those catch an ERROR and raise it again rebuilt from a few fields, which would lose
// what clients read from it (the constraint, table and column names). The hooks below call them
// from frames with nothing to drop, so an ERROR passes through untouched; the depth counter
// those frames would have restored is reset by the (sub)transaction abort callbacks instead.
unsafe extern "C" {
    #[link_name = "standard_ExecutorStart"]
    fn raw_standard_executor_start(qd: *mut pg_sys::QueryDesc, eflags: c_int);
    #[cfg(feature = "pg15")]
    #[link_name = "standard_ExecutorRun"]
    fn raw_standard_executor_run(
        qd: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
        execute_once: bool,
    );
    #[cfg(feature = "pg18")]
    #[link_name = "standard_ExecutorRun"]
    fn raw_standard_executor_run(
        qd: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
    );
    #[link_name = "standard_ExecutorFinish"]
    fn raw_standard_executor_finish(qd: *mut pg_sys::QueryDesc);
    #[link_name = "standard_ProcessUtility"]
    fn raw_standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

pub fn init() {
    unsafe {
        PREV_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(executor_run);
        PREV_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
        PREV_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    DEPTH.on_xact(event);
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    DEPTH.on_subxact(event, my_subid);
}

/// One level deeper while `f` runs. No cleanup on ERROR here (see above): an aborted
/// (sub)transaction restores the depth.
#[inline(always)]
unsafe fn nested(f: impl FnOnce()) {
    let depth = DEPTH.get();
    DEPTH.set(depth + 1);
    f();
    DEPTH.set(depth);
}

/// The statement's own text within the query string (a multi-statement string holds several).
unsafe fn statement_text(source: *const c_char, stmt: *const pg_sys::PlannedStmt) -> String {
    if source.is_null() {
        return String::new();
    }
    let (location, len) = if stmt.is_null() {
        (-1, 0)
    } else {
        ((*stmt).stmt_location, (*stmt).stmt_len)
    };
    let bytes = CStr::from_ptr(source).to_bytes();
    let start = usize::try_from(location).unwrap_or(0).min(bytes.len());
    let end = match usize::try_from(len) {
        Ok(n) if n > 0 && location >= 0 => (start + n).min(bytes.len()),
        _ => bytes.len(),
    };
    String::from_utf8_lossy(&bytes[start..end])
        .trim()
        .to_string()
}

/// Logs one top-level statement of a cross-tenant session (and records it where it can).
/// `transaction_control`: BEGIN/COMMIT/ROLLBACK and friends, which only the server log keeps.
fn record(statement: impl FnOnce() -> String, transaction_control: bool) {
    // The hot path when the mode is off: one cell read.
    if settings::cross_tenant_entry().is_none() || DEPTH.get() != 0 {
        return;
    }
    // Everything below is one level deeper: the lookups it makes (the context's verification,
    // the registry and role caches, the audit INSERT) may run queries of their own, whose
    // executor and utility hooks must not record them again — without this a cache miss here
    // recursed until "stack depth limit exceeded". An ERROR below aborts the (sub)transaction,
    // whose callback puts the depth back.
    let depth = DEPTH.get();
    DEPTH.set(depth + 1);
    record_statement(statement, transaction_control);
    DEPTH.set(depth);
}

fn record_statement(statement: impl FnOnce() -> String, transaction_control: bool) {
    // In an aborted transaction block only ROLLBACK and friends run, and no catalog or registry
    // lookup may: they end the block (and whatever it did is gone) without being logged.
    if unsafe { !pg_sys::IsTransactionState() || pg_sys::IsAbortedTransactionBlockState() } {
        return;
    }
    if unsafe { pg_sys::ParallelWorkerNumber } >= 0 || !context::cross_tenant_active() {
        return;
    }
    let query = statement();
    let reason = settings::cross_tenant_reason().unwrap_or_default();
    let caller = privilege::caller();
    let session = unsafe { pg_sys::GetSessionUserId() };
    pgrx::log!(
        "qualityfoundry_tenant: cross-tenant statement by role \"{}\" (session user \"{}\", reason \"{}\"): {}",
        privilege::role_name(caller),
        privilege::role_name(session),
        reason,
        query
    );
    let writable = unsafe {
        !pg_sys::XactReadOnly && !pg_sys::RecoveryInProgress() && !pg_sys::IsInParallelMode()
    };
    if transaction_control || !writable {
        return;
    }
    let tenant = context::current_tenant_id();
    let done = privilege::as_owner(|| {
        Spi::run_with_args(
            "SELECT tenant._audit('cross_tenant_statement', NULL, $1, \
             pg_catalog.jsonb_build_object('query', $2::text, 'reason', $3::text))",
            &[tenant.into(), query.as_str().into(), reason.as_str().into()],
        )
    });
    done.unwrap_or_else(|e| {
        crate::error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("could not audit a cross-tenant statement: {e}"),
            None,
            None,
        )
    });
}

/// The Rust side of the start hooks: everything that allocates or may raise (our own errors).
#[pg_guard]
unsafe extern "C-unwind" fn record_executor_start(qd: *mut pg_sys::QueryDesc) {
    record(
        || statement_text((*qd).sourceText, (*qd).plannedstmt),
        false,
    );
}

#[pg_guard]
unsafe extern "C-unwind" fn record_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
) {
    let transaction_control =
        !pstmt.is_null() && pgrx::is_a((*pstmt).utilityStmt, pg_sys::NodeTag::T_TransactionStmt);
    record(|| statement_text(query_string, pstmt), transaction_control);
}

/// Cheap exits before any Rust work: mode off, or not a top-level statement.
#[inline(always)]
fn may_record() -> bool {
    DEPTH.get() == 0 && settings::cross_tenant_entry().is_some()
}

// The hooks themselves are not #[pg_guard]: they hold nothing to drop and must let PostgreSQL's
// ERRORs through as they are (see the raw declarations above).
unsafe extern "C-unwind" fn executor_start(qd: *mut pg_sys::QueryDesc, eflags: c_int) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as c_int == 0 {
        if may_record() {
            record_executor_start(qd);
        }
        // Storage quotas where Citus leaves no room for the trigger (src/quota.rs).
        if crate::citus::loaded() {
            crate::quota::check_citus_write(qd);
        }
    }
    match PREV_START {
        Some(prev) => prev(qd, eflags),
        None => raw_standard_executor_start(qd, eflags),
    }
}

#[cfg(feature = "pg15")]
unsafe extern "C-unwind" fn executor_run(
    qd: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    nested(|| match PREV_RUN {
        Some(prev) => prev(qd, direction, count, execute_once),
        None => raw_standard_executor_run(qd, direction, count, execute_once),
    })
}

#[cfg(feature = "pg18")]
unsafe extern "C-unwind" fn executor_run(
    qd: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
) {
    nested(|| match PREV_RUN {
        Some(prev) => prev(qd, direction, count),
        None => raw_standard_executor_run(qd, direction, count),
    })
}

unsafe extern "C-unwind" fn executor_finish(qd: *mut pg_sys::QueryDesc) {
    let citus = crate::citus::loaded();
    if citus {
        crate::quota::check_citus_write_done(qd);
    }
    nested(|| match PREV_FINISH {
        Some(prev) => prev(qd),
        None => raw_standard_executor_finish(qd),
    });
    // Rate limits where Citus leaves no room for the trigger: counted once the rows are in.
    if citus {
        crate::quota::count_citus_inserts(qd);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    if may_record() {
        record_utility(pstmt, query_string);
    }
    if crate::citus::loaded() {
        crate::quota::check_citus_copy(pstmt);
    }
    nested(|| match PREV_UTILITY {
        Some(prev) => prev(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
        None => raw_standard_process_utility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
    })
}
