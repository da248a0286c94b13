// Package statustest builds a small but complete dh-deployer installation
// for tests of the status page: a configuration file, real queue
// directories, a real (throwaway) PostgreSQL database with runs in every
// state and routing decisions, a pause file, a failed entry with its
// sidecar, and run logs.
//
// A package using it must call storetest.Main from TestMain.
package statustest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/pause"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// Commits and texts the installation holds, for assertions.
const (
	CommitOK      = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678" // api's last success: its current commit
	CommitFailed  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" // api's newest run, which failed
	CommitRunning = "cccccccccccccccccccccccccccccccccccccccc" // docs's run in progress
	CommitWeb     = "dddddddddddddddddddddddddddddddddddddddd" // web's last success
	CommitCMS     = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee" // cms's last success

	// Hostile is in an error, a note, a pause reason and a failure reason:
	// the page must show it as text.
	Hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

	LogText = "step 1/1: pnpm build\nERR_PNPM build failed\nexit status 2\n"

	// The commits' subjects and authors, as dh-deploy records them: api's
	// succeeded run has ordinary ones; its failed run has hostile ones,
	// and a hostile triggered_by, as a pusher can make them.
	SubjectOK      = "Add the login page"
	AuthorOK       = "Alice Example <alice@example.org>"
	SubjectHostile = Hostile + " \"quoted\" 'single' \x1b[31mred\x07\r\nsecond line\x7f"
	AuthorHostile  = `Mallory "</td><script>x</script>" <m@example.org>` + "\x1b]0;title\x07"
	ByHostile      = `pusher=<b>eve</b> sender="x" onmouseover="alert(1)"` + "\x1b[2J"
)

// When the runs waited and ran, relative to Install.Now: api-ok waited
// WaitOK and took TookOK; docs-running waited WaitRunning and has run
// for TookRunning at Now; blog-waiting has waited WaitQueued at Now.
const (
	WaitOK      = 30 * time.Second
	TookOK      = 2*time.Minute + 30*time.Second
	WaitRunning = time.Minute
	TookRunning = 2 * time.Minute
	WaitQueued  = 10 * time.Minute
)

// Install is the installation.
type Install struct {
	Dir         string         // everything lives under it
	ConfigPath  string         // the configuration file
	Config      *config.Config // as loaded from ConfigPath
	DatabaseURL string
	Store       *store.Store

	// Now is a Sunday noon UTC: outside blog's windows (mon-fri).
	Now time.Time

	// Runs by role: "api-ok", "api-failed", "docs-running", "web-ok",
	// "cms-ok", "cms-outside" (a log_path outside the log directory),
	// "cms-symlink" (a log that is a symlink leaving the log directory),
	// "blog-waiting".
	Runs map[string]int64

	FailedEntry string // the entry in queues/api/failed/
}

// Deployments are the deployments of the installation and the state the
// status page must give each at Install.Now.
var Deployments = map[string]string{
	"api":  "failing",  // its newest run failed
	"blog": "waiting",  // outside its deploy windows
	"cms":  "idle",     // last run succeeded
	"docs": "running",  // a run in progress
	"old":  "disabled", // enabled = false; its queue is unreadable
	"web":  "paused",   // paused with a reason; a local clone_url, so no commit links
}

