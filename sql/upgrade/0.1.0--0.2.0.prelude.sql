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

-- Usage and quotas (issue 16; sql/quota_tables.sql). 0.1.0 had the limit columns but read and
-- checked neither: a non-positive value meant nothing then and would lock the tenant out now, so
-- it becomes NULL (unlimited) before the checks are added, and the change is audited.
INSERT INTO tenant.audit_log (tenant_id, action, target, detail)
SELECT t.id, 'limits_cleared', t.slug,
       pg_catalog.jsonb_build_object('previous', pg_catalog.jsonb_build_object('max_storage_mb', t.max_storage_mb,
                                                                               'max_runs_per_day', t.max_runs_per_day),
                                     'reason', 'non-positive limit from 0.1.0')
  FROM tenant.tenants t WHERE t.max_storage_mb <= 0 OR t.max_runs_per_day <= 0;
UPDATE tenant.tenants SET max_storage_mb = NULL WHERE max_storage_mb <= 0;
UPDATE tenant.tenants SET max_runs_per_day = NULL WHERE max_runs_per_day <= 0;
ALTER TABLE tenant.tenants
    ADD CONSTRAINT tenants_max_storage_mb CHECK (max_storage_mb OPERATOR(pg_catalog.>) 0),
    ADD CONSTRAINT tenants_max_runs_per_day CHECK (max_runs_per_day OPERATOR(pg_catalog.>) 0);
