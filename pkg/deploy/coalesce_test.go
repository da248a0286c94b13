package deploy_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/deploy"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// fetchCounter is a slog handler that counts gitrepo's "fetch" records.
type fetchCounter struct{ n *atomic.Int64 }

func (h fetchCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h fetchCounter) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message == "fetch" {
		h.n.Add(1)
	}
	return nil
}
func (h fetchCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h fetchCounter) WithGroup(string) slog.Handler      { return h }

// drainCounting drains the queue with one worker, as dh-deploy run does,
// and returns how many fetches it made.
func (r *rig) drainCounting() (int64, error) {
	r.t.Helper()
	var n atomic.Int64
	err := r.drainWith(deploy.Options{Logger: slog.New(fetchCounter{&n}), Getenv: os.Getenv})
	return n.Load(), err
}

// commits makes n commits on the work clone's main, pushed once, and
// returns them, oldest first.
func (r *rig) commits(n int) []string {
	r.t.Helper()
	shas := make([]string, n)
	for i := range shas {
		r.git(r.work, "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("change %d", i))
		shas[i] = r.git(r.work, "rev-parse", "HEAD")
	}
	r.git(r.work, "push", "-q", "-f", "origin", "HEAD:refs/heads/main")
	return shas
}

// A waiting set of 300 pushes (more than a batch), among them a forged
// commit, is decided with one fetch: every valid older push superseded by
// the newest, the forged one judged on its own (refused); then the newest
// deploys.
func TestCoalesceWaitingSetOneFetch(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`)
	shas := r.commits(300)
	forged := fmt.Sprintf("%040x", 7)
	for i, sha := range shas {
		if i == 100 {
			r.enqueue("forged", "refs/heads/main", forged)
		}
		r.enqueue(fmt.Sprintf("d-%03d", i), "refs/heads/main", sha)
	}
	fetches, err := r.drainCounting()
	if err != nil {
		t.Fatalf("drain = %v", err)
	}
	if fetches > 3 {
		t.Errorf("drain fetched %d times; want at most 3 (the set, the newest's deploy, the forged push's deploy)", fetches)
	}
	runs := r.runs()
	var superseded, succeeded []string
	for _, run := range runs {
		if run.Delivery == "forged" && run.State != store.RunRefused {
			t.Errorf("the forged push's run is %s; want refused", run.State)
		}
		switch run.State {
		case store.RunSuperseded:
			superseded = append(superseded, run.Delivery)
		case store.RunSucceeded:
			succeeded = append(succeeded, run.Delivery)
		}
	}
	if len(superseded) != 299 || slices.Contains(superseded, "forged") || slices.Contains(superseded, "d-299") {
		t.Errorf("superseded %d runs (%v…); want the 299 older valid pushes", len(superseded), superseded[:min(3, len(superseded))])
	}
	if !slices.Equal(succeeded, []string{"d-299"}) {
		t.Errorf("succeeded %v; want only the newest, d-299", succeeded)
	}
	if got := r.readTrace(); got != shas[299]+"\n" {
		t.Errorf("steps ran for %q; want only the newest", got)
	}
}

// BenchmarkCoalesce drains 10 and 1,000 pushes of one branch waiting in a
// deployment's queue (a trivial step) with one worker, as dh-deploy run
// does, and reports the time, the fetches and the ratio of 1,000 to 10.
// Issue 21's target: at most 3x, with at most 2 fetches.
func BenchmarkCoalesce(b *testing.B) {
	var base float64
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("pushes=%d", n), func(b *testing.B) {
			var total time.Duration
			var fetches int64
			for range b.N {
				b.StopTimer()
				r := newRig(b, `steps = [["true"]]`)
				for i, sha := range r.commits(n) {
					r.enqueue(fmt.Sprintf("d-%04d", i), "refs/heads/main", sha)
				}
				b.StartTimer()
				start := time.Now()
				f, err := r.drainCounting()
				total += time.Since(start)
				if err != nil {
					b.Fatalf("drain = %v", err)
				}
				fetches = max(fetches, f)
				if runs := r.runs(); len(runs) != n || runs[n-1].State != store.RunSucceeded {
					b.Fatalf("%d runs, the last %s; want %d, the last succeeded", len(runs), runs[len(runs)-1].State, n)
				}
			}
			ms := float64(total.Microseconds()) / 1000 / float64(b.N)
			b.ReportMetric(ms, "ms")
			b.ReportMetric(float64(fetches), "fetches")
			if n == 10 {
				base = ms
			} else if base > 0 {
				b.ReportMetric(ms/base, "ratio-to-10")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
