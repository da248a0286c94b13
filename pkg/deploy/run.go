package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
	"github.com/dh-deployer/dh-deployer/pkg/gitrepo"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
)

// run is one deployment in progress.
type run struct {
	w     *Worker
	req   Request
	begun time.Time
	note  string // recorded with the run: forced past a pause
	repo  *gitrepo.Repo
	rec   store.Run // as recorded; rec.ID is 0 until then
	log   *slog.Logger
	out   *runLog
	dir   string // strategy releases: the release being built or switched to
	// extraEnv are added to the steps' environment (releases: where).
	extraEnv []string
}

func (r *run) do(ctx context.Context) (store.Run, error) {
	w, d := r.w, r.w.d
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	r.log = w.log.With("delivery", r.req.Delivery, "trigger", r.req.Trigger)
	r.repo = w.repo

	if err := r.repo.Sync(ctx); err != nil {
		if queue.IsRetry(err) && ctx.Err() == nil {
			return r.rec, err // nothing recorded: the entry waits for the network
		}
		return r.recordFailure(ctx, err)
	}
	if r.req.Commit == "" {
		sha, err := r.repo.ResolveRef(ctx, r.req.Ref)
		if err != nil {
			return r.rec, err
		}
		r.req.Commit = sha
	}
	previous, liveDir, err := w.live(ctx)
	if err != nil {
		return r.recordFailure(ctx, err)
	}
	var live int64
	if !r.req.Force && previous == r.req.Commit {
		if live, err = r.liveRun(ctx); err != nil {
			return r.rec, err
		}
	}
	if live != 0 {
		r.note = fmt.Sprintf("commit already live (run %d); no step ran (dh-deploy deploy %s --force rebuilds it)", live, d.Name)
	}
	if err := r.record(ctx, previous); err != nil {
		return r.rec, err
	}
	defer r.out.Close()
	if live != 0 {
		r.out.Line("unchanged: %s", r.note)
		return r.finish(ctx, store.RunResult{State: store.RunUnchanged})
	}
	r.log = r.log.With("run", r.rec.ID, "commit", r.req.Commit)
	r.log.Info("run started", "ref", r.req.Ref, "previous", previous, "attempt", r.req.Attempt)
	r.status(ghstatus.Pending, fmt.Sprintf("deploying %s", d.Name))

	if err := r.repo.Contains(ctx, r.req.Ref, r.req.Commit); err != nil {
		if errors.Is(err, gitrepo.ErrNotOnRef) {
			return r.refuse(ctx, err.Error())
		}
		return r.fail(ctx, err, nil, nil)
	}
	if previous != "" && previous != r.req.Commit && !r.req.AllowOlder {
		older, err := r.repo.IsAncestor(ctx, r.req.Commit, previous)
		if err != nil {
			return r.fail(ctx, err, nil, nil)
		}
		if older {
			return r.refuse(ctx, fmt.Sprintf("commit %s is older than the checked-out %s (an ancestor of it); "+
				"not rolling back: to go back on purpose run dh-deploy deploy %s --commit %s",
				r.req.Commit, previous, d.Name, r.req.Commit))
		}
	}
	if d.Releases() {
		return r.build(ctx, liveDir, previous)
	}
	r.out.Line("checking out %s (%s) in %s", r.req.Commit, r.req.Ref, d.Path)
	if err := r.repo.Checkout(ctx, r.req.Commit, d.CleanUntracked); err != nil {
		return r.fail(ctx, err, nil, nil)
	}
	if d.Kind == config.KindNginx {
		if err := r.publishSites(); err != nil {
			return r.fail(ctx, err, nil, nil)
		}
	} else {
		for i, argv := range d.Steps {
			if err := r.step(ctx, i+1, argv); err != nil {
				return r.rec, err
			}
		}
		if d.Kind == config.KindSelf {
			if err := r.updateSelf(ctx); err != nil {
				return r.fail(ctx, err, nil, nil)
			}
		}
	}
	return r.finish(ctx, store.RunResult{State: store.RunSucceeded, ExitCode: intp(0)})
}

