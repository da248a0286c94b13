// Package route is dh-route's stage: it handles one queues/main entry (a
// GitHub delivery) at a time, records it in the event table and forwards it
// to the queues of the deployments that follow its repository and ref, or
// records why not. docs/route.md is the operator's version of this comment.
//
// For each entry, in this order:
//
//  1. Decode it. An entry that is not a valid github-event (bad JSON, wrong
//     version or kind, missing fields, a push payload without ref, after or
//     repository) is a sysexits.DataErr: pkg/queue moves it to failed/ with
//     the reason. If its delivery id is readable, the event table gets a
//     "failed" row with that reason (a delivery decided before keeps its
//     decision).
//  2. Record the delivery (store.RecordDelivery: one INSERT ... ON CONFLICT,
//     so concurrent or repeated deliveries of one GUID make one row).
//  3. Decide (Match), from the configuration loaded when the entry started:
//     ping → status "ping"; a push that enabled deployments follow →
//     "routed" to each of them; anything else → "voided" with one of the
//     Reason* strings.
//  4. For a GUID routed before, apply the duplicate rule per (delivery,
//     deployment): a pair whose last forward has no run yet (still waiting
//     in the deployment queue), or whose run is queued, running, succeeded
//     or superseded, is in flight or done and is not forwarded again; a pair
//     whose run failed, was interrupted or was refused is forwarded again,
//     and so is a matching deployment never forwarded to. If nothing is
//     left to forward the delivery is a "duplicate" (reason ReasonRouted).
//  5. Record the decision and the routes (store.Decide), publish to each
//     deployment queue, and commit, all in one transaction per batch: the
//     event table says "routed" only once the deployment entries are
//     durable. Then (pkg/queue) the entry is removed.
//
// Per-delivery failures: a deployment queue that cannot be created or
// written fails only the entries routed to it. Such an entry goes to
// queues/main/failed/ with a reason naming the deployment and its queue,
// its delivery is recorded as "failed" (never "routed"), and the rest of
// the batch is routed: the batch's transaction is rolled back and done
// again with that entry marked failed. The entries it did publish to its
// other deployments stay (they are idempotent, see below). An I/O error
// there is that entry's failure, not dh-route's: routing goes on.
//
// Crash safety: each deployment entry is named after the queues/main entry
// it comes from, and publishing a name the deployment queue already holds
// (waiting or in failed/) changes nothing. So a crash (or a rolled back
// transaction) after a publish and before the commit leaves nothing in the
// event table, and handling the entry again publishes nothing twice. Each
// route remembers the queues/main entry that made it: when an entry is
// handled again after a crash between the commit and its removal (same
// entry name, routes already made by it), nothing is decided again: each
// of its routes is completed, publishing only where neither the deployment
// queue (entries or failed/) holds the delivery for that deployment nor a
// run was queued since the route. A crash between any two steps therefore
// leads to exactly one entry per (delivery, deployment) in the deployment
// queues, unless dh-deploy consumed the entry and had not yet recorded its
// run, in which case the repeat is harmless (dh-deploy keys runs on
// delivery and deployment). An entry an operator dropped in by hand under
// a name queue.NewName did not make is forwarded under fresh names (kept
// while it is handled), so for it the same is true except after a crash
// between its publish and the commit.
//
// Database errors: with Options.Wait (the daemon) every database call is
// retried with backoff (store.Retry: one log line when the database goes
// away, one when it is back) so the entry simply waits; without it (--once,
// replay) a database outage is a queue.Retry and the entry stays
// queued.
package route

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/ident"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Reasons recorded with a voided (or duplicate) delivery. They are stable:
// operators grep for them.
const (
	// ReasonDeleted: the push deleted a branch or tag (deleted: true, after
	// all zeros). Checked first: a deletion is never deployed.
	ReasonDeleted = "deleted"
	// ReasonNotFollowed: no deployment follows this repository and ref.
	ReasonNotFollowed = "not-followed"
	// ReasonEventNotTaken: the event is not a push, or the deployments
	// following the ref do not list "push" in their events.
	ReasonEventNotTaken = "event-not-taken"
	// ReasonDisabled: only disabled deployments follow the ref.
	ReasonDisabled = "disabled"
	// ReasonRouted (status duplicate): every matching deployment already
	// has this delivery in flight or deployed.
	ReasonRouted = "already-routed"
)

