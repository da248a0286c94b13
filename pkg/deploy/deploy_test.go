package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/deploy"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/pause"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// rig is one deployment "app" of repository acme/app, following main, fed
// from a real bare repository, with a real store and real queue dirs.
type rig struct {
	t      testing.TB
	dir    string
	remote string // the bare repository the deployment fetches from
	work   string // a clone that makes the commits
	trace  string // steps append here
	file   string // the configuration
	url    string // the database
	cfg    *config.Config
	st     *store.Store
	n      int
}

// inPlace says whether the tests run with strategy "in-place"
// (DH_TEST_STRATEGY=in-place go test ./pkg/deploy: today's behaviour)
// rather than the default, "releases".
var inPlace = os.Getenv("DH_TEST_STRATEGY") == config.StrategyInPlace

// newRig writes a configuration whose deployment table is
// "[deployments.app]" + the common keys + extra (+ strategy = "in-place"
// with DH_TEST_STRATEGY=in-place, unless extra names a strategy).
func newRig(t testing.TB, extra string) *rig {
	t.Helper()
	if inPlace && !strings.Contains(extra, "strategy") {
		extra += "\nstrategy = \"in-place\"\n"
	}
	testenv.Command(t, "git")
	r := &rig{t: t, dir: t.TempDir(), url: storetest.NewMigrated(t)}
	r.remote = filepath.Join(r.dir, "remote.git")
	r.work = filepath.Join(r.dir, "work")
	r.trace = filepath.Join(r.dir, "trace")
	r.git("", "init", "-q", "--bare", "-b", "main", r.remote)
	r.git("", "init", "-q", "-b", "main", r.work)
	r.git(r.work, "remote", "add", "origin", r.remote)
	r.file = filepath.Join(r.dir, "config.toml")
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

[deployments.app]
repository = "acme/app"
branches = ["main"]
path = %q
clone_url = %q
environment = { TRACE = %q, GREETING = "hello world" }
%s
`, filepath.Join(r.dir, "queues"), filepath.Join(r.dir, "state"), r.url, filepath.Join(r.dir, "checkout"), r.remote, r.trace, extra)
	if err := os.WriteFile(r.file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.cfg, err = config.Load(r.file); err != nil {
		t.Fatalf("config.Load() = %v\n%s", err, doc)
	}
	if r.st, err = store.Open(context.Background(), r.url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	// The deployment's queue, as the install makes it (dh-deployer-acl
	// deployment app): neither the worker nor a run by hand creates it.
	if err := queue.Open(r.cfg.QueuePath("app")).Init(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) git(dir string, args ...string) string {
	r.t.Helper()
	return testenv.Git(r.t, dir, args...)
}

// commit makes a commit with the files (path → content; "" deletes) on
// the work clone's current branch and pushes it to branch.
func (r *rig) commit(branch string, files map[string]string) string {
	r.t.Helper()
	r.n++
	for name, content := range files {
		p := filepath.Join(r.work, name)
		if content == "" {
			os.Remove(p)
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git(r.work, "add", "-A")
	r.git(r.work, "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("change %d", r.n))
	r.git(r.work, "push", "-q", "-f", "origin", "HEAD:refs/heads/"+branch)
	return r.git(r.work, "rev-parse", "HEAD")
}

// enqueue puts a routed push of sha to ref into the deployment's queue.
func (r *rig) enqueue(delivery, ref, sha string) string {
	r.t.Helper()
	payload := fmt.Sprintf(`{"ref":%q,"before":"%040d","after":%q,"repository":{"full_name":"acme/app"},"head_commit":{"id":%q}}`,
		ref, 0, sha, sha)
	ev := event.GitHubEvent{Delivery: delivery, Event: "push", ReceivedAt: time.Now(), Deployment: "app", Payload: []byte(payload)}
	data, err := ev.Encode()
	if err != nil {
		r.t.Fatal(err)
	}
	q := queue.Open(r.cfg.QueuePath("app"))
	if err := q.Init(); err != nil {
		r.t.Fatal(err)
	}
	name, err := q.Publish(data)
	if err != nil {
		r.t.Fatal(err)
	}
	return name
}

func (r *rig) worker() *deploy.Worker {
	r.t.Helper()
	w, err := deploy.New(r.cfg, "app", r.st, deploy.Options{Logger: slog.New(slog.DiscardHandler), Getenv: os.Getenv})
	if err != nil {
		r.t.Fatalf("deploy.New() = %v", err)
	}
	return w
}

// drainAt runs a worker whose clock is now over the queue until it is
// empty (deploy windows read the clock).
func (r *rig) drainAt(now func() time.Time) error {
	r.t.Helper()
	return r.drainWith(deploy.Options{Logger: slog.New(slog.DiscardHandler), Getenv: os.Getenv, Now: now})
}

// drainWith runs a worker made with opts over the queue until it is
// empty, as dh-deploy run does.
func (r *rig) drainWith(opts deploy.Options) error {
	r.t.Helper()
	w, err := deploy.New(r.cfg, "app", r.st, opts)
	if err != nil {
		r.t.Fatal(err)
	}
	defer w.Close()
	c, err := w.Queue().Lock(r.t.Context(), true)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	return c.RunBatch(context.Background(), w.HandleBatch, queue.Options{Once: true})
}

// drain runs the worker over the queue until it is empty.
func (r *rig) drain() error {
	r.t.Helper()
	w := r.worker()
	defer w.Close()
	c, err := w.Queue().Lock(r.t.Context(), true)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	if err := w.Recover(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	return c.RunBatch(context.Background(), w.HandleBatch, queue.Options{Once: true})
}

// runs returns the deployment's runs, oldest first.
func (r *rig) runs() []store.Run {
	r.t.Helper()
	runs, err := r.st.ListRuns(context.Background(), "app", 0)
	if err != nil {
		r.t.Fatal(err)
	}
	slices.Reverse(runs)
	return runs
}

func (r *rig) head() string {
	r.t.Helper()
	return r.git(filepath.Join(r.dir, "checkout"), "rev-parse", "HEAD")
}

func (r *rig) readTrace() string {
	b, _ := os.ReadFile(r.trace)
	return string(b)
}

func (r *rig) failed() []string {
	names, err := queue.Open(r.cfg.QueuePath("app")).Failed()
	if err != nil {
		r.t.Fatal(err)
	}
	return names
}

func states(runs []store.Run) []string {
	var s []string
	for _, r := range runs {
		s = append(s, r.State)
	}
	return s
}

// A push is fetched, checked out at its exact commit, and the steps run in
// order in the checkout with the deployment's environment and DH_*.
func TestPushDeploys(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo one $DH_DEPLOYMENT $DH_REPOSITORY $DH_REF $DH_COMMIT $DH_DELIVERY prev=$DH_PREVIOUS_COMMIT \"$GREETING\" $(cat file.txt) >> $TRACE"], ["./build.sh", "two"]]`)
	first := r.commit("main", map[string]string{"file.txt": "v1", "build.sh": "#!/bin/sh\necho $1 $(pwd) >> \"$TRACE\"\n"})
	r.enqueue("d-1", "refs/heads/main", first)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	checkout := filepath.Join(r.dir, "checkout")
	workDir := checkout // where the steps run
	if !inPlace {
		workDir = filepath.Join(r.dir, "checkout.releases", deploy.ReleaseName(r.runs()[0].ID, first))
	}
	want := fmt.Sprintf("one app acme/app refs/heads/main %s d-1 prev= hello world v1\ntwo %s\n", first, workDir)
	if got := r.readTrace(); got != want {
		t.Errorf("steps wrote %q; want %q", got, want)
	}
	if h := r.head(); h != first {
		t.Errorf("checkout at %s; want %s", h, first)
	}
	second := r.commit("main", map[string]string{"file.txt": "v2"})
	os.WriteFile(filepath.Join(checkout, "file.txt"), []byte("edited by hand"), 0o644)
	r.enqueue("d-2", "refs/heads/main", second)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	if got := r.readTrace(); !strings.Contains(got, "d-2 prev="+first+" hello world v2") {
		t.Errorf("second run's trace %q; want the previous commit and the reset file", got)
	}
	runs := r.runs()
	if len(runs) != 2 || runs[1].State != store.RunSucceeded || runs[1].Commit != second || runs[1].Previous != first ||
		runs[1].Trigger != deploy.TriggerWebhook || runs[1].FinishedAt.IsZero() || *runs[1].ExitCode != 0 {
		t.Fatalf("runs = %+v; want two, the second succeeded at %s after %s", runs, second, first)
	}
	if runs[1].CommitSubject != "change 2" || runs[1].CommitAuthor != "t <t@example.org>" {
		t.Errorf("run's commit %q by %q; want \"change 2\" by \"t <t@example.org>\"", runs[1].CommitSubject, runs[1].CommitAuthor)
	}
	log, err := os.ReadFile(runs[1].LogPath)
	if err != nil || !strings.Contains(string(log), "step 2/2: ./build.sh two") || !strings.Contains(string(log), "succeeded") {
		t.Errorf("run log %s = %q, %v; want the steps and the outcome", runs[1].LogPath, log, err)
	}
	// The same delivery again (dh-route forwards only failed ones, but an
	// operator may replay): already deployed, nothing runs.
	r.enqueue("d-2", "refs/heads/main", second)
	before := r.readTrace()
	if err := r.drain(); err != nil || r.readTrace() != before || len(r.runs()) != 2 {
		t.Errorf("a succeeded delivery again: drain = %v, %d runs, trace grew: %v; want nothing done", err, len(r.runs()), r.readTrace() != before)
	}
}