// liveRun returns the id of the run that made the checked-out commit,
// req's, live, or 0: the newest run that touched the checkout (succeeded,
// failed or interrupted) if it succeeded with that commit. A failed or
// interrupted run since may have left the checkout half-built.
func (r *run) liveRun(ctx context.Context) (int64, error) {
	var runs []store.Run
	err := r.w.db(ctx, "read runs", func(ctx context.Context) (err error) {
		runs, err = r.w.st.ListRuns(ctx, r.w.d.Name, 100)
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, run := range runs {
		switch run.State {
		case store.RunSucceeded:
			if run.Commit == r.req.Commit {
				return run.ID, nil
			}
			return 0, nil
		case store.RunFailed, store.RunInterrupted:
			return 0, nil
		}
	}
	return 0, nil
}

// record inserts the run row (state running) and opens its log.
func (r *run) record(ctx context.Context, previous string) error {
	w := r.w
	out, err := openRunLog(w.cfg.StateDir, w.d.Name, r.req, w.stderr)
	if err != nil {
		return err
	}
	r.out = out
	r.rec = store.Run{Delivery: r.req.Delivery, Deployment: w.d.Name, Attempt: r.req.Attempt, Trigger: r.req.Trigger,
		TriggeredBy: r.req.By,
		Ref:         r.req.Ref, Commit: r.req.Commit, Previous: previous, State: store.RunRunning, StartedAt: r.begun,
		LogPath: out.Path, Note: r.note}
	r.describe(ctx)
	err = w.db(ctx, "record run", func(ctx context.Context) error {
		id := r.req.waiting
		var err error
		if id != 0 {
			if err = w.st.StartWaitingRun(ctx, id, r.rec); errors.Is(err, store.ErrNotFound) {
				id = 0 // it no longer waits (interrupted meanwhile): a new row
			}
		}
		if id == 0 {
			id, err = w.st.InsertRun(ctx, r.rec)
		}
		if err != nil {
			return err
		}
		r.rec.ID = id
		return w.st.LinkSuperseded(ctx, w.d.Name, id)
	})
	if err != nil {
		out.Close()
		os.Remove(out.Path)
	}
	return err
}

// describe fills in the run's commit subject and author, if the commit
// can be read (not after a failed fetch): they are for people, so a
// failure is logged and the run goes on.
func (r *run) describe(ctx context.Context) {
	if r.rec.Commit == "" {
		return
	}
	info, err := r.w.repo.Describe(ctx, r.rec.Commit)
	if err != nil {
		r.w.log.Info("cannot describe the commit", "commit", r.rec.Commit, "err", err)
		return
	}
	r.rec.CommitSubject, r.rec.CommitAuthor = info.Subject, info.Author
}

// recordFailure records a run that failed before it could start (the
// fetch): inserted and finished at once.
func (r *run) recordFailure(ctx context.Context, cause error) (store.Run, error) {
	if err := r.record(ctx, ""); err != nil {
		return r.rec, err
	}
	defer r.out.Close()
	return r.fail(ctx, cause, nil, nil)
}

// step runs step n of the deployment.
func (r *run) step(ctx context.Context, n int, argv []string) error {
	r.log.Info("step started", "step", n, "argv", quoteArgv(argv))
	env, err := r.env()
	if err != nil {
		_, err = r.fail(ctx, fmt.Errorf("step %d: %w", n, err), nil, intp(n))
		return err
	}
	code, err := r.exec(ctx, fmt.Sprintf("step %d", n), fmt.Sprintf("step %d/%d", n, len(r.w.d.Steps)), argv, r.workDir(), env)
	if err != nil {
		_, err = r.fail(ctx, err, code, intp(n))
	}
	return err
}

// exec runs argv in dir with env and the step timeout, its output to the
// run's log. The error names the command as what (argv[0]); label heads
// the log lines. code is its exit status if it ran and exited.
func (r *run) exec(ctx context.Context, what, label string, argv []string, dir string, env []string) (code *int, err error) {
	d := r.w.d
	prog, err := lookProgram(argv[0], dir, env)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", what, argv[0], err)
	}
	r.out.Line("%s: %s", label, quoteArgv(argv))
	res, err := sysexec.Run(ctx, sysexec.Cmd{Path: prog, Args: argv[1:], Dir: dir, Env: env,
		Timeout: d.StepTimeout, Stream: r.out, MaxOutput: 4 << 10})
	if err == nil {
		r.out.Line("%s: ok in %s", what, res.Duration.Round(time.Millisecond))
		return nil, nil
	}
	if res.ExitCode >= 0 {
		code = intp(res.ExitCode)
	}
	switch {
	case res.TimedOut:
		err = fmt.Errorf("%s (%s) timed out after %s; its processes were killed", what, argv[0], d.StepTimeout)
	case ctx.Err() != nil:
		// The run timeout, or the worker stopping: fail handles both.
		err = fmt.Errorf("%s (%s): %w", what, argv[0], err)
	default:
		err = fmt.Errorf("%s (%s) failed: %w", what, argv[0], err)
	}
	return code, err
}

// workDir is where the steps run: the new release, or the checkout.
func (r *run) workDir() string {
	if r.dir != "" {
		return r.dir
	}
	return r.w.d.Path
}

// env is the environment of the run's steps: StepEnv, and with releases
// DH_RELEASE_DIR and DH_PREVIOUS_RELEASE_DIR.
func (r *run) env() ([]string, error) {
	env, err := StepEnv(r.w.getenv, r.w.d, r.rec)
	return append(env, r.extraEnv...), err
}

// publishSites hands an nginx-kind checkout to dh-nginx.
func (r *run) publishSites() error {
	e := event.NginxSites{Deployment: r.w.d.Name, Commit: r.req.Commit, Delivery: r.req.Delivery, RunID: r.rec.ID,
		RequestedAt: time.Now()}
	data, err := e.Encode()
	if err != nil {
		return err
	}
	q := queue.Open(r.w.cfg.QueuePath(config.NginxQueue))
	if err := q.Init(); err != nil {
		return err
	}
	name, err := q.Publish(data)
	if err == nil {
		r.out.Line("queued %s for dh-nginx as %s", e.Kind, name)
	}
	return err
}

// refuse ends the run as refused.
func (r *run) refuse(ctx context.Context, why string) (store.Run, error) {
	r.out.Line("refused: %s", why)
	_, err := r.finish(ctx, store.RunResult{State: store.RunRefused, Error: why})
	if err != nil {
		return r.rec, err
	}
	return r.rec, fmt.Errorf("%w: %s", ErrRefused, why)
}

// fail ends the run as failed, or as interrupted when the worker is
// stopping, and returns the error the queue acts on: the cause (the entry
// goes to failed/), or ctx's error (it stays queued).
func (r *run) fail(ctx context.Context, cause error, code, step *int) (store.Run, error) {
	state := store.RunFailed
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		state = store.RunInterrupted
	} else if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		cause = fmt.Errorf("run timed out after %s: %w", r.w.d.Timeout, cause)
	}
	r.out.Line("%s: %v", state, cause)
	if _, err := r.finish(ctx, store.RunResult{State: state, ExitCode: code, FailedStep: step, Error: cause.Error()}); err != nil {
		return r.rec, err
	}
	if state == store.RunInterrupted {
		return r.rec, ctx.Err()
	}
	// A failed run is final for this entry, whatever failed inside it:
	// not retried (a Retry inside), and never the end of the worker (a
	// Stop inside, e.g. a self update that cannot write its install_dir).
	return r.rec, queue.Fail(&failedError{cause})
}

