-- Superuser consistency for an application's users table.
--
-- The security review found two contradicting ways to say "superuser" (is_superuser vs a NULL
-- tenant), so a normal user with a NULL tenant slipped past checks. A consistent row is exactly one of
--   superuser:   superuser_column IS TRUE  AND tenant_column IS NULL
--   normal user: superuser_column IS FALSE AND tenant_column IS NOT NULL
-- Written with IS TRUE / IS FALSE / IS [NOT] NULL so the expression is never NULL: a CHECK passes on
-- NULL, and a NULL superuser flag must be a violation, not a pass.

-- Validates the arguments (22004, 42809, 42703, 42804) and describes the table: the constraint's
-- name and expression, and how to name a row (primary key values, else ctid).
CREATE OR REPLACE FUNCTION tenant._superuser_target(users regclass, tenant_column name, superuser_column name,
                                         OUT constraint_name name, OUT check_expr text,
                                         OUT key_expr text, OUT key_label text, OUT key_order text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind "char";
    rel name;
    typ regtype;
    pk smallint[];
    suffix constant text := '_tenant_superuser_consistency';
BEGIN
    IF users IS NULL OR tenant_column IS NULL OR superuser_column IS NULL THEN
        RAISE EXCEPTION 'users, tenant_column and superuser_column must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT c.relkind, c.relname INTO kind, rel FROM pg_class c WHERE c.oid = users;
    IF kind IS NULL OR kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', users USING ERRCODE = '42809',
            HINT = 'Pass the users table (an ordinary or partitioned table).';
    END IF;
    SELECT a.atttypid INTO typ FROM pg_attribute a
     WHERE a.attrelid = users AND a.attname = superuser_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF typ IS NULL THEN
        RAISE EXCEPTION 'column % of table % does not exist', quote_ident(superuser_column), users USING ERRCODE = '42703',
            HINT = 'Pass the name of the boolean superuser flag as superuser_column.';
    END IF;
    IF typ <> 'boolean'::regtype THEN
        RAISE EXCEPTION 'superuser column % of table % is of type %', quote_ident(superuser_column), users, typ
            USING ERRCODE = '42804', HINT = 'The superuser column must be boolean.';
    END IF;
    typ := NULL;
    SELECT a.atttypid INTO typ FROM pg_attribute a
     WHERE a.attrelid = users AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF typ IS NULL THEN
        RAISE EXCEPTION 'column % of table % does not exist', quote_ident(tenant_column), users USING ERRCODE = '42703',
            HINT = 'Pass the name of the tenant column as tenant_column.';
    END IF;
    IF typ NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        RAISE EXCEPTION 'tenant column % of table % is of type %', quote_ident(tenant_column), users, typ
            USING ERRCODE = '42804', HINT = 'The tenant column must be smallint, integer or bigint.';
    END IF;

    -- <table>_tenant_superuser_consistency, the table name shortened (by whole characters) so the
    -- whole name fits NAMEDATALEN - 1 = 63 bytes.
    WHILE octet_length(rel) + octet_length(suffix) > 63 LOOP
        rel := left(rel, -1);
    END LOOP;
    constraint_name := rel || suffix;
    check_expr := format('(%1$I IS TRUE AND %2$I IS NULL) OR (%1$I IS FALSE AND %2$I IS NOT NULL)',
                         superuser_column, tenant_column);

    SELECT k.conkey INTO pk FROM pg_constraint k WHERE k.conrelid = users AND k.contype = 'p';
    IF pk IS NULL THEN
        key_expr := 'pg_catalog.format(''%s'', ctid)';
        key_label := 'ctid';
        key_order := 'ctid';
    ELSIF cardinality(pk) = 1 THEN
        -- format('%s', ...) uses the type's output function: a cast to text could be a function of
        -- the type's owner, and this runs with the extension owner's rights.
        SELECT format('pg_catalog.format(''%%s'', %I)', a.attname), format('(%s)', quote_ident(a.attname)), quote_ident(a.attname)
          INTO key_expr, key_label, key_order
          FROM pg_attribute a WHERE a.attrelid = users AND a.attnum = pk[1];
    ELSE
        SELECT format('pg_catalog.format(''%%s'', ROW(%s))', string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)),
               format('(%s)', string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)),
               string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
          INTO key_expr, key_label, key_order
          FROM unnest(pk) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = users AND a.attnum = k.attnum;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION tenant.superuser_violations(users regclass, tenant_column name DEFAULT 'tenant_id',
                                            superuser_column name DEFAULT 'is_superuser')