// EventPush and EventPing are the GitHub event names dh-route acts on.
const (
	EventPush = "push"
	EventPing = "ping"
)

// Decision is what to do with one delivery.
type Decision struct {
	Status      string   // store.StatusRouted, StatusVoided, StatusPing, StatusDuplicate
	Reason      string   // a Reason* for voided and duplicate; the hook's description for ping
	Deployments []string // where to forward it (routed), sorted
}

// Match decides from the table's configuration alone what a delivery's
// fate is, and returns the event-table fields read from its payload. A
// payload routing cannot read is a sysexits.DataErr.
func (t *Table) Match(ev *event.GitHubEvent) (store.Event, Decision, error) {
	rec := store.Event{Delivery: ev.Delivery, Event: ev.Event, HookID: ev.HookID, ReceivedAt: ev.ReceivedAt}
	switch ev.Event {
	case EventPing:
		p, err := github.DecodePing(ev.Payload)
		if err != nil {
			return rec, Decision{}, sysexits.New(sysexits.DataErr, err)
		}
		if rec.HookID == 0 {
			rec.HookID = p.HookID
		}
		if p.Repository != nil {
			rec.Repository = p.Repository.FullName
		}
		events := strings.Join(p.Hook.Events, ",")
		detail := fmt.Sprintf("hook %d (%s) events=%s url=%s", rec.HookID, p.Hook.Type, events, p.Hook.Config.URL)
		return rec, Decision{Status: store.StatusPing, Reason: detail}, nil
	case EventPush:
	default:
		rec.Repository = github.RepositoryName(ev.Payload)
		return rec, Decision{Status: store.StatusVoided, Reason: ReasonEventNotTaken}, nil
	}

	p, err := github.DecodePush(ev.Payload)
	if err != nil {
		return rec, Decision{}, sysexits.New(sysexits.DataErr, err)
	}
	rec.Repository, rec.Ref, rec.Before, rec.After = p.Repository.FullName, p.Ref, p.Before, p.After
	if p.IsDeletion() {
		return rec, Decision{Status: store.StatusVoided, Reason: ReasonDeleted}, nil
	}
	branch, isBranch := p.Branch()
	tag, isTag := p.Tag()
	var targets []string
	reason := ReasonNotFollowed
	for _, tg := range t.byRepo[strings.ToLower(p.Repository.FullName)] {
		d := tg.d
		// The table's key folds case with ToLower, the rule
		// (MatchesRepository) with EqualFold: the rule decides.
		if !d.MatchesRepository(p.Repository.FullName) {
			continue
		}
		if !(isBranch && tg.branches.match(branch)) && !(isTag && tg.tags.match(tag)) {
			continue
		}
		switch {
		case !d.TakesEvent(ev.Event):
			if reason == ReasonNotFollowed {
				reason = ReasonEventNotTaken
			}
		case !d.IsEnabled():
			reason = ReasonDisabled
		default:
			targets = append(targets, tg.name)
		}
	}
	if len(targets) == 0 {
		return rec, Decision{Status: store.StatusVoided, Reason: reason}, nil
	}
	return rec, Decision{Status: store.StatusRouted, Deployments: targets}, nil
}

// EventDeployRequest is the event name recorded for a deploy request
// (POST /deploy/NAME with a token).
const EventDeployRequest = "deploy"

