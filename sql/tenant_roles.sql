-- Roles inside a tenant (issue 15): tenant.limit_tenant_roles restricts one command on a table to
-- the tenant roles the context carries (tenant.current_tenant_role(): a JWT's role claim, a signed
-- token's tenant_role). The limits are rows of tenant.role_limits (sql/role_limits_tables.sql);
-- the policies are the policy template's (tenant._role_limit_shape, sql/isolation.sql), so
-- enable_isolation, pinning, migrate_all's re-pinning and the checker keep and compare them by
-- content like every other policy the extension creates.

-- Whether limits may be set on tbl: an isolated table, a table of a tenant schema (pinned), or a
-- table of the template schema (whose limits clone_schema gives every tenant created from it).
CREATE OR REPLACE FUNCTION tenant._role_limitable(tbl regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM tenant.isolated_tables i WHERE i.relid = tbl)
        OR EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.oid = tbl
                      AND (n.nspname IN (SELECT t.schema_name FROM tenant.tenants t WHERE t.schema_name IS NOT NULL)
                           OR n.nspname = tenant._template_schema()))
$$;

-- tbl and every table that inherits from it (partitions, at any depth).
CREATE OR REPLACE FUNCTION tenant._table_tree(tbl regclass) RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tree(relid) AS (
        SELECT tbl::oid
        UNION
        SELECT h.inhrelid FROM pg_inherits h JOIN tree t ON h.inhparent = t.relid
    )
    SELECT relid::regclass FROM tree
$$;

CREATE OR REPLACE FUNCTION tenant.limit_tenant_roles(tbl regclass, command text, roles text[]) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    cmd text := upper(btrim(command));
    wanted text[];
    bad text;
    part regclass;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'limit tenant roles');
    IF tbl IS NULL OR command IS NULL THEN
        RAISE EXCEPTION 'tbl and command must not be NULL' USING ERRCODE = '22004',
            HINT = 'Pass roles => NULL to remove a limit.';
    END IF;
    IF cmd NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'ALL') THEN
        RAISE EXCEPTION 'invalid command %', quote_literal(command) USING ERRCODE = '22023',
            HINT = 'The command is one of SELECT, INSERT, UPDATE, DELETE or ALL.';
    END IF;
    SELECT c.relkind, c.relispartition INTO rel FROM pg_class c WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809',
            HINT = 'Tenant roles are limited on ordinary and partitioned tables.';
    END IF;
    IF rel.relispartition THEN
        RAISE EXCEPTION 'table % is a partition', tbl USING ERRCODE = '22023',
            HINT = 'Limit the partitioned table: its partitions follow it.';
    END IF;
    IF NOT tenant._role_limitable(tbl) THEN
        RAISE EXCEPTION 'table % is neither isolated nor in a tenant schema or the template schema', tbl USING ERRCODE = '22023',
            HINT = 'Isolate it first with tenant.enable_isolation(): roles inside a tenant only mean something within one.';
    END IF;
    IF roles IS NOT NULL THEN
        IF array_ndims(roles) > 1 THEN
            RAISE EXCEPTION 'roles must be a one-dimensional array' USING ERRCODE = '22023';
        END IF;
        SELECT r INTO bad FROM unnest(roles) r
         WHERE r IS NULL OR r = '' OR octet_length(r) > 63 OR r ~ '[[:cntrl:]"\\]' LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'invalid tenant role %', coalesce(quote_literal(bad), 'NULL') USING ERRCODE = '22023',
                DETAIL = 'A tenant role is a non-empty name of at most 63 bytes without control characters, double quotes or backslashes.';
        END IF;
        wanted := ARRAY(SELECT DISTINCT r FROM unnest(roles) r ORDER BY 1);
    END IF;

    IF wanted IS NULL THEN
        DELETE FROM tenant.role_limits l WHERE l.relid = tbl AND l.command = cmd;
        IF NOT FOUND THEN
            RETURN; -- no limit to remove: nothing changes
        END IF;
    ELSE
        INSERT INTO tenant.role_limits AS l (relid, command, roles) VALUES (tbl, cmd, wanted)
        ON CONFLICT ON CONSTRAINT role_limits_pkey DO UPDATE SET roles = excluded.roles, set_at = pg_catalog.now();
    END IF;
    -- The table and its partitions (a query naming a partition does not see the parent's policies).
    FOR part IN SELECT * FROM tenant._table_tree(tbl) LOOP
        PERFORM tenant._apply_policies(part);
    END LOOP;
    PERFORM tenant._audit(CASE WHEN wanted IS NULL THEN 'tenant_roles_unlimited' ELSE 'tenant_roles_limited' END,
                          tbl::text, NULL, jsonb_build_object('command', cmd, 'roles', to_jsonb(wanted)));
END
$$;

-- clone_schema: the copy's tables get the limits of the source's tables (their policies are
-- copied with the tables; the registry rows make pinning and the checker keep them).
CREATE OR REPLACE FUNCTION tenant._clone_role_limits(source name, target name) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tenant.role_limits (relid, command, roles)
    SELECT d.oid::regclass, l.command, l.roles
      FROM tenant.role_limits l
      JOIN pg_class s ON s.oid = l.relid JOIN pg_namespace sn ON sn.oid = s.relnamespace AND sn.nspname = source
      JOIN pg_namespace dn ON dn.nspname = target
      JOIN pg_class d ON d.relnamespace = dn.oid AND d.relname = s.relname
    ON CONFLICT ON CONSTRAINT role_limits_pkey DO NOTHING
$$;

-- Limits of tables that can no longer have them (isolation disabled, not in a tenant or template
-- schema any more): removed with their policies. For disable_isolation.
CREATE OR REPLACE FUNCTION tenant._forget_role_limits(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r regclass;
BEGIN
    FOR r IN SELECT t FROM tenant._table_tree(tbl) t WHERE NOT tenant._role_limitable(t) LOOP
        DELETE FROM tenant.role_limits WHERE relid = r;
        PERFORM tenant._drop_qft_policies(r, ARRAY['qft_role_select', 'qft_role_insert', 'qft_role_update',
                                                   'qft_role_delete', 'qft_role_all']::name[]);
    END LOOP;
END
$$;