// A failing step fails the run: later steps do not run, the entry goes to
// failed/, and the next push deploys.
func TestFailingStep(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo one >> $TRACE"], ["sh", "-c", "test ! -e broken || exit 3"], ["sh", "-c", "echo three >> $TRACE"]]`)
	bad := r.commit("main", map[string]string{"broken": "yes"})
	name := r.enqueue("d-1", "refs/heads/main", bad)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	runs := r.runs()
	if len(runs) != 1 || runs[0].State != store.RunFailed || runs[0].FailedStep == nil || *runs[0].FailedStep != 2 ||
		runs[0].ExitCode == nil || *runs[0].ExitCode != 3 {
		t.Fatalf("runs = %+v; want one failed at step 2 with exit 3", runs)
	}
	if got := r.readTrace(); got != "one\n" {
		t.Errorf("trace = %q; want only step one", got)
	}
	if f := r.failed(); len(f) != 1 || f[0] != name {
		t.Errorf("failed/ = %v; want [%s]", f, name)
	}
	good := r.commit("main", map[string]string{"broken": ""})
	r.enqueue("d-2", "refs/heads/main", good)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	if runs := r.runs(); len(runs) != 2 || runs[1].State != store.RunSucceeded || r.head() != good {
		t.Errorf("after a good push: runs %v, head %s; want it deployed", states(runs), r.head())
	}
}

