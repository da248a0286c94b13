package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/deploy"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// newReleaseRig is newRig with strategy "releases" whatever
// DH_TEST_STRATEGY says.
func newReleaseRig(t *testing.T, extra string) *rig {
	t.Helper()
	return newRig(t, "strategy = \"releases\"\n"+extra)
}

func (r *rig) path() string        { return filepath.Join(r.dir, "checkout") }
func (r *rig) releasesDir() string { return filepath.Join(r.dir, "checkout.releases") }

// releases lists the release directories, in name order.
func (r *rig) releases() []string {
	r.t.Helper()
	des, err := os.ReadDir(r.releasesDir())
	if err != nil {
		r.t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if de.Name() != "repo.git" && de.Name() != "shared" {
			names = append(names, de.Name())
		}
	}
	return names
}

// live returns the release path links to.
func (r *rig) live() string {
	r.t.Helper()
	t, err := os.Readlink(r.path())
	if err != nil {
		r.t.Fatalf("path is not a symbolic link: %v", err)
	}
	return t
}

// push commits files, enqueues the push and drains the queue; it returns
// the commit and the run.
func (r *rig) push(files map[string]string) (string, store.Run) {
	r.t.Helper()
	sha := r.commit("main", files)
	r.enqueue(fmt.Sprintf("d-%d", r.n), "refs/heads/main", sha)
	if err := r.drain(); err != nil {
		r.t.Fatalf("drain = %v", err)
	}
	runs := r.runs()
	return sha, runs[len(runs)-1]
}

// While 20 deploys run (builds of about a second writing the page in two
// halves; every third fails half-way, one fails its health check), a
// server of path polled continuously never fails and never serves a
// half-built or failed page, and after each failure the previous release
// is served. The same test with strategy "in-place" serves half-built
// pages (the bug of issue 16).
func TestReleasesServedAtomically(t *testing.T) {
	t.Parallel()
	r := newReleaseRig(t, `steps = [["sh", "-c", "printf '<html>' > page.txt; sleep 0.4; test ! -e fail || exit 1; sleep 0.4; cat version >> page.txt"]]
health_command = ["sh", "-c", "test ! -e unhealthy"]
health_retries = 0
keep_releases = 3`)
	srv := httptest.NewServer(http.FileServer(http.Dir(r.path())))
	defer srv.Close()
	page := regexp.MustCompile(`^<html>v([0-9]+)</html>\n$`)

	var (
		mu       sync.Mutex
		served   = map[string]int{}
		bad      []string
		requests atomic.Int64
		stop     = make(chan struct{})
		done     = make(chan struct{})
		started  atomic.Bool
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := http.Get(srv.URL + "/page.txt")
			var body []byte
			if err == nil {
				body, err = io.ReadAll(res.Body)
				res.Body.Close()
			}
			if !started.Load() { // nothing deployed yet
				continue
			}
			requests.Add(1)
			mu.Lock()
			switch m := page.FindSubmatch(body); {
			case err != nil:
				bad = append(bad, err.Error())
			case res.StatusCode != 200 || m == nil:
				bad = append(bad, fmt.Sprintf("%d %q", res.StatusCode, body))
			default:
				served[string(m[1])]++
			}
			mu.Unlock()
		}
	}()
	current := "" // the version that must be served
	var failedVersions []string
	for i := range 20 {
		v := fmt.Sprint(i)
		files := map[string]string{"version": "v" + v + "</html>\n", "fail": "", "unhealthy": ""}
		wantFail := i%3 == 2
		if wantFail {
			files["fail"] = "yes" // the step fails after writing half the page
		}
		if i == 7 {
			files["unhealthy"] = "yes"
			wantFail = true
		}
		_, run := r.push(files)
		if i == 0 {
			started.Store(true)
		}
		switch {
		case wantFail && run.State != store.RunFailed:
			t.Fatalf("deploy %d: run %+v; want failed", i, run)
		case !wantFail && run.State != store.RunSucceeded:
			t.Fatalf("deploy %d: run %+v; want succeeded", i, run)
		case wantFail:
			if i != 7 { // 7 was live, and served, while its health was checked
				failedVersions = append(failedVersions, v)
			}
		default:
			current = v
		}
		if i == 7 && !strings.HasPrefix(run.Error, "health check failed; reverted to ") {
			t.Errorf("deploy 7's error %q; want the health check and the revert", run.Error)
		}
		res, err := http.Get(srv.URL + "/page.txt")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if want := "<html>v" + current + "</html>\n"; string(body) != want {
			t.Errorf("after deploy %d (%s) the server answers %q; want %q", i, run.State, body, want)
		}
	}
	close(stop)
	<-done
	if len(bad) > 0 {
		t.Errorf("%d of %d responses failed or were half-built, e.g. %q", len(bad), requests.Load(), bad[:min(5, len(bad))])
	}
	for _, v := range failedVersions {
		if served[v] > 0 {
			t.Errorf("version %s, whose run failed, was served %d times", v, served[v])
		}
	}
	if requests.Load() < 100 {
		t.Errorf("only %d requests while deploying; the poller did not poll", requests.Load())
	}
	t.Logf("%d responses, all whole; versions served: %v", requests.Load(), served)
	if got := len(r.releases()); got > 3+1 { // kept releases, and the failed release of the last run
		t.Errorf("releases %v; want at most keep_releases (3) and the last failed one", r.releases())
	}
}

