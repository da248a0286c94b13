-- Indexes for every query the stages and the status page make, so that
-- none reads a deployment's whole history (issue 21). pkg/store's
-- TestQueryPlans fills a million runs and checks each query's plan.

-- "The newest runs of a deployment" are read ORDER BY -id from indexes on
-- (deployment, (-id)), which the primary key cannot serve: with ORDER BY
-- id DESC the planner may walk runs_pkey backward filtering on the
-- deployment, reading the whole table for one with no recent runs.
DROP INDEX runs_deployment_id;
CREATE INDEX runs_deployment_newest ON runs (deployment, (-id));
-- The newest succeeded runs of a deployment: the live commit (status
-- page), rollback, and the runs retention keeps.
CREATE INDEX runs_succeeded ON runs (deployment, (-id)) WHERE state = 'succeeded';
-- The newest run that touched a deployment's checkout, which retention
-- keeps (dh-deploy reads it to tell whether the checkout is live).
CREATE INDEX runs_checkout ON runs (deployment, (-id))
    WHERE state IN ('succeeded', 'failed', 'interrupted');
-- LinkSuperseded, at every run start.
CREATE INDEX runs_superseded_unlinked ON runs (deployment, id)
    WHERE state = 'superseded' AND superseded_by IS NULL;
-- InterruptRuns, at every worker start.
CREATE INDEX runs_active ON runs (deployment) WHERE state IN ('queued', 'running');
-- dh-nginx: the runs of a deployment at one commit.
CREATE INDEX runs_deployment_commit ON runs (deployment, commit_sha);
-- Deleting a run checks that no run names it as its successor.
CREATE INDEX runs_superseded_by ON runs (superseded_by) WHERE superseded_by IS NOT NULL;
-- Retention: the runs older than the cut-off.
CREATE INDEX runs_queued_at ON runs (queued_at);
-- Retention of routes.
CREATE INDEX routes_routed_at ON routes (routed_at);
-- The last decisions (status page, dh-route status), in the order shown.
DROP INDEX events_decided_at;
CREATE INDEX events_decided ON events (decided_at DESC NULLS LAST, recorded_at DESC);