CREATE TABLE tenant.tiers (
    tier text PRIMARY KEY CONSTRAINT tiers_tier CHECK (tier IN ('free', 'pro', 'enterprise')),
    max_storage_mb integer CONSTRAINT tiers_max_storage_mb CHECK (max_storage_mb OPERATOR(pg_catalog.>) 0),
    max_runs_per_day integer CONSTRAINT tiers_max_runs_per_day CHECK (max_runs_per_day OPERATOR(pg_catalog.>) 0)
);
COMMENT ON TABLE tenant.tiers IS 'Default limits per tier, applied by tenant.create_tenant(). Change them with tenant.set_tier_limits().';
SELECT pg_catalog.pg_extension_config_dump('tenant.tiers', '');
CREATE TABLE tenant.quota_state (
    tenant_id bigint PRIMARY KEY REFERENCES tenant.tenants (id) ON DELETE CASCADE,
    bytes bigint NOT NULL,
    max_storage_mb integer,
    over_quota boolean NOT NULL,
    measured_at timestamptz NOT NULL,
    over_since timestamptz
);
COMMENT ON TABLE tenant.quota_state IS 'Measured usage and the storage write-limit flag per tenant. Maintained by tenant.refresh_usage().';
CREATE TABLE tenant.quota_status (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT quota_status_singleton CHECK (singleton),
    last_refresh_at timestamptz,
    last_refresh_ms double precision,
    last_cap_check_at timestamptz,
    worker_interval_s integer
);
INSERT INTO tenant.quota_status DEFAULT VALUES;
CREATE TABLE tenant.rate_limits (
    relid regclass PRIMARY KEY,
    counted_as regclass NOT NULL,
    max_inserts_per_day integer CONSTRAINT rate_limits_max CHECK (max_inserts_per_day OPERATOR(pg_catalog.>) 0),
    set_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE tenant.rate_counters (
    relid regclass NOT NULL,
    tenant_id bigint NOT NULL REFERENCES tenant.tenants (id) ON DELETE CASCADE,
    day date NOT NULL,
    inserts bigint NOT NULL,
    PRIMARY KEY (relid, tenant_id, day)
);
SELECT pg_catalog.pg_extension_config_dump('tenant.rate_limits', '');
SELECT pg_catalog.pg_extension_config_dump('tenant.rate_counters', '');
CREATE TABLE tenant.node_rate_counters (
    relid regclass NOT NULL,
    tenant_id bigint NOT NULL,
    day date NOT NULL,
    inserts bigint NOT NULL,
    PRIMARY KEY (relid, tenant_id, day)
);
SELECT pg_catalog.pg_extension_config_dump('tenant.node_rate_counters', '');

-- Issue 11: the cross-tenant policy comes from the policy template (tenant._policy_shape) now.
DROP FUNCTION tenant._cross_tenant_policy(regclass);

-- Citus (issue 12), sql/citus_tables.sql: the node keys of the node contexts.
CREATE TABLE tenant.node_keys (
    id integer PRIMARY KEY,
    secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER TABLE tenant.node_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE TABLE tenant.placements (
    tenant_id bigint PRIMARY KEY REFERENCES tenant.tenants (id) ON DELETE CASCADE,
    node_name text NOT NULL,
    node_port integer NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    placed_by name NOT NULL DEFAULT CURRENT_USER
);
SELECT pg_catalog.pg_extension_config_dump('tenant.placements', '');
-- Issue 13: clone_schema, schema_diff and schema_drift run on the schema engine in Rust
-- (src/catalog, crates/schema); the PL/pgSQL describer, planner and executor are gone.
DROP FUNCTION tenant._clone_acl_text(aclitem[], "char", oid);
DROP FUNCTION tenant._clone_config(text[], name, name);
DROP FUNCTION tenant._clone_ddl_function(oid, name, name);
DROP FUNCTION tenant._clone_ddl_sequence(oid, name);
DROP FUNCTION tenant._clone_ddl_table(oid, name, name);
DROP FUNCTION tenant._clone_ddl_type(oid, name, name);
DROP FUNCTION tenant._clone_ddl_view(oid, name, name);
DROP FUNCTION tenant._clone_describe(name);
DROP FUNCTION tenant._clone_execute(name, name, boolean);
DROP FUNCTION tenant._clone_node(oid, oid, oid);
DROP FUNCTION tenant._clone_normalise(text, name);
DROP FUNCTION tenant._clone_plan(name, name, boolean);
DROP FUNCTION tenant._clone_reloptions(text[], text);
DROP FUNCTION tenant._clone_replace_first(text, text, text);
DROP FUNCTION tenant._clone_replace_schema(text, name, text);
DROP FUNCTION tenant._clone_resolve(text, text, text);
DROP FUNCTION tenant._clone_rewrite(text, name, name);
DROP FUNCTION tenant._clone_run(text, text[], text);
DROP FUNCTION tenant._clone_rx(text);
DROP FUNCTION tenant._clone_seq_options(oid, boolean);
DROP FUNCTION tenant._clone_split_path(text);
DROP FUNCTION tenant._clone_sync_acl(text, text, aclitem[], name, text);
DROP FUNCTION tenant._clone_unsupported(oid);
DROP FUNCTION tenant._clone_sql(text, oid, text, integer, pg_node_tree);
DROP FUNCTION tenant._clone_source_refs(name, name);
DROP FUNCTION tenant._schema_shape(name);
DROP FUNCTION tenant._drift_pair(name, name);

-- Roles inside a tenant (issue 15 stage B; sql/role_limits_tables.sql).
CREATE TABLE tenant.role_limits (
    relid regclass NOT NULL,
    command text NOT NULL CONSTRAINT role_limits_command CHECK (command IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'ALL')),
    roles text[] NOT NULL,
    set_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (relid, command)
);
COMMENT ON TABLE tenant.role_limits IS 'Tenant roles allowed per command on a table. Change them through tenant.limit_tenant_roles().';
SELECT pg_catalog.pg_extension_config_dump('tenant.role_limits', '');
-- add_tenant_column gained column_type (bigint or uuid).
DROP FUNCTION tenant.add_tenant_column(regclass, text, name);

-- Issue 17: migrate_all claims a run's next pending schema in order from this index (no sort).
DROP INDEX tenant.schema_migrations_run_idx;
CREATE INDEX schema_migrations_run_idx ON tenant.schema_migrations (run_id, status, schema_name);
-- Issue 17: the rows a 0.1.0 run left `running`, which the next run takes over (sql/migrate_tables.sql).
CREATE INDEX schema_migrations_running_idx ON tenant.schema_migrations (run_id) WHERE status = 'running';

-- Issue 17: what migrate_all last verified about each tenant schema (sql/migrate_tables.sql), and
-- the per-schema re-pin entry point it replaces (tenant._schema_check_after, sql/schemas.sql).
CREATE TABLE tenant.schema_checks (
    tenant_id bigint PRIMARY KEY REFERENCES tenant.tenants (id) ON DELETE CASCADE,
    fingerprint text NOT NULL,
    problems text[] NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE tenant.schema_checks IS 'What migrate_all last verified about each tenant schema (fingerprint, problems): a cache, not dumped.';
DROP FUNCTION tenant._pin_schema_tables(name);
