// Package queue is dh-deployer's durable file-system queue: a directory whose
// entries are the regular files "*.json" directly in it, in name order.
//
// Guarantees:
//
//   - Publish returns nil only once the entry is on disk under its final
//     name: it is written to <queue>/.tmp, synced, linked into the queue
//     (renameat2 RENAME_NOREPLACE, or link+unlink: never replacing an
//     existing file) and the queue directory is fsynced. A reader never
//     sees a partial entry. Concurrent publishers (and PublishAll) share
//     one syncfs(2) for their data and one directory fsync for their
//     names, which is what makes hundreds of entries a second cheap.
//   - Names sort in arrival order: a 20-digit nanosecond time that never goes
//     backwards within a process, then the pid and a random tag that keep
//     names from different processes apart.
//   - One consumer per queue, enforced with flock(2) on <queue>/.lock; the
//     lock dies with its process, so a crashed consumer never blocks the next.
//   - Entries are handled in name order. An entry leaves the queue only after
//     its handler returned: removed (and the directory fsynced) on success,
//     moved to <queue>/failed/ with a "<name>.why" sidecar on a permanent
//     failure. A temporary failure (sysexits.TempFail) leaves it in place and
//     retries it with backoff. A crash at any instant therefore leaves every
//     entry either still queued or done: delivery is at-least-once, and
//     handlers must be idempotent.
//   - fsnotify is only a hint. The directory is rescanned at start, after
//     every batch, on a watcher overflow and periodically.
//
// An I/O error while removing or moving an entry stops the consumer (exit
// 74): a failed fsync cannot be retried safely.
package queue

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Names of the special files and directories inside a queue.
const (
	StagingDir = ".tmp"
	FailedDir  = "failed"
	LockFile   = ".lock"
	// WhySuffix is appended to an entry's name for its failure sidecar.
	WhySuffix = ".why"
)

// EntryPerm is the mode of entry files: the queue's group (the stages)
// may read them.
const EntryPerm = 0o640

// Queue is a handle on one queue directory. It is cheap; publishers that
// do not consume (dh-receive, dh-route's fan-out) use it without a lock.
type Queue struct {
	dir   string
	group groupCommit

	fsMu sync.Mutex
	fs   *os.File // the directory, open for SyncFS; see syncFile
}

// Open returns a handle on the queue directory dir. It does not touch the
// file system; Publish fails if dir does not exist. Share one handle
// between concurrent publishers: their syncs are batched.
func Open(dir string) *Queue { return &Queue{dir: filepath.Clean(dir)} }

// Dir is the queue's directory.
func (q *Queue) Dir() string { return q.dir }

// Name is the queue's name: the last element of its directory.
func (q *Queue) Name() string { return filepath.Base(q.dir) }

// Init creates the queue directory and its staging and failed directories
// if they are missing.
func (q *Queue) Init() error {
	for _, d := range []string{q.dir, filepath.Join(q.dir, StagingDir), filepath.Join(q.dir, FailedDir)} {
		if err := os.MkdirAll(d, 0o2770); err != nil {
			return sysexits.New(codeOf(err), fmt.Errorf("create queue directory: %w", err))
		}
	}
	return nil
}

// Publish durably adds an entry with the given content and returns its
// name. When it returns an error nothing was enqueued (a stray staging file
// may remain; consumers sweep those). Concurrent calls on one handle share
// their syncs (group commit): see commit.
func (q *Queue) Publish(data []byte) (string, error) {
	p, err := q.stage(data)
	if err != nil {
		return "", err
	}
	if err := q.group.do(p); err != nil {
		return "", err
	}
	return p.name, nil
}

// Item is one entry for PublishAll.
type Item struct {
	Queue *Queue
	Data  []byte
}

// PublishAll durably adds each item's entry to its queue with one data
// sync per queue and one directory fsync per queue, and returns the names
// in the order of items. On error some entries may have been published and
// others not (the error names the first failure); the caller handles the
// whole batch again, idempotently.
func PublishAll(items []Item) ([]string, error) {
	ps := make([]*pending, 0, len(items))
	var err error
	for _, it := range items {
		var p *pending
		if p, err = it.Queue.stage(it.Data); err != nil {
			break
		}
		ps = append(ps, p)
	}
	if err != nil {
		for _, p := range ps {
			os.Remove(p.tmp)
		}
		return nil, err
	}
	commit(ps)
	names := make([]string, len(ps))
	for i, p := range ps {
		if p.err != nil {
			return nil, p.err
		}
		names[i] = p.name
	}
	return names, nil
}

// pending is a staged entry on its way into its queue.
type pending struct {
	q        *Queue
	name     string
	tmp, dst string
	err      error
}

