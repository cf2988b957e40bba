//! The adapter between PostgreSQL's catalogs and the schema engine (`crates/schema`): it reads
//! a schema's catalogs once (`read.sql`, with helpers in `sql/catalog.sql`), deparses with
//! PostgreSQL's own `pg_get_*` functions under one search_path setting into the model, runs a
//! plan through SPI, and verifies a copy against the model already read.
//!
//! The SQL-callable functions here are internal (revoked from PUBLIC by `sql/finalize.sql`): the
//! public `tenant.clone_schema`, `tenant.schema_diff` and `tenant.schema_drift` (sql/clone.sql,
//! sql/migrate.sql) check their arguments and call them.

mod build;
mod deparse;
mod execute;
pub mod pin;
mod raw;

use crate::error;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::PgOid;
use qft_schema::diff::{diff, Options};
use qft_schema::ident::quote_ident;
use qft_schema::Schema;
use std::cell::RefCell;

/// The oid of schema `name`, or 3F000.
fn namespace(name: &str) -> pg_sys::Oid {
    let oid = deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    });
    match oid {
        Ok(Some(o)) => o,
        _ => error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            format!("schema {} does not exist", quote_ident(name)),
            None,
            None,
        ),
    }
}

fn schema_exists(name: &str) -> bool {
    deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) $1)",
            &[name.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// The catalog reader's query (`src/catalog/read.sql`): one schema's catalog rows, as json text.
const READ_SQL: &str = include_str!("read.sql");

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

/// [`READ_SQL`], prepared once per backend: a clone reads twice (its source, then the copy it
/// verifies), `schema_drift` once per schema, and planning the query costs about a third of
/// running it.
static READ: Backend<RefCell<Option<OwnedPreparedStatement>>> = Backend(RefCell::new(None));

/// The catalog rows of the schema with oid `nsp`, as json text (runs [`READ_SQL`] with
/// `search_path = pg_catalog, pg_temp`, `jit = off` and its kept generic plan).
fn read_rows(nsp: pg_sys::Oid) -> Result<Option<String>, pgrx::spi::Error> {
    deparse::with_settings(
        &[
            (c"search_path", "pg_catalog, pg_temp"),
            (c"jit", "off"),
            (c"plan_cache_mode", "force_generic_plan"),
        ],
        || {
            Spi::connect(|c| {
                let mut slot = READ.0.borrow_mut();
                if slot.is_none() {
                    let stmt =
                        c.prepare(READ_SQL, &[PgOid::BuiltIn(pg_sys::BuiltinOid::OIDOID)])?;
                    *slot = Some(stmt.keep());
                }
                let stmt = slot.as_ref().expect("prepared above");
                c.select(stmt, None, &[nsp.into()])?
                    .first()
                    .get_one::<String>()
            })
        },
    )
    .inspect_err(|_| {
        // A failed plan may be stale (the extension was re-created in this session): drop it.
        READ.0.borrow_mut().take();
    })
}

/// The model of schema `name`, read from the catalogs.
pub fn read(name: &str) -> Schema {
    read_catalog(name).0
}

/// The model of schema `name` and the catalog rows it was built from (a clone checks the copy's
/// dependencies against the source's objects with them).
fn read_catalog(name: &str) -> (Schema, raw::Catalog) {
    let nsp = namespace(name);
    let text = match read_rows(nsp) {
        Ok(Some(t)) => t,
        other => error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("cannot read the catalogs of schema {}", quote_ident(name)),
            Some(format!("{other:?}")),
            None,
        ),
    };
    let raw: raw::Catalog = serde_json::from_str(&text).unwrap_or_else(|e| {
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!(
                "cannot read the catalog rows of schema {}",
                quote_ident(name)
            ),
            Some(e.to_string()),
            None,
        )
    });
    let model = deparse::with_search_path(&qft_schema::plan::search_path(name), || {
        deparse::with_current_snapshot(|| build::build(&raw))
    });
    (model, raw)
}

/// The model of a schema, as JSON (what the fixtures in `crates/schema/fixtures/` hold). `json`,
/// not `jsonb`: schema-relative text marks the schema with `\u0000`, which jsonb cannot hold.
#[pg_extern(
    schema = "tenant",
    name = "_schema_describe_rs",
    stable,
    parallel_unsafe
)]
fn schema_describe_rs(schema: &str) -> pgrx::Json {
    crate::privilege::require_role_of(
        crate::privilege::caller(),
        crate::privilege::TENANT_ADMIN,
        "describe a schema",
    );
    pgrx::Json(serde_json::to_value(read(schema)).expect("the model serializes"))
}

fn plan_or_raise(model: &Schema, target: &str, copy_data: bool) -> Vec<qft_schema::plan::Step> {
    match qft_schema::plan::plan_copy(model, target, copy_data) {
        Ok(p) => p,
        Err(qft_schema::plan::PlanError::Unsupported(items)) => error::raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "schema {} holds objects that cannot be copied",
                quote_ident(&model.name)
            ),
            Some(items.join("\n")),
            None,
        ),
        Err(qft_schema::plan::PlanError::Cycle(c)) => error::raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "cannot order the objects of schema {} for copying: {c}",
                quote_ident(&model.name)
            ),
            Some(format!(
                "Objects left: {}",
                c.left
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None,
        ),
        Err(qft_schema::plan::PlanError::Invalid(m)) => error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!(
                "cannot plan the copy of schema {}: {m}",
                quote_ident(&model.name)
            ),
            None,
            None,
        ),
    }
}

