package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
)

// The test binary doubles as the child processes of the crash tests:
// QUEUE_HELPER selects what the child does.
func TestMain(m *testing.M) {
	if mode := os.Getenv("QUEUE_HELPER"); mode != "" {
		os.Exit(helper(mode, os.Getenv("QUEUE_DIR")))
	}
	os.Exit(m.Run())
}

type record struct {
	Pub int    `json:"pub"`
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

func helper(mode, dir string) int {
	q := Open(dir)
	switch mode {
	case "publish-forever": // publish until killed; print each name once it is durable
		w := bufio.NewWriter(os.Stdout)
		for seq := 0; ; seq++ {
			data, _ := json.Marshal(record{Seq: seq, Pad: strings.Repeat("x", rand.N(128<<10))})
			name, err := q.Publish(data)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			w.WriteString(name + "\n")
			w.Flush()
		}
	case "publish-n":
		var pub int
		fmt.Sscan(os.Getenv("QUEUE_PUB"), &pub)
		for seq := 0; seq < 1000; seq++ {
			data, _ := json.Marshal(record{Pub: pub, Seq: seq})
			if _, err := q.Publish(data); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return 0
	case "consume": // log start/done of every entry; hang in QUEUE_HANG
		log, err := os.OpenFile(os.Getenv("QUEUE_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c, err := q.Lock(context.Background(), false)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return exitStatus(err)
		}
		err = c.Run(context.Background(), func(ctx context.Context, e *Entry) error {
			fmt.Fprintf(log, "start %s\n", e.Name)
			log.Sync()
			if e.Name == os.Getenv("QUEUE_HANG") {
				time.Sleep(time.Hour) // not select{}: the runtime may call that a deadlock and exit
			}
			fmt.Fprintf(log, "done %s\n", e.Name)
			return log.Sync()
		}, Options{Once: true, Writers: func() []int { return envUIDs("QUEUE_WRITERS") }})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return exitStatus(err)
		}
		return 0
	}
	return 2
}

// exitStatus is the status the helper exits with: what pkg/cli makes of
// the errors the tests expect.
func exitStatus(err error) int {
	switch {
	case errors.Is(err, ErrTampered):
		return 77
	case IsRetry(err):
		return 75
	case IsStop(err):
		return 74
	}
	return 1
}

func child(t *testing.T, dir, mode string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"QUEUE_HELPER=" + mode, "QUEUE_DIR=" + dir}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

func newQueue(t *testing.T) *Queue {
	t.Helper()
	q := Open(filepath.Join(t.TempDir(), "main"))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	return q
}

func publish(t *testing.T, q *Queue, s string) string {
	t.Helper()
	name, err := q.Publish([]byte(s))
	if err != nil {
		t.Fatalf("Publish(%q) = %v; want nil", s, err)
	}
	return name
}

func lock(t *testing.T, q *Queue) *Consumer {
	t.Helper()
	c, err := q.Lock(context.Background(), false)
	if err != nil {
		t.Fatalf("Lock() = %v; want nil", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func fastOpts() Options {
	return Options{Once: true, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func TestNewNameSortsAndNeverRepeats(t *testing.T) {
	prev := ""
	for i := 0; i < 10000; i++ {
		n := NewName()
		if n <= prev {
			t.Fatalf("NewName() = %q after %q; want a greater name", n, prev)
		}
		if !IsEntry(n) {
			t.Fatalf("IsEntry(%q) = false", n)
		}
		if _, ok := NameTime(n); !ok {
			t.Fatalf("NameTime(%q) not ok", n)
		}
		prev = n
	}
}

func TestIsEntry(t *testing.T) {
	for name, want := range map[string]bool{
		"0001-1-00000000.json": true, "hand-made.json": true,
		".hidden.json": false, "x.json.why": false, "x.tmp": false, ".json": false,
	} {
		if got := IsEntry(name); got != want {
			t.Errorf("IsEntry(%q) = %v; want %v", name, got, want)
		}
	}
}

func TestRunHandlesInOrderAndRemoves(t *testing.T) {
	q := newQueue(t)
	var want []string
	for i := 0; i < 5; i++ {
		want = append(want, publish(t, q, fmt.Sprintf(`{"i":%d}`, i)))
	}
	var got []string
	err := lock(t, q).Run(context.Background(), func(ctx context.Context, e *Entry) error {
		got = append(got, e.Name)
		if e.Path != filepath.Join(q.Dir(), e.Name) || !json.Valid(e.Data) {
			t.Errorf("entry %+v is not what was published", e)
		}
		return nil
	}, fastOpts())
	if err != nil {
		t.Fatalf("Run() = %v; want nil", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("handled %v; want %v", got, want)
	}
	if left, _ := q.List(); len(left) != 0 {
		t.Errorf("List() after Run = %v; want empty", left)
	}
	if tmp, _ := os.ReadDir(filepath.Join(q.Dir(), StagingDir)); len(tmp) != 0 {
		t.Errorf("staging has %d leftover files", len(tmp))
	}
}

func TestRunFailureKinds(t *testing.T) {
	q := newQueue(t)
	bad := publish(t, q, `{"bad":true}`)
	flaky := publish(t, q, `{"flaky":true}`)
	boom := publish(t, q, `{"boom":true}`)
	good := publish(t, q, `{"good":true}`)
	tries := 0
	var order []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := fastOpts()
	opts.Once = false
	err := lock(t, q).Run(ctx, func(ctx context.Context, e *Entry) error {
		order = append(order, e.Name)
		if e.Name == good {
			cancel()
		}
		switch e.Name {
		case bad:
			return errors.New("payload is nonsense")
		case flaky:
			if tries++; tries < 3 {
				return Retry(errors.New("database down"))
			}
		case boom:
			panic("kaboom")
		}
		return nil
	}, opts)
	if err != nil {
		t.Fatalf("Run() = %v; want nil", err)
	}
	if want := []string{bad, flaky, flaky, flaky, boom, good}; !slices.Equal(order, want) {
		t.Errorf("handled %v; want %v", order, want)
	}
	failed, _ := q.Failed()
	if want := []string{bad, boom}; !slices.Equal(failed, want) {
		t.Fatalf("Failed() = %v; want %v", failed, want)
	}
	f, err := q.ReadFailure(bad)
	if err != nil || f.Error != "payload is nonsense" || f.Attempts != 1 || f.FailedAt.IsZero() {
		t.Errorf("ReadFailure(%q) = %+v, %v; want the reason, 1 attempt and a time", bad, f, err)
	}
	if f, _ := q.ReadFailure(boom); !strings.Contains(f.Error, "panic: kaboom") {
		t.Errorf("ReadFailure(%q).Error = %q; want the panic", boom, f.Error)
	}
	if left, _ := q.List(); len(left) != 0 {
		t.Errorf("List() = %v; want empty", left)
	}
}

func TestRunStopsOnTemporaryWithOnceAndOnIOError(t *testing.T) {
	nope := errors.New("nope")
	for _, tt := range []struct {
		name    string
		outcome error
		is      func(error) bool
	}{
		{"Retry", Retry(nope), IsRetry},
		{"Stop", Stop(nope), IsStop},
		{"durable.Error", &durable.Error{Op: "sync dir", Path: "x", Err: nope}, IsStop},
	} {
		q := newQueue(t)
		first := publish(t, q, `{}`)
		publish(t, q, `{}`)
		calls := 0
		err := lock(t, q).Run(context.Background(), func(ctx context.Context, e *Entry) error {
			calls++
			return fmt.Errorf("handle: %w", tt.outcome)
		}, fastOpts())
		if !tt.is(err) || !errors.Is(err, nope) {
			t.Errorf("%s: Run() = %v; want the handler's error, kept a %s", tt.name, err, tt.name)
		}
		if left, _ := q.List(); len(left) != 2 || left[0] != first || calls != 1 {
			t.Errorf("%s: List() = %v after %d calls; want both entries kept after 1 call", tt.name, left, calls)
		}
	}
}

// An idle consumer is woken by fsnotify, by its periodic rescan, or with
// Poll (and then without an inotify instance of its own) by Wake or the
// check of its directory every Poll.
func TestRunWakesUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		wake bool // call Wake after publishing
	}{
		{"fsnotify", Options{Rescan: time.Hour}, false},
		{"rescan", Options{Rescan: 20 * time.Millisecond, NoNotify: true}, false},
		{"wake pipe", Options{Rescan: time.Hour, Poll: time.Hour}, true},
		{"directory check", Options{Rescan: time.Hour, Poll: 20 * time.Millisecond}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQueue(t)
			c := lock(t, q)
			before := inotifyInstances(t)
			handled := make(chan string, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- c.Run(ctx, func(ctx context.Context, e *Entry) error { handled <- e.Name; return nil }, tc.opts)
			}()
			time.Sleep(50 * time.Millisecond) // let Run go idle
			if tc.opts.Poll > 0 {
				if got := inotifyInstances(t); got != before {
					t.Errorf("inotify instances = %d while the consumer waits; want %d (none of its own)", got, before)
				}
				if fi, err := os.Lstat(filepath.Join(q.Dir(), WakeFile)); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
					t.Errorf("Lstat(%s) = %v, %v; want a named pipe", WakeFile, fi, err)
				}
			}
			name := publish(t, q, `{}`)
			if tc.wake {
				q.Wake()
			}
			select {
			case got := <-handled:
				if got != name {
					t.Errorf("handled %q; want %q", got, name)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("entry published to an idle consumer was not handled")
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() after cancel = %v; want nil", err)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	q := newQueue(t)
	name := publish(t, q, `{}`)
	lock(t, q).Run(context.Background(), func(ctx context.Context, e *Entry) error {
		return errors.New("step failed")
	}, fastOpts())
	path := filepath.Join(q.Dir(), FailedDir, name)

	err := Replay(context.Background(), path, func(ctx context.Context, e *Entry) error {
		return errors.New("still bad")
	})
	if err == nil || err.Error() != "still bad" {
		t.Errorf("Replay(failing) = %v; want the handler's error", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("a failed replay removed the entry: %v", err)
	}
	if err := Replay(context.Background(), path, func(ctx context.Context, e *Entry) error { return nil }); err != nil {
		t.Errorf("Replay(ok) = %v; want nil", err)
	}
	for _, p := range []string{path, path + WhySuffix} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after a successful replay %s still exists (%v)", p, err)
		}
	}
	if err := Replay(context.Background(), path, nil); !errors.Is(err, ErrUnreadable) {
		t.Errorf("Replay(missing file) = %v; want ErrUnreadable", err)
	}
}

func TestPublishToMissingQueueFails(t *testing.T) {
	q := Open(filepath.Join(t.TempDir(), "nope"))
	if name, err := q.Publish([]byte(`{}`)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Publish() = %q, %v; want an I/O error", name, err)
	}
}

func TestSweepStaging(t *testing.T) {
	q := newQueue(t)
	old := filepath.Join(q.Dir(), StagingDir, "old.tmp")
	fresh := filepath.Join(q.Dir(), StagingDir, "fresh.tmp")
	os.WriteFile(old, nil, 0o600)
	os.WriteFile(fresh, nil, 0o600)
	os.Chtimes(old, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
	lock(t, q).Run(context.Background(), nil, fastOpts())
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale staging file kept (%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh staging file removed: %v", err)
	}
}

// (d) A second consumer is refused with a clear message, or waits.
func TestSecondConsumerRefused(t *testing.T) {
	q := newQueue(t)
	logPath := filepath.Join(t.TempDir(), "log")
	cmd := child(t, q.Dir(), "consume", "QUEUE_LOG="+logPath, "QUEUE_HANG=h.json")
	os.WriteFile(filepath.Join(q.Dir(), "h.json"), []byte(`{}`), 0o640)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, func() bool { b, _ := os.ReadFile(logPath); return strings.Contains(string(b), "start h.json") })

	c, err := q.Lock(context.Background(), false)
	if err == nil {
		c.Close()
	}
	if !errors.Is(err, ErrBusy) || !IsRetry(err) ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) || !strings.Contains(err.Error(), q.Dir()) {
		t.Errorf("Lock() = %v; want ErrBusy naming the queue and pid %d", err, cmd.Process.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if c, err := q.Lock(ctx, true); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			c.Close()
		}
		t.Errorf("Lock(wait) while held = %v; want the context's deadline", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err = q.Lock(ctx, true)
	if err != nil {
		t.Fatalf("Lock() after the holder died = %v; want nil", err)
	}
	c.Close()
}

// (a) A publisher killed with SIGKILL at random moments, 200 times: the
// consumer never sees a partial entry and every acknowledged publish arrives.
func TestCrashDuringPublish(t *testing.T) {
	q := newQueue(t)
	c := lock(t, q)
	var mu sync.Mutex
	seen := map[string]bool{}
	handler := func(ctx context.Context, e *Entry) error {
		var r record
		if err := json.Unmarshal(e.Data, &r); err != nil {
			t.Errorf("consumer saw an invalid entry %s (%d bytes): %v", e.Name, len(e.Data), err)
		}
		mu.Lock()
		seen[e.Name] = true
		mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, handler, Options{}) }()

	acked := map[string]bool{}
	for i := 0; i < 200; i++ {
		cmd := child(t, q.Dir(), "publish-forever")
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the first durable publish, then kill at a random
		// moment of the ones that follow.
		sc := bufio.NewScanner(out)
		if !sc.Scan() {
			t.Fatalf("publisher %d printed nothing", i)
		}
		acked[sc.Text()] = true
		time.Sleep(time.Duration(rand.N(20_000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() {
			acked[sc.Text()] = true
		}
		cmd.Wait()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if err := c.Run(context.Background(), handler, Options{Once: true}); err != nil {
		t.Fatalf("draining Run() = %v", err)
	}
	if len(acked) < 200 {
		t.Errorf("only %d acknowledged publishes in 200 runs; the test is not exercising much", len(acked))
	}
	for n := range acked {
		if !seen[n] {
			t.Errorf("acknowledged entry %s was lost", n)
		}
	}
	t.Logf("%d acknowledged, %d consumed", len(acked), len(seen))
}

// (b) 8 publisher processes x 1,000 entries: unique names, and each
// publisher's entries in its own order.
func TestConcurrentPublishers(t *testing.T) {
	q := newQueue(t)
	var cmds []*exec.Cmd
	for p := 0; p < 8; p++ {
		cmd := child(t, q.Dir(), "publish-n", fmt.Sprintf("QUEUE_PUB=%d", p))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("publisher: %v", err)
		}
	}
	next := make([]int, 8)
	var names []string
	err := lock(t, q).Run(context.Background(), func(ctx context.Context, e *Entry) error {
		var r record
		if err := json.Unmarshal(e.Data, &r); err != nil {
			return err
		}
		if r.Seq != next[r.Pub] {
			t.Errorf("publisher %d: entry %d came before %d", r.Pub, r.Seq, next[r.Pub])
		}
		next[r.Pub] = r.Seq + 1
		names = append(names, e.Name)
		return nil
	}, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 8000 || len(names) != len(uniq(names)) {
		t.Errorf("consumed %d entries (%d unique names); want 8000", len(names), len(uniq(names)))
	}
}

// (c) A consumer killed mid-entry sees that entry again after restart, and
// nothing else is lost or repeated.
func TestCrashDuringConsume(t *testing.T) {
	q := newQueue(t)
	var names []string
	for i := 0; i < 20; i++ {
		names = append(names, publish(t, q, fmt.Sprintf(`{"i":%d}`, i)))
	}
	logPath := filepath.Join(t.TempDir(), "log")
	hang := names[7]
	cmd := child(t, q.Dir(), "consume", "QUEUE_LOG="+logPath, "QUEUE_HANG="+hang)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { b, _ := os.ReadFile(logPath); return strings.Contains(string(b), "start "+hang) })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	restart := child(t, q.Dir(), "consume", "QUEUE_LOG="+logPath)
	restart.Stderr = nil
	if out, err := restart.CombinedOutput(); err != nil {
		t.Fatalf("restarted consumer: %v: %s", err, out)
	}
	b, _ := os.ReadFile(logPath)
	starts, dones := map[string]int{}, map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		kind, name, _ := strings.Cut(line, " ")
		if kind == "start" {
			starts[name]++
		} else {
			dones[name]++
		}
	}
	for _, n := range names {
		wantStarts := 1
		if n == hang {
			wantStarts = 2
		}
		if starts[n] != wantStarts || dones[n] != 1 {
			t.Errorf("entry %s: started %d, done %d times; want %d and 1", n, starts[n], dones[n], wantStarts)
		}
	}
	if left, _ := q.List(); len(left) != 0 {
		t.Errorf("List() = %v; want empty", left)
	}
}

func uniq(s []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return m
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 20s")
}

// Concurrent publishers in one process share directory fsyncs (group
// commit); every one of them still gets its own durable, unique entry.
func TestConcurrentPublishInProcess(t *testing.T) {
	q := newQueue(t)
	var mu sync.Mutex
	names := map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				n, err := q.Publish([]byte(`{}`))
				if err != nil {
					t.Errorf("Publish() = %v", err)
					return
				}
				mu.Lock()
				names[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	listed, _ := q.List()
	if len(names) != 800 || len(listed) != 800 {
		t.Errorf("published %d unique names, listed %d; want 800", len(names), len(listed))
	}
}

// RunBatch hands entries over in order and in batches of at most
// opts.Batch, settles each by its own result, and after a panic handles the
// batch again one entry at a time so that only the culprit fails.
func TestRunBatch(t *testing.T) {
	q := newQueue(t)
	var all []string
	for i := 0; i < 7; i++ {
		all = append(all, publish(t, q, fmt.Sprintf(`{"i":%d}`, i)))
	}
	bad, boom := all[1], all[4]
	var sizes []int
	var seen []string
	opts := fastOpts()
	opts.Batch = 3
	err := lock(t, q).RunBatch(context.Background(), func(ctx context.Context, es []*Entry) []error {
		sizes = append(sizes, len(es))
		errs := make([]error, len(es))
		for i, e := range es {
			seen = append(seen, e.Name)
			switch e.Name {
			case bad:
				errs[i] = errors.New("bad entry")
			case boom:
				panic("kaboom")
			}
		}
		return errs
	}, opts)
	if err != nil {
		t.Fatalf("RunBatch() = %v; want nil", err)
	}
	// 3, then 3 that panic and are redone as 1+1+1 (the middle one
	// panics again), then the last 1.
	if want := []int{3, 3, 1, 1, 1, 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes %v; want %v", sizes, want)
	}
	want := append(slices.Clone(all[:5]), all[3], all[4], all[5], all[6]) // the panic cut the first try of all[3:6] short
	if !slices.Equal(seen, want) {
		t.Errorf("handled %v; want %v", seen, want)
	}
	if failed, _ := q.Failed(); !slices.Equal(failed, []string{bad, boom}) {
		t.Errorf("Failed() = %v; want %v", failed, []string{bad, boom})
	}
	if left, _ := q.List(); len(left) != 0 {
		t.Errorf("List() = %v; want empty", left)
	}
}

// A temporary failure in the middle of a batch settles the entries before
// it and keeps it and everything after it queued, in order.
func TestRunBatchStopsAtTemporaryFailure(t *testing.T) {
	q := newQueue(t)
	var all []string
	for i := 0; i < 5; i++ {
		all = append(all, publish(t, q, `{}`))
	}
	err := lock(t, q).RunBatch(context.Background(), func(ctx context.Context, es []*Entry) []error {
		errs := make([]error, len(es))
		errs[2] = Retry(errors.New("database down"))
		return errs
	}, fastOpts())
	if !IsRetry(err) {
		t.Fatalf("RunBatch() = %v; want a Retry", err)
	}
	if left, _ := q.List(); !slices.Equal(left, all[2:]) {
		t.Errorf("List() = %v; want %v", left, all[2:])
	}
}

// PublishAll puts each item in its own queue, in order, durably, and
// returns one result per item: a broken queue fails its own items only.
func TestPublishAll(t *testing.T) {
	a, b := newQueue(t), Open(filepath.Join(t.TempDir(), "b"))
	if err := b.Init(); err != nil {
		t.Fatal(err)
	}
	missing := Open(filepath.Join(t.TempDir(), "missing"))
	rs := PublishAll([]Item{{Queue: a, Data: []byte(`{"n":1}`)}, {Queue: missing, Data: []byte(`{"n":0}`)},
		{Queue: b, Data: []byte(`{"n":2}`)}, {Queue: a, Data: []byte(`{"n":3}`)}})
	if len(rs) != 4 {
		t.Fatalf("PublishAll() returned %d results for 4 items", len(rs))
	}
	for i, r := range rs {
		if (r.Err != nil) != (i == 1) {
			t.Errorf("PublishAll()[%d] = %q, %v; want an error only for the missing queue", i, r.Name, r.Err)
		}
	}
	if err := rs[1].Err; err == nil || !strings.Contains(err.Error(), missing.Dir()) {
		t.Errorf("PublishAll() to a missing queue = %v; want an error naming %s", err, missing.Dir())
	}
	la, _ := a.List()
	lb, _ := b.List()
	if !slices.Equal(la, []string{rs[0].Name, rs[3].Name}) || !slices.Equal(lb, []string{rs[2].Name}) {
		t.Fatalf("results %v; a holds %v, b holds %v", rs, la, lb)
	}
	if data, _ := os.ReadFile(filepath.Join(a.Dir(), rs[3].Name)); string(data) != `{"n":3}` {
		t.Errorf("entry %s = %q", rs[3].Name, data)
	}
	if tmp, _ := os.ReadDir(filepath.Join(a.Dir(), StagingDir)); len(tmp) != 0 {
		t.Errorf("staging of a has %d leftover files after PublishAll", len(tmp))
	}
}

// PublishAll writes its items concurrently but links them in order: a
// consumer never sees an item before one put ahead of it, even when that
// one is slower to write. (dh-route publishes a batch of pushes at once:
// seeing the newest first, dh-deploy deployed it, then refused the older
// ones that appeared in front of it.)
func TestPublishAllLinksInOrder(t *testing.T) {
	q := newQueue(t)
	slow, fast := NewName(), NewName()
	stop := make(chan struct{})
	seen := make(chan []string, 1)
	go func() {
		for {
			select {
			case <-stop:
				seen <- nil
				return
			default:
			}
			names, _ := q.List()
			if slices.Contains(names, fast) && !slices.Contains(names, slow) {
				seen <- names
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	rs := PublishAll([]Item{
		{Queue: q, Name: slow, Write: func(w io.Writer) error {
			time.Sleep(300 * time.Millisecond)
			_, err := w.Write([]byte(`{"n":1}`))
			return err
		}},
		{Queue: q, Name: fast, Data: []byte(`{"n":2}`)},
	})
	close(stop)
	if got := <-seen; got != nil {
		t.Errorf("the queue held %v: the second item before the first", got)
	}
	for i, r := range rs {
		if r.Err != nil {
			t.Errorf("PublishAll()[%d] = %v", i, r.Err)
		}
	}
	if names, _ := q.List(); !slices.Equal(names, []string{slow, fast}) {
		t.Errorf("queue holds %v; want both items", names)
	}
}

// An item with a given name is published once: again, it changes nothing,
// whether the entry still waits or went to failed/.
func TestPublishAllGivenNameIsIdempotent(t *testing.T) {
	q := newQueue(t)
	name := NewName()
	for i := range 2 {
		r := PublishAll([]Item{{Queue: q, Data: []byte(fmt.Sprintf(`{"try":%d}`, i)), Name: name}})[0]
		if r.Err != nil || r.Name != name {
			t.Fatalf("PublishAll(name %s) #%d = %q, %v; want the name, nil", name, i, r.Name, r.Err)
		}
	}
	if l, _ := q.List(); !slices.Equal(l, []string{name}) {
		t.Fatalf("List() = %v; want [%s]", l, name)
	}
	if data, _ := os.ReadFile(filepath.Join(q.Dir(), name)); string(data) != `{"try":0}` {
		t.Errorf("entry = %q; want the first publish's", data)
	}
	if err := lock(t, q).fail(name, errors.New("boom"), 1); err != nil {
		t.Fatal(err)
	}
	if r := PublishAll([]Item{{Queue: q, Data: []byte(`{}`), Name: name}})[0]; r.Err != nil {
		t.Fatalf("PublishAll(name in failed/) = %v", r.Err)
	}
	if l, _ := q.List(); len(l) != 0 {
		t.Errorf("List() = %v after publishing a failed entry's name again; want it left in failed/", l)
	}
	if r := PublishAll([]Item{{Queue: q, Data: []byte(`{}`), Name: "../x.json"}})[0]; r.Err == nil {
		t.Errorf("PublishAll(name ../x.json) = nil; want an error")
	}
}

// Init makes every queue directory setgid (os.MkdirAll with 0o2770 never
// did: Go drops the bit and mkdir(2) ignores it) and sticky, with exactly
// its permission bits, whatever the umask.
func TestInitSetgid(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	q := Open(filepath.Join(t.TempDir(), "spool", "api"))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(q.Dir()), q.Dir(), filepath.Join(q.Dir(), StagingDir), filepath.Join(q.Dir(), FailedDir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() &^ os.ModeDir; got != DirMode {
			t.Errorf("mode of %s = %v; want %v", d, got, os.FileMode(DirMode))
		}
	}
}

// A group commit's leader commits one batch and hands over, even while
// publishers keep arriving: it waits for at most its own batch and the one
// before it. Counted in batches, not timed.
func TestGroupCommitLeaderHandsOver(t *testing.T) {
	var g groupCommit
	var wg sync.WaitGroup
	var mu sync.Mutex
	rounds := 0
	var commit func([]*pending)
	commit = func([]*pending) {
		mu.Lock()
		rounds++
		n := rounds
		mu.Unlock()
		if n >= 10 {
			return
		}
		// Another publisher arrives while this batch commits.
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.do([]*pending{{}}, commit)
		}()
		for {
			g.mu.Lock()
			joined := len(g.waiting) > 0
			g.mu.Unlock()
			if joined {
				return
			}
			runtime.Gosched()
		}
	}
	g.do([]*pending{{}}, commit)
	mu.Lock()
	led := rounds
	mu.Unlock()
	wg.Wait()
	if led > 2 {
		t.Errorf("the first publisher returned after %d batches under continuous arrivals; want at most 2", led)
	}
	if rounds != 10 {
		t.Errorf("%d batches committed; want 10 (every arrival committed)", rounds)
	}
}
