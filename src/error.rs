//! Errors a DBA can act on: a SQLSTATE, a message, and where useful a DETAIL and a HINT.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

pub fn raise(
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
) -> ! {
    let mut report = ErrorReport::new(code, message, "qualityfoundry_tenant");
    if let Some(d) = detail {
        report = report.set_detail(d);
    }
    if let Some(h) = hint {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

pub fn invalid(message: String, hint: Option<String>) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        None,
        hint,
    )
}

pub fn denied(message: String, detail: Option<String>, hint: Option<String>) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message,
        detail,
        hint,
    )
}