// A step that hangs is killed, with its children, at the step timeout.
func TestStepTimeout(t *testing.T) {
	t.Parallel()
	pidfile := filepath.Join(t.TempDir(), "child.pid")
	r := newRig(t, fmt.Sprintf(`step_timeout = "1s"
steps = [["sh", "-c", "sleep 300 & echo $! > %s; wait"]]`, pidfile))
	r.enqueue("d-1", "refs/heads/main", r.commit("main", nil))
	start := time.Now()
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	runs := r.runs()
	if len(runs) != 1 || runs[0].State != store.RunFailed || !strings.Contains(runs[0].Error, "timed out") {
		t.Fatalf("runs = %+v; want one failed by the timeout", runs)
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("the hanging step took %s to stop", took)
	}
	pid, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("the step did not start its child: %v", err)
	}
	if alive(strings.TrimSpace(string(pid))) {
		t.Errorf("the step's child %s still runs after the timeout", pid)
	}
}

// alive reports whether process pid exists and is not a zombie (our
// containers' pid 1 may not reap orphans).
func alive(pid string) bool {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// A payload naming a commit that is not on the branch is refused and
// recorded; so is an unknown commit; the checkout does not move.
func TestForgedCommitRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo ran >> $TRACE"]]`)
	good := r.commit("main", nil)
	r.enqueue("d-1", "refs/heads/main", good)
	r.git(r.work, "checkout", "-q", "-b", "evil")
	evil := r.commit("evil", map[string]string{"evil": "x"})
	r.enqueue("d-2", "refs/heads/main", evil)
	r.enqueue("d-3", "refs/heads/main", strings.Repeat("ab", 20))
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	runs := r.runs()
	if got := states(runs); !slices.Equal(got, []string{store.RunSucceeded, store.RunRefused, store.RunRefused}) {
		t.Fatalf("runs %v; want succeeded, refused, refused", got)
	}
	if !strings.Contains(runs[1].Error, evil) || !strings.Contains(runs[1].Error, "refs/heads/main") {
		t.Errorf("refusal reason %q; want the commit and the ref named", runs[1].Error)
	}
	if h := r.head(); h != good {
		t.Errorf("checkout at %s; want it left at %s", h, good)
	}
	if got := r.readTrace(); got != "ran\n" {
		t.Errorf("steps ran %q; want once", got)
	}
	if f := r.failed(); len(f) != 0 {
		t.Errorf("failed/ = %v; want refusals to be final, not failures", f)
	}
}

// A stale redelivery (an older commit of the branch) never rolls back; a
// force-push to an unrelated commit is followed; by hand, going back is
// allowed, and rollback returns to the previous successful commit.
func TestNoRollBackButForcePushAndManual(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`)
	c1 := r.commit("main", map[string]string{"a": "1"})
	c2 := r.commit("main", map[string]string{"a": "2"})
	r.enqueue("d-2", "refs/heads/main", c2)
	r.enqueue("d-1", "refs/heads/main", c1) // arrives late: a redelivery
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	if got := states(r.runs()); !slices.Equal(got, []string{store.RunSucceeded, store.RunRefused}) || r.head() != c2 {
		t.Fatalf("runs %v, head %s; want c2 deployed and the stale c1 refused", got, r.head())
	}
	r.git(r.work, "reset", "-q", "--hard", c1)
	c3 := r.commit("main", map[string]string{"a": "3"}) // force-pushed over c2
	r.enqueue("d-3", "refs/heads/main", c3)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	if r.head() != c3 {
		t.Fatalf("after a force-push, head %s; want %s", r.head(), c3)
	}

	w := r.worker()
	defer w.Close()
	ctx := context.Background()
	run, err := w.Deploy(ctx, deploy.Request{Delivery: deploy.ManualID(deploy.TriggerManual), Trigger: deploy.TriggerManual,
		Ref: "refs/heads/main", Commit: c1, AllowOlder: true})
	if err != nil || run.State != store.RunSucceeded || r.head() != c1 {
		t.Fatalf("manual deploy of c1 = %+v, %v, head %s; want c1 deployed", run, err, r.head())
	}
	run, err = w.Rollback(ctx, deploy.RollbackOptions{})
	if err != nil || run.Commit != c3 || run.Trigger != deploy.TriggerRollback || r.head() != c3 {
		t.Fatalf("Rollback() = %+v, %v, head %s; want c3 again", run, err, r.head())
	}
	// A manual deploy without a commit takes the ref's tip.
	run, err = w.Deploy(ctx, deploy.Request{Delivery: deploy.ManualID(deploy.TriggerManual), Trigger: deploy.TriggerManual,
		Ref: "refs/heads/main", AllowOlder: true})
	if err != nil || run.Commit != c3 {
		t.Errorf("manual deploy of the tip = %+v, %v; want %s", run, err, c3)
	}
	// Even by hand, a commit that is not on the ref is refused.
	r.git(r.work, "checkout", "-q", "-b", "side")
	side := r.commit("side", map[string]string{"s": "1"})
	if _, err := w.Deploy(ctx, deploy.Request{Delivery: deploy.ManualID(deploy.TriggerManual), Trigger: deploy.TriggerManual,
		Ref: "refs/heads/main", Commit: side, AllowOlder: true}); !errors.Is(err, deploy.ErrRefused) {
		t.Errorf("manual deploy of a commit not on main = %v; want ErrRefused", err)
	}
}

// Five queued pushes coalesce into one run of the newest; the others are
// recorded superseded by it.
func TestCoalesce(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`)
	var last string
	for i := range 5 {
		last = r.commit("main", map[string]string{"n": fmt.Sprint(i)})
		r.enqueue(fmt.Sprintf("d-%d", i), "refs/heads/main", last)
	}
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	runs := r.runs()
	want := []string{store.RunSuperseded, store.RunSuperseded, store.RunSuperseded, store.RunSuperseded, store.RunSucceeded}
	if got := states(runs); !slices.Equal(got, want) {
		t.Fatalf("runs %v; want %v", got, want)
	}
	for _, run := range runs[:4] {
		if run.SupersededBy != runs[4].ID {
			t.Errorf("run %d superseded_by = %d; want %d", run.ID, run.SupersededBy, runs[4].ID)
		}
	}
	if got := r.readTrace(); got != last+"\n" {
		t.Errorf("steps ran for %q; want only the newest %s", got, last)
	}
}

