package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// Coalescing decides a whole waiting set at once: the pushes waiting in
// the queue from the first entry of a batch on. One fetch, then one read
// of the commit graph (gitrepo.Graph: four git commands) for all of
// them, one statement for their runs, and one transaction that records
// every superseded one. An entry is superseded when a later push waiting
// in the queue names a different commit that is on its ref (as fetched)
// and contains this one's commit; a later push that is stale, forged or
// force-pushed over it supersedes nothing. The decisions are kept, by
// entry name, until the entries leave the queue, so that the set's later
// batches (and the one that deploys) need neither a fetch nor the
// database to be decided; an entry that arrives later makes the next
// batch decide again.

// HandleBatch is the queue.BatchHandler of the deployment's queue: it
// decides the coalescing of the waiting set, then handles the batch's
// entries that deploy one at a time, in order (see the package comment).
// At the first entry that must wait or stops the worker, the rest of the
// batch gets the same error: they stay queued, untouched.
func (w *Worker) HandleBatch(ctx context.Context, es []*queue.Entry) []error {
	w.update()
	errs := make([]error, len(es))
	if err := w.coalesce(ctx, es); stops(ctx, err) {
		for i := range errs {
			errs[i] = err // the batch stays queued, to be decided again
		}
		return errs
	} else if err != nil {
		// Coalescing only spares work: what it could not decide (a bug,
		// a commit graph git cannot read) deploys in turn, each entry
		// judged on its own, rather than failing the whole batch.
		w.log.Error("coalescing failed; deploying the waiting pushes in turn", "err", err)
		for _, e := range es {
			if _, ok := w.decided[e.Name]; !ok {
				w.decided[e.Name] = ""
			}
		}
	}
	for i, e := range es {
		if w.decided[e.Name] != "" {
			continue // recorded superseded
		}
		errs[i] = w.handle(ctx, e, TriggerWebhook)
		if stops(ctx, errs[i]) {
			for j := i + 1; j < len(es); j++ {
				errs[j] = errs[i]
			}
			break
		}
	}
	return errs
}

// stops reports whether err leaves the entry queued and stops the batch
// (see queue.Handler): the worker is stopping, or the error is temporary
// or an I/O error.
func stops(ctx context.Context, err error) bool {
	return err != nil && (ctx.Err() != nil || queue.IsRetry(err) || queue.IsStop(err))
}

// alreadyDeployed is the decision of a superseded entry whose delivery
// a run deployed already: it is done, with nothing to record.
const alreadyDeployed = "(deployed)"

// waiting is a push of the waiting set.
type waiting struct {
	name  string
	req   Request
	newer string // the delivery that supersedes it, once decided
}

// coalesce decides the waiting set from es[0] on, unless every entry in it
// is decided already.
func (w *Worker) coalesce(ctx context.Context, es []*queue.Entry) error {
	if w.decided == nil {
		w.decided = map[string]string{}
	}
	names, err := w.q.List()
	if err != nil {
		return err
	}
	inQueue := map[string]bool{}
	fresh := false
	for _, n := range names {
		inQueue[n] = true
		if _, ok := w.decided[n]; !ok && n >= es[0].Name {
			fresh = true
		}
	}
	for n := range w.decided {
		if !inQueue[n] {
			delete(w.decided, n) // done, failed or moved away
		}
	}
	if !fresh || !w.d.Coalesces() {
		for _, n := range names {
			if _, ok := w.decided[n]; !ok {
				w.decided[n] = ""
			}
		}
		return nil
	}

	// The pushes of the set, in queue order; entries that are no pushes of
	// this deployment are judged (and failed) when their turn comes.
	data := map[string][]byte{}
	for _, e := range es {
		data[e.Name] = e.Data
	}
	var set []*waiting
	for _, n := range names {
		if n < es[0].Name {
			continue
		}
		b, ok := data[n]
		if !ok {
			if b, err = os.ReadFile(filepath.Join(w.q.Dir(), n)); err != nil {
				continue // consumed or moved meanwhile, or unreadable: judged on its turn
			}
		}
		req, err := w.request(b, TriggerWebhook)
		if err != nil || (req.Trigger != TriggerWebhook && req.Trigger != TriggerHook) {
			continue // not a push (deploy requests never coalesce) or bad: judged on its turn
		}
		set = append(set, &waiting{name: n, req: req})
	}
	if len(set) > 1 {
		if err := w.decide(ctx, set); err != nil {
			return err
		}
	}
	for _, n := range names {
		if _, ok := w.decided[n]; !ok && n >= es[0].Name {
			w.decided[n] = ""
		}
	}
	return nil
}