RETURNS TABLE(row_key text, is_superuser boolean, tenant_id bigint, problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $$
DECLARE
    t record;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'list superuser violations');
    t := tenant._superuser_target(users, tenant_column, superuser_column);
    RETURN QUERY EXECUTE format(
        'SELECT %1$s AS qft_row_key, %2$I, %3$I::pg_catalog.int8, '
        '       CASE WHEN %2$I IS NULL THEN ''superuser flag is NULL'' '
        '            WHEN %2$I THEN ''superuser with a tenant'' '
        '            ELSE ''normal user without a tenant'' END '
        '  FROM %4$s WHERE NOT (%5$s) ORDER BY %6$s',
        t.key_expr, superuser_column, tenant_column, users, t.check_expr, t.key_order);
END
$$;

CREATE OR REPLACE FUNCTION tenant.enforce_superuser_consistency(users regclass, tenant_column name DEFAULT 'tenant_id',
                                                     superuser_column name DEFAULT 'is_superuser')
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $$
DECLARE
    t record;
    existing record;
    expected_def text;
    n bigint;
    keys text;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'enforce superuser consistency');
    t := tenant._superuser_target(users, tenant_column, superuser_column);
    -- How PostgreSQL prints the constraint once added (used to recognise an earlier call's work).
    expected_def := format('CHECK ((((%1$I IS TRUE) AND (%2$I IS NULL)) OR ((%1$I IS FALSE) AND (%2$I IS NOT NULL))))',
                           superuser_column, tenant_column);

    SELECT k.oid, k.contype, k.convalidated, pg_get_constraintdef(k.oid) AS def INTO existing
      FROM pg_constraint k WHERE k.conrelid = users AND k.conname = t.constraint_name;
    IF existing.oid IS NULL OR NOT existing.convalidated THEN
        -- The constraint is added under ACCESS EXCLUSIVE anyway; taking it first means no violating
        -- row can arrive between the count below and the ALTER TABLE. (Not taken when there is
        -- nothing to do: an idempotent call must not block readers.)
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', users);
        SELECT k.oid, k.contype, k.convalidated, pg_get_constraintdef(k.oid) AS def INTO existing
          FROM pg_constraint k WHERE k.conrelid = users AND k.conname = t.constraint_name;
    END IF;
    IF existing.oid IS NOT NULL AND (existing.contype <> 'c' OR regexp_replace(existing.def, ' NOT VALID$', '') <> expected_def) THEN
        RAISE EXCEPTION 'constraint % on table % already exists with a different definition', quote_ident(t.constraint_name), users
            USING ERRCODE = '42710', DETAIL = format('It is: %s', existing.def),
                  HINT = format('Drop it (ALTER TABLE %s DROP CONSTRAINT %I) if it is obsolete, then call this again.',
                                users, t.constraint_name);
    END IF;
    IF existing.oid IS NOT NULL AND existing.convalidated THEN
        RETURN t.constraint_name;  -- idempotent: already enforced
    END IF;

    EXECUTE format('SELECT count(*), string_agg(k, '', '' ORDER BY rn) FILTER (WHERE rn <= 10) '
                   '  FROM (SELECT %s AS k, row_number() OVER (ORDER BY %s) AS rn FROM %s WHERE NOT (%s)) v',
                   t.key_expr, t.key_order, users, t.check_expr)
       INTO n, keys;
    IF n > 0 THEN
        RAISE EXCEPTION 'table % has % rows that are neither a superuser without a tenant nor a normal user with a tenant',
                        users, n
            USING ERRCODE = '23514',
                  DETAIL = format('First offending %s: %s%s', CASE WHEN t.key_label = 'ctid' THEN 'ctids' ELSE 'keys ' || t.key_label END,
                                  keys, CASE WHEN n > 10 THEN ', ...' ELSE '.' END),
                  HINT = format('SELECT * FROM tenant.superuser_violations(%L, %L, %L) lists them; fix %s and %s, then call this again.',
                                users::text, tenant_column, superuser_column,
                                quote_ident(superuser_column), quote_ident(tenant_column));
    END IF;

    IF existing.oid IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', users, t.constraint_name);
    ELSE
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%s)', users, t.constraint_name, t.check_expr);
        EXECUTE format('COMMENT ON CONSTRAINT %I ON %s IS %L', t.constraint_name, users,
                       'qualityfoundry_tenant: a superuser has no tenant, a normal user has one; a NULL superuser flag is invalid');
    END IF;
    PERFORM tenant._audit('superuser_consistency_enforced', users::text, NULL,
                          jsonb_build_object('constraint', t.constraint_name, 'tenant_column', tenant_column,
                                             'superuser_column', superuser_column));
    RETURN t.constraint_name;
END
$$;

REVOKE ALL ON FUNCTION tenant._superuser_target(regclass, name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.superuser_violations(regclass, name, name),
    tenant.enforce_superuser_consistency(regclass, name, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.superuser_violations(regclass, name, name),
    tenant.enforce_superuser_consistency(regclass, name, name) TO tenant_admin;
