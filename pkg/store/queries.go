package store

// The statements the stages and the status page run again and again,
// each served by an index (sql/000011_cost_indexes.up.sql): none reads a
// deployment's whole history or a whole table.
//
// "The newest runs of a deployment" are ORDER BY -id, served by the
// indexes on (deployment, (-id)): ORDER BY id DESC would let the planner
// walk the primary key backward, filtering on the deployment, which it
// estimates cheap and which reads the whole table for a deployment with
// no (or only old) runs. hotQueries lists them;
// TestQueryPlans fills a million runs and checks every plan in it. A new
// statement on a hot path is a named constant here and a row there.
const (
	// dh-deploy: the runs of one delivery (attempts), the page of history.
	qRunsOf     = `SELECT ` + runColumns + ` FROM runs WHERE delivery = $1 AND deployment = $2 ORDER BY attempt, id`
	qRunsBefore = `SELECT ` + runColumns + ` FROM runs
		WHERE deployment = $1 AND -id > -coalesce($2, 9223372036854775807) ORDER BY -id LIMIT $3`
	qGetRun        = `SELECT ` + runColumns + ` FROM runs WHERE deployment = $1 AND id = $2`
	qCommitRuns    = `SELECT ` + runColumns + ` FROM runs WHERE deployment = $1 AND commit_sha = $2 ORDER BY id DESC`
	qSucceededRuns = `SELECT ` + runColumns + ` FROM runs WHERE deployment = $1 AND state = 'succeeded' ORDER BY -id`

	// The status page: each deployment's newest runs and its live run.
	qLastRuns = `SELECT l.* FROM unnest($1::text[]) AS d(name)
		CROSS JOIN LATERAL (
			(SELECT ` + runColumns + `, false AS live FROM runs WHERE deployment = d.name ORDER BY -id LIMIT $2)
			UNION ALL
			(SELECT ` + runColumns + `, true FROM runs WHERE deployment = d.name AND state = 'succeeded'
			 ORDER BY -id LIMIT 1)) AS l`

	qInterruptRuns = `UPDATE runs SET state = 'interrupted', finished_at = now(),
		       error = coalesce(error, 'the worker stopped during the run')
		WHERE deployment = $1 AND state = 'running'`
	qLinkSuperseded = `UPDATE runs SET superseded_by = $2
		WHERE deployment = $1 AND state = 'superseded' AND superseded_by IS NULL AND id < $2`

	// dh-route: the routes of a delivery seen before, with the state of
	// each pair's newest run.
	// (A newer attempt is a newer row: if the newest attempt was queued
	// before the route was last forwarded, none was queued since.)
	qRoutesOf = `SELECT r.deployment, r.entry, r.routed_at, r.forwards,
		       coalesce((SELECT CASE WHEN queued_at >= r.routed_at THEN state END FROM runs
		                 WHERE runs.delivery = r.delivery AND runs.deployment = r.deployment
		                 ORDER BY runs.attempt DESC, runs.id DESC LIMIT 1), '')
		FROM routes r WHERE r.delivery = $1
		ORDER BY r.deployment`

	// The last decisions (status page, dh-route status).
	qRecentEvents = `SELECT ` + eventColumns + ` FROM events
		ORDER BY decided_at DESC NULLS LAST, recorded_at DESC LIMIT $1`
)

// hotQueries names every statement above and dh-route's pruning
// statements (retention.go), for TestQueryPlans.
var hotQueries = []struct{ Name, SQL string }{
	{"RunsOf", qRunsOf},
	{"RunsBefore", qRunsBefore},
	{"GetRun", qGetRun},
	{"CommitRuns", qCommitRuns},
	{"SucceededRuns", qSucceededRuns},
	{"LastRuns", qLastRuns},
	{"InterruptRuns", qInterruptRuns},
	{"LinkSuperseded", qLinkSuperseded},
	{"RoutesOf", qRoutesOf},
	{"RecentEvents", qRecentEvents},
	{"PruneEvents", qPruneEvents},
	{"PruneRoutes", qPruneRoutes},
	{"PruneRuns", qPruneRuns},
}
