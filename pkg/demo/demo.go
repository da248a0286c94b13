// Package demo runs dh-deployer's main job end to end on a throwaway
// setup, for `make demo` (cmd/dh-demo), its test and BenchmarkPushToStep:
// a private PostgreSQL (pkg/pgtemp), a bare git repository holding a tiny
// app, a configuration with one deployment "demo" of it, and the real
// dh-receive, dh-route and dh-deploy as child processes. Run pushes a
// commit, posts a signed push webhook to dh-receive over HTTP, waits for
// dh-deploy to record a finished run of that delivery, and shows the
// history and the deployed files.
//
// Everything listens on 127.0.0.1 or a unix socket and every wait is
// bounded. Run stops every process it started (SIGTERM, then waits) and
// removes its directory unless Options.Keep. If the process running the
// demo dies, the kernel sends the daemons SIGTERM and PostgreSQL SIGQUIT
// (Pdeathsig); only the directory is left.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/pgtemp"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
)

// KeepEnv is the environment variable with which cmd/dh-demo keeps the
// demo's directory ("1").
const KeepEnv = "DH_DEMO_KEEP"

// Deployment is the name of the demo's deployment; Repository is the
// repository it follows, as payloads name it.
const (
	Deployment = "demo"
	Repository = "demo/app"
)

// IndexHTML is the app's page; the build step copies it to
// public/index.html.
const IndexHTML = "<!doctype html>\n<title>dh-deployer demo</title>\n<h1>Hello from dh-deployer</h1>\n"

// DefaultSteps is the app's build: a copy and a timestamp.
var DefaultSteps = [][]string{{"sh", "-c", "mkdir -p public && cp index.html public/ && date -u > public/built-at"}}

// Options tune Run.
type Options struct {
	// BinDir holds dh-receive, dh-route and dh-deploy (required).
	BinDir string
	// Dir is the demo's directory, created if missing; "" means a new
	// /tmp/dh-demo.* directory. Its path must be short: PostgreSQL's
	// socket lives below it.
	Dir string
	// Keep keeps Dir at the end instead of removing it. The processes are
	// stopped all the same.
	Keep bool
	// Steps are the deployment's build steps (default DefaultSteps).
	Steps [][]string
	// Timeout bounds the wait for the deployment (default 60 s).
	Timeout time.Duration
	// Out receives the step-by-step report (default: none).
	Out io.Writer
	// Config is more TOML appended to the configuration, e.g. the [nginx]
	// and [cert] tables BenchmarkDaemons needs (default: none).
	Config string
}

// Layout of the demo's directory.
const (
	configFile = "config.toml"
	secretFile = "webhook-secret"
	remoteDir  = "app.git" // the bare repository dh-deploy fetches from
	workDir    = "work"    // the clone that makes the commits
	siteDir    = "site"    // the deployment's checkout
	logDir     = "logs"    // the daemons' stderr
)

// Time limits.
const (
	cmdTimeout   = 30 * time.Second // one git or dh-* command
	readyTimeout = 10 * time.Second // dh-receive answering
	stopTimeout  = 15 * time.Second // a daemon exiting after SIGTERM
	pollEvery    = 50 * time.Millisecond
)

// Run runs the demo; see the package documentation. Its report goes to
// opts.Out; an error carries the end of the daemons' logs.
func Run(ctx context.Context, opts Options) (err error) {
	r, err := setup(ctx, opts)
	if r != nil {
		defer func() { err = errors.Join(err, r.close()) }()
	}
	if err != nil {
		return err
	}
	var sha, delivery string
	var run historyRun
	steps := []struct {
		what string
		do   func() (string, error)
	}{
		{"pushing a commit to main", func() (string, error) {
			var err error
			sha, err = r.push(map[string]string{"index.html": IndexHTML})
			return cell.ShortSHA(sha), err
		}},
		{"posting a signed push webhook to dh-receive", func() (string, error) {
			var err error
			delivery, err = r.post(ctx, sha)
			return "202 Accepted, delivery " + delivery, err
		}},
		{"waiting for dh-route and dh-deploy to deploy it", func() (string, error) {
			var err error
			run, err = r.waitRun(ctx, delivery)
			took := run.FinishedAt.Sub(run.StartedAt).Round(time.Millisecond)
			return fmt.Sprintf("run %d %s, the run took %v", run.ID, run.State, took), err
		}},
	}
	for _, s := range steps {
		if err := r.step(s.what, s.do); err != nil {
			return err
		}
	}
	return r.show(ctx)
}

