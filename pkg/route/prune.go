package route

import (
	"context"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// PruneStart is how long after the start dh-route run prunes first, and
// PrunePause the time between two batches of a pass.
const (
	PruneStart = time.Minute
	PrunePause = 100 * time.Millisecond
)

// Prune deletes the history older than the current configuration's
// [retention] allows (store.Prune) and logs what it deleted.
func (r *Router) Prune(ctx context.Context) (store.Pruned, error) {
	start := time.Now()
	p, err := r.store.Prune(ctx, r.Config().Retention, PrunePause)
	if p != (store.Pruned{}) || err != nil {
		r.logger.Info("pruned", "events", p.Events, "routes", p.Routes, "runs", p.Runs,
			"took", time.Since(start).Round(time.Millisecond), "err", err)
	}
	return p, err
}

// PruneEvery runs Prune PruneStart after it is called, then every
// retention.interval of the configuration then current, until ctx ends:
// dh-route run calls it in a goroutine of its own, beside the routing. A
// failed pass (the database down) is logged and tried again at the next.
func (r *Router) PruneEvery(ctx context.Context) {
	wait := PruneStart
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := r.Prune(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("pruning failed; trying again at the next pass", "err", err)
		}
		wait = r.Config().Retention.Interval
	}
}
