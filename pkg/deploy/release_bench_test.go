package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/gitrepo"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// BenchmarkPrepareRelease prepares a release of a 10,000-file repository
// (a worktree of the bare mirror and a shared path linked in: what a run
// does before its first step) beside the floor, a plain git checkout of
// the same commit from the same mirror into an empty directory, both in
// each iteration, in alternating order. Target (issue 16): at most 1.3x the floor.
func BenchmarkPrepareRelease(b *testing.B) {
	git := testenv.Command(b, "git")
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	gitRun := func(dir string, env []string, args ...string) {
		b.Helper()
		cmd := exec.Command(git, args...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	gitRun(dir, nil, "init", "-q", "-b", "main", src)
	for i := range 10_000 {
		p := filepath.Join(src, fmt.Sprintf("d%03d", i/100), fmt.Sprintf("f%05d.txt", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, fmt.Appendf(nil, "file %d\n%0200d\n", i, i), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	gitRun(src, nil, "add", "-A")
	gitRun(src, []string{"GIT_AUTHOR_NAME=b", "GIT_AUTHOR_EMAIL=b@b", "GIT_COMMITTER_NAME=b", "GIT_COMMITTER_EMAIL=b@b"},
		"commit", "-q", "-m", "10,000 files")
	out, err := exec.Command(git, "-C", src, "rev-parse", "HEAD").Output()
	if err != nil {
		b.Fatal(err)
	}
	sha := string(out[:40])

	d := &config.Deployment{Name: "bench", Kind: config.KindSteps, Strategy: config.StrategyReleases,
		Path: filepath.Join(dir, "app"), ReleasesDir: filepath.Join(dir, "app.releases"), Shared: []string{"storage"},
		StepTimeout: time.Minute}
	w := &Worker{d: d, log: slog.New(slog.DiscardHandler), getenv: os.Getenv,
		repo: &gitrepo.Repo{Path: d.MirrorDir(), Bare: true, URL: src, Timeout: time.Minute}}
	ctx := context.Background()
	if err := w.repo.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	var floor, release time.Duration
	b.ResetTimer()
	for i := range b.N {
		empty := filepath.Join(dir, fmt.Sprintf("floor-%d", i))
		os.Mkdir(empty, 0o755)
		rel := filepath.Join(d.ReleasesDir, ReleaseName(int64(i+1), sha))
		checkout := func() {
			start := time.Now()
			gitRun(dir, []string{"GIT_INDEX_FILE=" + empty + ".index"},
				"--git-dir="+d.MirrorDir(), "--work-tree="+empty, "checkout", "--quiet", "--force", sha, "--", ".")
			floor += time.Since(start)
		}
		prepare := func() {
			r := &run{w: w, req: Request{Commit: sha}}
			start := time.Now()
			if err := r.prepare(ctx, rel, ""); err != nil {
				b.Fatal(err)
			}
			release += time.Since(start)
		}
		// Each goes first every other time: neither always meets the
		// other's write-back.
		if i%2 == 0 {
			checkout()
			prepare()
		} else {
			prepare()
			checkout()
		}

		b.StopTimer()
		os.RemoveAll(empty)
		os.Remove(empty + ".index")
		os.RemoveAll(rel)
		b.StartTimer()
	}
	b.StopTimer()
	w.repo.PruneWorktrees(ctx)
	ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
	b.ReportMetric(ms(floor), "floor-ms")
	b.ReportMetric(ms(release), "release-ms")
	b.ReportMetric(float64(release)/float64(floor), "x-floor")
	b.ReportMetric(0, "ns/op")
}
