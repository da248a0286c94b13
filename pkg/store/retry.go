package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// Temporary reports whether err may go away by itself, so that the same
// call should be tried again later: the server is unreachable (connection
// refused or reset, no such socket, any network error), the connection was
// lost (EOF, a bad connection), a call timed out, or the server said so
// (SQLSTATE class 08 connection exception, class 53 insufficient resources,
// 57P01/57P02/57P03 shutting down or starting up, 57014 statement
// cancelled, 40001 serialization failure, 40P01 deadlock).
//
// A cancelled context is not temporary: the caller gave up.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	// golang-migrate's errors hide the driver's error without Unwrap.
	if e, ok := errors.AsType[database.Error](err); ok {
		return Temporary(e.OrigErr)
	}
	if e, ok := errors.AsType[*database.Error](err); ok && e != nil {
		return Temporary(e.OrigErr)
	}
	if e := pq.As(err); e != nil {
		switch e.Code.Class() {
		case "08", "53":
			return true
		}
		switch e.Code {
		case "57P01", "57P02", "57P03", "57014", "40001", "40P01":
			return true
		}
		return false
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	for _, target := range []error{
		context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF, driver.ErrBadConn,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// Backoff bounds for Retry.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Retry calls fn until it returns nil or an error that is not Temporary,
// and returns that. In between it waits with exponential backoff (100 ms
// doubling up to 30 s, with jitter so that many waiting processes do not
// reconnect in step). It logs one line when fn starts failing and one when
// it recovers, not one per attempt. When ctx is done it returns the last
// error wrapped with ctx's, marked queue.Retry.
//
// fn must be safe to repeat: a call whose reply was lost may have committed.
func Retry(ctx context.Context, logger *slog.Logger, what string, fn func(ctx context.Context) error) error {
	if logger == nil {
		logger = slog.Default()
	}
	giveUp := func(err error) error {
		return queue.Retry(fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), err))
	}
	failing := false
	b := backoff{next: minBackoff, max: maxBackoff}
	for {
		err := fn(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return giveUp(err)
		case !Temporary(err):
			// Success, or an answer from the server: it is reachable.
			if failing {
				logger.Info("database available again", "what", what)
			}
			return err
		case !failing:
			logger.Warn("database unavailable", "what", what, "err", err)
			failing = true
		}
		if !sleep(ctx, b.step()) {
			return giveUp(err)
		}
	}
}

// backoff is an exponential backoff from next, doubling up to max.
type backoff struct{ next, max time.Duration }

// step returns the next wait, with equal jitter (between half and all of
// the backoff) so that many waiting processes do not retry in step.
func (b *backoff) step() time.Duration {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, b.max)
	return d
}

// sleep waits d, or until ctx ends: then it returns false.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// Retrier makes a database call, what naming it for the log, the way a
// stage's worker does all of its calls (see Retrying).
type Retrier func(ctx context.Context, what string, fn func(ctx context.Context) error) error

// Retrying returns the Retrier of a worker: Retry when wait is set (a
// daemon: the work waits for the database), else one plain call (--once,
// replay: an outage is the caller's queue.Retry).
func Retrying(wait bool, logger *slog.Logger) Retrier {
	if !wait {
		return func(ctx context.Context, _ string, fn func(ctx context.Context) error) error { return fn(ctx) }
	}
	return func(ctx context.Context, what string, fn func(ctx context.Context) error) error {
		return Retry(ctx, logger, what, fn)
	}
}
