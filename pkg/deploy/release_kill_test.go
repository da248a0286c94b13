package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// The real dh-deploy, SIGKILLed at points spread over a whole run of
// strategy releases (fetch, worktree, step, switch, recording, prune,
// maintenance), leaves nothing that makes the next run refuse or fail:
// the worker started again deploys the push, once, and path serves it.
func TestReleasesKilledAnywhere(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-deploy")
	r := newReleaseRig(t, `steps = [["sh", "-c", "echo \"$DH_COMMIT\" > built-commit"]]
keep_releases = 2`)
	work := func(kill time.Duration) (time.Duration, string) {
		cmd := exec.Command(bin, "-c", r.file, "run", "app", "--once")
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if kill > 0 {
			time.AfterFunc(kill, func() { cmd.Process.Signal(syscall.SIGKILL) })
		}
		err := cmd.Wait()
		if kill == 0 && err != nil {
			t.Fatalf("dh-deploy run app --once = %v\n%s", err, out)
		}
		return time.Since(start), out.String()
	}
	// One whole run, unkilled, to know how long a run takes.
	sha := r.commit("main", nil)
	r.enqueue("d-0", "refs/heads/main", sha)
	whole, _ := work(0)
	const kills = 40
	for i := 1; i <= kills; i++ {
		sha := r.commit("main", map[string]string{"n": fmt.Sprint(i)})
		delivery := fmt.Sprintf("d-%d", i)
		r.enqueue(delivery, "refs/heads/main", sha)
		// From 5% to 120% of a whole run, in steps.
		at := whole * time.Duration(5+i*115/kills) / 100
		work(at)
		_, out := work(0)
		var ok int
		for _, run := range r.runs() {
			if run.Delivery != delivery {
				continue
			}
			switch run.State {
			case store.RunSucceeded:
				ok++
			case store.RunInterrupted:
			default:
				t.Errorf("kill %d at %v of a %v run: run %d %s: %s\nworker said:\n%s", i, at, whole, run.ID, run.State, run.Error, out)
			}
		}
		if ok != 1 {
			t.Errorf("kill %d at %v: %d successful runs of %s; want 1", i, at, ok, delivery)
		}
		if b, err := os.ReadFile(filepath.Join(r.path(), "built-commit")); err != nil || strings.TrimSpace(string(b)) != sha {
			t.Errorf("kill %d at %v: path serves %q (%v); want %s", i, at, b, err, sha)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	// What the kills left is cleaned up by the runs after them: no release
	// directory but the kept ones, and no worktree of the mirror whose
	// directory is gone (a killed git worktree add leaves its entry
	// locked, which git worktree prune never forgets).
	if got := r.releases(); len(got) > 2 {
		t.Errorf("releases %v; want keep_releases = 2 of them", got)
	}
	out := r.git(filepath.Join(r.releasesDir(), "repo.git"), "worktree", "list", "--porcelain")
	for _, l := range strings.Split(out, "\n") {
		if dir, ok := strings.CutPrefix(l, "worktree "); ok && dir != filepath.Join(r.releasesDir(), "repo.git") {
			if _, err := os.Stat(dir); err != nil {
				t.Errorf("the mirror still lists the worktree %s: %v", dir, err)
			}
		}
	}
	t.Logf("a whole run took %v; %d kills between 5%% and 120%% of it", whole, kills)
}
