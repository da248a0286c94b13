package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// blockedInFlock reports whether a thread of this process sleeps in
// flock(2) (its /proc/self/task/TID/syscall starts with the syscall's
// number): a Lock that polls never does.
func blockedInFlock(t *testing.T) bool {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/syscall")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tasks {
		b, _ := os.ReadFile(p)
		if strings.HasPrefix(string(b), fmt.Sprint(unix.SYS_FLOCK)+" ") {
			return true
		}
	}
	return false
}

// Issue 18: Lock waits in flock(2) itself, not in a loop of LOCK_NB tries
// and sleeps, and the waiter gets the lock as soon as the holder lets go.
func TestLockBlocksWithoutPolling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := TryLock(path)
	if err != nil {
		t.Fatalf("TryLock() = %v; want nil", err)
	}
	if _, err := TryLock(path); !errors.Is(err, ErrLocked) || !IsRetry(err) {
		t.Fatalf("TryLock() while held = %v; want ErrLocked, a Retry", err)
	}
	waiting := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		unlock2, err := Lock(t.Context(), path, func() { close(waiting) })
		if err == nil {
			unlock2()
		}
		got <- err
	}()
	<-waiting
	waitFor(t, func() bool { return blockedInFlock(t) })
	select {
	case err := <-got:
		t.Fatalf("Lock() while held returned %v; want it to wait", err)
	default:
	}
	unlock()
	if err := <-got; err != nil {
		t.Fatalf("Lock() after the holder let go = %v; want nil", err)
	}
}

// A Lock whose context ends returns at once, and the flock(2) it leaves
// behind never keeps the lock from anyone.
func TestLockCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan error, 1)
	go func() {
		_, err := Lock(ctx, path, nil)
		got <- err
	}()
	waitFor(t, func() bool { return blockedInFlock(t) })
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock() cancelled = %v; want context.Canceled", err)
	}
	unlock()
	// The abandoned flock(2) gets the lock and lets it go at once.
	waitFor(t, func() bool {
		unlock, err := TryLock(path)
		if err == nil {
			unlock()
		}
		return err == nil
	})
}

func TestLockRefusesLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "lock")
	os.Symlink(target, link)
	if _, err := Lock(t.Context(), link, nil); !errors.Is(err, ErrTampered) {
		t.Errorf("Lock(symlink) = %v; want ErrTampered", err)
	}
}

// Issue 18: a consumer never creates its queue directory (the install
// gives it its owner, group and ACL): Lock says it is missing and how to
// make it, and leaves nothing behind.
func TestLockRefusesMissingQueue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "api")
	_, err := Open(dir).Lock(t.Context(), false)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Lock() of a missing queue = %v; want ErrMissing naming %s", err, dir)
	}
	if _, serr := os.Lstat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("Lock() of a missing queue made %s (%v)", dir, serr)
	}
	os.Mkdir(dir, 0o750)
	if _, err := Open(dir).Lock(t.Context(), false); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), StagingDir) {
		t.Errorf("Lock() of a queue without %s = %v; want ErrMissing naming it", StagingDir, err)
	}
}

// RetryAfter keeps the entry and waits at least its time (bounded by
// MaxBackoff) before the next attempt, even when the backoff is shorter;
// Fail hides a Retry it wraps.
func TestRetryAfterAndFail(t *testing.T) {
	q := newQueue(t)
	name := publish(t, q, `{}`)
	opts := Options{MinBackoff: time.Millisecond, MaxBackoff: time.Minute}
	var tries []time.Time
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := lock(t, q).Run(ctx, func(ctx context.Context, e *Entry) error {
		tries = append(tries, time.Now())
		switch len(tries) {
		case 1:
			return RetryAfter(errors.New("not yet"), 300*time.Millisecond)
		default:
			cancel()
			return Fail(Retry(errors.New("given up")))
		}
	}, opts)
	if err != nil {
		t.Fatalf("Run() = %v; want nil", err)
	}
	if len(tries) != 2 || tries[1].Sub(tries[0]) < 300*time.Millisecond {
		t.Errorf("tries at %v; want 2, the second at least 300ms after the first", tries)
	}
	if failed, _ := q.Failed(); len(failed) != 1 || failed[0] != name {
		t.Errorf("Failed() = %v; want [%s]", failed, name)
	}
}
