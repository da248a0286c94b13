package queue

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Consumed reports whether a consumer holds the queue's lock now. It
// opens <queue>/.lock read-only (never creating it, never following a
// symbolic link) and tries a shared flock(2) without blocking: refused,
// a consumer holds the exclusive lock; granted, nobody does, and it lets
// go at once. A queue without a lock file has never been consumed.
//
// The probe holds the shared lock for a few microseconds: a consumer
// starting at that very instant without --wait fails its Lock with
// ErrBusy (a Retry) and is restarted by its unit, so probe only when
// the answer matters (an old entry waits).
func (q *Queue) Consumed() (bool, error) {
	path := filepath.Join(q.dir, LockFile)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("probe the lock %s: %w", path, err)
	}
	defer unix.Close(fd)
	switch err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("probe the lock %s: %w", path, err)
	}
	unix.Flock(fd, unix.LOCK_UN)
	return false, nil
}

// StalledSince reports whether the queue is stalled: its oldest waiting
// entry (s, from Stats) arrived before cutoff and no consumer holds its
// lock. Only then does it probe the lock (Consumed).
func (q *Queue) StalledSince(s Stats, cutoff time.Time) (bool, error) {
	if s.Depth == 0 || s.Oldest.IsZero() || !s.Oldest.Before(cutoff) {
		return false, nil
	}
	held, err := q.Consumed()
	return err == nil && !held, err
}
