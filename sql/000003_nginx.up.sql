-- dh-nginx's history: one row per entry it handled, an nginx-sites converge
-- or an nginx-reload (docs/nginx.md).
CREATE TABLE nginx_installs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('sites', 'reload')),
    deployment  text,                            -- the nginx-kind deployment (sites)
    commit_sha  text,                            -- the commit converged to (sites)
    delivery    text,                            -- the delivery whose run asked for it (sites)
    run_id      bigint,                          -- that run's id in runs, when known
    outcome     text NOT NULL
                CHECK (outcome IN ('running', 'succeeded', 'unchanged', 'partial', 'failed', 'stale', 'interrupted')),
    installed   text[] NOT NULL DEFAULT '{}',    -- files written (new or changed), as installed paths
    removed     text[] NOT NULL DEFAULT '{}',    -- managed files removed
    pending     text[] NOT NULL DEFAULT '{}',    -- sites waiting for a certificate (cert-request published)
    rejected    text[] NOT NULL DEFAULT '{}',    -- "site: reason" for sites and snippets refused
    conflicts   text[] NOT NULL DEFAULT '{}',    -- installed paths held by files dh-nginx does not manage
    error       text,                            -- why it failed (nginx -t's words), or what was refused
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX nginx_installs_deployment_id ON nginx_installs (deployment, id DESC);