// Rollback switches to the kept release before the live one without
// running a step, repeated it walks back, --to picks a run or a commit,
// and a release no longer kept is built again.
func TestRollbackSwitches(t *testing.T) {
	t.Parallel()
	r := newReleaseRig(t, `steps = [["sh", "-c", "echo build $DH_COMMIT >> $TRACE; sleep 1"]]
activate = [["sh", "-c", "echo activate $DH_COMMIT >> $TRACE"]]
keep_releases = 3`)
	var c []string
	for i := range 4 {
		sha, _ := r.push(map[string]string{"n": fmt.Sprint(i)})
		c = append(c, sha)
	}
	w := r.worker()
	defer w.Close()
	ctx := context.Background()
	builds := strings.Count(r.readTrace(), "build ")
	start := time.Now()
	for _, want := range []string{c[2], c[1]} {
		run, err := w.Rollback(ctx, deploy.RollbackOptions{})
		if err != nil || run.Commit != want || run.State != store.RunSucceeded || run.Trigger != deploy.TriggerRollback || r.head() != want ||
			!strings.Contains(run.Note, "switched to the kept release") {
			t.Fatalf("Rollback() = %+v, %v, head %s; want %s", run, err, r.head(), want)
		}
	}
	switched := time.Since(start) / 2
	if got := strings.Count(r.readTrace(), "build "); got != builds {
		t.Errorf("rollbacks ran %d build steps; want none", got-builds)
	}
	if !strings.HasSuffix(r.readTrace(), "activate "+c[2]+"\nactivate "+c[1]+"\n") {
		t.Errorf("trace %q; want the activation of each release switched to", r.readTrace())
	}
	// c0's release was pruned (keep_releases = 3): built again.
	start = time.Now()
	run, err := w.Rollback(ctx, deploy.RollbackOptions{})
	rebuilt := time.Since(start)
	if err != nil || run.Commit != c[0] || r.head() != c[0] || strings.Count(r.readTrace(), "build ") != builds+1 {
		t.Fatalf("Rollback() to a pruned release = %+v, %v; want %s built again", run, err, c[0])
	}
	t.Logf("rollback by switching: %v; rollback that rebuilds (a 1 s build): %v", switched, rebuilt)
	if _, err := w.Rollback(ctx, deploy.RollbackOptions{}); cli.ExitStatus(err) != sysexits.Unavailable {
		t.Errorf("Rollback() at the first commit = %v; want Unavailable", err)
	}
	runs := r.runs()
	// --to a run id, then to a commit prefix.
	run, err = w.Rollback(ctx, deploy.RollbackOptions{To: fmt.Sprint(runs[3].ID)})
	if err != nil || run.Commit != c[3] || r.head() != c[3] {
		t.Fatalf("Rollback(--to %d) = %+v, %v; want %s", runs[3].ID, run, err, c[3])
	}
	run, err = w.Rollback(ctx, deploy.RollbackOptions{To: c[2][:8]})
	if err != nil || run.Commit != c[2] || r.head() != c[2] {
		t.Fatalf("Rollback(--to %s) = %+v, %v; want %s", c[2][:8], run, err, c[2])
	}
	if _, err := w.Rollback(ctx, deploy.RollbackOptions{To: c[2]}); cli.ExitStatus(err) != sysexits.Unavailable ||
		!strings.Contains(err.Error(), "already live") {
		t.Errorf("Rollback(--to the live commit) = %v; want Unavailable, already live", err)
	}
	for _, to := range []string{"999999", "deadbeef", "zz"} {
		if _, err := w.Rollback(ctx, deploy.RollbackOptions{To: to}); cli.ExitStatus(err) != sysexits.Unavailable {
			t.Errorf("Rollback(--to %s) = %v; want Unavailable", to, err)
		}
	}
}