// finish records the end of the run (even when ctx has ended), and queues
// the final status and, for the targets that want it, the run notice.
func (r *run) finish(ctx context.Context, res store.RunResult) (store.Run, error) {
	w := r.w
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := w.db(ctx, "record end of run", func(ctx context.Context) error {
		return w.st.FinishRun(ctx, r.rec.ID, res)
	})
	r.rec.State, r.rec.ExitCode, r.rec.FailedStep, r.rec.Error = res.State, res.ExitCode, res.FailedStep, res.Error
	r.rec.FinishedAt = time.Now()
	took := time.Since(r.begun).Round(time.Millisecond)
	level := slog.LevelInfo
	if res.State != store.RunSucceeded {
		level = slog.LevelWarn
	}
	r.log.Log(ctx, level, "run ended", "state", res.State, "took", took, "error", res.Error)
	r.out.Line("run %d %s in %s", r.rec.ID, res.State, took)
	pruneLogs(w.cfg.StateDir, w.d.Name, r.w.log)

	switch res.State {
	case store.RunSucceeded:
		r.status(ghstatus.Success, fmt.Sprintf("deployed %s in %s", w.d.Name, took))
	case store.RunFailed:
		r.status(ghstatus.Failure, res.Error)
	case store.RunRefused, store.RunInterrupted:
		r.status(ghstatus.Error, res.State+": "+res.Error)
	}
	if outcome := notifyOutcome(res.State); outcome != "" && len(w.cfg.NotifyTargets(w.d.Notify, outcome)) > 0 {
		w.notices.runNotice(r.rec.ID, res.State)
	}
	return r.rec, err
}

// notifyOutcome is what a run that ended in state is, for a notify
// target's "on": "" for states no target is told about.
func notifyOutcome(state string) string {
	switch state {
	case store.RunSucceeded:
		return config.OnSuccess
	case store.RunFailed:
		return config.OnFailure
	}
	return ""
}

// status queues a commit status for the run's commit.
func (r *run) status(state ghstatus.State, description string) {
	w := r.w
	target, err := ghstatus.RenderTarget(w.cfg.GitHub.TargetURL, ghstatus.Fields{Deployment: w.d.Name,
		Repository: w.d.Repository, Commit: r.req.Commit, Ref: r.req.Ref, Delivery: r.req.Delivery, RunID: r.rec.ID})
	if err != nil {
		r.log.Warn("github.target_url does not render; status posted without a link", "err", err)
	}
	w.notices.commitStatus(w.d.Repository, r.req.Commit, ghstatus.Status{State: state, Description: description, TargetURL: target})
}

// ErrFailed is wrapped by the error of a run recorded as failed: the
// commands by hand exit 1 on it (the queue fails the entry).
var ErrFailed = errors.New("run failed")

// failedError is a failed run's cause, marked as ErrFailed.
type failedError struct{ err error }

func (e *failedError) Error() string        { return e.err.Error() }
func (e *failedError) Unwrap() error        { return e.err }
func (e *failedError) Is(target error) bool { return target == ErrFailed }

func intp(n int) *int { return &n }

// quoteArgv renders an argv list for log lines.
func quoteArgv(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`;&|<>(){}*?[]#~") {
			fmt.Fprintf(&b, "%q", a)
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}
