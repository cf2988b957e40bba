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

-- create_tenant gained trailing `id bigint DEFAULT NULL, uuid uuid DEFAULT NULL`.
DROP FUNCTION tenant.create_tenant(text, text, text, boolean);
-- Tenant context hardening (issue 10): the rules that guard a role live in the registry.
ALTER TABLE tenant.role_bindings ADD COLUMN allow_cross_tenant boolean NOT NULL DEFAULT false;
CREATE TABLE tenant.role_rules (
    role regrole PRIMARY KEY,
    require_signed_context boolean,
    context_scope text CONSTRAINT role_rules_context_scope CHECK (context_scope IN ('session', 'transaction')),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    require_membership boolean
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

-- Identity inside the tenant (issue 15). Tenants get a uuid key (existing rows get a random one).
ALTER TABLE tenant.tenants ADD COLUMN uuid uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid();
ALTER TABLE tenant.tenants ADD CONSTRAINT tenants_uuid_key UNIQUE (uuid);
-- Audit rows name the end user, the tenant role and the request.
ALTER TABLE tenant.audit_log ADD COLUMN end_user text, ADD COLUMN tenant_role text, ADD COLUMN request_id text;
CREATE TABLE tenant.jwt_keys (
    kid text PRIMARY KEY,
    alg text NOT NULL,
    key text NOT NULL,
    issuer text,
    audience text,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER TABLE tenant.jwt_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('tenant.jwt_keys', '');
CREATE TABLE tenant.memberships (
    tenant_id bigint NOT NULL REFERENCES tenant.tenants (id) ON DELETE CASCADE,
    user_id text NOT NULL CONSTRAINT memberships_user_id CHECK (user_id OPERATOR(pg_catalog.<>) ''
        AND pg_catalog.octet_length(user_id) OPERATOR(pg_catalog.<=) 256 AND user_id OPERATOR(pg_catalog.!~) '[[:cntrl:]]'),
    tenant_role text NOT NULL CONSTRAINT memberships_tenant_role CHECK (tenant_role OPERATOR(pg_catalog.<>) ''
        AND pg_catalog.octet_length(tenant_role) OPERATOR(pg_catalog.<=) 63 AND tenant_role OPERATOR(pg_catalog.!~) '[[:cntrl:]]'),
    PRIMARY KEY (tenant_id, user_id, tenant_role)
);
COMMENT ON TABLE tenant.memberships IS 'Members of each tenant and their tenant roles (checked by token setters under require_membership).';
SELECT pg_catalog.pg_extension_config_dump('tenant.memberships', '');
-- Signatures that changed: sign_context gained user_id and tenant_role (create_tenant, which also
-- gained uuid after id, is dropped above).
DROP FUNCTION tenant.sign_context(text, interval);

-- Issue 11: the cross-tenant policy comes from the policy template (tenant._policy_shape) now.
DROP FUNCTION tenant._cross_tenant_policy(regclass);
