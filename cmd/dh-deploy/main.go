// dh-deploy runs the deployments of dh-deployer: one worker per deployment
// queue (the systemd template instance dh-deploy@NAME), which fetches and
// verifies the pushed commit, builds it in a release directory of its own
// (strategy "releases", the default; "in-place" checks out and builds in
// path), switches path to it atomically once every step succeeded, runs
// the activate steps and the health check (switching back if they fail),
// and records the run. rollback switches back to a kept release without
// building. docs/deploy.md has the rules.
//
// Usage:
//
//	dh-deploy [-c FILE] run NAME [--once] [--wait]   work queues/NAME until SIGTERM
//	dh-deploy [-c FILE] replay FILE                  handle one entry in the foreground
//	dh-deploy [-c FILE] deploy NAME [--commit SHA] [--ref REF] [--force]
//	                                                 deploy now, by hand
//	dh-deploy [-c FILE] rollback NAME [--to RUN|COMMIT] [--force]
//	                                                 make the commit before the live one live again
//	                                                 (again: further back); a kept release is switched
//	                                                 to without building
//	dh-deploy [-c FILE] pause NAME|--all [--reason R] hold NAME's (or every) queue
//	dh-deploy [-c FILE] resume NAME|--all            end the pause
//	dh-deploy [-c FILE] history NAME [-n N|--all] [--before RUN] [--json]
//	                                                 the runs, newest first (20; --all streams every one)
//	dh-deploy [-c FILE] logs NAME [RUN] [-f|--follow] a run's log (default: the newest); --follow
//	                                                 prints it as it grows until the run ends;
//	                                                 control characters shown as ^[, ^G, CR as LF
//	dh-deploy [-c FILE] add NAME --repository OWNER/NAME --branch B --path DIR
//	          [--clone-url URL] [--steps '[["make"],["make","install"]]'] [--user U] [--host H]
//	                                                 as root: add a deployment end to end: its
//	                                                 table in the configuration, its user
//	                                                 (default dh-deploy-NAME), database role,
//	                                                 queue and log directories, checkout
//	                                                 directory, git access checked as that user,
//	                                                 dh-deploy@NAME enabled and started; prints
//	                                                 the webhook URL and the next command
//	dh-deploy [-c FILE] sudoers NAME                 the sudo rules of self deployment NAME
//
// SIGHUP makes run reload the configuration; the worker takes it up
// before its next entry (changed steps, environment, … apply from the next
// run). A configuration that does not load, or lacks the worker's
// deployment, is logged and the old one kept. run waits for the database
// at start (run --once exits 75 instead). A waiting worker holds no
// database connection and no inotify instance: it waits on its queue's wake
// pipe (queues/NAME/.wake, written by dh-route) and looks at the queue
// directory every second, so a host can run hundreds of them.
// docs/deploy.md has the details.
//
// The worker never reads the GitHub token nor a notification target's
// secrets: with github.token_file set it queues each commit status in
// queues/status, for dh-route to set, and when one of the deployment's
// [notify] targets wants a run's outcome, a run notice, for dh-route to
// send (docs/route.md, "Notifications"). The
// steps' secrets come from the deployment's environment_file, which must
// be the worker's user's own, mode 0600. sudoers prints the exact sudo
// rules a self deployment needs on a host without systemd.
//
// Exit status follows sysexits(3): 0 ok, 1 the run (deploy, rollback,
// replay) failed or was refused, 64 usage or an unknown deployment, 65 bad
// entry, 69 a step's program is missing or nothing to roll back to or
// show, 74 I/O error (or the deployment's queue directory missing: no
// stage creates one), 75 temporary failure (database or network down,
// queue locked), 77 no permission (a queue not as installed), 78 bad
// configuration.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"runtime/debug"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/deploy"
	"github.com/dh-deployer/dh-deployer/pkg/follow"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/ident"
	"github.com/dh-deployer/dh-deployer/pkg/pause"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/setup"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/termsafe"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-deploy",
	Summary: "check out, build and record one deployment's pushes",
	Commands: []*cli.Command{
		{Name: "run", Example: "dh-deploy run api --once", Args: "NAME", MinArgs: 1, MaxArgs: 1, Flags: []string{"once", "wait"},
			Summary: "work the deployment's queue until SIGTERM", Run: run},
		{Name: "replay", Example: "dh-deploy replay /var/lib/dh-deployer/queues/api/failed/1733472000000000000-42.json", Fails: "the run failed or was refused", Args: "FILE", MinArgs: 1, MaxArgs: 1, Summary: "handle one entry in the foreground", Run: replay},
		{Name: "deploy", Example: "dh-deploy deploy api --ref refs/heads/main --commit 3f2a9c0e1b7d4a6f8e2c5b9d0a1f3e7c6b4d2a80", Fails: "the run failed or was refused", Args: "NAME", MinArgs: 1, MaxArgs: 1, Flags: []string{"commit", "ref", "force"},
			Summary: "deploy now, by hand: the tip of the ref, or a given commit on it", Run: manual},
		{Name: "rollback", Example: "dh-deploy rollback api --to 41", Fails: "the run failed or was refused", Args: "NAME", MinArgs: 1, MaxArgs: 1, Flags: []string{"to", "force"},
			Summary: "make the commit before the live one live again; repeated, walk further back", Run: rollback},
		{Name: "pause", Example: "dh-deploy pause api --reason \"database upgrade\"", Args: "NAME|--all", MaxArgs: 1, Flags: []string{"all", "reason"},
			Summary: "hold the deployment's queue (or every one) until resume", Run: pauseCmd},
		{Name: "resume", Example: "dh-deploy resume --all", Args: "NAME|--all", MaxArgs: 1, Flags: []string{"all"}, Summary: "end a pause", Run: resumeCmd},
		{Name: "history", Example: "dh-deploy history api -n 50", Args: "NAME", MinArgs: 1, MaxArgs: 1, Flags: []string{"limit", "before", "all", "json"},
			Summary: "print the deployment's runs, newest first", Run: history},
		{Name: "logs", Example: "dh-deploy logs api --follow", Args: "NAME [RUN]", MinArgs: 1, MaxArgs: 2, Flags: []string{"follow"},
			Summary: "print a run's log (default: the newest run); --follow streams it until the run ends", Run: logs},
		{Name: "add", Example: "dh-deploy add api --repository ducompsoc/durhack --branch main --path /srv/api --steps '[[\"make\"]]'", Args: "NAME", MinArgs: 1, MaxArgs: 1, Flags: []string{"repository", "branch", "path", "clone-url", "steps", "user", "host"},
			Summary: "as root: add a deployment end to end (config, user, role, queue, unit, git access)", Run: add},
		{Name: "sudoers", Args: "NAME", MinArgs: 1, MaxArgs: 1,
			Summary: "print the exact sudo rules of self deployment NAME (for dh-deployer-acl --sudo)", Run: sudoers},
	},
	DefineFlags: func(fs *pflag.FlagSet) {
		fs.Bool("once", false, "drain the queue, then exit")
		fs.Bool("wait", false, "wait for another worker of the queue to stop instead of exiting")
		fs.String("commit", "", "the commit `SHA` to deploy (it must be on the ref)")
		fs.String("to", "", "rollback: the succeeded `RUN|COMMIT` to go back to (default: the one before the live one)")
		fs.String("ref", "", "the `REF` to deploy or verify against, refs/heads/X or refs/tags/X (default: the first branch followed)")
		fs.IntP("limit", "n", 20, "how many runs to print, `N` (0: all, as --all)")
		fs.Int64("before", 0, "print the runs older than run `RUN` (the next page)")
		fs.Bool("json", false, "print JSON, one run per line")
		fs.BoolP("follow", "f", false, "logs: go on printing the log as it grows until the run ends (its state in the database)")
		fs.Bool("force", false, "deploy even while paused or outside the deploy windows (recorded in the run's note), and rebuild a commit already live")
		fs.Bool("all", false, "every deployment (pause, resume); every run, read a page at a time (history)")
		fs.String("reason", "", "why, for the log, history and status")
		fs.String("repository", "", "add: the GitHub repository, `OWNER/NAME`")
		fs.StringArray("branch", nil, "add: a branch to follow (repeatable; default main)")
		fs.String("path", "", "add: the deployment's directory `DIR` (path = DIR/current, the link to the live release)")
		fs.String("clone-url", "", "add: the `URL` to fetch from (default: GitHub's https URL of the repository)")
		fs.String("steps", "", `add: the build steps, a JSON list of argv lists, e.g. '[["make"],["make","install"]]'`)
		fs.String("user", "", "add: the Unix user to run as (default dh-deploy-NAME, created)")
		fs.String("host", "", "add: the webhook's public host name, for the URL it prints")
	},
}