// decide finds the superseded pushes of set (queue order) with one fetch
// and one read of the commit graph, and records them all in one
// transaction.
func (w *Worker) decide(ctx context.Context, set []*waiting) error {
	unlock, err := w.lockRun(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := w.repo.Sync(ctx); err != nil {
		return err
	}
	var refs, commits []string
	for _, p := range set {
		refs, commits = append(refs, p.req.Ref), append(commits, p.req.Commit)
	}
	g, err := w.repo.Graph(ctx, refs, commits)
	if err != nil {
		return err
	}
	// Newest first: covered maps each proper ancestor of a valid later
	// push's commit to the newest such push, so that each entry is judged
	// against every push after it in one walk of the graph.
	covered := map[string]string{}
	var superseded []*waiting
	for i := len(set) - 1; i >= 0; i-- {
		p := set[i]
		if by, ok := covered[p.req.Commit]; ok {
			if prior, decided := w.decided[p.name]; !decided || prior == "" {
				p.newer = by
				superseded = append(superseded, p)
			}
		}
		if g.On(p.req.Ref, p.req.Commit) {
			g.Mark(p.req.Commit, covered, p.req.Delivery)
		}
	}
	if len(superseded) == 0 {
		return nil
	}
	deliveries := make([]string, len(superseded))
	for i, p := range superseded {
		deliveries[i] = p.req.Delivery
	}
	var runs map[string][]store.Run
	err = w.db(ctx, "read runs", func(ctx context.Context) (err error) {
		runs, err = w.st.RunsOfDeliveries(ctx, w.d.Name, deliveries)
		return err
	})
	if err != nil {
		return err
	}
	var record []*waiting
	for _, p := range superseded {
		if w.attempt(&p.req, runs[p.req.Delivery]) {
			w.decided[p.name] = alreadyDeployed // nothing to record: done
			continue
		}
		record = append(record, p)
	}
	err = w.db(ctx, "record superseded runs", func(ctx context.Context) error {
		return w.st.InTx(ctx, func(tx *store.Store) error {
			var fresh []store.Run
			for _, p := range record {
				why := fmt.Sprintf("superseded by delivery %s, waiting in the queue", p.newer)
				if p.req.waiting == 0 {
					fresh = append(fresh, store.Run{Delivery: p.req.Delivery, Attempt: p.req.Attempt, Trigger: p.req.Trigger,
						TriggeredBy: p.req.By, Ref: p.req.Ref, Commit: p.req.Commit, Error: why})
					continue
				}
				// An entry that waited (paused, outside the windows) has
				// its queued run, this very attempt: that row ends
				// superseded. A second row of the attempt would break the
				// unique key and leave the queued one waiting forever.
				if err := tx.FinishRun(ctx, p.req.waiting, store.RunResult{State: store.RunSuperseded, Error: why}); err != nil {
					return err
				}
			}
			if len(fresh) == 0 {
				return nil
			}
			return tx.InsertSuperseded(ctx, w.d.Name, fresh)
		})
	})
	if err != nil {
		return err
	}
	for _, p := range record {
		w.decided[p.name] = p.newer
		// Each entry dropped gets its log line (and its row, above).
		w.log.Info("run superseded", "delivery", p.req.Delivery, "commit", p.req.Commit, "by", p.newer)
	}
	return nil
}
