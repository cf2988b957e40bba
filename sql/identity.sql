-- Identity inside the tenant (0.2.0): JWT verification keys and memberships. The functions are in
-- Rust (src/jwt.rs, src/context.rs); the tables in sql/context_tables.sql.

-- Every backend caches the parsed JWT keys with the registry: a change reaches all of them at
-- commit, so a dropped key is refused from the next statement on.
CREATE OR REPLACE TRIGGER registry_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.jwt_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._registry_changed_trigger();