// MatchRequest decides a deploy request: routed to its deployment if the
// configuration has it enabled and it follows the ref asked for, else
// voided (not-followed, disabled).
func MatchRequest(cfg *config.Config, req *event.DeployRequest) (store.Event, Decision) {
	rec := store.Event{Delivery: req.Delivery, Event: EventDeployRequest, Ref: req.Ref, After: req.Commit,
		ReceivedAt: req.ReceivedAt}
	d, ok := cfg.Deployment(req.Deployment)
	switch {
	case !ok:
		return rec, Decision{Status: store.StatusVoided, Reason: ReasonNotFollowed}
	case !d.IsEnabled():
		rec.Repository = d.Repository
		return rec, Decision{Status: store.StatusVoided, Reason: ReasonDisabled}
	case req.Ref != "" && !d.FollowsRef(req.Ref):
		// dh-receive refuses these already; an entry from another
		// writer of queues/main is held to the same rule.
		rec.Repository = d.Repository
		return rec, Decision{Status: store.StatusVoided, Reason: ReasonNotFollowed}
	}
	rec.Repository = d.Repository
	return rec, Decision{Status: store.StatusRouted, Deployments: []string{req.Deployment}}
}

// Options tune a Router.
type Options struct {
	Logger *slog.Logger
	// Wait retries database calls until they succeed (or ctx ends) instead
	// of failing the entry temporarily.
	Wait bool
}

// Router handles queues/main entries. Its configuration can be replaced
// at any time (SIGHUP); each entry is handled with the configuration
// current when it started.
type Router struct {
	store  *store.Store
	logger *slog.Logger
	db     store.Retrier // every database call of an entry goes through it
	table  atomic.Pointer[Table]
	// roles is the configuration whose deployments' roles are recorded
	// (RecordRoles).
	roles atomic.Pointer[config.Config]

	mu     sync.Mutex
	queues map[string]*queue.Queue // deployment queues by directory, initialised
}

// New returns a Router over st with the configuration cfg.
func New(cfg *config.Config, st *store.Store, opts Options) *Router {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{store: st, logger: opts.Logger, db: store.Retrying(opts.Wait, opts.Logger), queues: map[string]*queue.Queue{}}
	r.table.Store(NewTable(cfg))
	return r
}

// SetConfig makes cfg the configuration for the entries handled from now
// on, with its routing table built once here.
func (r *Router) SetConfig(cfg *config.Config) { r.table.Store(NewTable(cfg)) }

// Config returns the current configuration.
func (r *Router) Config() *config.Config { return r.table.Load().cfg }

// RecordRoles records, unless done already for the current
// configuration, which database role each deployment's worker logs in as
// (its user, Deployment.RunsAs): the runs table's row-level security lets
// a deployment's role touch only the runs of the deployments recorded for
// it (store.SetDeploymentRoles). dh-route calls it when it starts, on
// reload, and before each batch, so that a configuration reloaded while
// the database was away is recorded once it is back.
func (r *Router) RecordRoles(ctx context.Context) error {
	cfg := r.table.Load().cfg
	if r.roles.Load() == cfg {
		return nil
	}
	roles := make(map[string]string, len(cfg.Deployments))
	for _, name := range cfg.DeploymentNames() {
		roles[name] = cfg.Deployments[name].RunsAs()
	}
	if err := r.db(ctx, "record the deployments' roles", func(ctx context.Context) error {
		return r.store.SetDeploymentRoles(ctx, roles)
	}); err != nil {
		return err
	}
	r.roles.Store(cfg)
	return nil
}

// Handle is the queue.Handler of queues/main, for replay: HandleBatch of
// one entry.
func (r *Router) Handle(ctx context.Context, e *queue.Entry) error {
	return r.HandleBatch(ctx, []*queue.Entry{e})[0]
}

