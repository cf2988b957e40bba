-- @qft-install-only
-- Usage and quotas (issue 16): the tables behind tenant.usage(), the storage write-limit and the
-- per-table rate limits (how they are used: sql/quotas.sql, src/quota.rs). Install-only: every
-- change here needs its counterpart in sql/upgrade/0.1.0--0.2.0.prelude.sql.

-- A tenant's limits are positive or absent (NULL: unlimited); 0.1.0 had the columns unchecked.
ALTER TABLE tenant.tenants
    ADD CONSTRAINT tenants_max_storage_mb CHECK (max_storage_mb OPERATOR(pg_catalog.>) 0),
    ADD CONSTRAINT tenants_max_runs_per_day CHECK (max_runs_per_day OPERATOR(pg_catalog.>) 0);

-- Tier defaults that create_tenant copies into a new tenant's limits. Empty at install (no tier
-- has defaults until tenant.set_tier_limits() gives it some), so a dump restores exactly the rows
-- a DBA made. NULL: no default for that limit.
CREATE TABLE tenant.tiers (
    tier text PRIMARY KEY CONSTRAINT tiers_tier CHECK (tier IN ('free', 'pro', 'enterprise')),
    max_storage_mb integer CONSTRAINT tiers_max_storage_mb CHECK (max_storage_mb OPERATOR(pg_catalog.>) 0),
    max_runs_per_day integer CONSTRAINT tiers_max_runs_per_day CHECK (max_runs_per_day OPERATOR(pg_catalog.>) 0)
);
COMMENT ON TABLE tenant.tiers IS 'Default limits per tier, applied by tenant.create_tenant(). Change them with tenant.set_tier_limits().';
SELECT pg_catalog.pg_extension_config_dump('tenant.tiers', '');

-- Per tenant: what the last measurement (tenant.refresh_usage(), the usage worker, set_limits)
-- found, and whether the tenant is write-limited. The storage guard on every isolated and pinned
-- table reads the over_quota rows through a per-backend cache that a statement trigger on this
-- table invalidates (src/quota.rs). Derived state: not dumped (refresh after a restore).
CREATE TABLE tenant.quota_state (
    tenant_id bigint PRIMARY KEY REFERENCES tenant.tenants (id) ON DELETE CASCADE,
    bytes bigint NOT NULL,
    max_storage_mb integer,
    over_quota boolean NOT NULL,
    measured_at timestamptz NOT NULL,
    over_since timestamptz
);
COMMENT ON TABLE tenant.quota_state IS 'Measured usage and the storage write-limit flag per tenant. Maintained by tenant.refresh_usage().';

-- One row: when the last sweep ran and the interval the usage worker last ran with (its liveness,
-- which backends judge by: a client option can shadow the setting in a session that has not
-- loaded the library, the table it cannot), and the row every create_tenant updates while
-- qualityfoundry_tenant.max_tenants is set, so concurrent creates serialise on it and the cap
-- holds in every isolation level.
CREATE TABLE tenant.quota_status (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT quota_status_singleton CHECK (singleton),
    last_refresh_at timestamptz,
    last_refresh_ms double precision,
    last_cap_check_at timestamptz,
    worker_interval_s integer
);
INSERT INTO tenant.quota_status DEFAULT VALUES;

-- Rate-limited tables (tenant.limit_rate). counted_as: the table the limit was set on; a
-- partition counts its inserts against its partitioned table's limit. NULL max: the tenant's
-- max_runs_per_day.
CREATE TABLE tenant.rate_limits (
    relid regclass PRIMARY KEY,
    counted_as regclass NOT NULL,
    max_inserts_per_day integer CONSTRAINT rate_limits_max CHECK (max_inserts_per_day OPERATOR(pg_catalog.>) 0),
    set_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
-- Inserts per table, tenant and UTC day: one row per tenant, so tenants never wait for each other.
CREATE TABLE tenant.rate_counters (
    relid regclass NOT NULL,
    tenant_id bigint NOT NULL REFERENCES tenant.tenants (id) ON DELETE CASCADE,
    day date NOT NULL,
    inserts bigint NOT NULL,
    PRIMARY KEY (relid, tenant_id, day)
);
-- On a Citus worker: the inserts stored there per rate-limited table (the worker's copy of it),
-- tenant and UTC day, counted under the coordinator's node contexts (src/quota.rs). No foreign
-- key: a worker has no registry.
CREATE TABLE tenant.node_rate_counters (
    relid regclass NOT NULL,
    tenant_id bigint NOT NULL,
    day date NOT NULL,
    inserts bigint NOT NULL,
    PRIMARY KEY (relid, tenant_id, day)
);
SELECT pg_catalog.pg_extension_config_dump('tenant.rate_limits', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.node_rate_counters', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.rate_counters', '');
