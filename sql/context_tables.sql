-- @qft-install-only
-- Tables of the tenant context that 0.2.0 added (their counterparts are in the upgrade prelude).

-- The rules that guard a role, kept where no client setting can shadow them (a startup option or
-- a placeholder can shadow `ALTER ROLE ... SET` when the library is not preloaded). Keyed by
-- regrole, which pg_dump writes as the role's name, so a restore into a database of any name
-- keeps them. NULL: this rule is not set here (the setting of the same name still applies; the
-- stricter of the two wins). Change it with tenant.set_role_rules() / tenant.drop_role_rules().
CREATE TABLE tenant.role_rules (
    role regrole PRIMARY KEY,
    require_signed_context boolean,
    context_scope text CONSTRAINT role_rules_context_scope CHECK (context_scope IN ('session', 'transaction')),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    require_membership boolean
);
COMMENT ON TABLE tenant.role_rules IS 'Per-role context rules. Change them through tenant.set_role_rules() / tenant.drop_role_rules().';
SELECT pg_catalog.pg_extension_config_dump('tenant.role_rules', '');

-- Single-use signed tokens: the id of every token used, until it expires. Shared by all backends;
-- UNLOGGED (no WAL on the request path). A crash empties it, so the marker row (token_id all
-- zeros) says since when it remembers, and tokens issued before that are refused. Not dumped:
-- a restored database starts with fresh signing keys, so no old token is valid there anyway.
CREATE UNLOGGED TABLE tenant.used_tokens (
    token_id uuid PRIMARY KEY,
    expires_at bigint NOT NULL
);
INSERT INTO tenant.used_tokens (token_id, expires_at)
VALUES ('00000000-0000-0000-0000-000000000000', pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.now()))::bigint);

-- The signing keys: no role but the extension owner (a superuser) reads them, not even members of
-- pg_read_all_data (which gives SELECT on every table): row security with FORCE and no policy.
ALTER TABLE tenant.signing_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;

-- JWT verification keys (tenant.add_jwt_key / tenant.drop_jwt_key). Like the signing keys, no role
-- but the extension owner reads them (row security with FORCE and no policy; an HS* key is a
-- shared secret). Dumped with the extension: they are configuration from the auth service, which
-- a restored database needs as it is (protect dumps like the database).
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

-- Who belongs to which tenant with which tenant role. Maintained by tenant_admin with plain DML;
-- with require_membership a token's user must be listed here for the token's tenant (and role).
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