// After a failed first deploy nothing is live, path does not exist, and
// rollback says there is nothing earlier.
func TestRollbackAfterFailedFirstDeploy(t *testing.T) {
	t.Parallel()
	r := newReleaseRig(t, `steps = [["sh", "-c", "exit 3"]]`)
	if _, run := r.push(nil); run.State != store.RunFailed {
		t.Fatalf("run %+v; want failed", run)
	}
	if _, err := os.Lstat(r.path()); !os.IsNotExist(err) {
		t.Errorf("path after a failed first build: %v; want none", err)
	}
	w := r.worker()
	defer w.Close()
	_, err := w.Rollback(context.Background(), deploy.RollbackOptions{})
	if cli.ExitStatus(err) != sysexits.Unavailable || !strings.Contains(err.Error(), "no successful run yet") {
		t.Errorf("Rollback() = %v; want Unavailable saying nothing succeeded yet", err)
	}
}

// A failed activation or health check switches back, activates the
// previous release again and records "health check failed; reverted to
// <commit>"; the steps see DH_RELEASE_DIR and DH_PREVIOUS_RELEASE_DIR.
func TestHealthCheckReverts(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	r := newReleaseRig(t, fmt.Sprintf(`steps = [["sh", "-c", "echo build $DH_RELEASE_DIR $DH_PREVIOUS_RELEASE_DIR >> $TRACE"]]
activate = [["sh", "-c", "echo activate $DH_COMMIT $DH_RELEASE_DIR $DH_PREVIOUS_RELEASE_DIR >> $TRACE; test ! -e broken"]]
health_url = %q
health_retries = 2
health_interval = "10ms"`, srv.URL))
	healthy.Store(true)
	first, run1 := r.push(nil)
	rel1 := filepath.Join(r.releasesDir(), deploy.ReleaseName(run1.ID, first))
	if run1.State != store.RunSucceeded || r.live() != rel1 {
		t.Fatalf("first run %+v, live %s; want succeeded, %s", run1, r.live(), rel1)
	}
	healthy.Store(false)
	second, run2 := r.push(map[string]string{"x": "1"})
	rel2 := filepath.Join(r.releasesDir(), deploy.ReleaseName(run2.ID, second))
	if run2.State != store.RunFailed || !strings.HasPrefix(run2.Error, "health check failed; reverted to "+first+": ") ||
		r.live() != rel1 {
		t.Fatalf("unhealthy run %+v, live %s; want failed, reverted to %s", run2, r.live(), rel1)
	}
	want := fmt.Sprintf("build %s %s\nactivate %s %s %s\nactivate %s %s %s\n", rel2, rel1, second, rel2, rel1, first, rel1, rel2)
	if got := r.readTrace(); !strings.HasSuffix(got, want) {
		t.Errorf("trace %q; want it to end with %q (build, activate, activate of the previous again)", got, want)
	}
	healthy.Store(true)
	third, run3 := r.push(map[string]string{"broken": "1"})
	if run3.State != store.RunFailed || !strings.HasPrefix(run3.Error, "activation failed; reverted to "+first) || r.live() != rel1 {
		t.Errorf("run with a failing activation %+v, live %s; want failed, reverted to %s", run3, r.live(), rel1)
	}
	_ = third
}

// keep_releases keeps that many releases of succeeded runs, and never
// deletes the live one or the one before it; failed releases go at the
// next successful switch.
func TestKeepReleases(t *testing.T) {
	t.Parallel()
	r := newReleaseRig(t, `steps = [["sh", "-c", "test ! -e fail"]]
keep_releases = 2`)
	var names []string
	for i := range 4 {
		sha, run := r.push(map[string]string{"n": fmt.Sprint(i)})
		names = append(names, deploy.ReleaseName(run.ID, sha))
	}
	if got := r.releases(); !slices.Equal(got, names[2:]) {
		t.Errorf("releases %v; want the newest two %v", got, names[2:])
	}
	sha, run := r.push(map[string]string{"fail": "1"})
	failed := deploy.ReleaseName(run.ID, sha)
	if got := r.releases(); !slices.Contains(got, failed) || len(got) != 3 {
		t.Errorf("releases after a failed run %v; want the failed one kept for inspection", got)
	}
	sha, run = r.push(map[string]string{"fail": ""})
	if got := r.releases(); !slices.Equal(got, []string{names[3], deploy.ReleaseName(run.ID, sha)}) {
		t.Errorf("releases %v; want the live and the previous one, the failed one gone", got)
	}
	// With keep_releases = 1, the one before the live one is kept too.
	r.cfg.Deployments["app"].KeepReleases = 1
	sha2, run2 := r.push(map[string]string{"n": "9"})
	if got := r.releases(); !slices.Equal(got, []string{deploy.ReleaseName(run.ID, sha), deploy.ReleaseName(run2.ID, sha2)}) {
		t.Errorf("releases with keep_releases = 1: %v; want the live and the previous one", got)
	}
}

