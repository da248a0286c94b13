package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// buildTools builds the three tools the demo runs into one directory.
func buildTools(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"dh-receive", "dh-route", "dh-deploy"} {
		if err := os.Symlink(testenv.Build(t, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The demo deploys its push: the built page is in the checkout, the
// report shows the history, and PostgreSQL and the daemons are stopped.
func TestRun(t *testing.T) {
	t.Parallel()
	bin := buildTools(t)
	dir := testenv.ShortTempDir(t, "dh-demo")
	var out strings.Builder
	if err := Run(context.Background(), Options{BinDir: bin, Dir: dir, Keep: true, Out: &out}); err != nil {
		t.Fatalf("Run() = %v\n%s", err, out.String())
	}
	page, err := os.ReadFile(filepath.Join(dir, siteDir, "public", "index.html"))
	if err != nil || string(page) != IndexHTML {
		t.Errorf("deployed public/index.html = %q, %v; want %q", page, err, IndexHTML)
	}
	if b, err := os.ReadFile(filepath.Join(dir, siteDir, "public", "built-at")); err != nil || len(b) == 0 {
		t.Errorf("deployed public/built-at = %q, %v; want the build time", b, err)
	}
	for _, s := range []string{"run 1 succeeded", "history demo", "<h1>Hello from dh-deployer</h1>",
		"stopping dh-receive, dh-route, dh-deploy and PostgreSQL ... ok", "Kept " + dir} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("Run() reported:\n%s\nwant it to contain %q", out.String(), s)
		}
	}
	pids, _ := filepath.Glob(filepath.Join(dir, "pg.*", "data", "postmaster.pid"))
	if len(pids) != 0 {
		t.Errorf("PostgreSQL still running after Run(): %v", pids)
	}
}

// A build that fails makes Run fail with the run's log, and the directory
// is removed all the same.
func TestRunFailingStep(t *testing.T) {
	t.Parallel()
	bin := buildTools(t)
	dir := testenv.ShortTempDir(t, "dh-demo")
	var out strings.Builder
	err := Run(context.Background(), Options{BinDir: bin, Dir: dir, Out: &out,
		Steps: [][]string{{"sh", "-c", "echo the build broke >&2; exit 3"}}})
	if err == nil || !strings.Contains(err.Error(), "run 1 failed") || !strings.Contains(err.Error(), "the build broke") {
		t.Errorf("Run() with a failing step = %v; want run 1 failed, with the run's log", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s after Run(): %v; want it removed", dir, err)
	}
}

// Without the tools, Run says to build them.
func TestRunNoTools(t *testing.T) {
	err := Run(context.Background(), Options{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Run() without the tools = %v; want a hint to run make build", err)
	}
}