/// The statements that copy schema `source` as `target`, in order; each runs with
/// `search_path = pg_catalog, <target>, pg_temp` and `check_function_bodies = off`.
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "tenant", name = "_clone_plan_rs", stable, parallel_unsafe)]
fn clone_plan_rs(
    source: &str,
    target: &str,
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(phase, String),
        name!(object, String),
        name!(ddl, String),
    ),
> {
    crate::privilege::require_role_of(
        crate::privilege::caller(),
        crate::privilege::TENANT_ADMIN,
        "plan a clone",
    );
    let model = read(source);
    let steps = plan_or_raise(&model, target, false);
    TableIterator::new(
        steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| (i as i32 + 1, s.phase.name().to_string(), s.object, s.sql)),
    )
}

/// Structural differences between schemas `a` and `b` (everything compared; each schema's own
/// name normalised).
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "tenant", name = "_schema_diff_rs", stable, parallel_unsafe)]
fn schema_diff_rs(
    a: &str,
    b: &str,
) -> TableIterator<
    'static,
    (
        name!(object, String),
        name!(property, Option<String>),
        name!(difference, String),
    ),
> {
    crate::privilege::require_role_of(
        crate::privilege::caller(),
        crate::privilege::TENANT_ADMIN,
        "compare schemas",
    );
    let (x, y) = (read(a), read(b));
    let rows: Vec<_> = diff(&x, &y, &Options::exact())
        .into_iter()
        .map(|d| {
            (
                d.object.clone(),
                d.property.map(str::to_string),
                d.describe(a, b),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// `schema_drift` on the model: each tenant schema (or `schema`) against the template, with the
/// pin template for the tenant's policies; owners and privileges not compared.
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "tenant", name = "_schema_drift_rs", stable, parallel_unsafe)]
fn schema_drift_rs(
    schema: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(schema, String),
        name!(object, String),
        name!(difference, String),
    ),
> {
    crate::privilege::require_role_of(
        crate::privilege::caller(),
        crate::privilege::TENANT_ADMIN,
        "compare tenant schemas",
    );
    let setting = deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::get_one::<String>(
            "SELECT pg_catalog.current_setting('qualityfoundry_tenant.template_schema', true)",
        )
    })
    .ok()
    .flatten();
    let template = match pin::template_schema(setting.as_deref()) {
        Ok(t) => t,
        Err(m) => error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            m,
            None,
            Some(
                "Set it to the name of the template schema, or reset it (default tenant_template)."
                    .into(),
            ),
        ),
    };
    let model = read(&template);
    let tenants: Vec<(String, i64)> = deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT t.schema_name::pg_catalog.text, t.id FROM tenant.tenants t \
                 WHERE t.schema_name IS NOT NULL AND ($1::pg_catalog.text IS NULL OR t.schema_name OPERATOR(pg_catalog.=) $1) \
                 ORDER BY t.schema_name",
                None,
                &[schema.into()],
            )?;
            let mut out = Vec::new();
            for r in rows {
                out.push((r.get::<String>(1)?.unwrap_or_default(), r.get::<i64>(2)?.unwrap_or_default()));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    })
    .unwrap_or_default();
    let mut rows = Vec::new();
    let targets: Vec<(String, Option<i64>)> = match schema {
        Some(s) if tenants.is_empty() => vec![(s.to_string(), None)],
        _ => tenants.into_iter().map(|(s, id)| (s, Some(id))).collect(),
    };
    for (s, id) in targets {
        if !schema_exists(&s) {
            rows.push((
                s.clone(),
                format!("schema {}", quote_ident(&s)),
                "missing (registered in tenant.tenants)".to_string(),
            ));
            continue;
        }
        let other = read(&s);
        // A tenant's schema is compared with the template as pinning leaves it for that tenant;
        // a schema that is no tenant's, with the template as it is.
        let opts = match id {
            Some(id) => Options::drift(pin::schema_pin(id), vec![]),
            None => Options {
                pin: None,
                ..Options::drift(Default::default(), vec![])
            },
        };
        for d in diff(&model, &other, &opts) {
            rows.push((s.clone(), d.object.clone(), d.describe(&template, &s)));
        }
    }
    TableIterator::new(rows)
}

/// The engine of `tenant.clone_schema` (sql/clone.sql, which checks its arguments and writes the
/// audit row): copies schema `source` as a new schema `target` built with the rights of the
/// role that called `clone_schema`, then verifies the copy against the model of the source (any
/// difference, or any dependency of the copy on the source, is an error and the copy is rolled
/// back with the transaction). Returns the number of statements run.
#[pg_extern(
    schema = "tenant",
    name = "_clone_schema_rs",
    volatile,
    parallel_unsafe
)]
fn clone_schema_rs(source: &str, target: &str, copy_data: default!(bool, false)) -> i32 {
    crate::privilege::require_role_of(
        crate::privilege::caller(),
        crate::privilege::TENANT_ADMIN,
        "clone a schema",
    );
    execute::clone(source, target, copy_data)
}
