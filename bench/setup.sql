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
GRANT USAGE ON SCHEMA tenant TO bench_bound, bench_hand;
GRANT SELECT ON public.iso, public.plain, public.hand TO bench_bound, bench_hand, bench_app;
SELECT tenant.bind_role('bench_bound', :'pin');
ALTER ROLE bench_hand SET app.tenant_id = :'pin';
ALTER ROLE bench_app SET app.tenant_id = '0';
