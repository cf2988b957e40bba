-- Benchmark data: three identical tables of :tenants x :rows rows.
--   iso   isolated by the extension (its policies)
--   plain no row security at all (the limit)
--   hand  a hand-written policy on current_setting('app.tenant_id'), what users write today
CREATE EXTENSION qualityfoundry_tenant;
SELECT count(tenant.create_tenant('t' || g)) FROM generate_series(1, :tenants) g;

CREATE TABLE public.iso (tenant_id bigint NOT NULL, id integer NOT NULL, payload text, PRIMARY KEY (tenant_id, id));
CREATE TABLE public.plain (LIKE public.iso INCLUDING ALL);
CREATE TABLE public.hand (LIKE public.iso INCLUDING ALL);
INSERT INTO public.iso SELECT t, i, md5((t * 100000 + i)::text) FROM generate_series(1, :tenants) t, generate_series(1, :rows) i;
INSERT INTO public.plain SELECT * FROM public.iso;
INSERT INTO public.hand SELECT * FROM public.iso;
SELECT tenant.enable_isolation('public.iso');
ALTER TABLE public.hand ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY hand_tenant ON public.hand USING (tenant_id = current_setting('app.tenant_id')::int);
VACUUM ANALYZE public.iso, public.plain, public.hand;

CREATE ROLE bench_bound LOGIN;           -- bound to one tenant: context set by PostgreSQL at login
CREATE ROLE bench_hand LOGIN;            -- the hand-written-policy user, its tenant set per role
CREATE ROLE bench_app LOGIN;             -- sets a tenant per transaction
GRANT tenant_user TO bench_app;
-- Signs a single-use token and uses it, per transaction (the auth service and the application in
-- one role, so one pgbench script measures both; the baseline signs too and uses set_tenant).
CREATE ROLE bench_signer LOGIN;
GRANT tenant_user, tenant_admin TO bench_signer;
GRANT SELECT ON public.iso TO bench_signer;
-- A tenant_superuser member (support staff) working inside one tenant, outside cross-tenant mode:
-- its permissive cross-tenant policy must not cost it the index (issue 17).
CREATE ROLE bench_support LOGIN;
GRANT tenant_superuser TO bench_support;
GRANT USAGE ON SCHEMA tenant TO bench_bound, bench_hand, bench_support;
GRANT SELECT ON public.iso TO bench_support;
GRANT SELECT ON public.iso, public.plain, public.hand TO bench_bound, bench_hand, bench_app;
SELECT tenant.bind_role('bench_bound', :'pin');
SELECT tenant.bind_role('bench_support', :'pin');
ALTER ROLE bench_hand SET app.tenant_id = :'pin';
ALTER ROLE bench_app SET app.tenant_id = '0';