// WorkerPoll is how often an idle worker looks at its queue directory's
// modification time, besides its wake pipe (queue.Options.Poll).
const WorkerPoll = time.Second

// worker opens everything the deployment name's worker needs; waiting,
// if not nil, waits for the database (see store.OpenWait). A name the
// configuration lacks is a usage error (64, config.Lookup), found before
// the database is needed, or bad data (65) when it comes from an entry
// (replay).
func worker(ctx context.Context, env *cli.Env, name string, wait bool, waiting func(error, time.Duration), user string) (*deploy.Worker, func(), error) {
	cfg, _, err := lookup(env, name)
	if err != nil {
		return nil, nil, err
	}
	// No idle connection: a host may run hundreds of workers, idle
	// most of the time (docs/deploy.md, "Many deployments on one host").
	st, err := store.OpenWait(ctx, cfg.DatabaseURL, waiting, store.NoIdle())
	if err != nil {
		return nil, nil, err
	}
	w, err := deploy.New(cfg, name, st, deploy.Options{Logger: env.Logger, Getenv: env.Getenv, Stderr: env.Stderr,
		Wait: wait, Version: cli.VersionString(), User: user})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return w, func() { w.Close(); st.Close() }, nil
}

// lookup loads the configuration and finds the deployment name in it
// (config.Lookup), before anything needs the database.
func lookup(env *cli.Env, name string) (*config.Config, *config.Deployment, error) {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return nil, nil, err
	}
	d, err := cfg.Lookup(name)
	return cfg, d, err
}

