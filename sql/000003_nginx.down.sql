DROP INDEX IF EXISTS nginx_installs_deployment_id;
DROP TABLE IF EXISTS nginx_installs;
