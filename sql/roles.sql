-- One PostgreSQL role per dh-deployer stage, with only the grants its job
-- needs. The roles have the stages' Unix user names, so each stage logs in
-- by peer authentication over the unix socket, without a password
-- (database_url = "postgres:///dh_deployer?host=/run/postgresql").
--
-- Apply it after the migrations, as the database's owner, and again after
-- each upgrade (it is idempotent):
--   sudo -u postgres psql -v ON_ERROR_STOP=1 -d dh_deployer -f /usr/local/share/dh-deployer/roles.sql
--
-- dh-receive has no role: it never touches the database.
-- A deployment that runs as a user of its own gets a login role in the
-- group dh-deploy:  CREATE ROLE "www-api" LOGIN IN ROLE "dh-deploy";
-- and config.toml names that user (deployments.api.user = "www-api"):
-- the role then reads and writes only that deployment's runs.
-- (this file is not a migration: golang-migrate ignores its name.)

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['dh-route', 'dh-deploy', 'dh-nginx', 'dh-cert'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- Everyone may check that the schema is current (store.CheckSchema).
GRANT SELECT ON schema_migrations TO "dh-route", "dh-deploy", "dh-nginx", "dh-cert";

-- dh-route is the only writer of deliveries and routes; it reads runs to
-- apply the duplicate rule. It deletes what the retention allows
-- ([retention] in the configuration), runs included.
GRANT SELECT, INSERT, UPDATE, DELETE ON events, routes TO "dh-route";
GRANT SELECT, DELETE ON runs TO "dh-route";

-- dh-deploy records runs (the deployment history) and reads nothing else;
-- row-level security narrows this to each role's own deployments' runs.
GRANT SELECT, INSERT, UPDATE ON runs TO "dh-deploy";
GRANT USAGE ON SEQUENCE runs_id_seq TO "dh-deploy";

-- dh-nginx records each converge of a deployment's sites, and installs
-- only a commit that the deployment's runs verified.
GRANT SELECT, INSERT, UPDATE ON nginx_installs TO "dh-nginx";
GRANT SELECT ON runs TO "dh-nginx";

-- dh-route's metrics (/metrics on the status listener) list the
-- certificates dh-cert records, to report when each expires.
GRANT SELECT ON certs TO "dh-route";

-- dh-route records the certificate and failed-entry notices it sent, to
-- send each once (migration 000013).
GRANT SELECT, INSERT, DELETE ON notices TO "dh-route";
GRANT USAGE ON SEQUENCE nginx_installs_id_seq TO "dh-nginx";

-- dh-cert keeps the state of each certificate and its certbot runs.
GRANT SELECT, INSERT, UPDATE ON certs, cert_attempts TO "dh-cert";
GRANT USAGE ON SEQUENCE cert_attempts_id_seq TO "dh-cert";

-- dh-route records which role each deployment's worker logs in as (the
-- configuration's deployments.NAME.user), when it starts and on reload:
-- the runs table's row-level security (migration 000010) lets a
-- deployment's role (a member of "dh-deploy") see and write only the runs
-- of the deployments mapped to it.
GRANT SELECT, INSERT, UPDATE, DELETE ON deployment_roles TO "dh-route";