// unixUser is the person behind a command by hand, for the run's
// triggered_by: the sudo caller (SUDO_USER), else the name of the uid.
func unixUser(env *cli.Env) string {
	if u := env.Getenv("SUDO_USER"); u != "" {
		return u
	}
	uid := strconv.Itoa(os.Getuid())
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return "uid " + uid
}

func run(ctx context.Context, env *cli.Env, args []string) error {
	once, _ := env.Flags.GetBool("once")
	wait, _ := env.Flags.GetBool("wait")
	hup, stop := env.Hangups()
	defer stop()
	w, done, err := worker(ctx, env, args[0], !once, env.WaitForDatabase(!once), "")
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	defer done()
	c, err := w.Queue().Lock(ctx, wait)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := w.Recover(ctx); err != nil {
		return err
	}
	hup.Reload(ctx, w.Config(), w.SetConfig)
	env.Logger.Info("deploying", "deployment", args[0], "queue", w.Queue().Dir(), "once", once)
	defer env.Ready("deploying " + args[0] + " from " + w.Queue().Dir())()
	// What starting took (the whole configuration parsed, the database
	// checked) and what each batch took (git's output, the entries) is
	// garbage once it is done: give its pages back before waiting, for a
	// host runs hundreds of workers that wait most of the time.
	debug.FreeOSMemory()
	handle := func(ctx context.Context, es []*queue.Entry) []error {
		defer debug.FreeOSMemory()
		return w.HandleBatch(ctx, es)
	}
	// The queue's wake pipe and a look at its directory every Poll, not
	// fsnotify: no inotify instance per worker (queue.WakeFile).
	return c.RunBatch(ctx, handle, queue.Options{Once: once, Writers: hup.Writers(args[0]), Logger: env.Logger, Poll: WorkerPoll})
}

