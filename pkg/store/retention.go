package store

import (
	"context"
	"fmt"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
)

// The pruning statements: each deletes at most a batch of rows, oldest
// first, found through an index; the deliveries and routes skip rows
// another transaction holds (SKIP LOCKED), so that pruning never waits for
// routing and routing never waits long for it. (Old runs are not written
// to; dh-route, which may not update runs, cannot lock them.) $1 is the
// age in seconds, $2 the batch.
const (
	// A delivery goes with its routes once it is older than $1 and did not
	// arrive again since; one not yet decided stays.
	qPruneEvents = `WITH doomed AS (
			SELECT delivery FROM events
			WHERE received_at < now() - make_interval(secs => $1) AND status <> 'received'
			  AND (last_seen_at IS NULL OR last_seen_at < now() - make_interval(secs => $1))
			ORDER BY received_at LIMIT $2
			FOR UPDATE SKIP LOCKED),
		r AS (DELETE FROM routes WHERE delivery IN (SELECT delivery FROM doomed))
		DELETE FROM events WHERE delivery IN (SELECT delivery FROM doomed)`

	// (By ctid: a join on the key would read the whole table.)
	qPruneRoutes = `DELETE FROM routes WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM routes
			WHERE routed_at < now() - make_interval(secs => $1)
			ORDER BY routed_at LIMIT $2
			FOR UPDATE SKIP LOCKED))`

	// A run older than $1 goes unless it waits or runs, is among the $3
	// newest succeeded runs of its deployment, or is its newest run that
	// touched the checkout; or a run kept names it as its successor. $4
	// is where the previous batch of the pass stopped (queued_at), so that
	// the kept runs are read once a pass, not once a batch.
	qPruneRuns = `WITH doomed AS (
			SELECT r.id FROM runs r
			WHERE r.queued_at < now() - make_interval(secs => $1) AND r.queued_at >= $4
			  AND r.state NOT IN ('queued', 'running')
			  AND NOT (r.state = 'succeeded' AND r.id >= coalesce(
			        (SELECT s.id FROM runs s WHERE s.deployment = r.deployment AND s.state = 'succeeded'
			         ORDER BY -s.id OFFSET $3 - 1 LIMIT 1), 0))
			  AND r.id IS DISTINCT FROM
			        (SELECT c.id FROM runs c WHERE c.deployment = r.deployment
			           AND c.state IN ('succeeded', 'failed', 'interrupted')
			         ORDER BY -c.id LIMIT 1)
			ORDER BY r.queued_at LIMIT $2)
		DELETE FROM runs WHERE id IN (SELECT id FROM doomed)
		  AND NOT EXISTS (SELECT FROM runs n WHERE n.superseded_by = runs.id
		                    AND n.id NOT IN (SELECT id FROM doomed))
		RETURNING queued_at`
)

// Pruned counts the rows a pruning pass deleted.
type Pruned struct {
	Events, Routes, Runs int64
}

// Prune deletes, r.Batch rows at a time with pause between two batches,
// the deliveries (with their routes), the routes and the runs older than
// r says, never a delivery not yet decided nor the runs a deployment
// still needs (see qPruneRuns), nor anything younger than
// config.MinRetention. Each batch is one statement in a transaction of its
// own. It returns what it deleted, until the end, ctx's or an error.
func (s *Store) Prune(ctx context.Context, r config.Retention, pause time.Duration) (Pruned, error) {
	var p Pruned
	batches := func(what string, age time.Duration, n *int64, fn func() (int64, error)) error {
		if age == 0 {
			return nil
		}
		if age < config.MinRetention {
			return fmt.Errorf("prune %s: %s is shorter than %s", what, age, config.MinRetention)
		}
		for {
			d, err := fn()
			*n += d
			if err != nil {
				return fmt.Errorf("prune %s: %w", what, err)
			}
			if d < int64(r.Batch) {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
		}
	}
	exec := func(q string, args ...any) (int64, error) {
		ctx, cancel := s.call(ctx)
		defer cancel()
		res, err := s.db.ExecContext(ctx, q, args...)
		if err != nil {
			return 0, classify(err)
		}
		return res.RowsAffected()
	}
	err := batches("deliveries", r.Deliveries, &p.Events, func() (int64, error) {
		return exec(qPruneEvents, r.Deliveries.Seconds(), r.Batch)
	})
	if err == nil {
		err = batches("routes", r.Routes, &p.Routes, func() (int64, error) {
			return exec(qPruneRoutes, r.Routes.Seconds(), r.Batch)
		})
	}
	if err == nil {
		after := time.Time{}
		err = batches("runs", r.Runs, &p.Runs, func() (int64, error) {
			ctx, cancel := s.call(ctx)
			defer cancel()
			rows, err := s.db.QueryContext(ctx, qPruneRuns, r.Runs.Seconds(), r.Batch, r.KeepSucceeded, after)
			if err != nil {
				return 0, classify(err)
			}
			defer rows.Close()
			var n int64
			for rows.Next() {
				var t time.Time
				if err := rows.Scan(&t); err != nil {
					return n, classify(err)
				}
				if n++; t.After(after) {
					after = t
				}
			}
			return n, classify(rows.Err())
		})
	}
	return p, err
}
