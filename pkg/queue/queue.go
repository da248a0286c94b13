// Package queue is dh-deployer's durable file-system queue: a directory whose
// entries are the regular files "*.json" directly in it, in name order.
//
// Guarantees:
//
//   - Publish returns nil only once the entry is on disk under its final
//     name: it is written to <queue>/.tmp, fsynced, hard-linked into the queue
//     (link never replaces an existing file) and the queue directory is
//     fsynced. A reader never sees a partial entry.
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
	dir  string
	sync groupSync
}

// Open returns a handle on the queue directory dir. It does not touch the
// file system; Publish fails if dir does not exist. Share one handle
// between concurrent publishers: their directory fsyncs are batched.
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
// may remain; consumers sweep those).
func (q *Queue) Publish(data []byte) (string, error) {
	name := NewName()
	staging := filepath.Join(q.dir, StagingDir)
	tmp := filepath.Join(staging, name)
	err := durable.Stage(tmp, data, EntryPerm)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(q.dir); serr != nil {
			return "", sysexits.New(codeOf(serr), fmt.Errorf("publish to %s: %w", q.dir, serr))
		}
		// The queue exists but its staging directory does not (yet).
		if merr := os.Mkdir(staging, 0o2770); merr != nil && !errors.Is(merr, os.ErrExist) {
			return "", sysexits.New(codeOf(merr), fmt.Errorf("publish to %s: %w", q.dir, merr))
		}
		err = durable.Stage(tmp, data, EntryPerm)
	}
	if err != nil {
		return "", fmt.Errorf("publish to %s: %w", q.dir, err)
	}
	dst := filepath.Join(q.dir, name)
	if err := durable.Link(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("publish to %s: %w", q.dir, err)
	}
	if err := q.sync.do(q.dir); err != nil {
		// Not durable, so not published: take it back. A consumer that
		// already saw it handles it once more than asked, never less.
		os.Remove(dst)
		return "", fmt.Errorf("publish to %s: %w", q.dir, err)
	}
	return name, nil
}

// groupSync batches directory fsyncs of concurrent publishers: a publisher
// whose link is done joins the waiting batch; one of them (the leader)
// fsyncs the directory for the whole batch while later arrivals gather for
// the next round. Every publisher's link happened before the fsync that
// reports to it started, so that fsync covers it.
type groupSync struct {
	mu      sync.Mutex
	busy    bool
	waiting []chan error
}

func (g *groupSync) do(dir string) error {
	done := make(chan error, 1)
	g.mu.Lock()
	g.waiting = append(g.waiting, done)
	if g.busy {
		g.mu.Unlock()
		return <-done
	}
	g.busy = true
	for len(g.waiting) > 0 {
		batch := g.waiting
		g.waiting = nil
		g.mu.Unlock()
		err := durable.SyncDir(dir)
		for _, c := range batch {
			c <- err
		}
		g.mu.Lock()
	}
	g.busy = false
	g.mu.Unlock()
	return <-done
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
