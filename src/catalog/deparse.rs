//! PostgreSQL's own deparsers, called directly (no SQL is parsed while the schema is on the
//! search path), and the one search_path setting they run under.

use super::raw::Oid;
use pgrx::pg_sys::{self, Datum};
use pgrx::{direct_function_call, IntoDatum};
use std::ffi::{CStr, CString};

/// Runs `f` with the settings `(name, value)` in effect, as a function's SET clauses would set
/// them: restored when `f` returns, or by the (sub)transaction abort when it raises.
pub fn with_settings<R>(settings: &[(&CStr, &str)], f: impl FnOnce() -> R) -> R {
    let level = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        let value = CString::new(*value).expect("a setting without NUL");
        crate::privilege::save_setting(name, &value);
    }
    let result = f();
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    result
}

/// Runs `f` with `search_path` set to `path`.
pub fn with_search_path<R>(path: &str, f: impl FnOnce() -> R) -> R {
    with_settings(&[(c"search_path", path)], f)
}

/// Runs `f` with an active snapshot that sees everything this transaction did so far. Some
/// deparsers (`pg_get_viewdef`, `pg_get_ruledef`) query the catalogs with the active snapshot;
/// called from a function, that is the calling statement's, which does not see objects the
/// function itself has just created (a copy being verified).
pub fn with_current_snapshot<R>(f: impl FnOnce() -> R) -> R {
    let pushed = unsafe {
        pg_sys::CommandCounterIncrement();
        if pg_sys::ActiveSnapshotSet() {
            pg_sys::PushCopiedSnapshot(pg_sys::GetActiveSnapshot());
            pg_sys::UpdateActiveSnapshotCommandId();
            true
        } else {
            false
        }
    };
    let result = f();
    if pushed {
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    result
}

type Fn1 = unsafe fn(pg_sys::FunctionCallInfo) -> Datum;

fn oid(o: Oid) -> Option<Datum> {
    pg_sys::Oid::from(o.0).into_datum()
}

fn call(f: Fn1, args: &[Option<Datum>]) -> Option<String> {
    unsafe { direct_function_call::<String>(f, args) }
}

/// For output functions, which return a C string.
fn call_cstring(f: Fn1, args: &[Option<Datum>]) -> Option<String> {
    unsafe { direct_function_call::<&std::ffi::CStr>(f, args) }
        .map(|c| c.to_string_lossy().into_owned())
}

pub fn viewdef(o: Oid) -> String {
    let def = call(pg_sys::pg_get_viewdef, &[oid(o)]).unwrap_or_default();
    def.trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .to_string()
}

/// `pg_get_expr(node, relation)`.
pub fn expr(node: &str, rel: Oid) -> String {
    call(pg_sys::pg_get_expr, &[node.into_datum(), oid(rel)]).unwrap_or_default()
}

pub fn constraintdef(o: Oid) -> String {
    call(pg_sys::pg_get_constraintdef, &[oid(o)]).unwrap_or_default()
}

pub fn partkeydef(o: Oid) -> String {
    call(pg_sys::pg_get_partkeydef, &[oid(o)]).unwrap_or_default()
}

pub fn indexdef(o: Oid) -> String {
    call(pg_sys::pg_get_indexdef, &[oid(o)]).unwrap_or_default()
}

pub fn triggerdef(o: Oid) -> String {
    call(pg_sys::pg_get_triggerdef, &[oid(o)]).unwrap_or_default()
}

pub fn ruledef(o: Oid) -> String {
    call(pg_sys::pg_get_ruledef, &[oid(o)]).unwrap_or_default()
}

pub fn statisticsdef(o: Oid) -> String {
    call(pg_sys::pg_get_statisticsobjdef, &[oid(o)]).unwrap_or_default()
}

pub fn identity_arguments(o: Oid) -> String {
    call(pg_sys::pg_get_function_identity_arguments, &[oid(o)]).unwrap_or_default()
}

pub fn arguments(o: Oid) -> String {
    call(pg_sys::pg_get_function_arguments, &[oid(o)]).unwrap_or_default()
}

pub fn result(o: Oid) -> Option<String> {
    call(pg_sys::pg_get_function_result, &[oid(o)])
}

pub fn sqlbody(o: Oid) -> Option<String> {
    call(pg_sys::pg_get_function_sqlbody, &[oid(o)])
}

/// `format_type(type, typmod)`; `None` typmod: without one.
pub fn format_type(t: Oid, typmod: Option<i32>) -> String {
    call(
        pg_sys::format_type,
        &[oid(t), typmod.and_then(|m| m.into_datum())],
    )
    .unwrap_or_default()
}

/// A function's name as `regproc` prints it.
pub fn regproc(o: Oid) -> String {
    call_cstring(pg_sys::regprocout, &[oid(o)]).unwrap_or_default()
}

/// A function's name and argument types as `regprocedure` prints them.
pub fn regprocedure(o: Oid) -> String {
    call_cstring(pg_sys::regprocedureout, &[oid(o)]).unwrap_or_default()
}

pub fn regcollation(o: Oid) -> String {
    call_cstring(pg_sys::regcollationout, &[oid(o)]).unwrap_or_default()
}
