\set VERBOSITY terse
-- No tenant context: nothing is visible.
SELECT * FROM public.projects;
-- The context cannot be forged with SET or set_config ...
SET qualityfoundry_tenant.tenant_id = '2';
-- ... only entered through the extension:
SELECT tenant.set_tenant('acme');
SELECT * FROM public.projects ORDER BY id;
-- Tenant B's project 100 does not exist for tenant A, even by key.
SELECT * FROM public.projects WHERE tenant_id = 2 AND id = 100;
-- Writing into another tenant is refused.
INSERT INTO public.projects VALUES (2, 999, 'planted');
UPDATE public.projects SET tenant_id = 2 WHERE id = 100;
-- New rows land in the current tenant by default.
INSERT INTO public.projects (id, name) VALUES (102, 'Acme magnet') RETURNING *;
-- Switching tenants is explicit; RESET ALL only clears the context.
SELECT tenant.set_tenant('globex');
SELECT * FROM public.projects ORDER BY id;
RESET ALL;
SELECT count(*) AS visible_after_reset_all FROM public.projects;
