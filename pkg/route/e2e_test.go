package route_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// synthetic returns the i-th delivery of a mixed backlog and where it must
// be forwarded: pushes to a branch two deployments follow, to a followed
// tag, to a followed branch pattern, and to a repository nobody follows.
func synthetic(t testing.TB, prefix string, i int) (delivery string, data []byte, targets []string) {
	delivery = fmt.Sprintf("%s-%05d", prefix, i)
	repo, ref := "Codertocat/Hello-World", "refs/heads/master"
	targets = []string{"hello", "hello-mirror"}
	switch i % 5 {
	case 2:
		ref, targets = "refs/tags/simple-"+delivery, []string{"hello-tags"}
	case 3:
		repo, ref, targets = "bradrydzewski/drone-test-go", "refs/heads/feature-"+delivery, []string{"drone"}
	case 4:
		repo, targets = "someone/else", nil
	}
	payload := fmt.Sprintf(`{"ref":%q,"before":"%040d","after":"%040x","created":false,"deleted":false,"forced":false,`+
		`"repository":{"full_name":%q,"created_at":1700000000,"pushed_at":1700000001},"head_commit":{"id":"%040x","message":"change %d"}}`,
		ref, i, i+1, repo, i+1, i)
	return delivery, entry(t, delivery, "push", []byte(payload)), targets
}

// checkRouted asserts that every delivery has a final event row and exactly
// one entry in each of its deployment queues.
func checkRouted(t *testing.T, r *rig, want map[string][]string) {
	t.Helper()
	if names, _ := r.main.List(); len(names) != 0 {
		t.Errorf("queues/main still holds %d entries; want none", len(names))
	}
	if failed, _ := r.main.Failed(); len(failed) != 0 {
		t.Errorf("queues/main/failed = %v; want none", failed)
	}
	got := forwarded(t, r.cfg)
	ctx := context.Background()
	bad := 0
	for delivery, targets := range want {
		row, err := r.st.GetEvent(ctx, delivery)
		status := store.StatusRouted
		if len(targets) == 0 {
			status = store.StatusVoided
		}
		if err != nil || row.Status != status {
			t.Errorf("GetEvent(%s) = %s, %v; want %s", delivery, row.Status, err, status)
			bad++
		}
		wantQueued := map[string]int{}
		for _, d := range targets {
			wantQueued[d] = 1
		}
		if !mapsEqual(got[delivery], wantQueued) {
			t.Errorf("Route(%s) queued %v; want %v", delivery, got[delivery], wantQueued)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many errors")
		}
	}
	if len(got) > len(want) {
		t.Errorf("deployment queues hold %d deliveries; want at most %d", len(got), len(want))
	}
}

// TestCrash kills dh-route with SIGKILL at random moments while 500
// deliveries flow through, restarts it, and shows nothing is lost or
// doubled.
func TestCrash(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-route")
	r := newRig(t, storetest.NewMigrated(t))
	want := map[string][]string{}
	for i := range 500 {
		delivery, data, targets := synthetic(t, "crash", i)
		want[delivery] = targets
		r.publish(t, data)
	}

	var logs bytes.Buffer
	kills := 0
	for kills < 15 {
		if names, _ := r.main.List(); len(names) == 0 {
			break
		}
		cmd := exec.Command(bin, "-c", r.file, "run")
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(30+rand.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		kills++
	}
	out, err := exec.Command(bin, "-c", r.file, "run", "--once").CombinedOutput()
	if err != nil {
		t.Fatalf("dh-route run --once after %d kills = %v\n%s", kills, err, out)
	}
	t.Logf("%d kills; %d decisions resumed", kills, strings.Count(logs.String()+string(out), "reason=resumed"))
	checkRouted(t, r, want)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutage stops Postgres under a running router: entries wait, one
// log line says the database went away, one that it is back, and every
// delivery is routed once.
func TestOutage(t *testing.T) {
	t.Parallel()
	cluster, r := privateRig(t)
	var logs testenv.Buffer
	r.logger = slog.New(slog.NewTextHandler(&logs, nil))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := r.main.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	router := route.New(r.cfg, r.st, route.Options{Logger: r.logger, Wait: true})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, router.Handle, queue.Options{Logger: r.logger}) }()

	want := map[string][]string{}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			delivery, data, targets := synthetic(t, "outage", i)
			want[delivery] = targets
			r.publish(t, data)
		}
	}
	empty := func() bool { names, _ := r.main.List(); return len(names) == 0 }
	publish(0, 50)
	waitFor(t, "the first deliveries to be routed", 20*time.Second, empty)
	cluster.Stop(t)
	publish(50, 100)
	time.Sleep(time.Second)
	if empty() {
		t.Fatalf("queues/main drained while the database was down")
	}
	cluster.Start(t)
	waitFor(t, "queues/main to drain after the outage", 45*time.Second, empty)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v; want nil", err)
	}
	checkRouted(t, r, want)
	out := logs.String()
	if strings.Count(out, "database unavailable") != 1 || strings.Count(out, "database available again") != 1 {
		t.Errorf("logs:\n%s\nwant one \"database unavailable\" and one \"database available again\" line", out)
	}
}