// item is one entry of a batch on its way through HandleBatch.
type item struct {
	entry *queue.Entry
	// forward makes the entry a deployment queue gets; nil for a bad entry.
	forward func(deployment string) ([]byte, error)
	rec     store.Event
	match   Decision
	bad     error // the DataErr of a bad entry
	known   bool  // a bad entry's delivery id is readable

	// names are the deployment entries' names, kept across the attempts
	// of one handling (see forwardName).
	names map[string]string

	// Set by decide (again on each database attempt).
	decision Decision
	resumed  bool     // this entry's routes were made before a crash
	resume   []string // those of them to complete
}

// HandleBatch is the queue.BatchHandler of queues/main: see the package
// comment. The whole batch is recorded, decided and published in one
// transaction (one commit for all its entries, one PublishAll), then
// logged. A database error is every entry's error: the batch is handled
// again, and each entry's second handling resumes what its first one
// recorded. A publish error is its entry's alone.
func (r *Router) HandleBatch(ctx context.Context, es []*queue.Entry) []error {
	if err := r.RecordRoles(ctx); err != nil {
		errs := make([]error, len(es))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	table := r.table.Load()
	cfg := table.cfg
	items := make([]item, len(es))
	for i, e := range es {
		it := &items[i]
		it.entry = e
		if env, err := event.Peek(e.Data); err == nil && env.Kind == event.KindDeployRequest {
			req, err := event.DecodeDeployRequest(e.Data)
			if err != nil {
				it.rec, it.known = looseEvent(e.Data)
				it.bad = err
				continue
			}
			it.rec, it.match = MatchRequest(cfg, req)
			it.forward = func(string) ([]byte, error) { return e.Data, nil }
			continue
		}
		ev, err := event.DecodeGitHubEvent(e.Data)
		if err != nil {
			it.rec, it.known = looseEvent(e.Data)
			it.bad = err
			continue
		}
		it.forward = func(deployment string) ([]byte, error) {
			out := *ev
			out.Deployment = deployment
			return out.Encode()
		}
		it.rec, it.match, err = table.Match(ev)
		if err != nil {
			it.bad, it.known = err, true
		}
		if it.bad != nil && !sysexits.Is(it.bad, sysexits.DataErr) {
			it.bad = sysexits.New(sysexits.DataErr, it.bad)
		}
		it.bad = queue.Fail(it.bad) // bad data: failed, whatever failed inside
	}

	// A deployment queue at a limit holds its delivery, and the ones
	// after it (entries are handled in order), in queues/main.
	if k, err := r.roomFor(cfg, items); err != nil {
		errs := make([]error, len(es))
		if k > 0 {
			copy(errs, r.HandleBatch(ctx, es[:k]))
		}
		for i := k; i < len(es); i++ {
			errs[i] = err
		}
		return errs
	}

	// Record and publish in one transaction, committed only once every
	// entry it routes is durable in its deployment queue: the event table
	// never says "routed" for an entry a crash could lose. An entry whose
	// publish fails (its deployment queue cannot be created or written)
	// is marked bad and the transaction is done again without it, so that
	// it fails alone and its delivery is recorded as failed, never routed.
	// Publishing is idempotent (each deployment entry is named after its
	// queues/main entry), so what the rolled back attempt published is not
	// queued twice.
	var err error
	for {
		redo := false
		err = r.db(ctx, "record deliveries", func(ctx context.Context) error {
			return r.store.InTx(ctx, func(tx *store.Store) error {
				if err := decideAll(ctx, tx, items); err != nil {
					return err
				}
				if r.publish(cfg, items) {
					redo = true
					return errRedo
				}
				return nil
			})
		})
		if !redo || !errors.Is(err, errRedo) {
			break
		}
	}
	if err != nil && len(es) > 1 && ctx.Err() == nil && !queue.IsRetry(err) && !queue.IsStop(err) {
		// One entry the database refuses (a bug, or data no check
		// foresaw) must not fail its whole batch: handle them one by one,
		// so that only it fails.
		r.logger.Warn("batch refused by the database; handling its entries one by one", "entries", len(es), "err", err)
		errs := make([]error, len(es))
		for i, e := range es {
			errs[i] = r.HandleBatch(ctx, []*queue.Entry{e})[0]
		}
		return errs
	}
	if err == nil {
		r.wake(cfg, items)
	}
	errs := make([]error, len(items))
	for i := range items {
		it := &items[i]
		if err != nil {
			errs[i] = err
			continue
		}
		errs[i] = it.bad
		r.log(it.entry, it.rec, it.decision)
	}
	return errs
}

// errRedo rolls back a batch's transaction after a publish failed: it is
// done again with the failed entries marked bad.
var errRedo = errors.New("a publish failed; deciding the batch again")

// decideAll records the deliveries and decisions of a batch in tx: the
// deliveries seen for the first time all at once (store.InsertDecided),
// the others (redeliveries, resumed entries, bad entries) one by one.
func decideAll(ctx context.Context, tx *store.Store, items []item) error {
	var fresh []store.Decided
	var at []int
	for i := range items {
		if it := &items[i]; it.bad == nil {
			fresh = append(fresh, store.Decided{Event: it.rec, Status: it.match.Status, Reason: it.match.Reason,
				Entry: it.entry.Name, Deployments: it.match.Deployments})
			at = append(at, i)
		}
	}
	done := make([]bool, len(items))
	if len(fresh) > 0 {
		inserted, err := tx.InsertDecided(ctx, fresh)
		if err != nil {
			return err
		}
		for j, ok := range inserted {
			done[at[j]] = ok
		}
	}
	for i := range items {
		it := &items[i]
		if done[i] {
			it.decision, it.resumed, it.resume = it.match, false, nil
			continue
		}
		if err := decide(ctx, tx, it); err != nil {
			return err
		}
	}
	return nil
}

// decide records one entry's delivery and decision in tx.
func decide(ctx context.Context, tx *store.Store, it *item) error {
	it.decision, it.resumed, it.resume = Decision{}, false, nil
	if it.bad != nil {
		it.decision = Decision{Status: store.StatusFailed, Reason: it.bad.Error()}
		if !it.known {
			return nil
		}
		return tx.RecordFailure(ctx, it.rec, it.bad.Error())
	}
	prior, err := tx.RecordDelivery(ctx, it.rec)
	if err != nil {
		return err
	}
	// Resuming after a crash: this entry already decided and made routes.
	var names []string
	for _, rt := range prior.Routes {
		if rt.Entry != it.entry.Name {
			continue
		}
		names = append(names, rt.Deployment)
		if rt.LastRun == "" { // else dh-deploy has it
			it.resume = append(it.resume, rt.Deployment)
		}
	}
	if len(names) > 0 {
		it.decision = Decision{Status: store.StatusRouted, Reason: "resumed", Deployments: names}
		it.resumed = true
		return nil
	}
	d := it.match
	if d.Status == store.StatusRouted && len(prior.Routes) > 0 {
		d = dedup(d, prior.Routes)
	}
	it.decision = d
	return tx.Decide(ctx, it.rec.Delivery, d.Status, d.Reason, it.entry.Name, d.Deployments)
}

// dedup applies the duplicate rule to a routing decision for a delivery
// routed before.
func dedup(d Decision, routes []store.Route) Decision {
	var again []string
	for _, name := range d.Deployments {
		i := slices.IndexFunc(routes, func(rt store.Route) bool { return rt.Deployment == name })
		if i < 0 || Retriable(routes[i].LastRun) {
			again = append(again, name)
		}
	}
	if len(again) == 0 {
		return Decision{Status: store.StatusDuplicate, Reason: ReasonRouted}
	}
	d.Deployments = again
	return d
}

// Retriable reports whether a redelivery forwards a (delivery, deployment)
// pair again, given the state of its run since it was last forwarded (""
// for none yet: still queued, so in flight).
func Retriable(lastRun string) bool {
	switch lastRun {
	case store.RunFailed, store.RunInterrupted, store.RunRefused:
		return true
	}
	return false
}

// publish puts each routed entry, marked with each deployment's name, into
// that deployment's queue, all in one PublishAll. A resumed route is
// published only if the deployment queue does not already hold it. Each
// deployment entry is named after its queues/main entry (when that has a
// name queue.NewName made), so publishing it again is a no-op. An entry
// any of whose publishes fails becomes bad (see HandleBatch): publish
// reports whether that happened to any.
func (r *Router) publish(cfg *config.Config, items []item) (failed bool) {
	var out []queue.Item
	var from []*item
	fail := func(it *item, deployment string, err error) {
		if it.bad != nil {
			return
		}
		// Not an I/O error of the consumer (which would stop dh-route,
		// and again at each restart): this entry fails, alone, and goes to
		// failed/ with the reason, which names the deployment's queue.
		it.bad = queue.Fail(fmt.Errorf("route to deployment %s: %w", deployment, err))
		it.known = true
		failed = true
	}
	for i := range items {
		it := &items[i]
		targets := it.decision.Deployments
		if it.resumed {
			targets = it.resume
		}
		if it.bad != nil || it.decision.Status != store.StatusRouted {
			targets = nil
		}
		for _, name := range targets {
			q, err := r.queue(cfg, name)
			if err != nil {
				fail(it, name, err)
				continue
			}
			if it.resumed {
				found, err := Holds(q, it.rec.Delivery, name)
				if err != nil {
					fail(it, name, err)
					continue
				}
				if found {
					continue
				}
			}
			data, err := it.forward(name)
			if err != nil {
				fail(it, name, err)
				continue
			}
			out = append(out, queue.Item{Queue: q, Data: data, Name: it.forwardName(name)})
			from = append(from, it)
		}
	}
	for i, res := range queue.PublishAll(out) {
		if res.Err != nil {
			fail(from[i], out[i].Queue.Name(), res.Err)
		}
	}
	return failed
}

// wake nudges the workers of the deployment queues the batch published
// to, once each, now that the batch is committed (queue.Wake).
func (r *Router) wake(cfg *config.Config, items []item) {
	woken := map[string]bool{}
	for i := range items {
		it := &items[i]
		if it.bad != nil || it.decision.Status != store.StatusRouted {
			continue
		}
		targets := it.decision.Deployments
		if it.resumed {
			targets = it.resume
		}
		for _, name := range targets {
			if woken[name] {
				continue
			}
			woken[name] = true
			if q, err := r.queue(cfg, name); err == nil {
				q.Wake()
			}
		}
	}
}

// forwardName is the name of the entry's copy in a deployment queue: the
// entry's own name, if queue.NewName made it (so it is unique and sorts in
// arrival order), else a fresh name kept for the rest of this handling.
func (it *item) forwardName(deployment string) string {
	if _, ok := queue.NameTime(it.entry.Name); ok {
		return it.entry.Name
	}
	if it.names == nil {
		it.names = map[string]string{}
	}
	if it.names[deployment] == "" {
		it.names[deployment] = queue.NewName()
	}
	return it.names[deployment]
}

// Holds reports whether q holds (waiting or in failed/) an entry for the
// delivery routed to the deployment.
func Holds(q *queue.Queue, delivery, deployment string) (bool, error) {
	names, err := q.List()
	if err != nil {
		return false, err
	}
	failed, err := q.Failed()
	if err != nil {
		return false, err
	}
	paths := make([]string, 0, len(names)+len(failed))
	for _, n := range names {
		paths = append(paths, filepath.Join(q.Dir(), n))
	}
	for _, n := range failed {
		paths = append(paths, filepath.Join(q.Dir(), queue.FailedDir, n))
	}
	needle := []byte(`"delivery":` + quote(delivery))
	for _, p := range paths {
		// Read as a consumer reads: the queue's owner (the deployment's
		// user) could have put a link or a FIFO where an entry was.
		e, err := queue.ReadEntry(p)
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, queue.ErrRefused):
			continue // consumed meanwhile, or not an entry
		case err != nil:
			return false, queue.Stop(fmt.Errorf("read %s: %w", p, err))
		}
		data := e.Data
		if !bytes.Contains(data, needle) {
			continue
		}
		var head struct {
			Delivery   string `json:"delivery"`
			Deployment string `json:"deployment"`
		}
		if json.Unmarshal(data, &head) == nil && head.Delivery == delivery && head.Deployment == deployment {
			return true, nil
		}
	}
	return false, nil
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// roomFor checks that the queue of every deployment the items are routed
// to has room (queue.Room: [queues.deployments] limits and the free-space
// floor). It returns the index of the first item that has not, and a
// queue.Retry error naming the deployment: that entry stays in queues/main
// and is tried again with backoff (the consumer logs it once), never
// dropped. A queue that cannot be opened is left to publish, which fails
// the entry with the reason.
func (r *Router) roomFor(cfg *config.Config, items []item) (int, error) {
	type batch struct{ entries, bytes int64 } // routed to a queue by earlier items
	before := map[*queue.Queue]batch{}
	for i := range items {
		it := &items[i]
		if it.bad != nil || it.match.Status != store.StatusRouted {
			continue
		}
		for _, name := range it.match.Deployments {
			q, err := r.queue(cfg, name)
			if err != nil {
				continue
			}
			b := before[q]
			if err := q.RoomAfter(b.entries, b.bytes); err != nil {
				return i, fmt.Errorf("route to deployment %s: %w", name, err)
			}
			before[q] = batch{b.entries + 1, b.bytes + int64(len(it.entry.Data))}
		}
	}
	return len(items), nil
}

