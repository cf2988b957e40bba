//! Running a clone plan through SPI, and verifying the copy against the model of the source.

use super::{deparse, plan_or_raise, read};
use crate::error;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use qft_schema::diff::{diff, Options};
use qft_schema::ident::quote_ident;

fn check_target(target: &str) {
    let bad = |m: String, detail: &str| {
        error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            m,
            Some(detail.to_string()),
            None,
        )
    };
    if target.is_empty() {
        bad(
            "target schema name must not be empty".into(),
            "A schema needs a name.",
        );
    }
    if target.len() > qft_schema::ident::MAX_IDENTIFIER_BYTES {
        bad(
            format!("target schema name is too long ({} bytes)", target.len()),
            "A schema name has at most 63 bytes.",
        );
    }
    if target.to_lowercase().starts_with("pg_") {
        bad(
            format!("invalid target schema name {}", quote_ident(target)),
            "The prefix pg_ is reserved for system schemas.",
        );
    }
    if target
        .chars()
        .any(|c| c.is_control() || "\"'\\;".contains(c))
    {
        bad(
            format!("invalid target schema name {}", qft_schema::ident::quote_literal(target)),
            "A target schema name must not contain quotes, backslashes, semicolons or control characters.",
        );
    }
}

/// Runs one statement; a failure is reported with what it was about and the statement, keeping
/// PostgreSQL's SQLSTATE, detail and hint (e.g. the hint to raise max_locks_per_transaction).
fn run_step(source: &str, step: &qft_schema::plan::Step) {
    PgTryBuilder::new(|| {
        Spi::run(&step.sql).unwrap_or_else(|e| {
            error::raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                e.to_string(),
                None,
                None,
            )
        })
    })
    .catch_others(|e| {
        let report = match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        let detail = match report.detail() {
            Some(d) => format!("{d}\nStatement: {}", step.sql),
            None => format!("Statement: {}", step.sql),
        };
        error::raise(
            report.sql_error_code(),
            format!(
                "clone of {} failed at {} ({}): {}",
                quote_ident(source),
                step.object,
                step.phase.name(),
                report.message()
            ),
            Some(detail),
            report.hint().map(str::to_string),
        )
    })
    .execute()
}

pub fn clone(source: &str, target: &str) -> i32 {
    check_target(target);
    let exists = deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) $1)",
            &[target.into()],
        )
    });
    if matches!(exists, Ok(Some(true))) {
        error::raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
            format!("schema {} already exists", quote_ident(target)),
            None,
            None,
        );
    }
    // No DDL on the source's tables from before it is read until the copy is verified.
    deparse::with_search_path("pg_catalog, pg_temp", || {
        let tables = Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.string_agg(c.oid::pg_catalog.regclass::pg_catalog.text, ', ') \
               FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid \
              WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass \
                AND d.refobjid OPERATOR(pg_catalog.=) (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) $1) \
                AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype OPERATOR(pg_catalog.=) 'n' \
                AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog.\"char\"[])",
            &[source.into()],
        );
        if let Ok(Some(tables)) = tables {
            Spi::run(&format!("LOCK TABLE {tables} IN ACCESS SHARE MODE"))
                .expect("lock the source");
        }
    });
    let model = read(source);
    let steps = plan_or_raise(&model, target);
    deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::run(&format!("CREATE SCHEMA {}", quote_ident(target))).expect("create the target");
    });
    let path = qft_schema::plan::search_path(target);
    deparse::with_settings(
        &[(c"search_path", &path), (c"check_function_bodies", "off")],
        || {
            for step in &steps {
                run_step(source, step);
            }
        },
    );
    let copy = read(target);
    let differences = diff(&model, &copy, &Options::exact());
    if !differences.is_empty() {
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("clone of {} differs from its source", quote_ident(source)),
            Some(
                differences
                    .iter()
                    .take(100)
                    .map(|d| format!("{}: {}", d.object, d.describe(source, target)))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Some("The clone was rolled back.".into()),
        );
    }
    let refs = deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.string_agg(r.object OPERATOR(pg_catalog.||) ' depends on ' OPERATOR(pg_catalog.||) r.depends_on, E'\\n') \
               FROM (SELECT * FROM tenant._clone_source_refs($1, $2) LIMIT 100) r",
            &[source.into(), target.into()],
        )
    });
    if let Ok(Some(r)) = refs {
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("clone of {} depends on its source", quote_ident(source)),
            Some(r),
            Some("The clone was rolled back.".into()),
        );
    }
    steps.len() as i32
}
