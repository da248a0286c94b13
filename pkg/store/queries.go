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
	qGetRun     = `SELECT ` + runColumns + ` FROM runs WHERE deployment = $1 AND id = $2`
	qCommitRuns = `SELECT ` + runColumns + ` FROM runs WHERE deployment = $1 AND commit_sha = $2 ORDER BY id DESC`
	// The delivery page: every run of one delivery, from the unique index
	// on (delivery, deployment, attempt), bounded.
	qDeliveryRuns = `SELECT ` + runColumns + ` FROM runs WHERE delivery = $1
		ORDER BY deployment, attempt, id LIMIT $2`
	qSucceededRuns = `SELECT ` + runColumns + ` FROM runs WHERE deployment = $1 AND state = 'succeeded' ORDER BY -id LIMIT $2`

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
	// One delivery (the delivery page, dh-route status), by its key.
	qGetEvent = `SELECT ` + eventColumns + ` FROM events WHERE delivery = $1`
)

// The other statements of the stages: each on one row by its key.
const (
	qDecide = `WITH r AS (
			INSERT INTO routes AS rt (delivery, deployment, entry)
			SELECT $1, d, $4 FROM unnest($5::text[]) AS d
			ON CONFLICT (delivery, deployment) DO UPDATE
			SET entry = excluded.entry, routed_at = now(), forwards = rt.forwards + 1
			RETURNING deployment)
		UPDATE events SET status = $2, reason = $3, decided_at = now(),
		       deployments = ARRAY(SELECT d FROM (SELECT unnest(events.deployments) AS d
		                                          UNION SELECT deployment FROM r) u ORDER BY d)
		WHERE delivery = $1`
	qFinishRun = `UPDATE runs SET state = $2, exit_code = $3, failed_step = $4, error = $5,
		       superseded_by = $6, finished_at = now()
		WHERE id = $1`
	qInsertDecided = `INSERT INTO events (delivery, event, hook_id, repository, ref, before_sha, after_sha, received_at,
		                    status, reason, deployments, decided_at)
		SELECT d, e, h, r, f, b, a, t::timestamptz, st, re, string_to_array(dp, ','), now()
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
		            $8::text[], $9::text[], $10::text[], $11::text[])
		     WITH ORDINALITY AS u(d, e, h, r, f, b, a, t, st, re, dp, n)
		ORDER BY n
		ON CONFLICT (delivery) DO NOTHING
		RETURNING delivery`
	qInsertRoutes = `INSERT INTO routes (delivery, deployment, entry)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[])`
	// A retry of an insert whose reply was lost finds its own row (the
	// same log, which names the run's start to the nanosecond) and gets
	// its id; any other row of that attempt returns no row.
	qInsertRun = `INSERT INTO runs AS ru (delivery, deployment, attempt, trigger, ref, commit_sha, previous_sha,
		                  state, started_at, log_path, note, triggered_by, commit_subject, commit_author)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (delivery, deployment, attempt) DO UPDATE SET log_path = ru.log_path
		WHERE ru.log_path = excluded.log_path
		RETURNING id`
	qRecordDelivery = `INSERT INTO events AS ev (delivery, event, hook_id, repository, ref, before_sha, after_sha, received_at, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'received')
		ON CONFLICT (delivery) DO UPDATE SET deliveries = ev.deliveries + 1, last_seen_at = now()
		RETURNING xmax = 0, status`
	qRecordFailure = `INSERT INTO events AS ev (delivery, event, hook_id, repository, ref, before_sha, after_sha, received_at,
		                          status, reason, decided_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'failed', $9, now())
		ON CONFLICT (delivery) DO UPDATE SET deliveries = ev.deliveries + 1, last_seen_at = now(),
			status = CASE WHEN ev.status IN ('received', 'failed') THEN 'failed' ELSE ev.status END,
			reason = CASE WHEN ev.status IN ('received', 'failed') THEN excluded.reason ELSE ev.reason END,
			decided_at = CASE WHEN ev.status IN ('received', 'failed') THEN now() ELSE ev.decided_at END`
	qStartWaitingRun = `UPDATE runs SET state = 'running', trigger = $2, ref = $3, commit_sha = $4, previous_sha = $5,
		       started_at = $6, log_path = $7, note = $8, triggered_by = $9, commit_subject = $10, commit_author = $11
		WHERE id = $1 AND state = 'queued'`
	// dh-deploy coalescing a waiting set: its runs, and its superseded
	// runs recorded in one statement.
	qRunsOfDeliveries = `SELECT ` + runColumns + ` FROM runs WHERE deployment = $1 AND delivery = ANY($2)
		ORDER BY attempt, id`
	qInsertSuperseded = `INSERT INTO runs (delivery, deployment, attempt, trigger, ref, commit_sha, state, error,
		                  finished_at, triggered_by)
		SELECT d, $1, a, t, NULLIF(r, ''), NULLIF(c, ''), 'superseded', NULLIF(e, ''), now(), NULLIF(b, '')
		FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
		     AS u(d, a, t, r, c, e, b)
		ON CONFLICT (delivery, deployment, attempt) DO NOTHING`
	qWaitRun = `INSERT INTO runs AS ru (delivery, deployment, attempt, trigger, ref, commit_sha, state, note, triggered_by)
		VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8)
		ON CONFLICT (delivery, deployment, attempt) DO UPDATE SET note = excluded.note
		WHERE ru.state = 'queued'
		RETURNING id`
)

// hotQueries names every statement above and dh-route's pruning
// statements (retention.go), for TestQueryPlans.
var hotQueries = []struct{ Name, SQL string }{
	{"RunsOf", qRunsOf},
	{"RunsOfDeliveries", qRunsOfDeliveries},
	{"InsertSuperseded", qInsertSuperseded},
	{"RunsBefore", qRunsBefore},
	{"GetRun", qGetRun},
	{"CommitRuns", qCommitRuns},
	{"DeliveryRuns", qDeliveryRuns},
	{"SucceededRuns", qSucceededRuns},
	{"LastRuns", qLastRuns},
	{"InterruptRuns", qInterruptRuns},
	{"LinkSuperseded", qLinkSuperseded},
	{"RoutesOf", qRoutesOf},
	{"RecentEvents", qRecentEvents},
	{"GetEvent", qGetEvent},
	{"Decide", qDecide},
	{"FinishRun", qFinishRun},
	{"InsertDecided", qInsertDecided},
	{"InsertRoutes", qInsertRoutes},
	{"InsertRun", qInsertRun},
	{"RecordDelivery", qRecordDelivery},
	{"RecordFailure", qRecordFailure},
	{"StartWaitingRun", qStartWaitingRun},
	{"WaitRun", qWaitRun},
	{"PruneEvents", qPruneEvents},
	{"PruneRoutes", qPruneRoutes},
	{"PruneRuns", qPruneRuns},
	{"RecentRunStats", qRecentRunStats}, // metrics.go
	{"DeliveryCounts", qDeliveryCounts},
}