func replay(ctx context.Context, env *cli.Env, args []string) error {
	data, err := os.ReadFile(args[0])
	if err != nil {
		return sysexits.New(sysexits.DataErr, fmt.Errorf("replay: %w", err))
	}
	var head struct {
		Deployment string `json:"deployment"`
	}
	if err := json.Unmarshal(data, &head); err != nil || head.Deployment == "" {
		return sysexits.Errorf(sysexits.DataErr, "replay %s: not a github-event entry of a deployment queue", args[0])
	}
	w, done, err := worker(ctx, env, head.Deployment, false, nil, unixUser(env))
	if errors.Is(err, config.ErrNoDeployment) {
		return sysexits.New(sysexits.DataErr, fmt.Errorf("replay %s: %w", args[0], err))
	}
	if err != nil {
		return err
	}
	defer done()
	return handOut(queue.Replay(ctx, args[0], w.Replay))
}

func manual(ctx context.Context, env *cli.Env, args []string) error {
	commit, _ := env.Flags.GetString("commit")
	ref, _ := env.Flags.GetString("ref")
	w, done, err := worker(ctx, env, args[0], false, nil, unixUser(env))
	if err != nil {
		return err
	}
	defer done()
	if commit != "" {
		if _, err := ident.ParseCommit(commit); err != nil {
			return sysexits.New(sysexits.Usage, err)
		}
	}
	if ref == "" {
		if ref, err = deploy.DefaultRef(w.Deployment()); err != nil {
			return err
		}
	} else if _, err := ident.ParseRef(ref); err != nil {
		return sysexits.New(sysexits.Usage, err)
	}
	force, _ := env.Flags.GetBool("force")
	req := deploy.Request{Delivery: deploy.ManualID(deploy.TriggerManual), Trigger: deploy.TriggerManual,
		Ref: ref, Commit: commit, AllowOlder: true, Force: force}
	r, err := w.Deploy(ctx, req)
	return report(env, r, err)
}

func rollback(ctx context.Context, env *cli.Env, args []string) error {
	w, done, err := worker(ctx, env, args[0], false, nil, unixUser(env))
	if err != nil {
		return err
	}
	defer done()
	force, _ := env.Flags.GetBool("force")
	to, _ := env.Flags.GetString("to")
	r, err := w.Rollback(ctx, deploy.RollbackOptions{Force: force, To: to})
	return report(env, r, err)
}

// report prints how a run by hand ended.
func report(env *cli.Env, r store.Run, err error) error {
	if r.ID != 0 {
		fmt.Fprintf(env.Stdout, "run %d: %s %s at %s\n", r.ID, r.State, r.Deployment, r.Commit)
	}
	if errors.Is(err, deploy.ErrRefused) {
		return sysexits.New(sysexits.Failure, err)
	}
	return handOut(err)
}

// handOut gives a failed run by hand exit status 1, whatever failed
// inside it (a fetch that would be retried, a write that would stop the
// worker: the run is over all the same); a typed error keeps its status
// (a step's program that is missing: 69).
func handOut(err error) error {
	if errors.Is(err, deploy.ErrFailed) && !cli.Typed(err) {
		return sysexits.New(sysexits.Failure, err)
	}
	return err
}

