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
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
)

// Entry is one queued entry as a handler sees it.
type Entry struct {
	Name string // file name, e.g. 01763...-1234-0a1b2c3d.json
	Path string // full path
	Data []byte
	// Owner is the user id owning the entry's file, taken from the open
	// file Data was read from (root, the consumer's user or a writer of
	// the queue: see Options.Writers). Replay sets it too.
	Owner int
}

// Handler processes one entry. Its error is the entry's outcome
// (outcome.go):
//
//	nil                      done: the entry is removed
//	Retry(err)               left in place and retried with backoff
//	Stop(err)                left in place; the consumer stops with the error
//	context.Canceled         left in place (shutting down)
//	anything else            moved to failed/ with the error as the reason
//
// A panic in a handler counts as a permanent failure of that entry.
type Handler func(ctx context.Context, e *Entry) error

// BatchHandler processes several entries, in order, and returns one error
// per entry with the meaning Handler gives it. The consumer settles the
// entries in order and stops at the first retry or stop outcome: that
// entry and the ones after it stay queued and are handled again later,
// whatever the handler did with them, so a BatchHandler must be as
// idempotent as a Handler. If it panics, the batch's entries are handled
// again one at a time, so that only the culprit fails.
type BatchHandler func(ctx context.Context, es []*Entry) []error

// Consumer holds a queue's consumer lock.
type Consumer struct {
	q      *Queue
	dir    *os.File // the queue directory, checked (openOwnDir)
	unlock func()
}

// ErrBusy is wrapped in the error Lock returns when another process
// consumes the queue.
var ErrBusy = errors.New("queue is already being consumed")

// ErrMissing is wrapped in the error Lock returns when the queue's
// directory does not exist: a consumer never creates it, since the install
// gives it its owner, group and ACL.
var ErrMissing = errors.New("queue directory does not exist")

// missingHint is how an operator makes a missing queue directory.
const missingHint = "create the queue directories as installed: systemd-tmpfiles --create dh-deployer.conf " +
	"(the package does), or dh-deployer-acl queues / dh-deployer-acl deployment NAME (docs/operations.md)"

// Lock takes the queue's consumer lock. If another process holds it, Lock
// fails with an error wrapping ErrBusy (a Retry), or, with wait, waits
// until it is free or ctx ends. The queue directory must exist (otherwise
// ErrMissing, with the fix as a hint), and it, .tmp/, failed/ and .lock
// must be the consumer's own (guard.go): otherwise Lock fails with
// ErrTampered naming what is wrong.
func (q *Queue) Lock(ctx context.Context, wait bool) (*Consumer, error) {
	dir, err := openOwnDir(nil, q.dir)
	if errors.Is(err, os.ErrNotExist) {
		err = missing(q.dir)
	}
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{StagingDir, FailedDir} {
		d, err := openOwnDir(dir, sub)
		if errors.Is(err, os.ErrNotExist) {
			err = missing(filepath.Join(q.dir, sub))
		}
		if err != nil {
			dir.Close()
			return nil, err
		}
		d.Close()
	}
	f, err := openLockAt(dir, LockFile)
	if err != nil {
		dir.Close()
		return nil, err
	}
	var holder []byte
	if !wait {
		// Read who holds the lock before trying it, for the message.
		holder = make([]byte, 32)
		n, _ := f.ReadAt(holder, 0)
		holder = bytes.TrimSpace(holder[:n])
	}
	unlock, err := lockFile(ctx, f, wait, nil)
	if errors.Is(err, ErrLocked) {
		dir.Close()
		return nil, hint.With(Retry(fmt.Errorf("%w: %s (held by pid %s)", ErrBusy, q.dir, orUnknown(holder))),
			"stop the other consumer first, or pass --wait to wait for it")
	}
	if err != nil {
		dir.Close()
		return nil, err
	}
	// Record who holds the lock, for the message a second consumer gets.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Consumer{q: q, dir: dir, unlock: unlock}, nil
}

// Exists returns nil if the queue's directory exists, else an error
// wrapping ErrMissing with the fix as a hint, one saying it is not a
// directory, or the error looking for it.
// A command that needs the queue but does not consume it (a run by hand,
// which takes a lock file in it) checks with it first.
func (q *Queue) Exists() error {
	fi, err := os.Stat(q.dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return missing(q.dir)
	case err == nil && !fi.IsDir():
		return fmt.Errorf("queue %s is not a directory", q.dir)
	}
	return err
}

