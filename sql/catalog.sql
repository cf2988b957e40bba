-- Helpers of the catalog reader of the schema engine (src/catalog/read.sql, prepared and run by
-- src/catalog/mod.rs; crates/schema builds the model from its rows).

-- An ACL as [{grantee, privilege, grantable}] (grantee NULL: PUBLIC); NULL for the default ACL,
-- [] for an ACL with nothing granted.
CREATE OR REPLACE FUNCTION tenant._catalog_acl(acl aclitem[]) RETURNS json
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN acl IS NULL THEN NULL ELSE coalesce(
        (SELECT json_agg(json_build_object('grantee', CASE WHEN e.grantee = 0 THEN NULL ELSE pg_get_userbyid(e.grantee) END,
                                             'privilege', e.privilege_type, 'grantable', e.is_grantable)
                          ORDER BY e.grantee, e.privilege_type)
           FROM aclexplode(acl) e), '[]'::json) END
$$;

-- A relation, type or other object named from schema nsp: {schema (NULL: nsp itself), name}.
CREATE OR REPLACE FUNCTION tenant._catalog_ref(obj_nsp oid, obj_name name, nsp oid) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT json_build_object('schema', CASE WHEN obj_nsp = nsp THEN NULL
                                             ELSE (SELECT n.nspname FROM pg_namespace n WHERE n.oid = obj_nsp) END,
                              'name', obj_name)
$$;
