//! The policy template, read as data from its one definition (`tenant._policy_template`,
//! sql/isolation.sql), and the template-schema rule from the core crate.

use super::deparse;
use pgrx::prelude::*;
use qft_schema::pin::{PinTemplate, PolicyTemplate};

pub use qft_schema::pin::template_schema;

/// What pinning makes of every table of tenant `tenant_id`'s schema: row security enabled and
/// forced, and the policies `tenant._policy_template` defines for that tenant.
pub fn schema_pin(tenant_id: i64) -> PinTemplate {
    let rows = deparse::with_search_path("pg_catalog, pg_temp", || {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT t.polname::pg_catalog.text, t.permissive, t.cmd::pg_catalog.text, t.roles, t.qual, t.with_check \
                   FROM tenant._policy_template(0::pg_catalog.oid::pg_catalog.regclass, NULL, NULL, $1) t",
                None,
                &[tenant_id.into()],
            )?;
            let mut out = Vec::new();
            for r in rows {
                out.push(PolicyTemplate::from_row(
                    r.get::<String>(1)?.unwrap_or_default(),
                    r.get::<bool>(2)?.unwrap_or_default(),
                    r.get::<String>(3)?
                        .and_then(|c| c.chars().next())
                        .unwrap_or('*'),
                    r.get::<Vec<String>>(4)?.unwrap_or_default(),
                    r.get::<String>(5)?,
                    r.get::<String>(6)?,
                ));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    });
    match rows {
        Ok(rows) => PinTemplate::forced(rows),
        Err(e) => crate::error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "cannot read the policy template".to_string(),
            Some(e.to_string()),
            None,
        ),
    }
}
