-- @qft-install-only
-- Tables of roles inside a tenant (tenant.limit_tenant_roles, sql/tenant_roles.sql). Install-only:
-- the counterpart is in the upgrade prelude.

-- Which tenant roles may run which command on a table. One row per (table, command); the policy
-- template (tenant._policy_template, sql/isolation.sql) turns each row into a RESTRICTIVE policy
-- qft_role_<command>, so the checker, pinning and clone compare and keep them by content. Keyed by
-- regclass, which pg_dump writes as the table's name: dumped with the extension, restored with it.
CREATE TABLE tenant.role_limits (
    relid regclass NOT NULL,
    command text NOT NULL CONSTRAINT role_limits_command CHECK (command IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'ALL')),
    roles text[] NOT NULL,
    set_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (relid, command)
);
COMMENT ON TABLE tenant.role_limits IS 'Tenant roles allowed per command on a table. Change them through tenant.limit_tenant_roles().';
SELECT pg_catalog.pg_extension_config_dump('tenant.role_limits', '');
