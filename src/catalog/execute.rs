//! Running a clone plan through SPI, and verifying the copy against the model of the source.

use super::{deparse, plan_or_raise, raw, read_catalog};
use crate::error;
use crate::privilege::{as_role_restricted, OwnRows};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use qft_schema::diff::{diff, Options};
use qft_schema::ident::quote_ident;
use qft_schema::plan::{owner_statement_role, Phase};
use std::ffi::{CStr, CString};

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

/// Runs one statement of the plan: as `builder` inside a security-restricted operation when its
/// phase can evaluate a user-shaped expression ([`qft_schema::plan::Phase::as_builder`]), else
/// as the current user (the extension owner, under `clone_schema`). A failure is reported with
/// what it was about and the statement, keeping PostgreSQL's SQLSTATE, detail and hint (e.g. the
/// hint to raise max_locks_per_transaction).
fn run_step(source: &str, step: &qft_schema::plan::Step, builder: pg_sys::Oid, path: &CStr) {
    let run = || {
        Spi::run(&step.sql).unwrap_or_else(|e| {
            error::raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                e.to_string(),
                None,
                None,
            )
        })
    };
    PgTryBuilder::new(|| {
        if step.phase.as_builder() {
            as_role_restricted(
                builder,
                OwnRows::Policies,
                &[
                    (c"search_path", path),
                    (c"row_security", c"on"),
                    (c"check_function_bodies", c"off"),
                ],
                run,
            )
        } else {
            run()
        }
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

fn already(target: &str) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
        format!("schema {} already exists", quote_ident(target)),
        None,
        None,
    )
}

/// Copies schema `source` as a new schema `target` (with `copy_data`, also its rows, sequence
/// positions and materialized view contents), verifies the copy against the model of the source
/// (any difference, or any dependency of the copy on the source, is an error: the caller's
/// transaction rolls it back) and returns the number of statements run.
///
/// The copy is built with the rights of `builder` (the role that called `clone_schema`): the
/// target schema belongs to it while it is built, every statement that can evaluate an
/// expression of the source runs as it in a security-restricted operation, and the extension
/// owner runs only what evaluates nothing (see [`run_step`]); at the end the objects and the
/// schema are handed to the source's owners.
pub fn clone(source: &str, target: &str, copy_data: bool) -> i32 {
    let builder = crate::privilege::outer_caller();
    check_target(target);
    let exists = deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) $1)",
            &[target.into()],
        )
    });
    if matches!(exists, Ok(Some(true))) {
        already(target);
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
            // With copy_data no writes either, for a consistent copy.
            let mode = if copy_data { "SHARE" } else { "ACCESS SHARE" };
            Spi::run(&format!("LOCK TABLE {tables} IN {mode} MODE")).expect("lock the source");
        }
    });
    let (model, source_rows) = read_catalog(source);
    let steps = plan_or_raise(&model, target, copy_data);
    // The builder owns the schema while it builds the copy. A concurrent clone to the same
    // target that committed first makes this wait, then fail: 42P06, as if it had been there.
    let builder_name = crate::privilege::role_name(builder);
    PgTryBuilder::new(|| {
        deparse::with_search_path("pg_catalog, pg_temp", || {
            Spi::run(&format!(
                "CREATE SCHEMA {} AUTHORIZATION {}",
                quote_ident(target),
                quote_ident(&builder_name)
            ))
            .expect("create the target");
        })
    })
    .catch_when(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, |_| {
        already(target)
    })
    .catch_when(PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA, |_| {
        already(target)
    })
    .execute();
    let path = qft_schema::plan::search_path(target);
    let mut run = 0;
    let c_path = CString::new(path.as_str()).expect("a schema name without NUL");
    // The copy gets the source's policies and no more: automatic isolation of new tables off
    // while it is built.
    deparse::with_settings(
        &[
            (c"search_path", &path),
            (c"check_function_bodies", "off"),
            (c"qualityfoundry_tenant.auto_isolate", "off"),
        ],
        || {
            for step in &steps {
                // Every object with an owner is created by a builder phase (the schema with
                // AUTHORIZATION), so it belongs to the builder already: handing it to the builder
                // would be a statement that changes nothing. (The verification compares owners.)
                if step.phase == Phase::Owner
                    && owner_statement_role(&step.sql).as_deref() == Some(builder_name.as_str())
                {
                    continue;
                }
                run_step(source, step, builder, &c_path);
                run += 1;
            }
        },
    );
    let (copy, copy_rows) = read_catalog(target);
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
    // No object of the copy (nor a trigger or policy of its tables) may depend on an object of
    // the source: checked on the two reads, with the dependencies the copy's read returned.
    let on_source = raw::dependencies_on(&copy_rows.depends, &raw::objects(&source_rows));
    if !on_source.is_empty() {
        let described: Vec<String> = deparse::with_search_path("pg_catalog, pg_temp", || {
            on_source
                .iter()
                .take(100)
                .map(|d| {
                    Spi::get_one_with_args::<String>(
                        "SELECT pg_catalog.pg_describe_object($1, $2, 0) OPERATOR(pg_catalog.||) ' depends on ' \
                                OPERATOR(pg_catalog.||) pg_catalog.pg_describe_object($3, $4, 0)",
                        &[
                            pg_sys::Oid::from(d.class.0).into(),
                            pg_sys::Oid::from(d.obj.0).into(),
                            pg_sys::Oid::from(d.ref_class.0).into(),
                            pg_sys::Oid::from(d.referenced.0).into(),
                        ],
                    )
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                })
                .collect()
        });
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("clone of {} depends on its source", quote_ident(source)),
            Some(described.join("\n")),
            Some("The clone was rolled back.".into()),
        );
    }
    run
}
