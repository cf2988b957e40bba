-- The DBA's side of the demo.
CREATE EXTENSION qualityfoundry_tenant;
CREATE ROLE demo_app LOGIN;              -- the application's login role
GRANT tenant_user TO demo_app;
SELECT tenant.create_tenant('acme', 'Acme Corp'), tenant.create_tenant('globex', 'Globex', 'pro');
CREATE TABLE public.projects (tenant_id bigint NOT NULL, id integer, name text, PRIMARY KEY (tenant_id, id));
INSERT INTO public.projects VALUES (1, 100, 'Acme rocket'), (1, 101, 'Acme anvil'), (2, 100, 'Globex plan');
SELECT tenant.enable_isolation('public.projects');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO demo_app;