// queue returns the deployment's queue, creating its directories the first
// time, with the configuration's limits.
func (r *Router) queue(cfg *config.Config, deployment string) (*queue.Queue, error) {
	dir := cfg.QueuePath(deployment)
	r.mu.Lock()
	defer r.mu.Unlock()
	if q, ok := r.queues[dir]; ok {
		q.SetLimits(queue.Limits(cfg.QueueLimits(deployment)))
		return q, nil
	}
	q := queue.Open(dir)
	if err := q.Init(); err != nil {
		return nil, err
	}
	q.SetLimits(queue.Limits(cfg.QueueLimits(deployment)))
	r.queues[dir] = q
	return q, nil
}

// looseEvent reads what it can of a bad entry: the delivery id (if well
// formed), the event name and the received time.
func looseEvent(data []byte) (store.Event, bool) {
	var loose struct {
		Delivery   any    `json:"delivery"`
		Event      any    `json:"event"`
		ReceivedAt string `json:"received_at"`
	}
	_ = json.Unmarshal(data, &loose) // best effort: fields of the wrong type stay empty
	delivery, _ := loose.Delivery.(string)
	name, _ := loose.Event.(string)
	rec := store.Event{Delivery: delivery, Event: name}
	if !event.ValidEventName(rec.Event) {
		rec.Event = "unknown"
	}
	if t, err := time.Parse(time.RFC3339Nano, loose.ReceivedAt); err == nil {
		rec.ReceivedAt = t
	} else {
		rec.ReceivedAt = time.Now()
	}
	_, err := ident.ParseDelivery(delivery)
	return rec, err == nil
}

// log writes the one line per decision.
func (r *Router) log(e *queue.Entry, rec store.Event, d Decision) {
	level := slog.LevelInfo
	if d.Status == store.StatusFailed {
		level = slog.LevelWarn
	}
	r.logger.Log(context.Background(), level, "delivery decided",
		"delivery", rec.Delivery, "event", rec.Event, "repository", rec.Repository, "ref", rec.Ref,
		"outcome", d.Status, "reason", d.Reason, "deployments", strings.Join(d.Deployments, ","),
		"entry", e.Name)
}
