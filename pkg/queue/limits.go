package queue

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
)

// Limits bound a queue's backlog, for publishers that check Room before
// they publish (dh-receive into queues/main, dh-route into deployment
// queues). A zero field is no limit.
type Limits struct {
	MaxEntries   int64 // entries waiting in the queue (failed/ not counted)
	MaxBytes     int64 // their total size in bytes
	MinFreeBytes int64 // free bytes (for unprivileged users) of the queue's file system
}

// ErrFull is wrapped in Room's error when the queue is at a limit or its
// file system is below the free-space floor.
var ErrFull = errors.New("queue is full")

// How often Room rescans the queue directory: while the estimate is under
// the limits only every rescanIdle (to notice other publishers and
// hand-made entries), while at a limit at most every rescanFull (to
// notice that the consumer made room).
const (
	rescanIdle = 30 * time.Second
	rescanFull = time.Second
)

// backlog is a publisher's estimate of its queue's size: the last scan
// plus what this handle published since. Consumers only remove entries,
// so between scans the estimate is at most too high, never too low (but
// for other publishers): a queue under its limits by the estimate is
// under them.
type backlog struct {
	mu       sync.Mutex
	limits   Limits
	entries  int64
	bytes    int64
	scanned  time.Time // when the last scan started; zero: scan before answering
	scanning bool      // a rescan runs in the background
}

// SetLimits sets the limits Room checks (new limits take effect at the
// next Room; the same limits again change nothing).
func (q *Queue) SetLimits(l Limits) {
	q.backlog.mu.Lock()
	if q.backlog.limits != l {
		q.backlog.limits = l
		q.backlog.scanned = time.Time{}
	}
	q.backlog.mu.Unlock()
}

// Room reports whether the queue may take another entry: nil, or an error
// wrapping ErrFull, a Retry, naming the limit reached. It is
// cheap enough to call per request: one statfs(2) for the free-space
// floor, and the entry and byte counts come from the estimate kept by
// this handle (see backlog). The first call scans the directory; later
// rescans (every 30 s, or at most every second while at a limit) run in
// the background, so no request waits for one. Concurrent publishers may each pass the
// check before either publishes, so a limit is soft by that many entries.
func (q *Queue) Room() error { return q.RoomAfter(0, 0) }

// RoomAfter is Room for a publisher about to publish entries entries of
// bytes bytes in all before the one it asks about (the earlier items of a
// PublishAll batch).
func (q *Queue) RoomAfter(entries, bytes int64) error {
	b := &q.backlog
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.limits
	if l.MinFreeBytes > 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(q.dir, &st); err == nil {
			if free := int64(st.Bavail) * st.Bsize; free < l.MinFreeBytes {
				return full(fmt.Errorf("%w: the file system of %s has %d bytes free, below the floor of %d",
					ErrFull, q.dir, free, l.MinFreeBytes))
			}
		}
	}
	if l.MaxEntries <= 0 && l.MaxBytes <= 0 {
		return nil
	}
	if b.scanned.IsZero() {
		n, size, err := count(q.dir)
		if err != nil {
			return err
		}
		b.entries, b.bytes, b.scanned = n, size, time.Now()
	} else if since := time.Since(b.scanned); !b.scanning &&
		(since >= rescanIdle || since >= rescanFull && b.over(entries, bytes) != nil) {
		b.scanning = true
		go b.rescan(q.dir)
	}
	return b.over(entries, bytes)
}

// rescan counts the queue in the background and replaces the estimate
// with the count plus what was published meanwhile (which the count may
// have seen too: the estimate stays on the high side).
func (b *backlog) rescan(dir string) {
	b.mu.Lock()
	start, e0, s0 := time.Now(), b.entries, b.bytes
	b.mu.Unlock()
	n, size, err := count(dir)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.scanning = false
	if err != nil || b.scanned.IsZero() { // failed, or SetLimits started over
		return
	}
	b.entries, b.bytes, b.scanned = n+max(b.entries-e0, 0), size+max(b.bytes-s0, 0), start
}

// over is the limit the estimate, plus entries of bytes about to be
// published, reached; or nil.
func (b *backlog) over(entries, bytes int64) error {
	n, size := b.entries+entries, b.bytes+bytes
	switch l := b.limits; {
	case l.MaxEntries > 0 && n >= l.MaxEntries:
		return full(fmt.Errorf("%w: %d entries waiting, the most it may hold is %d", ErrFull, n, l.MaxEntries))
	case l.MaxBytes > 0 && size >= l.MaxBytes:
		return full(fmt.Errorf("%w: %d bytes waiting, the most it may hold is %d", ErrFull, size, l.MaxBytes))
	}
	return nil
}

func full(err error) error {
	return hint.With(Retry(err),
		"the queue's consumer is stopped or behind; see docs/operations.md, or raise the [queues] limits if the backlog is expected")
}

// count counts the entries in dir and their sizes.
func count(dir string) (entries, bytes int64, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("count queue %s: %w", dir, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, 0, fmt.Errorf("count queue %s: %w", dir, err)
	}
	for _, n := range names {
		var st unix.Stat_t
		if !IsEntry(n) || unix.Fstatat(int(d.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		entries++
		bytes += st.Size
	}
	return entries, bytes, nil
}

// add counts an entry this handle published.
func (b *backlog) add(size int64) {
	b.mu.Lock()
	b.entries++
	b.bytes += size
	b.mu.Unlock()
}
