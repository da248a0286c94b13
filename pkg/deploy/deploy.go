// Package deploy is dh-deploy's stage: the worker of one deployment. It
// turns a routed push (an entry of queues/NAME) into a verified checkout,
// the deployment's build steps and a row of history. docs/deploy.md is the
// operator's version of this comment.
//
// For each entry, in this order (HandleBatch, Handle):
//
//  1. Decode it: a github-event push routed to this deployment, else a
//     sysexits.DataErr (the entry goes to failed/).
//  2. Idempotency: runs are keyed on (delivery, deployment). If a run of
//     the pair succeeded, the entry is done. Otherwise this is attempt
//     n+1. At start (Recover) the worker marks every unfinished run of its
//     deployment interrupted: it is the only worker, so those are the
//     leftovers of one that died, and their entries, still queued, run
//     again.
//  3. Coalescing (unless coalesce = false): if a later push waiting in the
//     queue names a commit that, after a fetch, is on its ref and contains
//     this one's commit, this one is recorded as superseded and not
//     deployed; the newest one deploys. A later push that is stale, forged
//     or force-pushed over this commit supersedes nothing. HandleBatch
//     decides a whole waiting set at once (coalesce.go): one fetch, one
//     read of the commit graph, one transaction.
//  4. Deploy (also used by the manual commands):
//     a. fetch (or clone) under the run lock, so that a manual deploy and
//     the worker never share the checkout; a network failure is a
//     queue.Retry before any run is recorded: the entry waits;
//     b. record the run (state running) and post a pending status; a
//     commit already live (checked out, and the newest run that touched
//     the checkout succeeded with it) ends there as unchanged, unless
//     Force;
//     c. refuse, with a recorded reason, a commit the fetched ref does not
//     contain, and (unless by hand) a commit older than the one checked
//     out, i.e. an ancestor of it: a stale redelivery never rolls back;
//     d. check out the commit detached, tracked files reset, untracked
//     files cleaned if the deployment asks;
//     e. kind "steps": run the steps in order in the checkout, each with
//     the step timeout, all within the run timeout, output to the run's
//     log file and to stderr (the journal); the first that fails fails
//     the run. Kind "nginx": publish an nginx-sites entry to queues/nginx;
//     f. record the end of the run, post the final status and the
//     notification.
//
// A failed run sends its entry to failed/ (a redelivery from GitHub, or
// dh-deploy replay, tries again); a refused one is done. When ctx ends
// (SIGTERM) the running step's process group is killed, the run recorded
// interrupted and the entry left queued.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/gitrepo"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/ident"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Triggers of a run, as the runs table records them.
const (
	TriggerWebhook  = "webhook"
	TriggerManual   = "manual"
	TriggerRollback = "rollback"
	TriggerReplay   = "replay"
	TriggerToken    = "token" // POST /deploy/NAME on dh-receive
	TriggerHook     = "hook"  // a git post-receive hook on this host (dh-receive hook)
)

// RunLockFile is the lock, in the deployment's queue directory, held for
// the whole of each run.
const RunLockFile = ".run.lock"

// Options tune a Worker.
type Options struct {
	Logger *slog.Logger
	// Getenv reads the worker's environment: the steps get PATH, HOME and
	// a few more from it (see StepEnv), and $CREDENTIALS_DIRECTORY locates
	// the notification URL.
	Getenv func(string) string
	// Stderr receives the steps' output as it comes (the journal under
	// systemd), besides the run's log file. nil discards it.
	Stderr io.Writer
	// Wait retries database calls until they succeed (the daemon) instead
	// of failing the entry temporarily.
	Wait bool
	// Version goes into the User-Agent of API calls.
	Version string
	// Now is the clock of deploy windows; nil means time.Now.
	Now func() time.Time
	// User is the Unix user behind the commands by hand (deploy, rollback,
	// replay), recorded in their runs' triggered_by; "" for the worker.
	User string
}