// rig is one demo setup: its directory, PostgreSQL, repositories,
// configuration and daemons.
type rig struct {
	opts    Options
	out     io.Writer
	dir     string
	git     string // the git program
	pg      *pgtemp.Cluster
	config  string
	secret  []byte
	url     string // dh-receive's webhook endpoint
	env     []string
	daemons []*daemon
	client  *http.Client
	steps   int    // report lines so far
	before  string // the last commit pushed
}

// setup prepares the rig and starts the daemons. When it returns a rig,
// the caller must close it, error or not.
func setup(ctx context.Context, opts Options) (*rig, error) {
	r, err := prepare(ctx, opts)
	if err != nil {
		return r, err
	}
	err = r.step("starting dh-route run, dh-deploy run demo and dh-receive", func() (string, error) {
		return "webhook at " + r.url + ", logs in " + logDir + "/", r.startDaemons(ctx)
	})
	return r, err
}

// prepare makes the directory, starts PostgreSQL, makes the repositories
// and the configuration and applies the migrations; no daemon runs yet.
// When it returns a rig, the caller must close it, error or not.
func prepare(ctx context.Context, opts Options) (*rig, error) {
	if opts.BinDir == "" {
		return nil, errors.New("demo: no directory of binaries given")
	}
	bin, err := filepath.Abs(opts.BinDir)
	if err != nil {
		return nil, err
	}
	opts.BinDir = bin
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Steps == nil {
		opts.Steps = DefaultSteps
	}
	r := &rig{opts: opts, out: opts.Out, dir: opts.Dir, client: &http.Client{Timeout: 10 * time.Second}}
	if r.out == nil {
		r.out = io.Discard
	}
	for _, name := range []string{"dh-receive", "dh-route", "dh-deploy"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, name)); err != nil {
			return nil, fmt.Errorf("demo: %w (run make build)", err)
		}
	}
	if r.git, err = progpath.Find("git"); err != nil {
		return nil, err
	}
	if r.dir == "" {
		r.dir, err = os.MkdirTemp("/tmp", "dh-demo.")
	} else {
		err = os.MkdirAll(r.dir, 0o755)
	}
	if err != nil {
		return nil, err
	}
	// PostgreSQL runs as another user when we are root: it must reach its
	// directory below this one.
	if err := os.Chmod(r.dir, 0o755); err != nil {
		return r, err
	}
	fmt.Fprintf(r.out, "dh-deployer demo in %s\n", r.dir)
	r.env = childEnv(r.dir)

	var dbURL string
	if err := r.step("starting PostgreSQL", func() (string, error) {
		var err error
		if r.pg, err = pgtemp.New(pgtemp.Options{Parent: r.dir}); err != nil {
			return "", err
		}
		dbURL, err = pgtemp.CreateDatabase(r.pg.URL("postgres"), "dh_deployer")
		return "socket in " + rel(r.dir, r.pg.Dir()), err
	}); err != nil {
		return r, err
	}
	if err := r.step("making a bare git repository with a tiny app", func() (string, error) {
		return remoteDir, r.makeRepos(ctx)
	}); err != nil {
		return r, err
	}
	if err := r.step("writing the configuration and a webhook secret", func() (string, error) {
		return configFile, r.writeConfig(dbURL)
	}); err != nil {
		return r, err
	}
	err = r.step("dh-route migrate", func() (string, error) {
		out, err := r.tool(ctx, "dh-route", "migrate")
		return strings.TrimSpace(out), err
	})
	return r, err
}

// step reports one numbered step: what, then "ok" with the detail and the
// time taken, or "FAILED".
func (r *rig) step(what string, f func() (detail string, err error)) error {
	r.steps++
	fmt.Fprintf(r.out, "%2d. %s ... ", r.steps, what)
	start := time.Now()
	detail, err := f()
	if err != nil {
		fmt.Fprintln(r.out, "FAILED")
		return fmt.Errorf("%s: %w", what, err)
	}
	if detail != "" {
		detail = ", " + detail
	}
	fmt.Fprintf(r.out, "ok (%v%s)\n", time.Since(start).Round(time.Millisecond), detail)
	return nil
}

