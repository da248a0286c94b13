DROP INDEX runs_deployment_newest, runs_succeeded, runs_checkout, runs_superseded_unlinked, runs_active, runs_deployment_commit,
    runs_superseded_by, runs_queued_at, routes_routed_at, events_decided;
CREATE INDEX events_decided_at ON events (decided_at DESC NULLS LAST);
CREATE INDEX runs_deployment_id ON runs (deployment, id DESC);
