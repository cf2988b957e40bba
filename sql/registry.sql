-- Tenant registry functions. SECURITY DEFINER with a pinned search_path: they write tables that
-- application roles cannot touch. Each checks the caller's role membership itself
-- (tenant._require_member looks at the role that called, not at the definer).

CREATE OR REPLACE FUNCTION tenant._audit(action text, target text, tenant_id bigint, detail jsonb)
RETURNS void LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tenant.audit_log (session_role, acting_role, tenant_id, action, target, detail,
                                  end_user, tenant_role, request_id)
    VALUES (SESSION_USER, tenant._acting_role(), $3, $1, $2, $4,
            tenant.current_user_id(), tenant.current_tenant_role(), tenant._request_id());
$$;

-- Every change to the registry makes all backends drop their cached copy at commit.
CREATE OR REPLACE FUNCTION tenant._registry_changed_trigger() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._registry_changed();
    RETURN NULL;
END
$$;
-- On tenant.tenants only the columns the per-backend cache holds (src/context.rs, TenantRow) count:
-- migrate_all's per-schema schema_version update broadcasts nothing.
CREATE OR REPLACE TRIGGER registry_changed AFTER INSERT OR UPDATE OF id, slug, status, schema_name, uuid OR DELETE OR TRUNCATE
    ON tenant.tenants FOR EACH STATEMENT EXECUTE FUNCTION tenant._registry_changed_trigger();
CREATE OR REPLACE TRIGGER registry_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.role_bindings
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._registry_changed_trigger();
CREATE OR REPLACE TRIGGER registry_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._registry_changed_trigger();
CREATE OR REPLACE TRIGGER registry_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.role_rules
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._registry_changed_trigger();
-- On a logical replication subscriber the registry changes too, by the apply worker, which runs
-- with session_replication_role = replica (ordinary triggers do not fire) and fires only row
-- triggers (statement triggers only for TRUNCATE and the initial copy). So the statement triggers
-- fire ALWAYS, and a row trigger fires in replica sessions only: a tenant suspended on the
-- publisher is suspended in every subscriber session from its next statement, and the primary
-- pays nothing per row.
ALTER TABLE tenant.tenants ENABLE ALWAYS TRIGGER registry_changed;
ALTER TABLE tenant.role_bindings ENABLE ALWAYS TRIGGER registry_changed;
ALTER TABLE tenant.signing_keys ENABLE ALWAYS TRIGGER registry_changed;
ALTER TABLE tenant.role_rules ENABLE ALWAYS TRIGGER registry_changed;
CREATE OR REPLACE TRIGGER registry_changed_replica AFTER INSERT OR UPDATE OR DELETE ON tenant.tenants
    FOR EACH ROW EXECUTE FUNCTION tenant._registry_changed_trigger();
CREATE OR REPLACE TRIGGER registry_changed_replica AFTER INSERT OR UPDATE OR DELETE ON tenant.role_bindings
    FOR EACH ROW EXECUTE FUNCTION tenant._registry_changed_trigger();
CREATE OR REPLACE TRIGGER registry_changed_replica AFTER INSERT OR UPDATE OR DELETE ON tenant.signing_keys
    FOR EACH ROW EXECUTE FUNCTION tenant._registry_changed_trigger();
CREATE OR REPLACE TRIGGER registry_changed_replica AFTER INSERT OR UPDATE OR DELETE ON tenant.role_rules
    FOR EACH ROW EXECUTE FUNCTION tenant._registry_changed_trigger();
ALTER TABLE tenant.tenants ENABLE REPLICA TRIGGER registry_changed_replica;
ALTER TABLE tenant.role_bindings ENABLE REPLICA TRIGGER registry_changed_replica;
ALTER TABLE tenant.signing_keys ENABLE REPLICA TRIGGER registry_changed_replica;
ALTER TABLE tenant.role_rules ENABLE REPLICA TRIGGER registry_changed_replica;

-- Resolves a `tenant text` argument (slug, id as text, or uuid in its 8-4-4-4-12 form; a slug
-- cannot contain '-', so the forms never collide) or raises 22023.
CREATE OR REPLACE FUNCTION tenant._resolve(tenant text) RETURNS tenant.tenants
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'tenant must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF tenant ~ '^[0-9]{1,18}$' THEN
        SELECT * INTO t FROM tenant.tenants WHERE id = tenant::bigint;
    ELSIF tenant ~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' THEN
        SELECT * INTO t FROM tenant.tenants x WHERE x.uuid = tenant::uuid;
    ELSE
        SELECT * INTO t FROM tenant.tenants WHERE slug = tenant;
    END IF;
    IF t.id IS NULL THEN
        RAISE EXCEPTION 'tenant "%" does not exist', tenant USING ERRCODE = '22023',
            HINT = 'Pass a slug, an id or a uuid from tenant.tenants.';
    END IF;
    RETURN t;