// childEnv is the environment of every command the demo runs: the
// caller's, without what would point the tools elsewhere, with HOME in
// the demo's directory (no ~/.gitconfig) and a fixed git identity.
func childEnv(dir string) []string {
	drop := []string{"DH_CONFIG=", "DH_DATABASE_URL=", "JOURNAL_STREAM=", "NOTIFY_SOCKET=", "LISTEN_FDS=",
		"LISTEN_PID=", "LISTEN_FDNAMES=", "CREDENTIALS_DIRECTORY=", "HOME=", "GIT_"}
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, p := range drop {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=dh-demo", "GIT_AUTHOR_EMAIL=dh-demo@localhost",
		"GIT_COMMITTER_NAME=dh-demo", "GIT_COMMITTER_EMAIL=dh-demo@localhost")
}

// command runs a program to completion and returns its output.
func (r *rig) command(ctx context.Context, dir, path string, args ...string) (string, error) {
	res, err := sysexec.Run(ctx, sysexec.Cmd{Path: path, Args: args, Dir: dir, Env: r.env, Timeout: cmdTimeout})
	if err != nil {
		return "", fmt.Errorf("%w\n%s", err, res.Output)
	}
	return string(res.Output), nil
}

// tool runs one of the dh-* tools with the demo's configuration.
func (r *rig) tool(ctx context.Context, name string, args ...string) (string, error) {
	return r.command(ctx, "", filepath.Join(r.opts.BinDir, name), append([]string{"-c", r.config}, args...)...)
}

// makeRepos makes the bare repository and the clone that commits to it.
func (r *rig) makeRepos(ctx context.Context) error {
	work := filepath.Join(r.dir, workDir)
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", filepath.Join(r.dir, remoteDir)},
		{"init", "-q", "-b", "main", work},
		{"-C", work, "remote", "add", "origin", filepath.Join(r.dir, remoteDir)},
	} {
		if _, err := r.command(ctx, "", r.git, args...); err != nil {
			return err
		}
	}
	return nil
}

// push writes the files into the clone, commits them and pushes the commit
// to main; it returns the commit.
func (r *rig) push(files map[string]string) (string, error) {
	ctx := context.Background()
	work := filepath.Join(r.dir, workDir)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	for _, args := range [][]string{
		{"add", "-A"},
		{"commit", "-q", "--allow-empty", "-m", fmt.Sprintf("change %d", time.Now().UnixNano())},
		{"push", "-q", "origin", "HEAD:refs/heads/main"},
	} {
		if _, err := r.command(ctx, work, r.git, args...); err != nil {
			return "", err
		}
	}
	out, err := r.command(ctx, work, r.git, "rev-parse", "HEAD")
	return strings.TrimSpace(out), err
}

// writeConfig writes the webhook secret, the configuration (dh-receive
// on a free port of 127.0.0.1) and the queue directories.
func (r *rig) writeConfig(dbURL string) error {
	key := make([]byte, 32)
	rand.Read(key)
	r.secret = []byte(base64.StdEncoding.EncodeToString(key))
	if err := os.WriteFile(filepath.Join(r.dir, secretFile), append(r.secret, '\n'), 0o600); err != nil {
		return err
	}
	addr, err := freePort()
	if err != nil {
		return err
	}
	r.url = "http://" + addr + "/github-webhook"
	var steps []string
	for _, s := range r.opts.Steps {
		steps = append(steps, config.TOMLArray(s))
	}
	doc := fmt.Sprintf(`# dh-deployer demo configuration (pkg/demo)
queue_dir    = %q
queue_dir_throwaway = true # the demo's queues die with it (and /tmp may be a tmpfs)
state_dir    = %q
database_url = %q

[receive]
listen       = %q
secret_files = [%q]

[deployments.%s]
repository = %q
branches   = ["main"]
path       = %q
clone_url  = %q
steps      = [%s]
%s`, filepath.Join(r.dir, "queues"), filepath.Join(r.dir, "state"), dbURL, addr, filepath.Join(r.dir, secretFile),
		Deployment, Repository, filepath.Join(r.dir, siteDir), filepath.Join(r.dir, remoteDir), strings.Join(steps, ", "),
		r.opts.Config)
	r.config = filepath.Join(r.dir, configFile)
	if err := os.WriteFile(r.config, []byte(doc), 0o644); err != nil {
		return err
	}
	// What an operator creates at install time: no stage makes its own
	// queue directory.
	for _, q := range []string{"main", "status", Deployment} {
		if err := queue.Open(filepath.Join(r.dir, "queues", q)).Init(); err != nil {
			return err
		}
	}
	return nil
}