// With coalesce = false every push deploys in turn.
func TestNoCoalesce(t *testing.T) {
	t.Parallel()
	r := newRig(t, `coalesce = false
steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`)
	for i := range 3 {
		r.enqueue(fmt.Sprintf("d-%d", i), "refs/heads/main", r.commit("main", map[string]string{"n": fmt.Sprint(i)}))
	}
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	if got := states(r.runs()); !slices.Equal(got, []string{store.RunSucceeded, store.RunSucceeded, store.RunSucceeded}) {
		t.Errorf("runs %v; want three succeeded", got)
	}
}

// An nginx-kind deployment checks out and hands the commit to dh-nginx.
func TestNginxKind(t *testing.T) {
	t.Parallel()
	r := newRig(t, `kind = "nginx"
sites = [{ rule = "include", select = ["*"] }]`)
	sha := r.commit("main", map[string]string{"site.conf": "server {}\n"})
	r.enqueue("d-1", "refs/heads/main", sha)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	q := queue.Open(r.cfg.QueuePath(config.NginxQueue))
	names, _ := q.List()
	if len(names) != 1 {
		t.Fatalf("queues/nginx holds %v; want one entry", names)
	}
	data, _ := os.ReadFile(filepath.Join(q.Dir(), names[0]))
	e, err := event.DecodeNginxSites(data)
	runs := r.runs()
	if err != nil || e.Deployment != "app" || e.Commit != sha || e.Delivery != "d-1" || len(runs) != 1 || e.RunID != runs[0].ID {
		t.Errorf("nginx-sites entry %+v, %v; want app at %s for run %v", e, err, sha, runs)
	}
}

