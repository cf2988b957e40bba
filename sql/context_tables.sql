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
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
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
