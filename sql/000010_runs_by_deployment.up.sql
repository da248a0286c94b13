-- Row-level security on runs: a deployment's database role reads and
-- writes only its own deployments' runs (issue 17, forged history).
--
-- deployment_roles says which role may touch which deployment's rows. It is
-- the configuration's deployments.NAME.user (Deployment.RunsAs), written by
-- dh-route when it starts and on each reload; nobody else writes it.
-- Deployments that share a user share a role, and each other's rows (they
-- can already write each other's files).
CREATE TABLE deployment_roles (
    deployment text PRIMARY KEY,                 -- deployment name from the configuration
    role       name NOT NULL                     -- the database role (the Unix user) its worker logs in as
);

-- dh_deployment_role says whether role is a deployment's: a member of the
-- group role "dh-deploy" (every deployment role is one, and "dh-deploy"
-- itself is). Any other role (dh-route, dh-nginx, the owner) sees every
-- run, and its grants (sql/roles.sql) say what it may do with them.
-- SECURITY DEFINER here and below, so that the policy needs no grant on
-- deployment_roles; the caller's role comes as an argument, since inside
-- such a function current_user is the owner.
CREATE FUNCTION dh_deployment_role(role name) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_roles g
                   WHERE g.rolname = 'dh-deploy' AND pg_has_role(role, g.oid, 'MEMBER'))
$$;

-- dh_deployments_of is the deployments deployment_roles gives role: none
-- before dh-route has mapped it (closed, not open).
CREATE FUNCTION dh_deployments_of(role name) RETURNS text[]
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(m.deployment), '{}') FROM public.deployment_roles m WHERE m.role = dh_deployments_of.role
$$;

ALTER TABLE runs ENABLE ROW LEVEL SECURITY;
-- One policy for every command: USING filters what SELECT, UPDATE and
-- DELETE see; WITH CHECK refuses an INSERT or UPDATE whose row would
-- belong to another deployment ("new row violates row-level security
-- policy"). The function calls are subqueries, so each is evaluated once
-- per statement, not once per row.
CREATE POLICY runs_by_deployment ON runs
    USING (NOT (SELECT dh_deployment_role(current_user))
           OR deployment = ANY ((SELECT dh_deployments_of(current_user))::text[]))
    WITH CHECK (NOT (SELECT dh_deployment_role(current_user))
           OR deployment = ANY ((SELECT dh_deployments_of(current_user))::text[]));