// New builds the installation. extra is appended to the configuration
// file (for example a [status] table).
func New(t testing.TB, extra string) *Install {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	in := &Install{
		Dir:         dir,
		ConfigPath:  filepath.Join(dir, "config.toml"),
		DatabaseURL: storetest.NewMigrated(t),
		Now:         time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), // a Sunday
		Runs:        map[string]int64{},
	}
	doc := `queue_dir = "` + filepath.Join(dir, "queues") + `"
state_dir = "` + filepath.Join(dir, "state") + `"
database_url = "` + in.DatabaseURL + `"

[deployments.api]
repository = "ducompsoc/durhack"
branches = ["main"]
path = "/srv/api"
steps = [["pnpm", "build"]]

[deployments.blog]
repository = "ducompsoc/blog"
branches = ["main"]
path = "/srv/blog"
windows = ["mon-fri 09:00-17:00"]
time_zone = "UTC"

[deployments.cms]
repository = "ducompsoc/cms"
branches = ["main", "release/*"]
path = "/srv/cms"

[deployments.docs]
repository = "ducompsoc/docs"
branches = ["main"]
path = "/srv/docs"

[deployments.old]
repository = "ducompsoc/old"
branches = ["main"]
path = "/srv/old"
enabled = false

[deployments.web]
repository = "ducompsoc/web"
branches = ["main"]
path = "/srv/web"
clone_url = "/srv/git/web.git"
` + extra
	if err := os.WriteFile(in.ConfigPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(in.ConfigPath)
	if err != nil {
		t.Fatalf("config.Load(%s) = %v", in.ConfigPath, err)
	}
	in.Config = cfg
	st, err := store.Open(ctx, in.DatabaseURL)
	if err != nil {
		t.Fatalf("store.Open = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	in.Store = st

	// Queues: one entry waiting in main and in api, a failed entry in api
	// with its sidecar; old's queue is a file, so it cannot be read.
	for _, name := range []string{config.MainQueue, "api", "blog", "cms", "docs", "web"} {
		if err := queue.Open(cfg.QueuePath(name)).Init(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(cfg.QueuePath("old"), []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	req := &event.DeployRequest{Delivery: "token-0123456789abcdef0123456789abcdef", Deployment: "api",
		ReceivedAt: in.Now.Add(-time.Minute)}
	data, err := req.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{config.MainQueue, "api"} {
		if _, err := queue.Open(cfg.QueuePath(name)).Publish(data); err != nil {
			t.Fatal(err)
		}
	}
	in.FailedEntry = queue.NewName()
	failedDir := filepath.Join(cfg.QueuePath("api"), queue.FailedDir)
	if err := os.WriteFile(filepath.Join(failedDir, in.FailedEntry), []byte(`{"version": 1}`), 0o640); err != nil {
		t.Fatal(err)
	}
	why, _ := json.Marshal(queue.Failure{Entry: in.FailedEntry, Queue: "api", Error: "entry has no kind " + Hostile,
		FailedAt: in.Now.Add(-time.Hour), Attempts: 1})
	if err := os.WriteFile(filepath.Join(failedDir, in.FailedEntry+queue.WhySuffix), why, 0o640); err != nil {
		t.Fatal(err)
	}

	// web is paused.
	if err := pause.Set(cfg, pause.Pause{Deployment: "web", Reason: "exam week " + Hostile, By: "ops",
		Since: in.Now.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}

	// Runs.
	logDir := func(name string) string {
		d := config.RunLogDir(cfg.StateDir, name)
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
		return d
	}
	n := 0
	addRun := func(role, deployment, commit, logPath string, res *store.RunResult, note string) {
		t.Helper()
		n++
		r := store.Run{Delivery: "d" + strings.Repeat("0", 7) + string(rune('a'+n)), Deployment: deployment,
			Trigger: "webhook", TriggeredBy: "pusher=alice sender=alice-gh", Ref: "refs/heads/main", Commit: commit, State: store.RunRunning,
			StartedAt: time.Now().Add(-90 * time.Second), LogPath: logPath, Note: note}
		switch role {
		case "api-ok":
			r.CommitSubject, r.CommitAuthor = SubjectOK, AuthorOK
		case "api-failed":
			r.CommitSubject, r.CommitAuthor, r.TriggeredBy = SubjectHostile, AuthorHostile, ByHostile
		}
		id, err := st.InsertRun(ctx, r)
		if err != nil {
			t.Fatalf("InsertRun(%s) = %v", role, err)
		}
		if res != nil {
			if err := st.FinishRun(ctx, id, *res); err != nil {
				t.Fatalf("FinishRun(%s) = %v", role, err)
			}
		}
		in.Runs[role] = id
	}
	ok := &store.RunResult{State: store.RunSucceeded, ExitCode: new(0)}
	apiLog := filepath.Join(logDir("api"), "20261122T110000.000000000Z-d1-1.log")
	if err := os.WriteFile(apiLog, []byte(LogText), 0o640); err != nil {
		t.Fatal(err)
	}
	addRun("api-ok", "api", CommitOK, apiLog, ok, "")
	addRun("api-failed", "api", CommitFailed, filepath.Join(logDir("api"), "20261122T113000.000000000Z-d2-1.log"),
		&store.RunResult{State: store.RunFailed, ExitCode: new(2), FailedStep: new(1), Error: "step 1 (pnpm build) exited 2 " + Hostile}, "")
	addRun("docs-running", "docs", CommitRunning, filepath.Join(logDir("docs"), "20261122T115900.000000000Z-d3-1.log"), nil, "")
	addRun("web-ok", "web", CommitWeb, "", ok, "forced past a pause "+Hostile)
	addRun("cms-outside", "cms", CommitCMS, "/etc/passwd", ok, "")
	if err := os.Symlink("/etc/passwd", filepath.Join(logDir("cms"), "link.log")); err != nil {
		t.Fatal(err)
	}
	addRun("cms-symlink", "cms", CommitCMS, filepath.Join(logDir("cms"), "link.log"), ok, "")
	addRun("cms-ok", "cms", CommitCMS, "", ok, "")
	id, err := st.WaitRun(ctx, store.Run{Delivery: "dwaiting1", Deployment: "blog", Attempt: 1, Trigger: "webhook",
		Ref: "refs/heads/main", Note: "waiting: outside the deploy windows"})
	if err != nil {
		t.Fatalf("WaitRun = %v", err)
	}
	in.Runs["blog-waiting"] = id
	setTimes(t, in, map[string][3]time.Duration{ // queued, started, finished before Now; -1 for none
		"api-ok":       {3 * time.Hour, 3*time.Hour - WaitOK, 3*time.Hour - WaitOK - TookOK},
		"api-failed":   {2 * time.Hour, 2*time.Hour - 5*time.Second, 2*time.Hour - 5*time.Second - time.Minute},
		"docs-running": {WaitRunning + TookRunning, TookRunning, -1},
		"blog-waiting": {WaitQueued, -1, -1},
	})

	// Routing decisions.
	for i, e := range []struct{ delivery, status, reason string }{
		{"routed-0001", store.StatusRouted, ""},
		{"voided-0002", store.StatusVoided, "not-followed " + Hostile},
	} {
		ev := store.Event{Delivery: e.delivery, Event: "push", HookID: 1, Repository: "ducompsoc/durhack",
			Ref: "refs/heads/main", After: CommitFailed, ReceivedAt: in.Now.Add(time.Duration(i-10) * time.Minute)}
		var deps []string
		if e.status == store.StatusRouted {
			deps = []string{"api"}
		}
		d := store.Decided{Event: ev, Status: e.status, Reason: e.reason, Entry: e.delivery + ".json", Deployments: deps}
		if _, err := st.InsertDecided(ctx, []store.Decided{d}); err != nil {
			t.Fatalf("InsertDecided = %v", err)
		}
	}
	return in
}

// setTimes sets when the runs of the roles were queued, started and
// finished, as durations before in.Now (-1: never), which InsertRun and
// FinishRun take from the database's clock.
func setTimes(t testing.TB, in *Install, times map[string][3]time.Duration) {
	t.Helper()
	db, err := sql.Open("postgres", in.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := func(d time.Duration) *time.Time {
		if d < 0 {
			return nil
		}
		t := in.Now.Add(-d)
		return &t
	}
	for role, ts := range times {
		if _, err := db.Exec(`UPDATE runs SET queued_at = $2, started_at = $3, finished_at = $4 WHERE id = $1`,
			in.Runs[role], at(ts[0]), at(ts[1]), at(ts[2])); err != nil {
			t.Fatalf("set the times of run %s: %v", role, err)
		}
	}
}

// Many is an installation of h.Deployments deployments (storetest.Fill's
// dep0, dep1, … and "never"), each with its queue, and a database filled
// with h: for the benchmarks of the status page and the history at scale.
func Many(t testing.TB, h storetest.History) *Install {
	t.Helper()
	dir := t.TempDir()
	in := &Install{Dir: dir, ConfigPath: filepath.Join(dir, "config.toml"), DatabaseURL: storetest.NewMigrated(t),
		Now: time.Now(), Runs: map[string]int64{}}
	if h.Deployments == 0 {
		h.Deployments = 100 // as Fill
	}
	names := []string{"never"}
	for i := range h.Deployments {
		names = append(names, storetest.DeploymentName(i))
	}
	var doc strings.Builder
	fmt.Fprintf(&doc, "queue_dir = %q\nstate_dir = %q\ndatabase_url = %q\n", filepath.Join(dir, "queues"),
		filepath.Join(dir, "state"), in.DatabaseURL)
	for _, name := range names {
		fmt.Fprintf(&doc, "\n[deployments.%s]\nrepository = \"o/%s\"\nbranches = [\"main\"]\npath = \"/srv/%s\"\n", name, name, name)
	}
	if err := os.WriteFile(in.ConfigPath, []byte(doc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(in.ConfigPath)
	if err != nil {
		t.Fatalf("config.Load(%s) = %v", in.ConfigPath, err)
	}
	in.Config = cfg
	for _, name := range append([]string{config.MainQueue}, names...) {
		if err := queue.Open(cfg.QueuePath(name)).Init(); err != nil {
			t.Fatal(err)
		}
	}
	storetest.Fill(t, in.DatabaseURL, h)
	st, err := store.Open(context.Background(), in.DatabaseURL)
	if err != nil {
		t.Fatalf("store.Open = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	in.Store = st
	return in
}

// ReportTimes reports, for a benchmark that timed several cases in turn
// (so that they saw the same load), the median of one case's times as
// NAME-ms, its response size as NAME-KB (if not 0) and, given the times
// of the base case, the ratio of the two medians as NAME-ratio.
func ReportTimes(b *testing.B, name string, times []time.Duration, size int, base ...[]time.Duration) {
	median := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	b.ReportMetric(float64(median(times))/1e6, name+"-ms")
	if size > 0 {
		b.ReportMetric(float64(size)/1024, name+"-KB")
	}
	if len(base) > 0 {
		b.ReportMetric(float64(median(times))/float64(median(base[0])), name+"-ratio")
	}
}

// ParseMetrics parses a /metrics body with Prometheus's text parser.
func ParseMetrics(t testing.TB, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse the metrics: %v\n%s", err, body)
	}
	return fams
}

// Metric returns the value of the metric name with the labels (name,
// value pairs) — a gauge's or counter's value, a histogram's sample
// count — and whether there is one.
func Metric(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
next:
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}