// missing is the error of a queue directory dir that does not exist.
func missing(dir string) error {
	return hint.With(fmt.Errorf("%w: %s", ErrMissing, dir), missingHint)
}

func orUnknown(b []byte) string {
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// Close releases the lock.
func (c *Consumer) Close() error {
	c.dir.Close()
	c.unlock()
	return nil
}

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
	// Poll, if set, replaces fsnotify (which costs an inotify instance,
	// 128 per user by default) by the queue's wake pipe (see WakeFile)
	// and a check of the directory's modification time every Poll: what
	// a host running hundreds of consumers, such as deployment workers,
	// wants.
	Poll time.Duration
	// Batch is the most entries RunBatch hands over at once (default 256;
	// Run always hands over one). Removals are fsynced once per batch.
	Batch int
	// Writers returns the user ids that may add entries to the queue
	// besides root and the consumer's own user: an entry whose file
	// another user owns is moved to failed/ unread (guard.go). It is
	// called before each scan of the queue, so that it can follow a
	// reloaded configuration; nil allows only root and the consumer.
	Writers func() []int
	Logger  *slog.Logger
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
	if o.Batch <= 0 {
		o.Batch = 256
	}
}

// Run consumes the queue one entry at a time until ctx is cancelled
// (returning nil), a fatal error occurs, or, with Once, the queue is empty.
func (c *Consumer) Run(ctx context.Context, h Handler, opts Options) error {
	opts.Batch = 1
	return c.RunBatch(ctx, func(ctx context.Context, es []*Entry) []error {
		errs := make([]error, len(es))
		for i, e := range es {
			errs[i] = safeCall(ctx, h, e)
		}
		return errs
	}, opts)
}

// RunBatch is Run for a handler that takes up to opts.Batch entries at once.
func (c *Consumer) RunBatch(ctx context.Context, h BatchHandler, opts Options) error {
	opts.defaults()
	log := opts.Logger.With("queue", c.q.Name())
	if err := c.sweepStaging(10 * time.Minute); err != nil {
		return err
	}

	var events chan fsnotify.Event
	var overflow chan error
	var wake *waker
	var poll <-chan time.Time
	if opts.Poll > 0 && !opts.Once {
		var err error
		if wake, err = c.q.newWaker(); err != nil {
			log.Warn("queue wake pipe unavailable; checking the directory every poll", "poll", opts.Poll, "err", err)
		}
		defer wake.close()
		t := time.NewTicker(opts.Poll)
		defer t.Stop()
		poll = t.C
	} else if !opts.NoNotify && !opts.Once {
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
		if wake != nil {
			wake.scanned()
			drainWake(wake.C)
		}
		var uids []int
		if opts.Writers != nil {
			uids = opts.Writers()
		}
		writer := writers(uids)
		names, err := c.list()
		if err != nil {
			return err
		}
		found := len(names) > 0
		var temp error
		var after time.Duration // a RetryAfter's least wait
		for len(names) > 0 && temp == nil {
			if ctx.Err() != nil {
				return nil
			}
			batch := names[:min(opts.Batch, len(names))]
			names = names[len(batch):]
			for _, name := range batch {
				attempts[name]++
			}
			stopped, err := c.handle(ctx, h, batch, attempts, writer, log)
			for _, name := range batch[:stopped] {
				delete(attempts, name)
			}
			if err == nil {
				backoff = opts.MinBackoff
				continue
			}
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil
			}
			var o outcome
			if o, after = outcomeOf(err); o != retry {
				return err // a stop, or the consumer's own failure
			}
			name := batch[stopped]
			if attempts[name] == 1 {
				log.Warn("entry failed temporarily; will retry", "entry", name, "err", err)
			} else {
				log.Debug("entry failed temporarily again", "entry", name, "attempts", attempts[name], "err", err)
			}
			for _, later := range batch[stopped+1:] {
				attempts[later]-- // not settled: this was not their attempt
			}
			temp = err // keep the order: retry this entry before the next
		}
		if temp != nil {
			if opts.Once {
				return temp
			}
			if !sleep(ctx, max(jitter(backoff), min(after, opts.MaxBackoff))) {
				return nil
			}
			backoff = min(2*backoff, opts.MaxBackoff)
			continue
		}
		if found {
			continue // the listing is worked through: rescan
		}
		if opts.Once {
			return nil
		}
		if !c.idle(ctx, opts.Rescan, events, overflow, wake, poll, log) {
			return nil
		}
	}
}