// stage writes an entry's content to the queue's staging directory, not
// yet synced.
func (q *Queue) stage(data []byte) (*pending, error) {
	// The directory handle that SyncFS uses must be open before the data
	// is written, or a write-back error in between would go unreported.
	if _, err := q.syncFile(); err != nil {
		return nil, err
	}
	name := NewName()
	staging := filepath.Join(q.dir, StagingDir)
	tmp := filepath.Join(staging, name)
	err := durable.Create(tmp, data, EntryPerm)
	if errors.Is(err, os.ErrNotExist) {
		// The queue exists (syncFile opened it) but its staging directory
		// does not (yet).
		if merr := os.Mkdir(staging, 0o2770); merr != nil && !errors.Is(merr, os.ErrExist) {
			return nil, sysexits.New(codeOf(merr), fmt.Errorf("publish to %s: %w", q.dir, merr))
		}
		err = durable.Create(tmp, data, EntryPerm)
	}
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", q.dir, err)
	}
	return &pending{q: q, name: name, tmp: tmp, dst: filepath.Join(q.dir, name)}, nil
}

// syncFile returns the queue directory, opened once and kept open, so that
// SyncFS on it reports every write-back error since the first publish.
func (q *Queue) syncFile() (*os.File, error) {
	q.fsMu.Lock()
	defer q.fsMu.Unlock()
	if q.fs == nil {
		f, err := os.Open(q.dir)
		if err != nil {
			return nil, sysexits.New(codeOf(err), fmt.Errorf("publish to %s: %w", q.dir, err))
		}
		q.fs = f
	}
	return q.fs, nil
}

// commit makes staged entries durable and then visible, in the order
// DESIGN.md asks for, but shared by the whole batch: first their data (one
// syncfs per queue's file system), then their names (each linked into its
// queue, never replacing a file), then one fsync per queue directory. A
// crash at any point leaves each entry either published whole or not at
// all. Each pending gets its own error; a failed entry is taken back.
func commit(ps []*pending) {
	synced := map[*Queue]error{}
	for _, p := range ps {
		if _, ok := synced[p.q]; !ok {
			f, err := p.q.syncFile()
			if err == nil {
				err = durable.SyncFS(f)
			}
			synced[p.q] = err
		}
		p.err = synced[p.q]
		if p.err == nil {
			p.err = durable.Link(p.tmp, p.dst)
		}
		if p.err != nil {
			os.Remove(p.tmp)
		}
	}
	dirs := map[*Queue]error{}
	for _, p := range ps {
		if p.err != nil {
			continue
		}
		if _, ok := dirs[p.q]; !ok {
			dirs[p.q] = durable.SyncDir(p.q.dir)
		}
		if err := dirs[p.q]; err != nil {
			// Not durable, so not published: take it back. A consumer
			// that already saw it handles it once more than asked, never
			// less.
			os.Remove(p.dst)
			p.err = err
		}
	}
	for _, p := range ps {
		if p.err != nil {
			p.err = fmt.Errorf("publish to %s: %w", p.q.dir, p.err)
		}
	}
}

// groupCommit batches the commits of concurrent publishers: a publisher
// whose entry is staged joins the waiting batch; one of them (the leader)
// commits the whole batch while later arrivals gather for the next round.
// Every member's staging finished before the commit that reports to it
// started, so that commit covers it.
type groupCommit struct {
	mu      sync.Mutex
	busy    bool
	waiting []*pending
	done    map[*pending]chan struct{}
}

func (g *groupCommit) do(p *pending) error {
	done := make(chan struct{})
	g.mu.Lock()
	if g.done == nil {
		g.done = map[*pending]chan struct{}{}
	}
	g.waiting = append(g.waiting, p)
	g.done[p] = done
	if g.busy {
		g.mu.Unlock()
		<-done
		return p.err
	}
	g.busy = true
	for len(g.waiting) > 0 {
		batch := g.waiting
		g.waiting = nil
		g.mu.Unlock()
		commit(batch)
		g.mu.Lock()
		for _, b := range batch {
			close(g.done[b])
			delete(g.done, b)
		}
	}
	g.busy = false
	g.mu.Unlock()
	return p.err
}

// IsEntry reports whether a directory entry name is a queue entry.
func IsEntry(name string) bool {
	return strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, ".") && len(name) > len(".json")
}

// List returns the names of the entries now in the queue, in order.
func (q *Queue) List() ([]string, error) {
	return listDir(q.dir)
}

