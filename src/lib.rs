//! qualityfoundry_tenant: tenant isolation enforced inside PostgreSQL.

pgrx::pg_module_magic!();

mod backup;
mod catalog;
mod citus;
mod context;
mod cross_audit;
mod error;
mod fingerprint;
mod jwt;
mod migrate;
mod nesting;
mod privilege;
mod quota;
mod routing;
mod security_quals;
mod settings;
mod signed;
mod token;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Declares schema `tenant` to pgrx so `#[pg_extern(schema = "tenant")]` can name it; the schema
/// itself is created (and must not pre-exist) in `sql/bootstrap.sql`, which runs first. It is an
/// extension member, so the control file names no schema: a schema holding its extension could
/// not be one, and CREATE EXTENSION would then have to adopt a pre-existing schema `tenant`, which
/// the SPEC forbids.
#[pgrx::pg_schema]
mod tenant {}

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!(
    "../sql/context_tables.sql",
    name = "context_tables",
    requires = ["bootstrap"]
);
pgrx::extension_sql_file!(
    "../sql/registry.sql",
    name = "registry",
    requires = [
        "bootstrap",
        "context_tables",
        context::registry_changed,
        context::require_superuser_sql,
        context::current_user_id,
        context::current_tenant_role,
        jwt::request_id_sql,
        privilege::require_member_sql,
        privilege::acting_role_sql
    ]
);
pgrx::extension_sql_file!(
    "../sql/role_limits_tables.sql",
    name = "role_limits_tables",
    requires = ["bootstrap"]
);
pgrx::extension_sql_file!(
    "../sql/isolation.sql",
    name = "isolation",
    requires = [
        "registry",
        "role_limits_tables",
        context::current_tenant_role,
        context::current_tenant_uuid,
        context::current_tenant_id,
        context::cross_tenant_active,
        context::cross_tenant_support,
        context::current_tenant_support,
        context::current_tenant_uuid_support,
        context::current_tenant_id_as,
        context::current_tenant_uuid_as,
        context::tenant_role_in,
        context::tenant_role_in_support,
        citus::citus_worker
    ]
);
pgrx::extension_sql_file!(
    "../sql/migrate_tables.sql",
    name = "migrate_tables",
    requires = ["bootstrap"]
);
pgrx::extension_sql_file!(
    "../sql/lifecycle_tables.sql",
    name = "lifecycle_tables",
    requires = ["bootstrap"]
);
pgrx::extension_sql_file!(
    "../sql/lifecycle.sql",
    name = "lifecycle",
    requires = ["registry", "isolation", "lifecycle_tables"]
);
pgrx::extension_sql_file!(
    "../sql/migrate.sql",
    name = "migrate",
    requires = [
        "registry",
        "migrate_tables",
        migrate::migration_lock,
        migrate::migration_unlock,
        migrate::require_top_level,
        migrate::require_lock,
        migrate::start_workers,
        migrate::wait_workers,
        migrate::template_lock,
        migrate::workers_gone,
        migrate::migration_run_step,
        migrate::migration_fast_step,
        migrate::migration_run_template,
        migrate::migration_claimed,
        migrate::migration_claimed_row,
        migrate::migration_claimed_after,
        migrate::leader_alive
    ]
);
pgrx::extension_sql_file!(
    "../sql/clone.sql",
    name = "clone",
    requires = ["registry", "isolation"]
);
pgrx::extension_sql_file!(
    "../sql/catalog.sql",
    name = "catalog",
    requires = ["bootstrap"]
);
pgrx::extension_sql_file!(
    "../sql/schemas.sql",
    name = "schemas",
    requires = [
        "registry",
        "isolation",
        "clone",
        "migrate",
        fingerprint::tenant_schema_fingerprint
    ]
);
pgrx::extension_sql_file!(
    "../sql/checker.sql",
    name = "checker",
    requires = ["isolation", "schemas"]
);
pgrx::extension_sql_file!(
    "../sql/identity.sql",
    name = "identity",
    requires = ["registry", "context_tables"]
);
pgrx::extension_sql_file!(
    "../sql/superuser.sql",
    name = "superuser",
    requires = ["registry"]
);
pgrx::extension_sql_file!(
    "../sql/quota_tables.sql",
    name = "quota_tables",
    requires = ["bootstrap"]
);
pgrx::extension_sql_file!(
    "../sql/quotas.sql",
    name = "quotas",
    requires = [
        "registry",
        "isolation",
        "schemas",
        "quota_tables",
        quota::quota_changed,
        quota::max_tenants,
        quota::over_storage_limit_sql,
        quota::estimated_rows_sql,
        quota::table_usage,
        quota::usage_worker_check,
        quota::quota_exempt
    ]
);
pgrx::extension_sql_file!(
    "../sql/citus_tables.sql",
    name = "citus_tables",
    requires = ["bootstrap"]
);
pgrx::extension_sql_file!(
    "../sql/citus.sql",
    name = "citus",
    requires = [
        "registry",
        "isolation",
        "schemas",
        "citus_tables",
        citus::citus_sync_keys,
        citus::node_key_install,
        citus::citus_converts_new_tables,
        citus::citus_distribute_as_owner
    ]
);
pgrx::extension_sql_file!(
    "../sql/tenant_roles.sql",
    name = "tenant_roles",
    requires = ["registry", "isolation", "schemas", "lifecycle"]
);
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    quota::init(); // defines its settings, so before settings::init() reserves the prefix
    citus::init(); // likewise
    settings::init();
    context::init();
    cross_audit::init();
    routing::init(); // after Citus's preload: runs before Citus's distributed planner
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
