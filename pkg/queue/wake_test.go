package queue

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// inotifyInstances counts this process's inotify file descriptors.
func inotifyInstances(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, _ := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); target == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// A consumer with Poll holds no inotify instance, and is woken at once by
// Wake, or by the check of its directory every Poll without it.
func TestRunPollWakesWithoutInotify(t *testing.T) {
	for _, tc := range []struct {
		name string
		poll time.Duration
		wake bool
	}{
		{"wake pipe", time.Hour, true},
		{"directory check", 20 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQueue(t)
			c := lock(t, q)
			before := inotifyInstances(t)
			handled := make(chan string, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- c.Run(ctx, func(ctx context.Context, e *Entry) error { handled <- e.Name; return nil },
					Options{Rescan: time.Hour, Poll: tc.poll})
			}()
			time.Sleep(50 * time.Millisecond) // let Run go idle
			if got := inotifyInstances(t); got != before {
				t.Errorf("inotify instances = %d while the consumer waits; want %d (none of its own)", got, before)
			}
			if fi, err := os.Lstat(filepath.Join(q.Dir(), WakeFile)); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
				t.Errorf("Lstat(%s) = %v, %v; want a named pipe", WakeFile, fi, err)
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
			case <-time.After(10 * time.Second):
				t.Fatal("entry published to an idle consumer was not handled")
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() after cancel = %v; want nil", err)
			}
		})
	}
}

// Wake never blocks or fails: no pipe, no reader, a full pipe, or a
// regular file in the pipe's place (left as it was).
func TestWakeIsOnlyAHint(t *testing.T) {
	q := newQueue(t)
	q.Wake() // no pipe
	path := filepath.Join(q.Dir(), WakeFile)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	q.Wake()
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("Wake wrote %q into a regular file", b)
	}
	os.Remove(path)
	w, err := q.newWaker()
	if err != nil {
		t.Fatalf("newWaker() = %v", err)
	}
	w.close()
	for range 100_000 / 512 { // no reader now: ENXIO
		q.Wake()
	}
}