// freePort returns a 127.0.0.1 address whose port was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// A daemon is a dh-* tool running as a child process.
type daemon struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited; then err is set
	err  error
}

// startDaemons starts the consumers, then dh-receive, and waits until
// dh-receive answers HTTP.
func (r *rig) startDaemons(ctx context.Context) error {
	for _, argv := range [][]string{{"dh-route", "run"}, {"dh-deploy", "run", Deployment}, {"dh-receive", "serve"}} {
		if _, err := r.start(nil, argv[0], argv[1:]...); err != nil {
			return err
		}
	}
	health := strings.TrimSuffix(r.url, "/github-webhook") + "/healthz"
	deadline := time.Now().Add(readyTimeout)
	for {
		if resp, err := r.client.Get(health); err == nil {
			resp.Body.Close()
			return nil
		}
		if err := r.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dh-receive does not answer on %s after %v%s", health, readyTimeout, r.logs())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// start starts a daemon, with env added to the demo's environment and its
// stderr (and stdout) in logs/NAME.log. It runs in its own process group,
// so that a Ctrl-C at the terminal reaches only the demo, which stops the
// daemons in order.
func (r *rig) start(env []string, name string, args ...string) (*daemon, error) {
	d := &daemon{name: name, log: filepath.Join(r.dir, logDir, name+".log"), done: make(chan struct{})}
	if err := os.MkdirAll(filepath.Join(r.dir, logDir), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(d.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	d.cmd = exec.Command(filepath.Join(r.opts.BinDir, name), append([]string{"-c", r.config}, args...)...)
	d.cmd.Env = append(slices.Clip(r.env), env...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	r.daemons = append(r.daemons, d)
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// exited returns an error if a daemon has exited.
func (r *rig) exited() error {
	for _, d := range r.daemons {
		select {
		case <-d.done:
			return fmt.Errorf("%s exited: %v%s", d.name, d.err, r.logs())
		default:
		}
	}
	return nil
}

// logs returns the end of each daemon's log, for error messages.
func (r *rig) logs() string {
	var b strings.Builder
	for _, d := range r.daemons {
		fmt.Fprintf(&b, "\n--- end of %s ---\n%s", d.log, tail(d.log, 12))
	}
	if !r.opts.Keep {
		fmt.Fprintf(&b, "\n(%s=1 keeps %s for a look)", KeepEnv, r.dir)
	}
	return b.String()
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.SplitAfter(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "") + "\n"
}

// post delivers a signed push webhook of sha to dh-receive and returns its
// delivery GUID.
func (r *rig) post(ctx context.Context, sha string) (string, error) {
	before := r.before
	if before == "" {
		before = github.ZeroSHA
	}
	payload, err := PushPayload(Repository, "refs/heads/main", before, sha)
	if err != nil {
		return "", err
	}
	delivery := NewGUID()
	status, body, err := Deliver(ctx, r.client, r.url, r.secret, "push", delivery, payload)
	if err != nil {
		return "", err
	}
	if status != http.StatusAccepted {
		return "", fmt.Errorf("dh-receive answered %d %s: %s%s", status, http.StatusText(status), bytes.TrimSpace(body), r.logs())
	}
	r.before = sha
	return delivery, nil
}

// PushPayload returns the payload of a push of after to ref of repository
// (owner/name), with the fields dh-route and dh-deploy read; before is the
// previous commit, github.ZeroSHA for a new branch.
func PushPayload(repository, ref, before, after string) ([]byte, error) {
	name := repository[strings.LastIndexByte(repository, '/')+1:]
	return json.Marshal(map[string]any{
		"ref": ref, "before": before, "after": after,
		"created": before == github.ZeroSHA, "deleted": false, "forced": false,
		"repository":  map[string]any{"full_name": repository, "name": name},
		"pusher":      map[string]any{"name": "dh-demo"},
		"head_commit": map[string]any{"id": after, "message": "demo push"},
	})
}

// Deliver posts payload to dh-receive's webhook url as GitHub does: event
// and delivery in their headers, signed with secret. It returns the status
// and the start of the answer's body; err is a failure to get an answer.
func Deliver(ctx context.Context, client *http.Client, url string, secret []byte, event, delivery string, payload []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(github.HeaderEvent, event)
	req.Header.Set(github.HeaderDelivery, delivery)
	req.Header.Set("X-Hub-Signature-256", github.Sign(payload, secret))
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// NewGUID returns a random (version 4) UUID, as GitHub's delivery ids are.
func NewGUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// historyRun is the part of a line of `dh-deploy history --json` the demo
// reads.
type historyRun struct {
	ID         int64     `json:"id"`
	Delivery   string    `json:"delivery"`
	State      string    `json:"state"`
	Commit     string    `json:"commit"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Error      string    `json:"error"`
}

// waitRun polls `dh-deploy history` until a run of the delivery has
// finished, and returns it; a run that did not succeed is an error.
func (r *rig) waitRun(ctx context.Context, delivery string) (historyRun, error) {
	deadline := time.Now().Add(r.opts.Timeout)
	var lastErr error
	for {
		out, err := r.tool(ctx, "dh-deploy", "history", Deployment, "--json", "-n", "10")
		lastErr = err
		for line := range strings.Lines(out) {
			var run historyRun
			if json.Unmarshal([]byte(line), &run) != nil || run.Delivery != delivery {
				continue
			}
			switch run.State {
			case "succeeded", "unchanged":
				return run, nil
			case "failed", "refused":
				log, _ := r.tool(ctx, "dh-deploy", "logs", Deployment, fmt.Sprint(run.ID))
				return run, fmt.Errorf("run %d %s: %s\n--- dh-deploy logs %s %d ---\n%s%s",
					run.ID, run.State, run.Error, Deployment, run.ID, log, r.logs())
			}
		}
		if err := r.exited(); err != nil {
			return historyRun{}, err
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				lastErr = fmt.Errorf(" (dh-deploy history: %w)", lastErr)
			} else {
				lastErr = errors.New("")
			}
			return historyRun{}, fmt.Errorf("no finished run of delivery %s after %v%v%s", delivery, r.opts.Timeout, lastErr, r.logs())
		}
		select {
		case <-ctx.Done():
			return historyRun{}, ctx.Err()
		case <-time.After(2 * pollEvery):
		}
	}
}

// show prints the history table and the deployed files.
func (r *rig) show(ctx context.Context) error {
	out, err := r.tool(ctx, "dh-deploy", "history", Deployment)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.out, "\n$ dh-deploy -c %s history %s\n%s", r.config, Deployment, out)
	site := filepath.Join(r.dir, siteDir)
	fmt.Fprintf(r.out, "\nDeployed into %s:\n", site)
	for _, name := range []string{"public/index.html", "public/built-at"} {
		b, err := os.ReadFile(filepath.Join(site, name))
		if err != nil {
			return err
		}
		fmt.Fprintf(r.out, "--- %s ---\n%s", name, b)
	}
	fmt.Fprintln(r.out)
	return nil
}

// close stops the daemons (the receiver first, so that nothing new
// arrives), then PostgreSQL, and removes the directory unless Keep.
func (r *rig) close() error {
	var errs []error
	if len(r.daemons) > 0 || r.pg != nil {
		r.step("stopping dh-receive, dh-route, dh-deploy and PostgreSQL", func() (string, error) {
			for i := len(r.daemons) - 1; i >= 0; i-- {
				errs = append(errs, r.daemons[i].stop())
			}
			if r.pg != nil {
				errs = append(errs, r.pg.Stop())
			}
			return "", errors.Join(errs...)
		})
	}
	if r.opts.Keep {
		fmt.Fprintf(r.out, "Kept %s: %s, %s/ (daemon logs), %s/ (the checkout), queues/, state/ (run logs), pg.*/ (PostgreSQL, stopped).\n",
			r.dir, configFile, logDir, siteDir)
	} else {
		if err := os.RemoveAll(r.dir); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(r.out, "Removed %s (%s=1 keeps it).\n", r.dir, KeepEnv)
		}
	}
	return errors.Join(errs...)
}

// stop sends the daemon SIGTERM and waits for it to exit; it must exit 0.
func (d *daemon) stop() error {
	select {
	case <-d.done:
		return fmt.Errorf("%s had exited: %v\n%s", d.name, d.err, tail(d.log, 12))
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%s ignored SIGTERM for %v; killed it\n%s", d.name, stopTimeout, tail(d.log, 12))
	}
	if d.err != nil {
		return fmt.Errorf("%s after SIGTERM: %v\n%s", d.name, d.err, tail(d.log, 12))
	}
	return nil
}

// rel returns path relative to dir, for shorter messages.
func rel(dir, path string) string {
	if p, err := filepath.Rel(dir, path); err == nil {
		return p
	}
	return path
}
