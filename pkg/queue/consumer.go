package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Entry is one queued entry as a handler sees it.
type Entry struct {
	Name string // file name, e.g. 01763...-1234-0a1b2c3d.json
	Path string // full path
	Data []byte
}

// Handler processes one entry. Its error decides the entry's fate:
//
//	nil                      done: the entry is removed
//	sysexits.TempFail        left in place and retried with backoff
//	sysexits.IOErr           left in place; the consumer stops with the error
//	context.Canceled         left in place (shutting down)
//	anything else            moved to failed/ with the error as the reason
//
// A panic in a handler counts as a permanent failure of that entry.
type Handler func(ctx context.Context, e *Entry) error

// Consumer holds a queue's consumer lock.
type Consumer struct {
	q    *Queue
	lock *os.File
}

// ErrBusy is wrapped in the error Lock returns when another process
// consumes the queue.
var ErrBusy = errors.New("queue is already being consumed")

// Lock takes the queue's consumer lock, creating the queue's directories
// if needed. If another process holds it, Lock fails with ErrBusy
// (classified TempFail), or, with wait, waits until it is free or ctx ends.
func (q *Queue) Lock(ctx context.Context, wait bool) (*Consumer, error) {
	if err := q.Init(); err != nil {
		return nil, err
	}
	path := filepath.Join(q.dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o660)
	if err != nil {
		return nil, sysexits.New(codeOf(err), fmt.Errorf("open queue lock: %w", err))
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, sysexits.New(sysexits.IOErr, fmt.Errorf("lock %s: %w", path, err))
		}
		if !wait {
			holder, _ := os.ReadFile(path)
			f.Close()
			return nil, sysexits.WithHint(
				sysexits.Errorf(sysexits.TempFail, "%w: %s (held by pid %s)", ErrBusy, q.dir, orUnknown(bytes.TrimSpace(holder))),
				"stop the other consumer first, or pass --wait to wait for it")
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	// Record who holds the lock, for the message a second consumer gets.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Consumer{q: q, lock: f}, nil
}

func orUnknown(b []byte) string {
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// Close releases the lock.
func (c *Consumer) Close() error { return c.lock.Close() }

// Options tune Run.
type Options struct {
	// Once drains the queue and returns instead of waiting for more; a
	// temporary failure then returns its error (the entry stays queued).
	Once bool
	// Rescan is the period of full rescans while idle (default 30 s).
	Rescan time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying an entry
	// that failed temporarily (defaults 200 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
	// NoNotify disables fsnotify: only rescans find new entries.
	NoNotify bool
	Logger   *slog.Logger
}

func (o *Options) defaults() {
	if o.Rescan <= 0 {
		o.Rescan = 30 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Run consumes the queue until ctx is cancelled (returning nil), a fatal
// error occurs, or, with Once, the queue is empty.
func (c *Consumer) Run(ctx context.Context, h Handler, opts Options) error {
	opts.defaults()
	log := opts.Logger.With("queue", c.q.Name())
	c.q.sweepStaging(10 * time.Minute)

	var events chan fsnotify.Event
	var overflow chan error
	if !opts.NoNotify && !opts.Once {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(c.q.dir)
		}
		if err != nil {
			// inotify instances are limited (128 per user by default);
			// rescans still find everything, only later.
			log.Warn("file notifications unavailable; rescanning every second", "err", err)
			opts.Rescan = min(opts.Rescan, time.Second)
			if w != nil {
				w.Close()
			}
		} else {
			defer w.Close()
			events, overflow = w.Events, w.Errors
		}
	}

	attempts := map[string]int{}
	backoff := opts.MinBackoff
	for {
		drain(events)
		names, err := c.q.List()
		if err != nil {
			return err
		}
		var temp error
		for _, name := range names {
			if ctx.Err() != nil {
				return nil
			}
			attempts[name]++
			err := c.handle(ctx, h, name, attempts[name], log)
			if err == nil {
				delete(attempts, name)
				backoff = opts.MinBackoff
				continue
			}
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil
			}
			if !sysexits.Is(err, sysexits.TempFail) {
				return err
			}
			if attempts[name] == 1 {
				log.Warn("entry failed temporarily; will retry", "entry", name, "err", err)
			} else {
				log.Debug("entry failed temporarily again", "entry", name, "attempts", attempts[name], "err", err)
			}
			temp = err
			break // keep the order: retry this entry before the next
		}
		if temp != nil {
			if opts.Once {
				return temp
			}
			if !sleep(ctx, jitter(backoff)) {
				return nil
			}
			backoff = min(2*backoff, opts.MaxBackoff)
			continue
		}
		if len(names) > 0 {
			continue // rescan after every batch
		}
		if opts.Once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-events:
		case err := <-overflow:
			log.Debug("file notification error; rescanning", "err", err)
		case <-time.After(opts.Rescan):
		}
	}
}

// handle runs one entry and settles it. It returns nil when the entry is
// done or failed permanently (moved to failed/), a TempFail error to retry,
// or a fatal error.
func (c *Consumer) handle(ctx context.Context, h Handler, name string, attempt int, log *slog.Logger) error {
	path := filepath.Join(c.q.dir, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // moved away by an operator since the scan
	}
	if err == nil {
		err = safeCall(ctx, h, &Entry{Name: name, Path: path, Data: data})
	} else {
		err = fmt.Errorf("read entry: %w", err)
	}
	switch {
	case err == nil:
		return durable.Remove(path)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err
	case sysexits.Is(err, sysexits.TempFail), sysexits.Is(err, sysexits.IOErr):
		return err
	}
	log.Error("entry failed; moved to failed/", "entry", name, "attempts", attempt, "err", err)
	return c.q.fail(name, err, attempt)
}

func safeCall(ctx context.Context, h Handler, e *Entry) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = sysexits.Errorf(sysexits.Software, "internal error: panic: %v\n%s", r, debug.Stack())
		}
	}()
	return h(ctx, e)
}

// Replay processes one entry file in the foreground and returns the
// handler's result. It does not take the queue lock: stages guard what must
// not run twice at once themselves. An entry replayed successfully from a
// failed/ directory is removed together with its sidecar; any other file is
// left where it is.
func Replay(ctx context.Context, path string, h Handler) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return sysexits.New(sysexits.DataErr, fmt.Errorf("replay: %w", err))
	}
	if err := safeCall(ctx, h, &Entry{Name: filepath.Base(path), Path: path, Data: data}); err != nil {
		return err
	}
	if filepath.Base(filepath.Dir(path)) == FailedDir {
		if err := durable.Remove(path + WhySuffix); err != nil {
			return err
		}
		return durable.Remove(path)
	}
	return nil
}

func drain(ch chan fsnotify.Event) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