// idle waits until something says the queue may have changed: a file
// notification, the wake pipe, a changed directory at a poll, or the
// periodic rescan. It reports false when ctx ends.
func (c *Consumer) idle(ctx context.Context, rescan time.Duration, events chan fsnotify.Event, overflow chan error,
	wake *waker, poll <-chan time.Time, log *slog.Logger) bool {
	var woken chan struct{}
	if wake != nil {
		woken = wake.C
	}
	timer := time.NewTimer(rescan)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-events:
			return true
		case err := <-overflow:
			log.Debug("file notification error; rescanning", "err", err)
			return true
		case <-woken:
			return true
		case <-poll:
			if wake == nil || wake.changed() {
				return true
			}
		case <-timer.C:
			return true
		}
	}
}

// handle runs a batch of entries and settles them in order: done ones are
// removed (one directory fsync for all of them), permanently failed ones
// moved to failed/. It returns how many were settled and, if it stopped
// early, the temporary or fatal error of the entry at that index.
func (c *Consumer) handle(ctx context.Context, h BatchHandler, names []string, attempts map[string]int, writer func(int) bool, log *slog.Logger) (int, error) {
	entries := make([]*Entry, 0, len(names))
	readErr := make([]error, len(names))
	for i, name := range names {
		e, err := readEntry(c.dir, name, writer)
		if err != nil {
			readErr[i] = err
			continue
		}
		entries = append(entries, e)
	}
	results := callBatch(ctx, h, entries)
	removed := false
	settle := func(n int, err error) (int, error) {
		if removed {
			if serr := c.dir.Sync(); serr != nil {
				return 0, &durable.Error{Op: "sync dir", Path: c.q.dir, Err: serr}
			}
		}
		return n, err
	}
	j := 0
	for i, name := range names {
		err := readErr[i]
		if err == nil {
			err = results[j]
			j++
		}
		switch {
		case err == nil:
			if rerr := durable.RemoveAt(c.dir, name); rerr != nil {
				return settle(i, fmt.Errorf("remove entry: %w", rerr))
			}
			removed = true
			continue
		case err == errGone:
			continue
		case KeepsEntry(ctx, err):
			return settle(i, err)
		}
		log.Error("entry failed; moved to failed/", "entry", name, "attempts", attempts[name], "err", err)
		if ferr := c.fail(name, err, attempts[name]); ferr != nil {
			return settle(i, ferr)
		}
	}
	return settle(len(names), nil)
}

var errGone = errors.New("entry gone")

// ErrPanic is wrapped in the failure of an entry whose handler panicked.
var ErrPanic = errors.New("internal error: panic")

// ErrUnreadable is wrapped in Replay's error when it cannot read the file
// as an entry.
var ErrUnreadable = errors.New("not a readable entry")

// callBatch calls h, and after a panic calls it again once per entry so
// that only the entry that panics fails.
func callBatch(ctx context.Context, h BatchHandler, es []*Entry) []error {
	errs, panicked := tryBatch(ctx, h, es)
	if panicked == nil {
		if len(errs) != len(es) {
			panic(fmt.Sprintf("queue: batch handler returned %d results for %d entries", len(errs), len(es)))
		}
		return errs
	}
	if len(es) == 1 {
		return []error{panicked}
	}
	errs = make([]error, len(es))
	for i, e := range es {
		errs[i] = callBatch(ctx, h, []*Entry{e})[0]
	}
	return errs
}

func tryBatch(ctx context.Context, h BatchHandler, es []*Entry) (errs []error, panicked error) {
	defer func() {
		if r := recover(); r != nil {
			panicked = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
		}
	}()
	return h(ctx, es), nil
}

func safeCall(ctx context.Context, h Handler, e *Entry) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
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
	e, err := ReadEntry(path)
	if err != nil {
		return fmt.Errorf("replay: %w (%w)", err, ErrUnreadable)
	}
	if err := safeCall(ctx, h, e); err != nil {
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

func drainWake(ch chan struct{}) {
	select {
	case <-ch:
	default:
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
