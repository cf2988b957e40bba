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