// TestCommitStatuses: each run asks for a pending status, then success or
// failure, in order, as entries in queues/status (dh-route sets them: see
// pkg/route's TestPoster), and for a run notice where a notify target
// wants the outcome (dh-route sends it: TestRunNotices). The worker never
// reads github.token_file nor a target's url_file (issue 17, finding 7b,
// and issue 20: a build step could read what its worker can), so secret
// files it may not read change nothing, and it posts nothing itself.
func TestCommitStatuses(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		t.Errorf("the worker called %s %s; want nothing: dh-route posts", req.Method, req.URL.Path)
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer api.Close()
	tokenFile := filepath.Join(t.TempDir(), "token-only-dh-route-reads")
	chatFile := filepath.Join(t.TempDir(), "chat-url-only-dh-route-reads")
	r := newRig(t, `steps = [["sh", "-c", "test ! -e broken"]]`)
	doc, _ := os.ReadFile(r.file)
	doc = append(doc, fmt.Sprintf("\n[github]\napi_url = %q\ntoken_file = %q\nstatus_context = \"deploys/app\"\ntarget_url = \"https://ci.example.org/{{.Deployment}}/{{.RunID}}\"\n"+
		"[notify]\ndefault_targets = [\"chat\"]\n[notify.targets.chat]\nkind = \"slack\"\nurl_file = %q\n",
		api.URL, tokenFile, chatFile)...)
	os.WriteFile(r.file, doc, 0o600)
	var err error
	if r.cfg, err = config.Load(r.file); err != nil {
		t.Fatal(err)
	}
	ok := r.commit("main", nil)
	r.enqueue("d-1", "refs/heads/main", ok)
	bad := r.commit("main", map[string]string{"broken": "1"})
	r.enqueue("d-2", "refs/heads/main", bad)
	r.cfg.Deployments["app"].Coalesce = new(bool)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	runs := r.runs()
	want := []string{
		fmt.Sprintf("app acme/app %s pending https://ci.example.org/app/%d", ok, runs[0].ID),
		fmt.Sprintf("app acme/app %s success https://ci.example.org/app/%d", ok, runs[0].ID),
		fmt.Sprintf("app acme/app %s pending https://ci.example.org/app/%d", bad, runs[1].ID),
		fmt.Sprintf("app acme/app %s failure https://ci.example.org/app/%d", bad, runs[1].ID),
		// The target's default "on" is failures (and the notices of dh-route).
		fmt.Sprintf("run-notice app %d failed", runs[1].ID),
	}
	sq := queue.Open(r.cfg.QueuePath(config.StatusQueue))
	names, err := sq.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(r.cfg.QueuePath(config.StatusQueue), name))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := event.DecodeRunNotice(data); err == nil {
			got = append(got, fmt.Sprintf("run-notice %s %d %s", n.Deployment, n.RunID, n.State))
			continue
		}
		e, err := event.DecodeCommitStatus(data)
		if err != nil {
			t.Fatalf("queues/status/%s: %v", name, err)
		}
		got = append(got, strings.Join([]string{e.Deployment, e.Repository, e.Commit, e.State, e.TargetURL}, " "))
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries queued:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A deploy request (POST /deploy/NAME with a token) deploys the tip of the
// deployment's branch, or a named commit if the branch has it, and is
// refused otherwise; runs say "token".
func TestDeployRequest(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT $DH_REF >> $TRACE"]]`)
	c1 := r.commit("main", nil)
	c2 := r.commit("main", nil)
	r.git(r.work, "checkout", "-q", "-b", "side")
	side := r.commit("side", nil)
	q := queue.Open(r.cfg.QueuePath("app"))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	for _, req := range []event.DeployRequest{
		{Delivery: "token-1"},
		{Delivery: "token-2", Commit: c1},
		{Delivery: "token-3", Commit: side},
		{Delivery: "token-4", Ref: "refs/heads/side", Commit: side},
	} {
		req.Deployment, req.ReceivedAt = "app", time.Now()
		data, err := req.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Publish(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	runs := r.runs()
	// token-2 names c1, older than the checked-out c2: refused like a
	// stale push (only deploy --commit by hand may go back).
	want := []string{"succeeded " + c2, "refused " + c1, "refused " + side, "succeeded " + side}
	var got []string
	for _, run := range runs {
		got = append(got, run.State+" "+run.Commit)
		if run.Trigger != deploy.TriggerToken {
			t.Errorf("run %d trigger %q; want token", run.ID, run.Trigger)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("runs %v; want %v", got, want)
	}
}

// A window opening releases the waiting entry (the test sets the clock).
func TestWindowOpens(t *testing.T) {
	t.Parallel()
	r := newRig(t, `windows = ["wed 10:00-11:00"]
time_zone = "UTC"
steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`)
	clock := time.Date(2026, 11, 25, 9, 59, 0, 0, time.UTC) // a Wednesday
	drain := func() error { return r.drainAt(func() time.Time { return clock }) }
	sha := r.commit("main", nil)
	r.enqueue("d-1", "refs/heads/main", sha)
	if err := drain(); !queue.IsRetry(err) || r.readTrace() != "" {
		t.Fatalf("at 09:59 drain = %v, trace %q; want the entry to wait", err, r.readTrace())
	}
	if runs := r.runs(); len(runs) != 1 || !strings.Contains(runs[0].Note, "the next opens 2026-11-25T10:00:00Z") {
		t.Fatalf("runs %+v; want a waiting run naming the next window", runs)
	}
	clock = clock.Add(2 * time.Minute)
	if err := drain(); err != nil || r.readTrace() != sha+"\n" {
		t.Fatalf("at 10:01 drain = %v, trace %q; want it deployed", err, r.readTrace())
	}
	if runs := r.runs(); len(runs) != 1 || runs[0].State != store.RunSucceeded {
		t.Errorf("runs %+v; want the waiting run succeeded", runs)
	}
}

// While paused or outside its windows the deployment's entries wait, with
// a queued run saying why; a resume deploys them (the same run), and a
// manual deploy only goes ahead with Force, noted in the run.
func TestPauseAndWindows(t *testing.T) {
	t.Parallel()
	closed := strings.ToLower(time.Now().AddDate(0, 0, 2).Weekday().String()[:3]) // open only in two days
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`)
	sha := r.commit("main", nil)
	if err := pause.Set(r.cfg, pause.Pause{Deployment: "app", Reason: "freeze", By: "ops", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	r.enqueue("d-1", "refs/heads/main", sha)
	if err := r.drain(); !queue.IsRetry(err) {
		t.Fatalf("drain while paused = %v; want a Retry (the entry waits)", err)
	}
	if err := r.drain(); !queue.IsRetry(err) {
		t.Fatalf("drain while paused again = %v", err)
	}
	runs := r.runs()
	if len(runs) != 1 || runs[0].State != store.RunQueued || !strings.Contains(runs[0].Note, "paused") ||
		!strings.Contains(runs[0].Note, "freeze") || r.readTrace() != "" {
		t.Fatalf("while paused: runs %+v, trace %q; want one queued run saying why, nothing deployed", runs, r.readTrace())
	}
	w := r.worker()
	defer w.Close()
	manual := deploy.Request{Delivery: deploy.ManualID(deploy.TriggerManual), Trigger: deploy.TriggerManual, Ref: "refs/heads/main"}
	if _, err := w.Deploy(context.Background(), manual); !queue.IsRetry(err) || !strings.Contains(err.Error(), "paused") {
		t.Errorf("manual deploy while paused = %v; want a Retry saying paused", err)
	}
	if err := pause.Resume(r.cfg, "app"); err != nil {
		t.Fatal(err)
	}
	if err := r.drain(); err != nil {
		t.Fatalf("drain after resume = %v", err)
	}
	runs = r.runs()
	if len(runs) != 1 || runs[0].State != store.RunSucceeded || runs[0].ID == 0 || r.readTrace() != sha+"\n" {
		t.Fatalf("after resume: runs %+v; want the same run succeeded", runs)
	}

	// A global pause holds every deployment; windows likewise.
	r.cfg.Deployments["app"].Windows = []string{closed + " 00:00-24:00"}
	next := r.commit("main", nil)
	r.enqueue("d-2", "refs/heads/main", next)
	if err := r.drain(); !queue.IsRetry(err) {
		t.Fatalf("drain outside the windows = %v; want a Retry", err)
	}
	if runs := r.runs(); !strings.Contains(runs[len(runs)-1].Note, "outside the deploy windows") {
		t.Errorf("the waiting run's note %q; want the windows", runs[len(runs)-1].Note)
	}
	manual.Delivery, manual.Force = deploy.ManualID(deploy.TriggerManual), true
	run, err := w.Deploy(context.Background(), manual)
	if err != nil || run.State != store.RunSucceeded || !strings.HasPrefix(run.Note, "forced: outside the deploy windows") {
		t.Errorf("forced manual deploy = %+v, %v; want succeeded with the forced note", run, err)
	}
	r.cfg.Deployments["app"].Windows = nil
	if err := pause.Set(r.cfg, pause.Pause{Reason: "everything", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if p := pause.Get(r.cfg, "app"); p == nil || p.Deployment != "" || !strings.Contains(p.String(), "all deployments") {
		t.Errorf("Paused under a global pause = %v", p)
	}
	pause.Resume(r.cfg, "")
	if err := r.drain(); err != nil {
		t.Fatalf("drain after the global resume = %v", err)
	}
}

// A self deployment builds the tools, installs them (replacing the old
// ones), migrates with the new dh-route, restarts the other stages, and
// restarts the workers only once the run is recorded as succeeded.
func TestSelfUpdate(t *testing.T) {
	t.Parallel()
	install := t.TempDir()
	for _, tool := range deploy.Tools {
		os.WriteFile(filepath.Join(install, tool), []byte("#!/bin/sh\necho old\n"), 0o755)
	}
	build := `for t in dh-receive dh-route dh-deploy dh-nginx dh-cert; do printf '#!/bin/sh\necho "$0 v2 $*" >> "$TRACE"\n' > bin/$t; chmod +x bin/$t; done`
	r := newRig(t, fmt.Sprintf(`kind = "self"
steps = [["sh", "-c", "mkdir -p bin && %s"]]
self = { install_dir = %q, restart = [["sh", "-c", "echo restart >> $TRACE"]],
         restart_self = ["sh", "-c", "grep -q 'succeeded in' $(dirname $TRACE)/state/logs/app/*.log && echo self-after-record >> $TRACE"] }`,
		strings.ReplaceAll(build, `"`, `\"`), install))
	r.enqueue("d-1", "refs/heads/main", r.commit("main", nil))
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	want := install + "/dh-route v2 -c " + r.file + " migrate\nrestart\nself-after-record\n"
	if got := r.readTrace(); got != want {
		t.Errorf("trace %q; want %q", got, want)
	}
	for _, tool := range deploy.Tools {
		if b, _ := os.ReadFile(filepath.Join(install, tool)); !strings.Contains(string(b), "v2") {
			t.Errorf("%s is %q; want the new build installed", tool, b)
		}
	}
	if runs := r.runs(); len(runs) != 1 || runs[0].State != store.RunSucceeded {
		t.Errorf("runs %+v; want one succeeded", runs)
	}

	// A build that misses a tool fails the run before anything is replaced.
	r2 := newRig(t, fmt.Sprintf(`kind = "self"
steps = [["sh", "-c", "mkdir -p bin && printf '#!/bin/sh\\n' > bin/dh-route && chmod +x bin/dh-route"]]
self = { install_dir = %q, migrate = false, restart = [["true"]], restart_self = ["true"] }`, install))
	r2.enqueue("d-1", "refs/heads/main", r2.commit("main", nil))
	if err := r2.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	if runs := r2.runs(); len(runs) != 1 || runs[0].State != store.RunFailed || !strings.Contains(runs[0].Error, "did not build dh-receive") {
		t.Errorf("runs %+v; want failed naming the missing tool", runs)
	}
	if b, _ := os.ReadFile(filepath.Join(install, "dh-route")); !strings.Contains(string(b), "v2") {
		t.Errorf("a failed self update replaced dh-route with %q", b)
	}
}

// A self update that cannot install (install_dir not writable: here not
// a directory at all, since root may write any directory) is a failed
// run, recorded with its error, and its entry leaves the queue for
// failed/: the worker goes on (no I/O-error exit for systemd to restart
// into the same failing update forever).
func TestSelfUpdateInstallFails(t *testing.T) {
	t.Parallel()
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	install := filepath.Join(notDir, "bin")
	build := `for t in dh-receive dh-route dh-deploy dh-nginx dh-cert; do printf '#!/bin/sh\n' > bin/$t; chmod +x bin/$t; done`
	r := newRig(t, fmt.Sprintf(`kind = "self"
coalesce = false
steps = [["sh", "-c", "mkdir -p bin && %s"]]
self = { install_dir = %q, migrate = false, restart = [["sh", "-c", "echo restart >> $TRACE"]], restart_self = ["sh", "-c", "echo self >> $TRACE"] }`,
		strings.ReplaceAll(build, `"`, `\"`), install))
	r.enqueue("d-1", "refs/heads/main", r.commit("main", nil))
	r.enqueue("d-2", "refs/heads/main", r.commit("main", nil))
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v; want nil: a failed run never stops the worker", err)
	}
	runs := r.runs()
	if got := states(runs); len(got) != 2 || got[0] != store.RunFailed || got[1] != store.RunFailed {
		t.Fatalf("runs %v; want two failed", got)
	}
	if e := runs[0].Error; !strings.Contains(e, "self update: install "+install+"/dh-receive") || !strings.Contains(e, "not a directory") {
		t.Errorf("run error %q; want the install and its cause", e)
	}
	if f := r.failed(); len(f) != 2 {
		t.Errorf("failed/ holds %v; want both entries", f)
	}
	if got := r.readTrace(); got != "" {
		t.Errorf("trace %q; want no restart after a failed install", got)
	}
}

// Three pushes that arrive one by one while the deployment is held (paused,
// or outside its windows) coalesce when the hold ends: the newest deploys,
// the older ones' waiting runs become superseded (updated, not inserted
// again), and nothing goes to failed/.
func TestHeldPushesCoalesce(t *testing.T) {
	t.Parallel()
	for _, hold := range []string{"pause", "windows"} {
		t.Run(hold, func(t *testing.T) {
			t.Parallel()
			extra := `steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`
			if hold == "windows" {
				extra = "windows = [\"wed 10:00-11:00\"]\ntime_zone = \"UTC\"\n" + extra
			}
			r := newRig(t, extra)
			clock := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC) // a Wednesday, an hour before the window
			drain := func() error { return r.drainAt(func() time.Time { return clock }) }
			if hold == "pause" {
				if err := pause.Set(r.cfg, pause.Pause{Deployment: "app", Reason: "freeze", Since: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			var last string
			for i := range 3 {
				last = r.commit("main", map[string]string{"n": fmt.Sprint(i)})
				r.enqueue(fmt.Sprintf("d-%d", i), "refs/heads/main", last)
				if err := drain(); !queue.IsRetry(err) {
					t.Fatalf("drain while held, push %d = %v; want a Retry", i, err)
				}
			}
			if hold == "pause" {
				if err := pause.Resume(r.cfg, "app"); err != nil {
					t.Fatal(err)
				}
			} else {
				clock = clock.Add(time.Hour + time.Minute)
			}
			if err := drain(); err != nil {
				t.Fatalf("drain after the hold = %v", err)
			}
			runs := r.runs()
			want := []string{store.RunSuperseded, store.RunSuperseded, store.RunSucceeded}
			if got := states(runs); !slices.Equal(got, want) {
				t.Fatalf("runs %v (%+v); want %v", got, runs, want)
			}
			for _, run := range runs[:2] {
				if run.SupersededBy != runs[2].ID || run.FinishedAt.IsZero() {
					t.Errorf("run %d superseded_by = %d, finished %v; want %d, finished", run.ID, run.SupersededBy, run.FinishedAt, runs[2].ID)
				}
			}
			if got := r.readTrace(); got != last+"\n" {
				t.Errorf("steps ran for %q; want only the newest %s", got, last)
			}
			if f := r.failed(); len(f) != 0 {
				t.Errorf("failed/ = %v; want empty", f)
			}
		})
	}
}

// Repeated rollbacks walk back through the commits deployed before the
// live one, never forward to one rolled back from; with nothing earlier,
// rollback says so.
func TestRollbackWalksBack(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`)
	var c []string
	for i := range 3 {
		c = append(c, r.commit("main", map[string]string{"n": fmt.Sprint(i)}))
		r.enqueue(fmt.Sprintf("d-%d", i), "refs/heads/main", c[i])
		if err := r.drain(); err != nil {
			t.Fatalf("drain = %v", err)
		}
	}
	w := r.worker()
	defer w.Close()
	ctx := context.Background()
	for _, want := range []string{c[1], c[0]} {
		run, err := w.Rollback(ctx, deploy.RollbackOptions{})
		if err != nil || run.Commit != want || run.State != store.RunSucceeded || r.head() != want {
			t.Fatalf("Rollback() = %+v, %v, head %s; want %s", run, err, r.head(), want)
		}
	}
	if run, err := w.Rollback(ctx, deploy.RollbackOptions{}); !sysexits.Is(err, sysexits.Unavailable) {
		t.Errorf("Rollback() at the first commit = %+v, %v; want Unavailable", run, err)
	}
	// A new deploy of c2 is the live place again: rollback walks back
	// from it through the deploys (c1, c0), not through the rollbacks.
	run, err := w.Deploy(ctx, deploy.Request{Delivery: deploy.ManualID(deploy.TriggerManual), Trigger: deploy.TriggerManual,
		Ref: "refs/heads/main", Commit: c[2], AllowOlder: true})
	if err != nil || run.State != store.RunSucceeded {
		t.Fatalf("deploy of %s = %+v, %v", c[2], run, err)
	}
	for _, want := range []string{c[1], c[0]} {
		run, err := w.Rollback(ctx, deploy.RollbackOptions{})
		if err != nil || run.Commit != want || r.head() != want {
			t.Fatalf("Rollback() after redeploying c2 = %+v, %v; want %s", run, err, want)
		}
	}
}

// A push or redelivery of the live commit under new delivery GUIDs runs
// no step: it is recorded unchanged. deploy --force (Force) rebuilds it,
// and after a failed run of it a push builds it again.
func TestLiveCommitUnchanged(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE; test ! -e $TRACE.fail"]]`)
	sha := r.commit("main", nil)
	for i := range 3 {
		r.enqueue(fmt.Sprintf("d-%d", i), "refs/heads/main", sha)
		if err := r.drain(); err != nil {
			t.Fatalf("drain %d = %v", i, err)
		}
	}
	runs := r.runs()
	if got := states(runs); !slices.Equal(got, []string{store.RunSucceeded, store.RunUnchanged, store.RunUnchanged}) ||
		r.readTrace() != sha+"\n" || len(r.failed()) != 0 {
		t.Fatalf("runs %v, trace %q, failed/ %v; want one build, then unchanged twice", got, r.readTrace(), r.failed())
	}
	if !strings.Contains(runs[2].Note, fmt.Sprintf("already live (run %d)", runs[0].ID)) || runs[2].FinishedAt.IsZero() {
		t.Errorf("unchanged run %+v; want a finished run naming the live one", runs[2])
	}
	w := r.worker()
	defer w.Close()
	manual := deploy.Request{Delivery: deploy.ManualID(deploy.TriggerManual), Trigger: deploy.TriggerManual, Ref: "refs/heads/main"}
	if run, err := w.Deploy(context.Background(), manual); err != nil || run.State != store.RunUnchanged {
		t.Errorf("manual deploy of the live commit = %+v, %v; want unchanged", run, err)
	}
	manual.Delivery, manual.Force = deploy.ManualID(deploy.TriggerManual), true
	if run, err := w.Deploy(context.Background(), manual); err != nil || run.State != store.RunSucceeded ||
		r.readTrace() != sha+"\n"+sha+"\n" {
		t.Errorf("forced deploy of the live commit = %+v, %v, trace %q; want it rebuilt", run, err, r.readTrace())
	}
	os.WriteFile(r.trace+".fail", nil, 0o644)
	manual.Delivery = deploy.ManualID(deploy.TriggerManual)
	if run, _ := w.Deploy(context.Background(), manual); run.State != store.RunFailed {
		t.Fatalf("forced failing deploy = %+v; want failed", run)
	}
	os.Remove(r.trace + ".fail")
	r.enqueue("d-9", "refs/heads/main", sha)
	if err := r.drain(); err != nil {
		t.Fatalf("drain after a failed run = %v", err)
	}
	if runs := r.runs(); runs[len(runs)-1].State != store.RunSucceeded {
		t.Errorf("a push of the commit after its failed run: %v; want it built again", states(runs))
	}
}

// TestEnvironmentFile is issue 17's finding 7a: a deployment's secrets
// come from its environment_file, which only the worker's user may read;
// a file others may read fails the run with the fix, and the secret is
// never in the run's record.
func TestEnvironmentFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secrets := filepath.Join(dir, "app.env")
	if err := os.WriteFile(secrets, []byte("# the app's secrets\nAPI_KEY=s3cret=with=equals\n\nGREETING=from the file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, fmt.Sprintf("environment_file = %q\nsteps = [[\"sh\", \"-c\", \"echo \\\"$API_KEY $GREETING\\\" >> $TRACE\"]]", secrets))
	first := r.commit("main", map[string]string{"a": "1"})
	r.enqueue("d-1", "refs/heads/main", first)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	if got, want := r.readTrace(), "s3cret=with=equals from the file\n"; got != want {
		t.Errorf("the step saw %q; want %q (the file wins over [environment])", got, want)
	}
	if err := os.Chmod(secrets, 0o640); err != nil {
		t.Fatal(err)
	}
	second := r.commit("main", map[string]string{"a": "2"})
	r.enqueue("d-2", "refs/heads/main", second)
	if err := r.drain(); err != nil {
		t.Fatalf("drain = %v", err)
	}
	runs := r.runs()
	last := runs[len(runs)-1]
	if last.State != store.RunFailed || !strings.Contains(last.Error, "mode 0640 lets other users read it: chmod 0600 "+secrets) {
		t.Errorf("run with a group-readable environment_file: %s %q; want failed with the fix", last.State, last.Error)
	}
	if strings.Contains(last.Error, "s3cret") {
		t.Errorf("the run's error shows the secret: %q", last.Error)
	}
}
