-- Least privilege: nothing in schema tenant is usable by PUBLIC except the read-only getters
-- that isolation policies call (every role that queries an isolated table runs them).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tenant FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA tenant FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA tenant FROM PUBLIC;
REVOKE ALL ON SCHEMA tenant FROM PUBLIC;

GRANT USAGE ON SCHEMA tenant TO tenant_user, tenant_superuser, tenant_admin;
-- And to everyone: the getters are PUBLIC, and a role that calls one by name (a BI login bound to
-- a tenant showing tenant.current_tenant()) needs it; everything else in the schema stays revoked.
GRANT USAGE ON SCHEMA tenant TO PUBLIC;

-- The getters (the identity getters sit in policies too: tenant roles, uuid-keyed tables) keep
-- PostgreSQL's default function ACL, EXECUTE for PUBLIC, which the REVOKE above made explicit.
-- The two grant the same, but the executor checks EXECUTE on every function call of every query
-- execution, and a default ACL is stored as NULL (found in the null bitmap) where an explicit one
-- is read from the end of the pg_proc row and copied (issue 17: a visible share of a point
-- select's cost). No SQL command stores a default ACL again, so it is put back here, and the
-- initial privileges the GRANT of 0.1.0 recorded go with it (pg_dump then dumps none for them,
-- as for any function with its default ACL).
GRANT EXECUTE ON FUNCTION tenant.current_tenant_id(), tenant.current_tenant(), tenant.cross_tenant_active(),
    tenant.current_user_id(), tenant.current_tenant_role(), tenant.current_tenant_uuid(),
    tenant._tenant_role_in(text[]), tenant._current_tenant_id_as(text), tenant._current_tenant_uuid_as(text) TO PUBLIC;
WITH getters(oid) AS (
    SELECT p.oid FROM pg_catalog.pg_proc p
     WHERE p.oid IN ('tenant.current_tenant_id()'::pg_catalog.regprocedure, 'tenant.current_tenant()'::pg_catalog.regprocedure,
                     'tenant.cross_tenant_active()'::pg_catalog.regprocedure, 'tenant.current_user_id()'::pg_catalog.regprocedure,
                     'tenant.current_tenant_role()'::pg_catalog.regprocedure, 'tenant.current_tenant_uuid()'::pg_catalog.regprocedure,
                     -- role limits' policies and the getters a plan folded for a role calls
                     'tenant._tenant_role_in(text[])'::pg_catalog.regprocedure,
                     'tenant._current_tenant_id_as(text)'::pg_catalog.regprocedure,
                     'tenant._current_tenant_uuid_as(text)'::pg_catalog.regprocedure)
), acl AS (
    UPDATE pg_catalog.pg_proc p SET proacl = NULL FROM getters g WHERE p.oid = g.oid RETURNING p.oid
)
DELETE FROM pg_catalog.pg_init_privs i USING acl
 WHERE i.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND i.objoid = acl.oid AND i.objsubid = 0;

GRANT EXECUTE ON FUNCTION
    tenant.set_tenant(text, boolean), tenant.set_tenant(bigint, boolean),
    tenant.set_tenant_signed(text, boolean), tenant.set_tenant_jwt(text, boolean), tenant.clear_tenant()
TO tenant_user;
GRANT EXECUTE ON FUNCTION tenant.set_request_id(text) TO tenant_user, tenant_superuser, tenant_admin;

GRANT EXECUTE ON FUNCTION tenant.enter_cross_tenant(text, boolean), tenant.exit_cross_tenant() TO tenant_superuser;

GRANT EXECUTE ON FUNCTION
    tenant.create_tenant(text, text, text, boolean, bigint, uuid), tenant.suspend_tenant(text), tenant.resume_tenant(text),
    tenant.drop_tenant(text, boolean, boolean), tenant.bind_role(regrole, text, boolean), tenant.unbind_role(regrole),
    tenant.set_role_rules(regrole, boolean, text, boolean), tenant.drop_role_rules(regrole),
    tenant.sign_context(text, interval, text, text), tenant.rotate_signing_key(interval),
    tenant.add_jwt_key(text, text, text, text, text), tenant.drop_jwt_key(text),
    tenant.enable_isolation(regclass, name, boolean), tenant.disable_isolation(regclass),
    tenant.enable_isolation_for_schema(name, name), tenant.add_tenant_column(regclass, text, name, regtype),
    tenant.limit_tenant_roles(regclass, text, text[]),
    tenant.mark_shared(regclass), tenant.mark_shared_like(name, text), tenant.unmark_shared_like(name, text),
    tenant.pin_tenant_schema(text),
    tenant.clone_schema(text, text, boolean), tenant.clone_schema(name, name, boolean), tenant.schema_diff(name, name)
TO tenant_admin;

GRANT SELECT ON tenant.tenants, tenant.role_bindings, tenant.role_rules, tenant.audit_log, tenant.isolated_tables, tenant.shared_tables,
    tenant.shared_patterns, tenant.role_limits
TO tenant_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant.memberships TO tenant_admin;

-- migrate_all (sql/migrate.sql). The procedures are SECURITY INVOKER and call the helpers as the
-- caller, so tenant_admin needs EXECUTE on them; the SECURITY DEFINER ones check membership too.
GRANT EXECUTE ON PROCEDURE
    tenant.migrate_all(text, text, boolean, integer), tenant.retry_failed(text, integer),
    tenant._migration_execute(bigint)
TO tenant_admin;
GRANT EXECUTE ON FUNCTION
    tenant.migration_status(), tenant.outdated_schemas(), tenant.schema_drift(name),
    tenant._migration_check_args(text, text, text, boolean, boolean, integer),
    tenant._migration_lock(), tenant._migration_unlock(), tenant._migration_template_target(text, text),
    tenant._migration_register(text, text, name, timestamptz), tenant._migration_template_step(text, text),
    tenant._migration_start_run(text, boolean, integer, boolean), tenant._migration_start_workers(bigint),
    tenant._migration_wait_workers(bigint, integer),
    tenant._migration_claim(bigint, integer), tenant._migration_apply(bigint, name),
    tenant._migration_finish(bigint, name, text, text), tenant._migration_requeue(bigint),
    tenant._migration_progress(bigint, integer), tenant._migration_counts(bigint),
    tenant._migration_report(integer, integer, integer, integer), tenant._migration_end_run(bigint),
    tenant._migration_raise_if_stopped(bigint), tenant._migration_next_version(text)
TO tenant_admin;
GRANT SELECT ON tenant.migrations, tenant.schema_migrations, tenant.migration_runs TO tenant_admin;