func history(ctx context.Context, env *cli.Env, args []string) error {
	limit, _ := env.Flags.GetInt("limit")
	before, _ := env.Flags.GetInt64("before")
	all, _ := env.Flags.GetBool("all")
	asJSON, _ := env.Flags.GetBool("json")
	if limit < 0 || before < 0 {
		return sysexits.Errorf(sysexits.Usage, "-n and --before take a number from 0")
	}
	cfg, d, err := lookup(env, args[0])
	if err != nil {
		return err
	}
	st, err := store.OpenCurrent(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	// Every run is read a page at a time and printed as it comes, in the
	// same memory however long the history; a page is one indexed query.
	each := func(fn func(store.Run) error) error {
		if all || limit == 0 {
			return st.EachRun(ctx, args[0], before, fn)
		}
		runs, err := st.RunsBefore(ctx, args[0], before, limit)
		for _, r := range runs {
			if err == nil {
				err = fn(r)
			}
		}
		return err
	}
	if asJSON {
		enc := json.NewEncoder(env.Stdout)
		return each(func(r store.Run) error { return enc.Encode(r) })
	}
	if p := pause.Get(cfg, args[0]); p != nil {
		fmt.Fprintf(env.Stdout, "%s\n\n", p)
	} else if in, next := d.InWindow(time.Now()); !in {
		fmt.Fprintf(env.Stdout, "outside the deploy windows %q until %s\n\n", d.Windows, next.Format(time.RFC3339))
	}
	t := newHistoryTable(env.Stdout)
	if err := each(t.add); err != nil {
		return err
	}
	return t.flush()
}

// historyTable writes runs as a table, aligned a block of
// store.EachRunPage rows at a time, so that it holds no more than that.
type historyTable struct {
	w    *tabwriter.Writer
	rows int
}

func newHistoryTable(out io.Writer) *historyTable {
	t := &historyTable{w: tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)}
	fmt.Fprintln(t.w, "RUN\tQUEUED\tTRIGGER\tBY\tSTATE\tCOMMIT\tPREVIOUS\tTOOK\tSTEP\tEXIT\tERROR / NOTE")
	return t
}

func (t *historyTable) add(r store.Run) error {
	took := "-"
	if !r.FinishedAt.IsZero() && !r.StartedAt.IsZero() {
		took = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
	}
	fmt.Fprintf(t.w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.QueuedAt.UTC().Format(time.RFC3339),
		r.Trigger, cell.Dash(r.TriggeredBy), r.State, cell.ShortSHA(r.Commit), cell.ShortSHA(r.Previous), took, cell.Num(r.FailedStep), cell.Num(r.ExitCode), cell.Text(r.Error+" "+r.Note))
	if t.rows++; t.rows%store.EachRunPage == 0 {
		return t.flush()
	}
	return nil
}

func (t *historyTable) flush() error { return t.w.Flush() }

