-- The tenant context, as a DBA would try it in psql. Runs in its own database (the runner makes
-- it); roles are cluster-wide, so they are created here and dropped at the end.
\set VERBOSITY terse
CREATE EXTENSION qualityfoundry_tenant;
CREATE ROLE golden_app NOLOGIN;
GRANT tenant_user TO golden_app;
SELECT tenant.create_tenant('acme', 'Acme Corp') AS acme, tenant.create_tenant('globex', 'Globex', 'pro') AS globex;
CREATE TABLE public.projects (tenant_id bigint NOT NULL, id integer, name text, PRIMARY KEY (tenant_id, id));
INSERT INTO public.projects VALUES (1, 100, 'acme-100'), (1, 101, 'acme-101'), (2, 200, 'globex-200');
SELECT tenant.enable_isolation('public.projects');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO golden_app;

SET ROLE golden_app;
-- No context: nothing visible, nothing writable.
SELECT tenant.current_tenant_id(), tenant.current_tenant();
SELECT * FROM public.projects ORDER BY id;
INSERT INTO public.projects (id, name) VALUES (102, 'orphan');
-- The setting itself cannot be forged.
SET qualityfoundry_tenant.tenant_id = '2';
SELECT set_config('qualityfoundry_tenant.tenant_id', '2', false);
-- The sanctioned way in.
SELECT tenant.set_tenant('acme');
SELECT tenant.current_tenant_id(), tenant.current_tenant();
SELECT * FROM public.projects ORDER BY id;
INSERT INTO public.projects (id, name) VALUES (102, 'acme-102') RETURNING *;
UPDATE public.projects SET tenant_id = 2 WHERE id = 100;
-- A transaction-local switch ends with the transaction.
BEGIN;
SELECT tenant.set_tenant('globex', is_local => true);
SELECT * FROM public.projects ORDER BY id;
COMMIT;
SELECT tenant.current_tenant();
-- Bad input.
SELECT tenant.set_tenant('initech');
SELECT tenant.set_tenant(0);
SELECT tenant.set_tenant(NULL::text);
-- RESET ALL clears the context; it never widens it.
RESET ALL;
SELECT count(*) FROM public.projects;
RESET ROLE;

SELECT tenant.suspend_tenant('acme');
SET ROLE golden_app;
SELECT tenant.set_tenant('acme');
RESET ROLE;
SELECT action, target FROM tenant.audit_log ORDER BY id;

SELECT tenant.disable_isolation('public.projects');
DROP TABLE public.projects;
DROP EXTENSION qualityfoundry_tenant;
DROP ROLE golden_app;
