-- 0.1.0 -> 0.2.0, hand-written part that runs before every function is (re)created.
-- Add here, in the order they must run: new tables and columns (ALTER TABLE ... ADD COLUMN, with
-- the same definition as the install-only files), new roles, and DROP FUNCTION for every function
-- whose signature or result changed or that 0.2.0 no longer has (CREATE OR REPLACE cannot change
-- those). Keep the policy getters (current_tenant_id, cross_tenant_active): user policies depend
-- on them, so their signatures never change.

-- First: 0.1.0's auto_isolate event trigger would isolate tables this script creates (with
-- auto_isolate on, any table with a tenant_id column). sql/isolation.sql, replayed below,
-- re-creates it (enabled) with 0.2.0's function, which leaves extension tables alone.
DO $quiet$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname OPERATOR(pg_catalog.=) 'qft_auto_isolate') THEN
        ALTER EVENT TRIGGER qft_auto_isolate DISABLE;
    END IF;
END
$quiet$;

-- sql/lifecycle_tables.sql: shared table name patterns.
CREATE TABLE tenant.shared_patterns (
    schema_name name NOT NULL,
    pattern text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (schema_name, pattern)
);
SELECT pg_catalog.pg_extension_config_dump('tenant.shared_patterns', '');

-- create_tenant gained a trailing `id bigint DEFAULT NULL`.
DROP FUNCTION tenant.create_tenant(text, text, text, boolean);
-- Tenant context hardening (issue 10): the rules that guard a role live in the registry.
ALTER TABLE tenant.role_bindings ADD COLUMN allow_cross_tenant boolean NOT NULL DEFAULT false;
CREATE TABLE tenant.role_rules (
    role regrole PRIMARY KEY,
    require_signed_context boolean,
    context_scope text CONSTRAINT role_rules_context_scope CHECK (context_scope IN ('session', 'transaction')),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE tenant.role_rules IS 'Per-role context rules. Change them through tenant.set_role_rules() / tenant.drop_role_rules().';
SELECT pg_catalog.pg_extension_config_dump('tenant.role_rules', '');
-- Single-use tokens (0.1.0's v1 tokens are refused from now on: they carried no token id).
CREATE UNLOGGED TABLE tenant.used_tokens (
    token_id uuid PRIMARY KEY,
    expires_at bigint NOT NULL
);
INSERT INTO tenant.used_tokens (token_id, expires_at)
VALUES ('00000000-0000-0000-0000-000000000000', pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.now()))::bigint);
-- Keys unreadable by pg_read_all_data members.
ALTER TABLE tenant.signing_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
-- Signatures that changed: enter_cross_tenant gained is_local, bind_role gained allow_cross_tenant.
DROP FUNCTION tenant.enter_cross_tenant(text);
DROP FUNCTION tenant.bind_role(regrole, text);

-- Issue 11: the cross-tenant policy comes from the policy template (tenant._policy_shape) now.
DROP FUNCTION tenant._cross_tenant_policy(regclass);