// TestDaemon drives the binary: a second instance is refused, SIGHUP
// reloads the configuration (and keeps it when the new one is bad),
// status shows the queues and decisions, SIGTERM stops it cleanly.
func TestDaemon(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-route")
	r := newRig(t, storetest.NewMigrated(t))
	var logs testenv.Buffer
	cmd := exec.Command(bin, "-c", r.file, "run")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "dh-route to start", 10*time.Second, func() bool { return strings.Contains(logs.String(), "msg=routing") })

	out, err := exec.Command(bin, "-c", r.file, "run", "--once").CombinedOutput()
	if code := exitCode(err); code != sysexits.TempFail || !strings.Contains(string(out), "already being consumed") {
		t.Errorf("a second dh-route run = %d, %q; want 75, already being consumed", code, out)
	}

	push := []byte(`{"ref":"refs/heads/main","after":"e5","repository":{"full_name":"new/repo"}}`)
	empty := func() bool { names, _ := r.main.List(); return len(names) == 0 }
	status := func(delivery string) string {
		row, _ := r.st.GetEvent(context.Background(), delivery)
		return row.Status + " " + row.Reason + " " + strings.Join(row.Deployments, ",")
	}
	r.publish(t, entry(t, "hup-1", "push", push))
	waitFor(t, "hup-1", 10*time.Second, empty)

	r.writeConfig(t, deployments+"\n[deployments.newrepo]\nrepository = \"new/repo\"\nbranches = [\"main\"]\npath = \"/srv/new\"\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", 10*time.Second, func() bool { return strings.Contains(logs.String(), "configuration reloaded") })
	r.publish(t, entry(t, "hup-2", "push", push))
	waitFor(t, "hup-2", 10*time.Second, empty)

	r.writeConfig(t, deployments+"\n[deployments.newrepo]\nrepository = \"new/repo\"\nbrnaches = [\"main\"]\npath = \"/srv/new\"\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the failed reload", 10*time.Second, func() bool { return strings.Contains(logs.String(), "configuration reload failed") })
	r.publish(t, entry(t, "hup-3", "push", push))
	waitFor(t, "hup-3", 10*time.Second, empty)

	for delivery, want := range map[string]string{
		"hup-1": "voided not-followed ",
		"hup-2": "routed  newrepo",
		"hup-3": "routed  newrepo",
	} {
		if got := status(delivery); got != want {
			t.Errorf("Route(%s) = %q; want %q", delivery, got, want)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("dh-route run after SIGTERM = %v; want exit 0\n%s", err, logs.String())
	}
	if n := strings.Count(logs.String(), "msg=\"delivery decided\""); n != 3 {
		t.Errorf("dh-route logged %d decisions; want 3 (one per delivery):\n%s", n, logs.String())
	}

	r.writeConfig(t, deployments+"\n[deployments.newrepo]\nrepository = \"new/repo\"\nbranches = [\"main\"]\npath = \"/srv/new\"\n")
	r.publish(t, []byte("garbage\n"))
	if out, err := exec.Command(bin, "-c", r.file, "run", "--once").CombinedOutput(); err != nil {
		t.Fatalf("dh-route run --once = %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "-c", r.file, "status").Output()
	if err != nil {
		t.Fatalf("dh-route status = %v", err)
	}
	for _, s := range []string{"newrepo", "hup-3", "not-followed", "Failed entries", "entry is not a JSON object"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("dh-route status =\n%s\nwant it to mention %q", out, s)
		}
	}
	// A sidecar is written by the queue's consumer (a deployment's user
	// for its queue) and may quote a build: status shows its reason on
	// one line, without control characters.
	failedNow, _ := r.main.Failed()
	why := filepath.Join(r.main.Dir(), queue.FailedDir, failedNow[0]+queue.WhySuffix)
	hostile := `{"entry": "x", "queue": "main", "error": "bad\u001b]0;owned\u0007\r\nFAKE-ROW\u001b[2J", "attempts": 1}`
	if err := os.WriteFile(why, []byte(hostile), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "-c", r.file, "status").Output()
	if err != nil || strings.ContainsAny(string(out), "\x1b\x07\r") || !strings.Contains(string(out), "bad ]0;owned FAKE-ROW [2J") {
		t.Errorf("dh-route status with a hostile sidecar = %v\n%q\nwant its reason on one line, without control characters", err, out)
	}

	// replay a failed entry: still bad, so exit 65 and it stays.
	failed, _ := r.main.Failed()
	if len(failed) != 1 {
		t.Fatalf("queues/main/failed = %v; want 1 entry", failed)
	}
	err = exec.Command(bin, "-c", r.file, "replay", filepath.Join(r.main.Dir(), queue.FailedDir, failed[0])).Run()
	if code := exitCode(err); code != sysexits.DataErr {
		t.Errorf("dh-route replay of a bad entry = %d; want 65", code)
	}
}

func exitCode(err error) int {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// BenchmarkRouteBacklog drains a backlog of 10,000 deliveries (a fifth
// fanned out to two deployments, a fifth voided) with the real binary and
// reports its throughput and peak RSS: on a quiet disk, and beside a
// buffered writer on the queues' file system (receive.BenchmarkReceive's
// "writer": 1.5 GB kept dirty, never synced).
func BenchmarkRouteBacklog(b *testing.B) {
	bin := testenv.Build(b, "dh-route")
	url := storetest.NewMigrated(b)
	for _, cond := range []string{"quiet", "writer"} {
		b.Run(cond, func(b *testing.B) {
			r := newRig(b, url)
			// 10,000 deliveries a round, never consumed: no backlog limits.
			r.writeConfig(b, deployments+"\n[queues.deployments]\nmax_entries = 0\nmax_bytes = 0\n")
			if cond == "writer" {
				stop := testenv.BufferedWriter(b, r.dir, 1536<<20, 512<<20, 5*time.Minute)
				defer stop()
			}
			routeBacklog(b, bin, r, cond)
		})
	}
}

func routeBacklog(b *testing.B, bin string, r *rig, prefix string) {
	const backlog = 10000
	var total time.Duration
	var peak int64
	var cpu time.Duration
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		for i := range backlog {
			_, data, _ := synthetic(b, fmt.Sprintf("bench-%s-%d", prefix, n), i)
			// Written directly (no fsync): preparing the backlog is not measured.
			if err := os.WriteFile(filepath.Join(r.main.Dir(), queue.NewName()), data, 0o640); err != nil {
				b.Fatal(err)
			}
		}
		// The daemon itself (run, not run --once) is measured while it
		// lives: its peak RSS (VmHWM) and CPU from /proc. The rusage of
		// an exited child would count the memory it had between fork and
		// exec, a copy of this test binary's.
		cmd := exec.Command(bin, "-c", r.file, "run")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		b.StartTimer()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			if names, _ := r.main.List(); len(names) == 0 {
				break
			}
			if time.Since(start) > 5*time.Minute {
				cmd.Process.Kill()
				cmd.Wait()
				b.Fatalf("dh-route run: queues/main not drained in 5 minutes\n%s", out.Bytes())
			}
			time.Sleep(10 * time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		peak = max(peak, int64(testenv.ProcStatus(b, cmd.Process.Pid, "VmHWM"))) // KiB
		cpu += testenv.ProcCPU(b, cmd.Process.Pid)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("dh-route run = %v\n%s", err, out.Bytes())
		}
	}
	b.ReportMetric(float64(backlog*b.N)/total.Seconds(), "deliveries/s")
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")
	b.ReportMetric(float64(cpu.Microseconds())/float64(backlog*b.N), "route-cpu-µs/delivery")
}