// Worker deploys one deployment.
type Worker struct {
	name    string
	next    atomic.Pointer[config.Config] // handed over by SetConfig, not yet taken up
	cfg     *config.Config
	d       *config.Deployment
	st      *store.Store
	log     *slog.Logger
	getenv  func(string) string
	stderr  io.Writer
	db      store.Retrier // every database call of a run goes through it
	now     func() time.Time
	user    string
	q       *queue.Queue
	repo    *gitrepo.Repo // the checkout; used under the run lock only
	notices *notices
	// decided holds the coalescing decisions of the waiting entries, by
	// name: the newer delivery of one recorded superseded, "" for one
	// that deploys (see coalesce.go).
	decided map[string]string
}

// New returns the worker of the deployment name. It never reads the
// GitHub token nor a notification target's secrets: with
// github.token_file set, commit statuses go to queues/status, and with
// [notify] targets, so do the notices of finished runs, for dh-route to
// set and send.
func New(cfg *config.Config, name string, st *store.Store, opts Options) (*Worker, error) {
	if _, ok := cfg.Deployment(name); !ok {
		return nil, hint.With(sysexits.Errorf(sysexits.Config, "%s: no deployment %q", cfg.File, name),
			"the deployments are: "+fmt.Sprint(cfg.DeploymentNames()))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger.With("deployment", name)
	n := &notices{deployment: name, log: log}
	// Statuses and notifications go to dh-route, which holds the GitHub
	// token and the targets' secrets.
	if cfg.GitHub.TokenFile != "" || len(cfg.Notify.Targets) > 0 {
		n.status = queue.Open(cfg.QueuePath(config.StatusQueue))
		if err := n.status.Init(); err != nil {
			return nil, fmt.Errorf("queues/%s, where commit statuses and notifications go: %w", config.StatusQueue, err)
		}
	}
	n.start()
	w := &Worker{
		name: name, st: st, log: log, getenv: opts.Getenv, stderr: opts.Stderr, db: store.Retrying(opts.Wait, log), now: opts.Now, user: opts.User,
		q: queue.Open(cfg.QueuePath(name)), notices: n,
	}
	w.use(cfg)
	return w, nil
}

// use makes cfg the worker's configuration.
func (w *Worker) use(cfg *config.Config) {
	d, _ := cfg.Deployment(w.name)
	w.cfg, w.d = cfg, d
	w.repo = &gitrepo.Repo{Path: d.Path, URL: d.FetchURL(), Timeout: d.StepTimeout, Env: gitEnv(w.getenv), Logger: w.log}
	if d.Releases() {
		w.repo.Path, w.repo.Bare = d.MirrorDir(), true
	}
}

// SetConfig hands the worker a reloaded configuration (SIGHUP). The
// worker takes it up before it handles its next entry, never during a
// run: the deployment's steps, environment, path, timeouts, windows …
// change from the next run on, and so do the deployment's notify targets.
// Whether queues/status is written at all is decided at start ([github]
// changes, and the first [notify] target, need a restart).
// A configuration without the worker's deployment is refused (a
// sysexits.Config error): the worker goes on with the one it has, since
// the entries still queued were routed to it under that one.
func (w *Worker) SetConfig(cfg *config.Config) error {
	if _, ok := cfg.Deployment(w.name); !ok {
		return hint.With(
			sysexits.Errorf(sysexits.Config, "deployment %q is no longer in %s; its worker keeps the configuration it has", w.name, cfg.File),
			"to retire the deployment, stop its worker: systemctl disable --now dh-deploy@"+w.name)
	}
	w.next.Store(cfg)
	return nil
}

// update takes up the configuration SetConfig handed over, if any.
func (w *Worker) update() {
	cfg := w.next.Swap(nil)
	if cfg == nil {
		return
	}
	if cfg.GitHub != w.cfg.GitHub {
		w.log.Warn("github changes take effect only after a restart")
		c := *cfg
		c.GitHub = w.cfg.GitHub
		cfg = &c
	}
	w.use(cfg)
	w.log.Info("reloaded configuration in use")
}

// Close waits (a bounded time) until the statuses and notifications of
// finished runs are posted.
func (w *Worker) Close() { w.notices.close(30 * time.Second) }

// Deployment is the deployment the worker deploys.
func (w *Worker) Deployment() *config.Deployment { return w.d }

// Config is the configuration in use. Like the fields it reads, it is
// for the goroutine that handles the entries.
func (w *Worker) Config() *config.Config { return w.cfg }

// Queue is the deployment's queue.
func (w *Worker) Queue() *queue.Queue { return w.q }

// Recover marks the unfinished runs of the deployment interrupted. Call it
// once the queue's consumer lock is held.
func (w *Worker) Recover(ctx context.Context) error {
	return w.db(ctx, "interrupt leftover runs", func(ctx context.Context) error {
		n, err := w.st.InterruptRuns(ctx, w.d.Name)
		if n > 0 {
			w.log.Warn("runs left unfinished by an earlier worker marked interrupted", "runs", n)
		}
		return err
	})
}

// Handle is HandleBatch of one entry.
func (w *Worker) Handle(ctx context.Context, e *queue.Entry) error {
	return w.HandleBatch(ctx, []*queue.Entry{e})[0]
}

// Replay handles an entry file in the foreground, as dh-deploy replay does:
// like Handle, recorded with the trigger "replay".
func (w *Worker) Replay(ctx context.Context, e *queue.Entry) error {
	return w.handle(ctx, e, TriggerReplay)
}

func (w *Worker) handle(ctx context.Context, e *queue.Entry, trigger string) error {
	w.update()
	req, err := w.request(e.Data, trigger)
	if err != nil {
		return err
	}
	var runs []store.Run
	err = w.db(ctx, "read runs", func(ctx context.Context) (err error) {
		runs, err = w.st.RunsOf(ctx, req.Delivery, w.d.Name)
		return err
	})
	if err != nil {
		return err
	}
	if w.attempt(&req, runs) {
		return nil
	}
	_, err = w.Deploy(ctx, req)
	if held, ok := errors.AsType[*heldError](err); ok {
		return w.hold(ctx, req, held.why)
	}
	if errors.Is(err, ErrRefused) {
		return nil // recorded; a refusal is final
	}
	return err
}

// attempt sets req's attempt from the runs of its (delivery, deployment)
// pair, and the queued run it resumes, if it waited; it reports true if a
// run of the pair already deployed it: nothing to do.
func (w *Worker) attempt(req *Request, runs []store.Run) (done bool) {
	attempt := 1
	for _, r := range runs {
		if r.State == store.RunSucceeded || r.State == store.RunUnchanged {
			w.log.Info("already deployed; nothing to do", "delivery", req.Delivery, "commit", r.Commit, "run", r.ID)
			return true
		}
		if r.State == store.RunQueued { // it waited (paused, outside the windows): this attempt again
			req.waiting, req.waitNote = r.ID, strings.TrimPrefix(r.Note, "waiting: ")
			attempt = r.Attempt
			continue
		}
		attempt = max(attempt, r.Attempt+1)
	}
	req.Attempt = attempt
	return false
}

// hold records (once per change of reason) that the entry waits, and
// returns the queue.Retry that keeps it queued.
func (w *Worker) hold(ctx context.Context, req Request, why string) error {
	if req.waitNote != why {
		err := w.db(ctx, "record waiting run", func(ctx context.Context) error {
			_, err := w.st.WaitRun(ctx, store.Run{Delivery: req.Delivery, Deployment: w.d.Name, Attempt: req.Attempt,
				Trigger: req.Trigger, TriggeredBy: req.By, Ref: req.Ref, Commit: req.Commit, Note: "waiting: " + why})
			return err
		})
		if err != nil {
			return err
		}
		w.log.Info("entry waits", "delivery", req.Delivery, "reason", why)
	}
	return queue.Retry(fmt.Errorf("%w: %s", errWaiting, why))
}

// request reads an entry of the deployment's queue: a push (from GitHub or
// a git hook) or a deploy request (by token).
func (w *Worker) request(data []byte, trigger string) (Request, error) {
	if env, err := event.Peek(data); err == nil && env.Kind == event.KindDeployRequest {
		dr, err := event.DecodeDeployRequest(data)
		if err != nil {
			return Request{}, err
		}
		if dr.Deployment != w.d.Name {
			return Request{}, sysexits.Errorf(sysexits.DataErr, "entry is for deployment %q, not %q", dr.Deployment, w.d.Name)
		}
		req := Request{Delivery: dr.Delivery, Trigger: TriggerToken, Ref: dr.Ref, Commit: dr.Commit,
			By: Actor("token", dr.TokenName)}
		if trigger == TriggerReplay {
			req.Trigger = trigger
			req.By = w.byUser(req.By)
		}
		if req.Ref == "" {
			ref, err := DefaultRef(w.d)
			if err != nil {
				return Request{}, sysexits.New(sysexits.DataErr, err)
			}
			req.Ref = ref
		}
		if _, err := ident.ParseRef(req.Ref); err != nil {
			return Request{}, sysexits.New(sysexits.DataErr, err)
		}
		return req, nil
	}
	ev, push, err := w.decode(data)
	if err != nil {
		return Request{}, err
	}
	if ev.Source == "git-hook" && trigger == TriggerWebhook {
		trigger = TriggerHook
	}
	var pusher, sender string
	if push.Pusher != nil {
		pusher = push.Pusher.Name
	}
	if push.Sender != nil {
		sender = push.Sender.Login
	}
	by := Actor("pusher", pusher, "sender", sender)
	if trigger == TriggerReplay {
		by = w.byUser(by)
	}
	return Request{Delivery: ev.Delivery, Trigger: trigger, Ref: push.Ref, Commit: push.After, By: by}, nil
}

// DefaultRef is the ref a deployment deploys when none is named: its first
// branch followed by name (not by pattern).
func DefaultRef(d *config.Deployment) (string, error) {
	for _, b := range d.Branches {
		if !strings.ContainsAny(b, `*?[\`) {
			return "refs/heads/" + b, nil
		}
	}
	return "", hint.With(sysexits.Errorf(sysexits.Usage, "deployment %s follows no branch by name", d.Name),
		"name a ref: refs/heads/BRANCH or refs/tags/TAG")
}

// decode checks that an entry is a push routed to this deployment.
func (w *Worker) decode(data []byte) (*event.GitHubEvent, *github.Push, error) {
	ev, err := event.DecodeGitHubEvent(data)
	if err != nil {
		return nil, nil, err
	}
	if ev.Deployment != w.d.Name {
		return nil, nil, sysexits.Errorf(sysexits.DataErr, "entry is for deployment %q, not %q", ev.Deployment, w.d.Name)
	}
	if ev.Event != "push" {
		return nil, nil, sysexits.Errorf(sysexits.DataErr, "entry is a %q event; only pushes are deployed", ev.Event)
	}
	push, err := github.DecodePush(ev.Payload)
	if err != nil {
		return nil, nil, sysexits.New(sysexits.DataErr, err)
	}
	if push.IsDeletion() {
		return nil, nil, sysexits.Errorf(sysexits.DataErr, "entry is the deletion of %s; nothing to deploy", push.Ref)
	}
	if _, err := ident.ParseCommit(push.After); err != nil {
		return nil, nil, sysexits.New(sysexits.DataErr, err)
	}
	if _, err := ident.ParseRef(push.Ref); err != nil {
		return nil, nil, sysexits.New(sysexits.DataErr, err)
	}
	return ev, push, nil
}

// ErrRefused is wrapped by Deploy's error when it refused the commit.
var ErrRefused = errors.New("refused")

// Request is one deployment to make.
type Request struct {
	Delivery string // the GitHub delivery, or a generated id (ManualID)
	Attempt  int    // of (Delivery, deployment); 0 means 1
	Trigger  string // Trigger*
	Ref      string // refs/heads/X or refs/tags/X the commit must be on
	// Commit is the commit to deploy; "" deploys the tip of Ref.
	Commit string
	// By says who or what asked (see Actor); "" means the Unix user of
	// a command by hand (Options.User).
	By string
	// AllowOlder permits moving the checkout back to an ancestor of what
	// is checked out (manual deploys and rollbacks only).
	AllowOlder bool
	// Force deploys even while the deployment is paused or outside its
	// windows (by hand only: deploy --force, rollback --force); the run's
	// note says so. It also
	// rebuilds the live commit, which is otherwise recorded unchanged.
	Force bool

	waiting  int64  // the run that waited for this attempt (state queued), if any
	waitNote string // its note
	release  string // a kept release to switch back to instead of building (rollback)
}

// ManualID returns a fresh delivery id for a run started by hand.
func ManualID(trigger string) string {
	return fmt.Sprintf("%s-%d-%d", trigger, time.Now().UnixNano(), os.Getpid())
}

// Deploy makes one deployment, holding the run lock, and returns its run.
// A refusal is an error wrapping ErrRefused, a failed run an error naming
// the step; a temporary failure before the run was recorded (fetch over an
// unreachable network, database down) is a queue.Retry.
func (w *Worker) Deploy(ctx context.Context, req Request) (store.Run, error) {
	unlock, err := w.lockRun(ctx)
	if err != nil {
		return store.Run{}, err
	}
	defer unlock()
	if req.Attempt == 0 {
		req.Attempt = 1
	}
	if req.By == "" {
		req.By = w.byUser("")
	}
	var note string
	if why := w.holdReason(w.now()); why != "" {
		if !req.Force {
			return store.Run{}, hint.With(queue.Retry(&heldError{why}), "pass --force to deploy anyway")
		}
		note = "forced: " + why
	}
	r := &run{w: w, req: req, begun: time.Now(), note: note}
	var rec store.Run
	if req.release != "" {
		rec, err = r.switchBack(ctx, req.release)
	} else {
		rec, err = r.do(ctx)
	}
	if err == nil && w.d.Kind == config.KindSelf {
		// The run is recorded: now the workers, this one included, may go.
		r.restartSelf()
	}
	if rec.ID != 0 && ctx.Err() == nil {
		// Off the path from push to first step: git's housekeeping.
		if merr := w.repo.Maintain(ctx); merr != nil {
			w.log.Warn("git maintenance failed", "err", merr)
		}
	}
	return rec, err
}

// RollbackRuns is how many of the newest succeeded runs Rollback reads:
// it chooses among them, and replays them to find the live place.
const RollbackRuns = 1000

// RollbackOptions tune Rollback.
type RollbackOptions struct {
	// Force rolls back even while the deployment is held.
	Force bool
	// To picks the succeeded run to go back to, by its id or by its
	// commit (at least 7 hexadecimal digits; the newest run of it); ""
	// walks back from the live place (see rollbackTarget).
	To string
}

// Rollback makes the commit before the live one live again (trigger
// "rollback"); repeated rollbacks walk further back, never forward to a
// commit rolled back from (see rollbackTarget), within the newest
// RollbackRuns succeeded runs. With strategy releases a kept release of
// it is switched to without a build (its activate steps and the health
// check run); a release no longer kept is built again. With nothing
// earlier it fails with sysexits.Unavailable.
func (w *Worker) Rollback(ctx context.Context, opts RollbackOptions) (store.Run, error) {
	w.update()
	ok, err := w.st.SucceededRuns(ctx, w.d.Name, RollbackRuns) // oldest first
	if err != nil {
		return store.Run{}, err
	}
	if len(ok) == 0 {
		return store.Run{}, hint.With(
			sysexits.Errorf(sysexits.Unavailable, "%s has no successful run yet: nothing earlier to roll back to", w.d.Name),
			"a failed run never switched path: what was live before it still is (dh-deploy history "+w.d.Name+")")
	}
	t := -1
	if opts.To != "" {
		if t = pickRun(ok, opts.To); t < 0 {
			return store.Run{}, hint.With(
				sysexits.Errorf(sysexits.Unavailable, "%s has no succeeded run %q to roll back to", w.d.Name, opts.To),
				"name a run id or a commit (7 or more hexadecimal digits) of a succeeded run: dh-deploy history "+w.d.Name)
		}
	} else if t = rollbackTarget(ok, livePosition(ok)); t < 0 {
		return store.Run{}, sysexits.Errorf(sysexits.Unavailable, "%s has no earlier successful commit to roll back to", w.d.Name)
	}
	r := ok[t]
	// (In place, rolling back to the checked-out commit rebuilds it, which
	// mends a checkout a failed run left half-built.)
	if live, _, err := w.live(ctx); w.d.Releases() && err == nil && live == r.Commit {
		return store.Run{}, sysexits.Errorf(sysexits.Unavailable, "%s is already live at %s (run %d)", w.d.Name, r.Commit, r.ID)
	}
	w.log.Info("rolling back", "from", ok[len(ok)-1].Commit, "to", r.Commit, "run", r.ID)
	req := Request{Delivery: ManualID(TriggerRollback), Trigger: TriggerRollback,
		Ref: r.Ref, Commit: r.Commit, AllowOlder: true, Force: opts.Force}
	if w.d.Releases() {
		if req.release = w.releaseOf(ctx, ok, t); req.release == "" {
			w.log.Info("the release is no longer kept; building it again", "commit", r.Commit, "run", r.ID)
		}
	}
	return w.Deploy(ctx, req)
}

// pickRun returns the index in ok of the run to names (an id), or of the
// newest run whose commit starts with to (7 or more hexadecimal digits),
// or -1.
func pickRun(ok []store.Run, to string) int {
	if id, err := strconv.ParseInt(to, 10, 64); err == nil {
		for i, r := range ok {
			if r.ID == id {
				return i
			}
		}
	}
	if !commitPrefix.MatchString(to) {
		return -1
	}
	for i := len(ok) - 1; i >= 0; i-- {
		if strings.HasPrefix(ok[i].Commit, to) {
			return i
		}
	}
	return -1
}

// livePosition returns the index, in ok (the succeeded runs, oldest
// first), of the run that stands for the live commit, or -1: the newest
// run, unless it is a rollback, which stands for the run it rolled back
// to. Replaying the history from the start gives each rollback the run
// rollbackTarget chose for it then; one that does not match (recorded
// before this rule) stands for the newest earlier deploy of its commit.
func livePosition(ok []store.Run) int {
	pos := -1
	for i, r := range ok {
		if r.Trigger != TriggerRollback || pos < 0 {
			pos = i
			continue
		}
		if t := rollbackTarget(ok[:i], pos); t >= 0 && ok[t].Commit == r.Commit {
			pos = t
			continue
		}
		pos = i
		for j := i - 1; j >= 0; j-- {
			if ok[j].Commit == r.Commit && ok[j].Trigger != TriggerRollback {
				pos = j
				break
			}
		}
	}
	return pos
}

// rollbackTarget returns the index of the run whose commit a rollback
// from position pos deploys: the newest succeeded run before pos, not
// itself a rollback, whose commit is not pos's; -1 if there is none.
// Rollbacks are not steps of the walk, so repeated ones go further back
// and never forward to a commit rolled back from.
func rollbackTarget(ok []store.Run, pos int) int {
	if pos < 0 {
		return -1
	}
	for j := pos - 1; j >= 0; j-- {
		if ok[j].Commit != ok[pos].Commit && ok[j].Trigger != TriggerRollback {
			return j
		}
	}
	return -1
}

// Actor renders who triggered a run for the runs' triggered_by: the
// key=value pairs (key, value, key, value …) whose value is not empty,
// space-separated. A value that is not a plain name (letters, digits and
// ._@+-, at most 100 bytes) is quoted, so that one from a payload can
// neither forge another pair nor carry control characters.
func Actor(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if v == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[i] + "=")
		if plainName.MatchString(v) {
			b.WriteString(v)
		} else {
			if len(v) > 100 {
				v = v[:100]
			}
			b.WriteString(strconv.QuoteToASCII(v))
		}
	}
	return b.String()
}

var commitPrefix = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

var plainName = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,100}$`)

// byUser prefixes by with the Unix user of a command by hand, if any.
func (w *Worker) byUser(by string) string {
	return strings.TrimSpace(Actor("user", w.user) + " " + by)
}

// lockRun takes the deployment's run lock, waiting for a run in progress
// (the worker's, or another manual one) to end.
func (w *Worker) lockRun(ctx context.Context) (func(), error) {
	if err := w.q.Exists(); err != nil {
		return nil, err
	}
	path := filepath.Join(w.q.Dir(), RunLockFile)
	unlock, err := queue.Lock(ctx, path, func() { w.log.Info("waiting for the run in progress to end", "lock", path) })
	if err != nil {
		return nil, err
	}
	// Every git command on the checkout runs under this lock, and dies
	// with the process that held it: a git lock file found now was left by
	// a run killed mid-command (SIGKILL, OOM, power loss) and would fail
	// every run after it.
	removed, err := w.repo.RemoveStaleLocks()
	if err != nil {
		unlock()
		return nil, queue.Stop(err)
	}
	if len(removed) > 0 {
		w.log.Warn("removed git locks left by an interrupted run", "locks", removed)
	}
	return unlock, nil
}