-- In-server loops (SECURITY INVOKER: they run as the calling role, so its policies apply).
CREATE FUNCTION public.loop_iso(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text;
BEGIN
    FOR i IN 1..n LOOP SELECT payload INTO r FROM public.iso WHERE id = 1 + i % current_setting('bench.rows')::int; END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
-- The same isolated point select as a tenant_user that is not bound (its context set with
-- set_tenant, so the tenant getter is called per execution rather than folded into the plan).
CREATE FUNCTION public.loop_iso_app(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; r text;
BEGIN
    PERFORM tenant.set_tenant(current_setting('bench.pin')::bigint, false);
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP SELECT payload INTO r FROM public.iso WHERE id = 1 + i % current_setting('bench.rows')::int; END LOOP;
    IF r IS NULL THEN RAISE EXCEPTION 'the loop read no row'; END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
CREATE FUNCTION public.loop_plain(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text; pin bigint := current_setting('bench.pin')::bigint;
BEGIN
    FOR i IN 1..n LOOP SELECT payload INTO r FROM public.plain WHERE tenant_id = pin AND id = 1 + i % current_setting('bench.rows')::int; END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
CREATE FUNCTION public.loop_hand(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text;
BEGIN
    FOR i IN 1..n LOOP SELECT payload INTO r FROM public.hand WHERE id = 1 + i % current_setting('bench.rows')::int; END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
CREATE FUNCTION public.loop_set_tenant(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text; tenants int := current_setting('bench.tenants')::int;
BEGIN
    FOR i IN 1..n LOOP
        PERFORM tenant.set_tenant((1 + i % tenants)::bigint, true);
        SELECT payload INTO r FROM public.iso WHERE id = 1 + i % current_setting('bench.rows')::int;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
-- set_tenant(bigint, boolean)'s own C entry point, declared again with PostgreSQL's default
-- function ACL (EXECUTE for PUBLIC): only to measure what the SPEC's explicit ACL on set_tenant
-- costs (bench/run, "(info)" rows). It behaves as set_tenant does (the same code checks the caller).
CREATE FUNCTION public.floor_set_tenant(bigint, boolean DEFAULT false) RETURNS bigint
    LANGUAGE c VOLATILE AS '$libdir/qualityfoundry_tenant', 'set_tenant_id_wrapper';
CREATE FUNCTION public.loop_floor_set_tenant(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text; tenants int := current_setting('bench.tenants')::int;
BEGIN
    FOR i IN 1..n LOOP
        PERFORM public.floor_set_tenant((1 + i % tenants)::bigint, true);
        SELECT payload INTO r FROM public.iso WHERE id = 1 + i % current_setting('bench.rows')::int;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
CREATE FUNCTION public.loop_set_config(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text; tenants int := current_setting('bench.tenants')::int;
BEGIN
    FOR i IN 1..n LOOP
        PERFORM pg_catalog.set_config('app.tenant_id', (1 + i % tenants)::text, true);
        SELECT payload INTO r FROM public.hand WHERE id = 1 + i % current_setting('bench.rows')::int;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
-- Signed context, in-server: sign + set_tenant_signed + point select, against sign + set_tenant.
CREATE FUNCTION public.loop_signed(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text; tok text; tenants int := current_setting('bench.tenants')::int;
BEGIN
    FOR i IN 1..n LOOP
        tok := tenant.sign_context((1 + i % tenants)::text, '10 minutes');
        PERFORM tenant.set_tenant_signed(tok, true);
        SELECT payload INTO r FROM public.iso WHERE id = 1 + i % current_setting('bench.rows')::int;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
CREATE FUNCTION public.loop_signed_baseline(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text; tok text; tenants int := current_setting('bench.tenants')::int;
BEGIN
    FOR i IN 1..n LOOP
        tok := tenant.sign_context((1 + i % tenants)::text, '10 minutes');
        PERFORM tenant.set_tenant((1 + i % tenants)::bigint, true);
        SELECT payload INTO r FROM public.iso WHERE id = 1 + i % current_setting('bench.rows')::int;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
-- The application's own JWT (HS256, no jti: an access token used for every request of its
-- lifetime), one per tenant, made by bench/run; against the signed context above.
SELECT tenant.add_jwt_key('bench', 'HS256', 'the benchmark HS256 secret, thirty-two bytes or more');
CREATE TABLE public.bench_jwts (t integer PRIMARY KEY, jwt text NOT NULL);
GRANT SELECT ON public.bench_jwts TO bench_signer;
CREATE FUNCTION public.loop_jwt(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text; tok text; tenants int := current_setting('bench.tenants')::int;
BEGIN
    FOR i IN 1..n LOOP
        SELECT jwt INTO tok FROM public.bench_jwts WHERE t = 1 + i % tenants;
        PERFORM tenant.set_tenant_jwt(tok, true);
        SELECT payload INTO r FROM public.iso WHERE id = 1 + i % current_setting('bench.rows')::int;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
SELECT format('ALTER DATABASE postgres SET bench.rows = %L', :'rows') \gexec
SELECT format('ALTER DATABASE postgres SET bench.tenants = %L', :'tenants') \gexec
SELECT format('ALTER DATABASE postgres SET bench.pin = %L', :'pin') \gexec

-- Storage enforcement on INSERT (issue 16): two isolated tables of the same shape, the quota
-- trigger dropped from one. Another tenant is over its limit, so the storage guard looks its
-- tenant up in a non-empty set of write-limited tenants (the bound tenant is not in it).
CREATE TABLE public.ins_on (tenant_id bigint NOT NULL, id integer NOT NULL, payload text);
CREATE TABLE public.ins_off (LIKE public.ins_on);
SELECT tenant.enable_isolation('public.ins_on'), tenant.enable_isolation('public.ins_off');
DROP TRIGGER qft_storage_quota ON public.ins_off;
GRANT INSERT ON public.ins_on, public.ins_off TO bench_bound;
UPDATE tenant.tenants SET max_storage_mb = 1 WHERE id = 1;
INSERT INTO tenant.quota_state (tenant_id, bytes, max_storage_mb, over_quota, measured_at, over_since)
VALUES (1, 1000000000, 1, true, now(), now());
CREATE FUNCTION public.loop_insert_on(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    FOR i IN 1..n LOOP INSERT INTO public.ins_on (id, payload) VALUES (i, 'payload'); END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
CREATE FUNCTION public.loop_insert_off(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    FOR i IN 1..n LOOP INSERT INTO public.ins_off (id, payload) VALUES (i, 'payload'); END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;


-- Roles inside a tenant (issue 15): iso_lim is iso with limit_tenant_roles on SELECT, read by a
-- context that carries an allowed role (the tenant's JWT, role "user"); the baseline reads iso in
-- the same context.
CREATE TABLE public.iso_lim (LIKE public.iso INCLUDING ALL);
INSERT INTO public.iso_lim SELECT * FROM public.iso;
SELECT tenant.enable_isolation('public.iso_lim');
SELECT tenant.limit_tenant_roles('public.iso_lim', 'SELECT', '{admin,user}');
GRANT SELECT ON public.iso_lim TO bench_signer;
CREATE FUNCTION public.loop_jwt_iso(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; r text;
BEGIN
    PERFORM tenant.set_tenant_jwt((SELECT jwt FROM public.bench_jwts WHERE t = current_setting('bench.pin')::int), true);
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP SELECT payload INTO r FROM public.iso WHERE id = 1 + i % current_setting('bench.rows')::int; END LOOP;
    IF r IS NULL THEN RAISE EXCEPTION 'the loop read no row'; END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
CREATE FUNCTION public.loop_jwt_lim(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; r text;
BEGIN
    PERFORM tenant.set_tenant_jwt((SELECT jwt FROM public.bench_jwts WHERE t = current_setting('bench.pin')::int), true);
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP SELECT payload INTO r FROM public.iso_lim WHERE id = 1 + i % current_setting('bench.rows')::int; END LOOP;
    IF r IS NULL THEN RAISE EXCEPTION 'the loop read no row'; END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;

-- uuid tenant keys (issue 15): iso_uuid is keyed by the tenant's uuid and isolated; plain_uuid is
-- the same without row security, the tenant's uuid in WHERE.
CREATE TABLE public.iso_uuid (tenant uuid NOT NULL, id integer NOT NULL, payload text, PRIMARY KEY (tenant, id));
INSERT INTO public.iso_uuid SELECT t.uuid, i.id, i.payload FROM public.iso i JOIN tenant.tenants t ON t.id = i.tenant_id;
CREATE TABLE public.plain_uuid (LIKE public.iso_uuid INCLUDING ALL);
INSERT INTO public.plain_uuid SELECT * FROM public.iso_uuid;
SELECT tenant.enable_isolation('public.iso_uuid', 'tenant');
VACUUM ANALYZE public.iso_lim, public.iso_uuid, public.plain_uuid;
GRANT SELECT ON public.iso_uuid, public.plain_uuid TO bench_bound;
SELECT format('ALTER DATABASE postgres SET bench.pin_uuid = %L', (SELECT uuid FROM tenant.tenants WHERE id = :'pin')) \gexec
CREATE FUNCTION public.loop_uuid(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text;
BEGIN
    FOR i IN 1..n LOOP SELECT payload INTO r FROM public.iso_uuid WHERE id = 1 + i % current_setting('bench.rows')::int; END LOOP;
    IF r IS NULL THEN RAISE EXCEPTION 'the loop read no row'; END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
CREATE FUNCTION public.loop_plain_uuid(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); r text; pin uuid := current_setting('bench.pin_uuid')::uuid;
BEGIN
    FOR i IN 1..n LOOP SELECT payload INTO r FROM public.plain_uuid WHERE tenant = pin AND id = 1 + i % current_setting('bench.rows')::int; END LOOP;
    IF r IS NULL THEN RAISE EXCEPTION 'the loop read no row'; END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
