-- @qft-install-only
-- Tables of the Citus support (src/citus.rs; counterparts in the upgrade prelude).

-- The cluster's node keys: the HMAC keys of the node contexts a Citus coordinator sends to its
-- workers. Identical on every node (tenant.citus_sync_keys() installs them on the workers), read
-- by no role but the extension owner (row security with FORCE and no policy, like the signing
-- keys). Not dumped: a restored cluster syncs a fresh key.
CREATE TABLE tenant.node_keys (
    id integer PRIMARY KEY,
    secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER TABLE tenant.node_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;

-- Data residency: where tenant.place_tenant() put each tenant's schema (the placement itself is
-- Citus's; this records the request, and tenant.tenant_placements() shows both).
CREATE TABLE tenant.placements (
    tenant_id bigint PRIMARY KEY REFERENCES tenant.tenants (id) ON DELETE CASCADE,
    node_name text NOT NULL,
    node_port integer NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    placed_by name NOT NULL DEFAULT CURRENT_USER
);
SELECT pg_catalog.pg_extension_config_dump('tenant.placements', '');