END
$$;

-- id: re-create a tenant with the id its rows still carry (after DROP EXTENSION ... CASCADE and
-- CREATE EXTENSION). Without it the id comes from the registry's sequence, and a generated id that
-- isolated tables already hold rows for is refused: the new tenant would inherit them.
-- uuid: the tenant's uuid key (generated when NULL).
CREATE OR REPLACE FUNCTION tenant.create_tenant(slug text, name text DEFAULT NULL, tier text DEFAULT 'free',
                                     with_schema boolean DEFAULT false, id bigint DEFAULT NULL,
                                     uuid uuid DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
    new_uuid uuid := COALESCE(create_tenant.uuid, gen_random_uuid());
    held record;
    conflict name;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'create a tenant');
    IF slug IS NULL OR slug !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid tenant slug %', coalesce(quote_literal(slug), 'NULL') USING ERRCODE = '22023',
            DETAIL = 'A slug is 1 to 40 characters: a lower-case letter, then lower-case letters, digits or underscores.';
    END IF;
    IF tier IS NULL OR tier NOT IN ('free', 'pro', 'enterprise') THEN
        RAISE EXCEPTION 'invalid tier %', coalesce(quote_literal(tier), 'NULL') USING ERRCODE = '22023',
            HINT = 'Use free, pro or enterprise.';
    END IF;
    IF with_schema IS NULL THEN
        RAISE EXCEPTION 'with_schema must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF create_tenant.id <= 0 THEN
        RAISE EXCEPTION 'tenant id % is not valid', create_tenant.id USING ERRCODE = '22023', HINT = 'Tenant ids are positive.';
    END IF;
    -- The row goes in first: a concurrent create_tenant of the same slug waits on it here and then
    -- fails with 42710 before it has built anything.
    BEGIN
        IF create_tenant.id IS NULL THEN
            INSERT INTO tenant.tenants (slug, name, tier, uuid) VALUES (slug, name, tier, new_uuid)
                RETURNING tenants.id INTO new_id;
        ELSE
            INSERT INTO tenant.tenants (id, slug, name, tier, uuid) VALUES (create_tenant.id, slug, name, tier, new_uuid)
                RETURNING tenants.id INTO new_id;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS conflict = CONSTRAINT_NAME;
        IF conflict = 'tenants_uuid_key' THEN
            RAISE EXCEPTION 'a tenant with uuid % already exists', new_uuid USING ERRCODE = '42710';
        ELSIF conflict = 'tenants_pkey' AND create_tenant.id IS NOT NULL THEN
            RAISE EXCEPTION 'tenant id % already exists', create_tenant.id USING ERRCODE = '42710';
        ELSIF conflict = 'tenants_pkey' THEN
            RAISE EXCEPTION 'tenant id % (the next one the registry generates) already exists', currval('tenant.tenants_id_seq')
                USING ERRCODE = '42710', DETAIL = 'tenant.tenants_id_seq is behind the ids in tenant.tenants.',
                      HINT = 'A superuser can fix it: SELECT setval(''tenant.tenants_id_seq'', (SELECT max(id) FROM tenant.tenants));';
        END IF;
        RAISE EXCEPTION 'tenant "%" already exists', slug USING ERRCODE = '42710';
    END;
    PERFORM tenant._quota_tenant_created(new_id); -- the tenant cap and tier defaults (sql/quotas.sql)
    IF create_tenant.id IS NOT NULL THEN
        -- Generated ids continue after the largest one given.
        PERFORM setval('tenant.tenants_id_seq', max(t.id)) FROM tenant.tenants t
          HAVING max(t.id) >= (SELECT q.last_value FROM tenant.tenants_id_seq q);
        FOR held IN SELECT * FROM tenant._tenant_rows(new_id) LOOP
            RAISE NOTICE 'tenant "%" (id %) owns the % existing row(s) of % with that id', slug, new_id, held.n, held.relid;
        END LOOP;
    ELSE
        FOR held IN SELECT * FROM tenant._tenant_rows(new_id) LOOP
            RAISE EXCEPTION 'tenant id % already has % row(s) in %, left by a tenant that is no longer in the registry',
                            new_id, held.n, held.relid USING ERRCODE = '55000',
                DETAIL = 'A new tenant with this id would own them.',
                HINT = format('If they belong to a tenant lost with DROP EXTENSION ... CASCADE, re-create it with '
                              'tenant.create_tenant(''<its slug>'', id => %s); otherwise delete the rows, or create '
                              'this tenant with an id of your choosing (id => n).', new_id);
        END LOOP;
    END IF;
    IF with_schema THEN
        PERFORM tenant._create_tenant_schema(new_id);
    END IF;
    PERFORM tenant._audit('tenant_created', slug, new_id,
                          jsonb_build_object('tier', tier, 'name', name, 'with_schema', with_schema, 'uuid', new_uuid));
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION tenant._set_status(tenant text, new_status text, action text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants := tenant._resolve(tenant);
BEGIN
    UPDATE tenant.tenants SET status = new_status WHERE id = t.id;
    PERFORM tenant._audit(action, t.slug, t.id, jsonb_build_object('previous_status', t.status));
END
$$;

CREATE OR REPLACE FUNCTION tenant.suspend_tenant(tenant text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'suspend a tenant');
    PERFORM tenant._set_status(tenant, 'suspended', 'tenant_suspended');
END
$$;

CREATE OR REPLACE FUNCTION tenant.resume_tenant(tenant text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'resume a tenant');
    PERFORM tenant._set_status(tenant, 'active', 'tenant_resumed');
END
$$;

-- Binds a login role to one tenant. The binding lives only in the registry: the context getter
-- reads it for the session user on every statement (through the per-backend cache), so it holds
-- from a session's first statement, cannot be shadowed by any client setting, and rebinding,
-- unbinding and SET SESSION AUTHORIZATION take effect from the next statement.
-- allow_cross_tenant (superusers only): the bound role, if a tenant_superuser member, may enter
-- cross-tenant mode; without it a bound role never leaves its tenant.
CREATE OR REPLACE FUNCTION tenant.bind_role(role regrole, tenant text, allow_cross_tenant boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
    r pg_roles;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'bind a role to a tenant');
    IF role IS NULL OR allow_cross_tenant IS NULL THEN
        RAISE EXCEPTION 'role and allow_cross_tenant must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF allow_cross_tenant THEN
        PERFORM tenant._require_superuser('let a bound role enter cross-tenant mode');
    END IF;
    t := tenant._resolve(tenant);
    SELECT * INTO r FROM pg_roles WHERE oid = role;
    IF r.rolsuper OR r.rolbypassrls THEN
        RAISE EXCEPTION 'role % bypasses row-level security and cannot be bound to a tenant', role
            USING ERRCODE = '22023', HINT = 'Bind a NOSUPERUSER NOBYPASSRLS login role.';
    END IF;
    INSERT INTO tenant.role_bindings (role, tenant_id, allow_cross_tenant) VALUES (role, t.id, allow_cross_tenant)
        ON CONFLICT ON CONSTRAINT role_bindings_pkey
        DO UPDATE SET tenant_id = excluded.tenant_id, bound_at = now(), allow_cross_tenant = excluded.allow_cross_tenant;
    PERFORM tenant._audit('role_bound', r.rolname, t.id,
                          jsonb_build_object('tenant', t.slug, 'allow_cross_tenant', allow_cross_tenant));
END
$$;

CREATE OR REPLACE FUNCTION tenant.unbind_role(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_tenant bigint;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'unbind a role');
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = '22004';
    END IF;
    DELETE FROM tenant.role_bindings b WHERE b.role = unbind_role.role RETURNING b.tenant_id INTO old_tenant;
    IF old_tenant IS NULL THEN
        RAISE EXCEPTION 'role % is not bound to a tenant', role USING ERRCODE = '22023';
    END IF;
    PERFORM tenant._audit('role_unbound', role::text, old_tenant, NULL);
END
$$;

-- The rules that guard a role's context, in the registry (see sql/context_tables.sql). NULL
-- leaves a rule as it is; the setting of the same name (ALTER ROLE ... SET) still applies too,
-- and the stricter wins.
CREATE OR REPLACE FUNCTION tenant.set_role_rules(role regrole, require_signed_context boolean DEFAULT NULL,
                                                 context_scope text DEFAULT NULL,
                                                 require_membership boolean DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rules tenant.role_rules;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'set the rules of a role');
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF context_scope IS NOT NULL AND context_scope NOT IN ('session', 'transaction') THEN
        RAISE EXCEPTION 'invalid context_scope %', quote_literal(context_scope) USING ERRCODE = '22023',
            HINT = 'Use session or transaction.';
    END IF;
    IF require_signed_context IS NULL AND context_scope IS NULL AND require_membership IS NULL THEN
        RAISE EXCEPTION 'no rule given for role %', role USING ERRCODE = '22023',
            HINT = 'Pass require_signed_context, context_scope and/or require_membership; tenant.drop_role_rules() removes them.';
    END IF;
    INSERT INTO tenant.role_rules AS r (role, require_signed_context, context_scope, require_membership)
    VALUES (set_role_rules.role, set_role_rules.require_signed_context, set_role_rules.context_scope,
            set_role_rules.require_membership)
    ON CONFLICT ON CONSTRAINT role_rules_pkey DO UPDATE
        SET require_signed_context = COALESCE(excluded.require_signed_context, r.require_signed_context),
            context_scope = COALESCE(excluded.context_scope, r.context_scope),
            require_membership = COALESCE(excluded.require_membership, r.require_membership),
            updated_at = now()
    RETURNING * INTO rules;
    PERFORM tenant._audit('role_rules_set', role::text, NULL,
                          jsonb_build_object('require_signed_context', rules.require_signed_context,
                                             'context_scope', rules.context_scope,
                                             'require_membership', rules.require_membership));
END
$$;

CREATE OR REPLACE FUNCTION tenant.drop_role_rules(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'drop the rules of a role');
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = '22004';
    END IF;
    DELETE FROM tenant.role_rules r WHERE r.role = drop_role_rules.role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role % has no rules', role USING ERRCODE = '22023';
    END IF;
    PERFORM tenant._audit('role_rules_dropped', role::text, NULL, NULL);
END
$$;

CREATE OR REPLACE FUNCTION tenant.drop_tenant(tenant text, drop_schema boolean DEFAULT false, delete_rows boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t tenant.tenants;
    holder record;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'drop a tenant');
    t := tenant._resolve(tenant);
    IF drop_schema IS NULL OR delete_rows IS NULL THEN
        RAISE EXCEPTION 'drop_schema and delete_rows must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF t.schema_name IS NOT NULL AND EXISTS (SELECT FROM pg_namespace WHERE nspname = t.schema_name)
       AND NOT drop_schema THEN
        RAISE EXCEPTION 'tenant "%" still has schema %', t.slug, quote_ident(t.schema_name) USING ERRCODE = '2BP01',
            HINT = 'Pass drop_schema => true to drop it with the tenant.';
    END IF;
    -- Rows in isolated tables: refuse, or delete them with delete_rows. Only tables that exist now
    -- (tenant._tenant_rows reads the catalog), each locked by its count until commit.
    FOR holder IN SELECT * FROM tenant._tenant_rows(t.id) LOOP
        IF NOT delete_rows THEN
            RAISE EXCEPTION 'tenant "%" still has % rows in %', t.slug, holder.n, holder.relid USING ERRCODE = '2BP01',
                HINT = 'Delete them first, or pass delete_rows => true.';
        END IF;
        -- As the table's owner in a security-restricted operation: its triggers, rules and
        -- cascades never run with the extension owner's rights.
        PERFORM tenant._exec_as((SELECT c.relowner FROM pg_class c WHERE c.oid = holder.relid),
                                format('DELETE FROM %s WHERE %I = %s', holder.relid, holder.tenant_column,
                                       CASE WHEN tenant._tenant_key_is_uuid(holder.relid, holder.tenant_column)
                                            THEN '$1[2]::pg_catalog.uuid' ELSE '$1[1]::pg_catalog.int8' END),
                                ARRAY[t.id::text, t.uuid::text], 'pg_catalog, pg_temp', false, true);
    END LOOP;
    IF t.schema_name IS NOT NULL AND drop_schema THEN
        EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', t.schema_name);
    END IF;
    -- Bound sessions of this tenant see nothing from their next statement (bindings live only
    -- in the registry; the trigger invalidates every backend's cache at commit).
    DELETE FROM tenant.role_bindings WHERE tenant_id = t.id;
    DELETE FROM tenant.tenants WHERE id = t.id;
    PERFORM tenant._audit('tenant_dropped', t.slug, t.id,
                          jsonb_build_object('drop_schema', drop_schema, 'delete_rows', delete_rows));
END
$$;
