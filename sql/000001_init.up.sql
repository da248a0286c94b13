-- The event table and the deployment history.
-- golang-migrate runs this file as one multi-statement query, which
-- PostgreSQL executes as a single implicit transaction: all or nothing.

-- One row per GitHub delivery, written by dh-route.
CREATE TABLE events (
    delivery     text PRIMARY KEY,               -- X-GitHub-Delivery GUID; the idempotency key
    event        text NOT NULL,                  -- X-GitHub-Event: push, ping, ...
    hook_id      bigint,                         -- X-GitHub-Hook-ID
    repository   text,                           -- payload.repository.full_name (owner/name)
    ref          text,                           -- payload.ref, e.g. refs/heads/main
    before_sha   text,                           -- payload.before
    after_sha    text,                           -- payload.after
    received_at  timestamptz NOT NULL,           -- when dh-receive accepted it
    recorded_at  timestamptz NOT NULL DEFAULT now(), -- when this row was inserted
    status       text NOT NULL                   -- what became of it
                 CHECK (status IN ('received', 'routed', 'voided', 'duplicate', 'ping', 'failed')),
    reason       text,                           -- why it was voided or failed
    deployments  text[] NOT NULL DEFAULT '{}',   -- the deployments it was routed to
    deliveries   int NOT NULL DEFAULT 1,         -- how many times this GUID arrived (redeliveries)
    last_seen_at timestamptz,                    -- when it last arrived again; NULL if only once
    decided_at   timestamptz                     -- when status was last set; NULL while received
);
CREATE INDEX events_repository_ref ON events (repository, ref);
CREATE INDEX events_received_at ON events (received_at);

-- The deployment history: one row per attempt, written by dh-deploy.
CREATE TABLE runs (
    id            bigserial PRIMARY KEY,
    delivery      text NOT NULL,                 -- GitHub delivery GUID, or a generated id for manual runs
    deployment    text NOT NULL,                 -- deployment name from the configuration
    attempt       int NOT NULL DEFAULT 1,        -- 1 for the first try of (delivery, deployment)
    trigger       text NOT NULL DEFAULT 'webhook' -- what started it
                  CHECK (trigger IN ('webhook', 'manual', 'rollback', 'replay')),
    ref           text,                          -- the ref deployed, e.g. refs/heads/main
    commit_sha    text,                          -- the commit deployed
    previous_sha  text,                          -- the commit checked out before
    state         text NOT NULL
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'superseded', 'refused', 'interrupted')),
    queued_at     timestamptz NOT NULL DEFAULT now(), -- when the row was inserted
    started_at    timestamptz,                   -- when the first step started
    finished_at   timestamptz,                   -- when it reached a final state
    exit_code     int,                           -- exit status of the failed step, or 0
    failed_step   int,                           -- number (from 1) of the step that failed
    log_path      text,                          -- where the run's output is kept
    error         text,                          -- why it failed or was refused
    superseded_by bigint REFERENCES runs (id),   -- the newer run that replaced it
    UNIQUE (delivery, deployment, attempt)
);
CREATE INDEX runs_deployment_id ON runs (deployment, id DESC);
