-- 0.1.0 -> 0.2.0, hand-written part that runs before every function is (re)created.
-- Add here, in the order they must run: new tables and columns (ALTER TABLE ... ADD COLUMN, with
-- the same definition as the install-only files), new roles, and DROP FUNCTION for every function
-- whose signature or result changed or that 0.2.0 no longer has (CREATE OR REPLACE cannot change
-- those). Keep the policy getters (current_tenant_id, cross_tenant_active): user policies depend
-- on them, so their signatures never change.

-- Issue 11: the cross-tenant policy comes from the policy template (tenant._policy_shape) now.
DROP FUNCTION tenant._cross_tenant_policy(regclass);
