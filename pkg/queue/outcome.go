package queue

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
)

// A handler's error is the outcome of its entry. The queue owns these
// outcomes; exit statuses are a matter of the commands (pkg/cli):
//
//	nil                          done: the entry is removed
//	Retry(err), RetryAfter(...)  retry later: left in place, tried again with backoff
//	Stop(err), a *durable.Error  stop: left in place; the consumer returns err
//	Fail(err)                    failed, whatever err wraps
//	context.Canceled (shutting down)  left in place
//	anything else                failed: moved to failed/ with err as the reason
//
// A failed durable write (a *durable.Error, but not a refused permission)
// stops the consumer even unwrapped: never carry on after a failed fsync.
// The outermost marker in an error's chain decides, so a handler can turn
// a retry of a lower layer into a stop, or the other way round.

// marked is an error marked with the outcome it has for its entry.
type marked struct {
	err   error
	o     outcome
	after time.Duration // a RetryAfter's least wait
}

func (e *marked) Error() string { return e.err.Error() }
func (e *marked) Unwrap() error { return e.err }

func mark(err error, o outcome, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, o: o, after: after}
}

// Retry marks err as temporary (the database is down, a lock is busy, a
// fetch failed): the entry stays queued and is tried again later, with
// backoff. Retry(nil) is nil.
func Retry(err error) error { return mark(err, retry, 0) }

// RetryAfter is Retry, waiting at least d (at most Options.MaxBackoff)
// before the next attempt.
func RetryAfter(err error, d time.Duration) error { return mark(err, retry, d) }

// Stop marks err as fatal to the consumer (a failed write it must not
// carry on after): the entry stays queued and Run returns err. Stop(nil)
// is nil.
func Stop(err error) error { return mark(err, stop, 0) }

// Fail marks err as a permanent failure of its entry, whatever the errors
// it wraps say (a run that failed on a Retry of a lower layer is over all
// the same). Fail(nil) is nil.
func Fail(err error) error { return mark(err, failed, 0) }

// outcome is what an error does to its entry.
type outcome int

const (
	done outcome = iota
	failed
	retry
	stop
)

// outcomeOf classifies err by the outermost marker in its chain; after is
// a RetryAfter's wait.
func outcomeOf(err error) (o outcome, after time.Duration) {
	if err == nil {
		return done, 0
	}
	o = failed
	walk(err, func(e error) bool {
		switch e := e.(type) {
		case *marked:
			o, after = e.o, e.after
		case *durable.Error:
			if errors.Is(e, fs.ErrPermission) {
				return false
			}
			o = stop
		default:
			return false
		}
		return true
	})
	return o, after
}

// IsRetry reports whether err is a retry-later outcome (Retry, RetryAfter).
func IsRetry(err error) bool { o, _ := outcomeOf(err); return o == retry }

// IsStop reports whether err stops a consumer (Stop, a failed durable write).
func IsStop(err error) bool { o, _ := outcomeOf(err); return o == stop }

// KeepsEntry reports whether err leaves its entry in place rather than
// failing it: a retry, a stop, or ctx ended.
func KeepsEntry(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return true
	}
	o, _ := outcomeOf(err)
	return o == retry || o == stop
}

// walk calls f on err and the errors it wraps, outermost first (depth
// first through errors.Join), until f returns true.
func walk(err error, f func(error) bool) bool {
	for err != nil {
		if f(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