func logs(ctx context.Context, env *cli.Env, args []string) error {
	cfg, d, err := lookup(env, args[0])
	if err != nil {
		return err
	}
	var id int64
	if len(args) == 2 {
		if id, err = strconv.ParseInt(args[1], 10, 64); err != nil {
			return sysexits.Errorf(sysexits.Usage, "RUN must be a run number, not %q", args[1])
		}
	}
	st, err := store.OpenCurrent(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	var r store.Run
	if len(args) == 2 {
		r, err = st.GetRun(ctx, args[0], id)
	} else {
		var runs []store.Run
		runs, err = st.ListRuns(ctx, args[0], 1)
		if err == nil && len(runs) == 0 {
			err = sysexits.Errorf(sysexits.Unavailable, "%s has no runs", args[0])
		}
		if err == nil {
			r = runs[0]
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return sysexits.New(sysexits.Unavailable, err)
	}
	if err != nil {
		return err
	}
	// Only a regular file directly in the deployment's log directory
	// (config.OpenRunLog: no symlink out of it, no FIFO), and shown
	// defused (termsafe): a build chose what it says.
	f, err := config.OpenRunLog(cfg.StateDir, args[0], r.LogPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sysexits.Errorf(sysexits.Unavailable, "run %d of %s: its log is gone (logs older than the last %d runs are deleted)", r.ID, args[0], deploy.KeepLogs)
	case err != nil:
		return sysexits.Errorf(sysexits.Unavailable, "run %d of %s: %v", r.ID, args[0], err)
	}
	defer f.Close()
	out := termsafe.NewWriter(env.Stdout)
	if followLog, _ := env.Flags.GetBool("follow"); followLog {
		// Until the run's state is final: an interrupted run's worker
		// runs its entry again, as a new run with a log of its own. A run
		// whose worker died stays "running" until the worker starts
		// again: Overdue ends the wait for it.
		ended := func(ctx context.Context) (bool, error) {
			now, err := st.GetRun(ctx, args[0], r.ID)
			if err != nil {
				return false, err
			}
			if err := now.Overdue(d.Timeout, time.Now()); err != nil {
				return false, sysexits.New(sysexits.TempFail, err)
			}
			return now.Ended(), nil
		}
		err = follow.Copy(ctx, out, f, ended, follow.Options{})
		if ctx.Err() != nil {
			err = nil // interrupted by the user
		}
	} else {
		_, err = io.Copy(out, f)
	}
	return cmp.Or(err, out.Flush())
}

// pauseTarget reads the deployment pause and resume name: NAME, or ""
// for --all.
func pauseTarget(env *cli.Env, args []string) (*config.Config, string, error) {
	all, _ := env.Flags.GetBool("all")
	cfg, err := config.Load(env.Config)
	if err != nil {
		return nil, "", err
	}
	switch {
	case all && len(args) == 0:
		return cfg, "", nil
	case !all && len(args) == 1:
		if _, err := cfg.Lookup(args[0]); err != nil {
			return nil, "", err
		}
		return cfg, args[0], nil
	}
	return nil, "", sysexits.Errorf(sysexits.Usage, "name one deployment, or pass --all")
}

func pauseCmd(ctx context.Context, env *cli.Env, args []string) error {
	cfg, name, err := pauseTarget(env, args)
	if err != nil {
		return err
	}
	reason, _ := env.Flags.GetString("reason")
	p := pause.Pause{Deployment: name, Reason: reason, By: env.Getenv("SUDO_USER"), Since: time.Now()}
	if p.By == "" {
		p.By = env.Getenv("USER")
	}
	if err := pause.Set(cfg, p); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, p.String())
	return nil
}

func resumeCmd(ctx context.Context, env *cli.Env, args []string) error {
	cfg, name, err := pauseTarget(env, args)
	if err != nil {
		return err
	}
	if err := pause.Resume(cfg, name); err != nil {
		return err
	}
	if name == "" {
		name = "all deployments"
	}
	fmt.Fprintln(env.Stdout, "resumed", name)
	return nil
}

func add(ctx context.Context, env *cli.Env, args []string) error {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	d := setup.Deployment{Name: args[0]}
	d.Repository, _ = env.Flags.GetString("repository")
	d.Branches, _ = env.Flags.GetStringArray("branch")
	d.Path, _ = env.Flags.GetString("path")
	d.CloneURL, _ = env.Flags.GetString("clone-url")
	d.User, _ = env.Flags.GetString("user")
	d.Host, _ = env.Flags.GetString("host")
	if d.Repository == "" || d.Path == "" {
		return sysexits.Errorf(sysexits.Usage, "add: --repository and --path are required")
	}
	if len(d.Branches) == 0 {
		d.Branches = []string{"main"}
	}
	if steps, _ := env.Flags.GetString("steps"); steps != "" {
		if err := json.Unmarshal([]byte(steps), &d.Steps); err != nil {
			return hint.With(sysexits.Errorf(sysexits.Usage, "add: --steps: %v", err), `a JSON list of argv lists: '[["make"],["make","install"]]'`)
		}
	}
	return setup.AddDeployment(ctx, &setup.Runner{Out: env.Stdout}, cfg, d)
}

// sudoers prints the sudoers(5) drop-in that allows the self deployment's
// user exactly its sudo commands (config.Self.SudoRules); dh-deployer-acl
// deployment NAME USER --self --sudo installs it.
func sudoers(_ context.Context, env *cli.Env, args []string) error {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	d, ok := cfg.Deployment(args[0])
	if !ok || d.Kind != config.KindSelf {
		return sysexits.Errorf(sysexits.Usage, "no deployment %q of kind self in %s", args[0], cfg.File)
	}
	rules, err := d.Self.SudoRules(d.RunsAs())
	if err != nil {
		return sysexits.Errorf(sysexits.Config, "deployments.%s.self: %w", d.Name, err)
	}
	fmt.Fprintf(env.Stdout, "# /etc/sudoers.d/dh-deploy-%s: the self deployment %s may run exactly these as root\n", d.Name, d.Name)
	fmt.Fprintf(env.Stdout, "# (made by dh-deploy sudoers %s from %s; no wildcards)\n", d.Name, cfg.File)
	for _, r := range rules {
		fmt.Fprintln(env.Stdout, r)
	}
	return nil
}
