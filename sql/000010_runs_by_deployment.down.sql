DROP POLICY runs_by_deployment ON runs;
ALTER TABLE runs DISABLE ROW LEVEL SECURITY;
DROP FUNCTION dh_deployments_of(name);
DROP FUNCTION dh_deployment_role(name);
DROP TABLE deployment_roles;