// Failed returns the names of the entries in the queue's failed/ directory.
func (q *Queue) Failed() ([]string, error) {
	names, err := listDir(filepath.Join(q.dir, FailedDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return names, err
}

func listDir(dir string) ([]string, error) {
	des, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, sysexits.New(codeOf(err), fmt.Errorf("list queue: %w", err))
	}
	names := make([]string, 0, len(des))
	for _, de := range des {
		if de.Type().IsRegular() && IsEntry(de.Name()) {
			names = append(names, de.Name())
		}
	}
	return names, nil
}

// Stats describes a queue for health checks and status output.
type Stats struct {
	Depth  int       // entries waiting
	Oldest time.Time // arrival of the oldest waiting entry (zero if none)
	Failed int       // entries in failed/
}

// Stats reads the queue's current depth, oldest entry and failures.
func (q *Queue) Stats() (Stats, error) {
	names, err := q.List()
	if err != nil {
		return Stats{}, err
	}
	failed, err := q.Failed()
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Depth: len(names), Failed: len(failed)}
	if len(names) > 0 {
		s.Oldest = q.arrival(names[0])
	}
	return s, nil
}

// arrival is when an entry was published: from its name, or its mtime for
// a file an operator dropped in by hand.
func (q *Queue) arrival(name string) time.Time {
	if t, ok := NameTime(name); ok {
		return t
	}
	if fi, err := os.Stat(filepath.Join(q.dir, name)); err == nil {
		return fi.ModTime()
	}
	return time.Time{}
}

var nameRE = regexp.MustCompile(`^([0-9]{20})-[0-9]+-[0-9a-f]{8}\.json$`)

// NameTime returns the publication time encoded in an entry name made by
// NewName.
func NameTime(name string) (time.Time, bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

var (
	nameMu   sync.Mutex
	lastNano int64
	suffix   = func() string {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		return fmt.Sprintf("%d-%08x", os.Getpid(), binary.BigEndian.Uint32(b[:]))
	}()
)

// NewName returns a fresh entry name: "<20-digit unix ns>-<pid>-<random>.json".
// Within a process the time part strictly increases even if the clock steps
// back, so a process's entries keep their order; the pid and random part
// keep concurrent processes from colliding.
func NewName() string {
	nameMu.Lock()
	ns := time.Now().UnixNano()
	if ns <= lastNano {
		ns = lastNano + 1
	}
	lastNano = ns
	nameMu.Unlock()
	return fmt.Sprintf("%020d-%s.json", ns, suffix)
}

// Failure is the content of a "<name>.why" sidecar in failed/.
type Failure struct {
	Entry    string    `json:"entry"`
	Queue    string    `json:"queue"`
	Error    string    `json:"error"`
	ExitCode int       `json:"exit_code"`
	FailedAt time.Time `json:"failed_at"`
	Attempts int       `json:"attempts"`
}

// ReadFailure reads the sidecar of a failed entry.
func (q *Queue) ReadFailure(name string) (Failure, error) {
	var f Failure
	b, err := os.ReadFile(filepath.Join(q.dir, FailedDir, name+WhySuffix))
	if err != nil {
		return f, err
	}
	return f, json.Unmarshal(b, &f)
}

// fail moves an entry to failed/ with its sidecar. The sidecar is written
// first: a crash in between leaves the entry queued (it will be tried
// again), never failed without a reason.
func (q *Queue) fail(name string, cause error, attempts int) error {
	dir := filepath.Join(q.dir, FailedDir)
	if err := os.MkdirAll(dir, 0o2770); err != nil {
		return sysexits.New(codeOf(err), fmt.Errorf("fail %s: %w", name, err))
	}
	why, err := json.MarshalIndent(Failure{
		Entry: name, Queue: q.Name(), Error: cause.Error(), ExitCode: sysexits.Code(cause),
		FailedAt: time.Now().UTC(), Attempts: attempts,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("fail %s: %w", name, err)
	}
	if err := durable.WriteFile(filepath.Join(dir, name+WhySuffix), append(why, '\n'), EntryPerm); err != nil {
		return fmt.Errorf("fail %s: %w", name, err)
	}
	if err := durable.Rename(filepath.Join(q.dir, name), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("fail %s: %w", name, err)
	}
	return nil
}

// sweepStaging removes staging files older than maxAge: leftovers of
// publishers that crashed before (or right after) linking their entry.
func (q *Queue) sweepStaging(maxAge time.Duration) {
	dir := filepath.Join(q.dir, StagingDir)
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, de := range des {
		if fi, err := de.Info(); err == nil && time.Since(fi.ModTime()) > maxAge {
			os.Remove(filepath.Join(dir, de.Name()))
		}
	}
}

func codeOf(err error) int {
	if errors.Is(err, os.ErrPermission) {
		return sysexits.NoPerm
	}
	return sysexits.IOErr
}