// shared paths live once in releases_dir/shared and are linked into every
// release (the first release seeds them); carry copies node_modules from
// the live release, never sharing the directory.
func TestSharedAndCarry(t *testing.T) {
	t.Parallel()
	r := newReleaseRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT >> storage/log; cat .env >> $TRACE; mkdir -p node_modules; cat node_modules/builds > b.tmp 2>/dev/null; echo >> b.tmp; mv b.tmp node_modules/builds; wc -l < node_modules/builds >> $TRACE; echo new > node_modules/new.tmp && mv node_modules/new.tmp node_modules/fresh"]]
shared = ["storage", ".env"]
carry = ["node_modules"]`)
	first, _ := r.push(map[string]string{".env": "SECRET=from-repo\n"})
	shared := filepath.Join(r.releasesDir(), "shared")
	if b, err := os.ReadFile(filepath.Join(shared, ".env")); err != nil || string(b) != "SECRET=from-repo\n" {
		t.Errorf("shared/.env = %q, %v; want it seeded from the first release", b, err)
	}
	os.WriteFile(filepath.Join(shared, ".env"), []byte("SECRET=operator\n"), 0o600)
	live1 := r.live()
	second, run := r.push(map[string]string{".env": "SECRET=changed-in-repo\n"})
	if run.State != store.RunSucceeded {
		t.Fatalf("run %+v", run)
	}
	if got, want := r.readTrace(), "SECRET=from-repo\n1\nSECRET=operator\n2\n"; got != want {
		t.Errorf("trace %q; want %q (the shared .env, node_modules carried)", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(shared, "storage", "log")); string(b) != first+"\n"+second+"\n" {
		t.Errorf("shared storage/log = %q; want both runs", b)
	}
	if fi, err := os.Lstat(filepath.Join(r.live(), "node_modules")); err != nil || !fi.IsDir() {
		t.Errorf("node_modules in the new release: %v, %v; want a directory of its own", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(live1, "node_modules", "builds")); string(b) != "\n" {
		t.Errorf("the previous release's node_modules/builds = %q; want it untouched by the next build", b)
	}
	// A repository cannot point a shared path outside the release.
	outside := t.TempDir()
	r.git(r.work, "rm", "-q", "-r", "--cached", ".")
	os.Remove(filepath.Join(r.work, ".env"))
	if err := os.Symlink(outside, filepath.Join(r.work, ".env")); err != nil {
		t.Fatal(err)
	}
	before := r.live()
	_, run = r.push(nil)
	if run.State != store.RunSucceeded || r.live() == before {
		t.Fatalf("run %+v", run)
	}
	if t2, _ := os.Readlink(filepath.Join(r.live(), ".env")); t2 != filepath.Join(shared, ".env") {
		t.Errorf(".env in the release links to %q; want the shared one", t2)
	}
	if des, _ := os.ReadDir(outside); len(des) != 0 {
		t.Errorf("the directory a committed link pointed to got %v", des)
	}
}

// A committed symbolic link cannot make a shared path's parent escape the
// release: the run fails before any step and path stays.
func TestSharedEscapeRefused(t *testing.T) {
	t.Parallel()
	r := newReleaseRig(t, `steps = [["sh", "-c", "echo ran >> $TRACE"]]
shared = ["data/uploads"]`)
	_, run := r.push(nil)
	live := r.live()
	if err := os.Symlink(t.TempDir(), filepath.Join(r.work, "data")); err != nil {
		t.Fatal(err)
	}
	_, run = r.push(nil)
	if run.State != store.RunFailed || !strings.Contains(run.Error, `shared "data/uploads"`) || r.live() != live ||
		strings.Count(r.readTrace(), "ran") != 1 {
		t.Errorf("run %+v, live %s, trace %q; want failed before the steps, %s still live", run, r.live(), r.readTrace(), live)
	}
}

// A committed symbolic link at a shared path never seeds it: the shared
// path starts as an empty directory instead.
func TestSharedNotSeededFromLink(t *testing.T) {
	t.Parallel()
	r := newReleaseRig(t, `shared = [".env"]`)
	if err := os.Symlink("/etc/hostname", filepath.Join(r.work, ".env")); err != nil {
		t.Fatal(err)
	}
	if _, run := r.push(nil); run.State != store.RunSucceeded {
		t.Fatalf("run %+v", run)
	}
	if fi, err := os.Lstat(filepath.Join(r.releasesDir(), "shared", ".env")); err != nil || !fi.IsDir() {
		t.Errorf("shared/.env: %v, %v; want an empty directory, not the committed link", fi, err)
	}
}

// An in-place checkout at path is migrated on the first run with
// strategy releases: path becomes a link, the old checkout the previous
// release, and rollback switches back to it without a build.
func TestMigrateInPlace(t *testing.T) {
	t.Parallel()
	r := newRig(t, `strategy = "in-place"
steps = [["sh", "-c", "echo build $DH_COMMIT >> $TRACE"]]`)
	first, run1 := r.push(nil)
	if fi, err := os.Lstat(r.path()); err != nil || !fi.IsDir() {
		t.Fatalf("in-place path: %v, %v", fi, err)
	}
	doc, _ := os.ReadFile(r.file)
	doc = []byte(strings.Replace(string(doc), `strategy = "in-place"`, `strategy = "releases"`, 1))
	os.WriteFile(r.file, doc, 0o600)
	var err error
	if r.cfg, err = config.Load(r.file); err != nil {
		t.Fatal(err)
	}
	second, run2 := r.push(map[string]string{"x": "1"})
	if run2.State != store.RunSucceeded || run2.Previous != first ||
		r.live() != filepath.Join(r.releasesDir(), deploy.ReleaseName(run2.ID, second)) {
		t.Fatalf("first run with releases %+v, live %s", run2, r.live())
	}
	old := deploy.ReleaseName(run1.ID, first)
	if got := r.releases(); !slices.Equal(got, []string{old, deploy.ReleaseName(run2.ID, second)}) {
		t.Errorf("releases %v; want the migrated checkout %s and the new one", got, old)
	}
	w := r.worker()
	defer w.Close()
	builds := r.readTrace()
	run, err := w.Rollback(context.Background(), deploy.RollbackOptions{})
	if err != nil || run.Commit != first || r.head() != first || r.readTrace() != builds {
		t.Errorf("Rollback() = %+v, %v; want a switch to the migrated %s without a build", run, err, first)
	}
}

// A migration killed between the exchange and the move left the old
// checkout beside path: the next switch keeps it as a release.
func TestMigrationResumed(t *testing.T) {
	t.Parallel()
	r := newRig(t, `strategy = "in-place"`)
	first, run1 := r.push(nil)
	// What the exchange leaves: the link at path (to a release that the
	// next run replaces), the old checkout at the temporary name.
	if err := os.Rename(r.path(), filepath.Join(r.dir, ".checkout.dh-deploy-switch")); err != nil {
		t.Fatal(err)
	}
	doc, _ := os.ReadFile(r.file)
	os.WriteFile(r.file, []byte(strings.Replace(string(doc), `strategy = "in-place"`, `strategy = "releases"`, 1)), 0o600)
	var err error
	if r.cfg, err = config.Load(r.file); err != nil {
		t.Fatal(err)
	}
	second, run2 := r.push(map[string]string{"x": "1"})
	if run2.State != store.RunSucceeded || r.head() != second {
		t.Fatalf("run %+v, head %s", run2, r.head())
	}
	if got, want := r.releases(), []string{deploy.ReleaseName(run1.ID, first), deploy.ReleaseName(run2.ID, second)}; !slices.Equal(got, want) {
		t.Errorf("releases %v; want %v", got, want)
	}
}

// A directory at path that dh-deploy did not make is never taken over.
func TestReleasesRefuseForeignPath(t *testing.T) {
	t.Parallel()
	r := newReleaseRig(t, `steps = [["sh", "-c", "echo ran >> $TRACE"]]`)
	os.MkdirAll(r.path(), 0o755)
	os.WriteFile(filepath.Join(r.path(), "index.html"), []byte("mine"), 0o644)
	_, run := r.push(nil)
	if run.State != store.RunFailed || !strings.Contains(run.Error, "does not take it over") || r.readTrace() != "" {
		t.Errorf("run %+v; want failed, naming path", run)
	}
	if b, _ := os.ReadFile(filepath.Join(r.path(), "index.html")); string(b) != "mine" {
		t.Errorf("path's file = %q; want it untouched", b)
	}
}
