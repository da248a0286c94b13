// Package queue is dh-deployer's durable file-system queue: a directory whose
// entries are the regular files "*.json" directly in it, in name order.
//
// Guarantees:
//
//   - Publish returns nil only once the entry is on disk under its final
//     name: it is written to <queue>/.tmp, its data synced (fdatasync) by
//     its own publisher, linked into the queue (renameat2
//     RENAME_NOREPLACE, or link+unlink: never replacing an existing file)
//     and the queue directory is fsynced. A reader never sees a partial
//     entry. Durability is per entry (pkg/durable's rule): nothing here
//     uses syncfs(2), so a publish never waits for other programs' dirty
//     data (a build writing beside the queue), and it is durable on FUSE
//     too. Concurrent publishers (and PublishAll's items) share one
//     directory fsync per queue (group commit): a publisher waits for at
//     most the commit in progress when it arrived plus its own.
//   - PublishAll returns one result per item: a queue that cannot be
//     written fails its own items only.
//   - Queue directories are created setgid and sticky (DirMode), so
//     entries keep the queue's group whoever writes them, and a writer can
//     remove or rename only its own files.
//   - A writer cannot turn the queue against its consumer (guard.go): the
//     consumer opens the queue, .tmp/, failed/ and .lock without following
//     links and refuses to start (NoPerm) unless they are its own; it takes
//     only regular files owned by root, itself or a writer of the queue
//     (Options.Writers), failing any other entry unread; it sweeps, removes
//     and moves relative to the open directories.
//   - Publishers that call Room are held back at the queue's Limits
//     (limits.go): entries, bytes and a free-space floor, counted cheaply.
//   - A queue_dir on tmpfs or ramfs is refused at start (config.Load,
//     durable.CheckFS) unless the configuration marks it a throwaway.
//   - Names sort in arrival order: a 20-digit nanosecond time that never goes
//     backwards within a process, then the pid and a random tag that keep
//     names from different processes apart.
//   - One consumer per queue, enforced with flock(2) on <queue>/.lock; the
//     lock dies with its process, so a crashed consumer never blocks the next.
//   - Entries are handled in name order. An entry leaves the queue only after
//     its handler returned: removed (and the directory fsynced) on success,
//     moved to <queue>/failed/ with a "<name>.why" sidecar on a permanent
//     failure. A temporary failure (Retry) leaves it in place and
//     retries it with backoff (outcome.go: what a handler's error means). A crash at any instant therefore leaves every
//     entry either still queued or done: delivery is at-least-once, and
//     handlers must be idempotent.
//   - fsnotify (or, with Options.Poll, the wake pipe and a look at the
//     directory's mtime: see WakeFile) is only a hint. The directory is
//     rescanned at start, once every entry of the last listing was handled
//     (batch by batch), on a watcher overflow and periodically.
//
// Every change a consumer makes follows the same rule: a removal is
// followed by an fsync of the queue directory (one per batch) before the
// next batch is read; a move to failed/ writes and syncs the sidecar, then
// renames the entry and fsyncs failed/ and the queue directory. An I/O
// error while removing or moving an entry stops the consumer (exit 74): a
// failed fsync cannot be retried safely.
package queue

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
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

// DirMode is the mode of the directories Init creates: the group may
// write, setgid so that what is created inside gets the directory's
// group (the stages'), not the creator's, and sticky so that a writer
// can remove or rename only its own files (guard.go).
const DirMode = os.ModeSetgid | os.ModeSticky | 0o770

// stageWorkers bounds how many entries of one PublishAll are written and
// synced at once. Each sync ends in a flush of the disk's cache, which
// waits for whatever other programs are writing back (a build beside the
// queues); syncs issued together share their flushes. dh-route's batches
// (up to 256 entries, each forwarded to its deployments) drained a backlog
// beside a 1.5 GB writer at 0.91-0.95x their quiet rate with 64, against
// 0.55-0.92x with 16 (BenchmarkRouteBacklog, two runs each, 2 busy CPUs),
// for 2 MB more peak RSS (a thread per sync in progress).
const stageWorkers = 64

// Queue is a handle on one queue directory. It is cheap; publishers that
// do not consume (dh-receive, dh-route's fan-out) use it without a lock.
type Queue struct {
	dir     string
	group   groupCommit
	backlog backlog // for Room (limits.go)
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
// if they are missing, with mode DirMode (setgid), each one made durable
// in its parent.
func (q *Queue) Init() error {
	for _, d := range []string{q.dir, filepath.Join(q.dir, StagingDir), filepath.Join(q.dir, FailedDir)} {
		if err := durable.MkdirAll(d, DirMode); err != nil {
			return fmt.Errorf("create queue directory: %w", err)
		}
	}
	return nil
}

// Publish durably adds an entry with the given content and returns its
// name. When it returns an error nothing was enqueued (a stray staging file
// may remain; consumers sweep those). Concurrent calls on one handle share
// their directory fsync (group commit): see groupCommit.
func (q *Queue) Publish(data []byte) (string, error) {
	r := PublishAll([]Item{{Queue: q, Data: data}})[0]
	return r.Name, r.Err
}

// Item is one entry for PublishAll.
type Item struct {
	Queue *Queue
	Data  []byte
	// Write, if not nil, writes the entry's content into its staging file
	// instead of Data (an entry streamed, never held in memory whole). If
	// it returns an error, the staging file is removed, the item is not
	// published, and its Result carries that error.
	Write func(w io.Writer) error
	// Name, if not empty, is the entry's name (IsEntry must accept it)
	// instead of a fresh one, which makes publishing it idempotent: if the
	// queue already holds an entry of that name, waiting or in failed/,
	// the item is not published again and counts as published. dh-route
	// names a deployment's entry after the queues/main entry it comes
	// from, so that routing an entry twice (after a crash, or a rolled
	// back transaction) queues it once.
	Name string
}

// Result is what became of one Item: its entry's name, or why it was not
// published.
type Result struct {
	Name string
	Err  error
}

// PublishAll durably adds each item's entry to its queue and returns one
// Result per item, in the order of items. Each item succeeds or fails
// alone: a broken queue fails its own items only. The entries are written
// and synced concurrently (each its own fdatasync), linked into their
// queues, and each queue's directory is fsynced once for all of them
// (shared with concurrent Publish calls on the same handle).
func PublishAll(items []Item) []Result {
	ps := make([]*pending, len(items))
	for i, it := range items {
		ps[i] = &pending{q: it.Queue, data: it.Data, write: it.Write, name: it.Name, given: it.Name != ""}
		if !ps[i].given {
			// Named here, not by the concurrent stages: a queue's new
			// entries sort in the order of items.
			ps[i].name = NewName()
		}
	}
	// Write and sync each entry, stageWorkers at a time: every publisher
	// syncs its own file, so none waits for another's data.
	if len(ps) == 1 {
		ps[0].stage()
	} else {
		var wg sync.WaitGroup
		sem := make(chan struct{}, stageWorkers)
		for _, p := range ps {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				p.stage()
				<-sem
			}()
		}
		wg.Wait()
	}
	// Then link them in the order of items (a link is cheap): a consumer
	// scanning meanwhile sees a prefix of a queue's new entries, never a
	// later one without the earlier (it would handle a newer push first).
	for _, p := range ps {
		p.link()
	}
	// Then one directory fsync per queue for the names linked into it.
	byQueue := map[*Queue][]*pending{}
	var order []*Queue
	for _, p := range ps {
		if p.err != nil {
			continue
		}
		if byQueue[p.q] == nil {
			order = append(order, p.q)
		}
		byQueue[p.q] = append(byQueue[p.q], p)
	}
	if len(order) == 1 {
		order[0].group.do(byQueue[order[0]], syncNames)
	} else {
		var wg sync.WaitGroup
		for _, q := range order {
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.group.do(byQueue[q], syncNames)
			}()
		}
		wg.Wait()
	}
	rs := make([]Result, len(ps))
	for i, p := range ps {
		if p.err != nil {
			rs[i].Err = fmt.Errorf("publish to %s: %w", p.q.dir, p.err)
			continue
		}
		rs[i].Name = p.name
		if !p.existed {
			p.q.backlog.add(p.size)
		}
	}
	return rs
}

// pending is an entry on its way into its queue.
type pending struct {
	q       *Queue
	data    []byte
	write   func(w io.Writer) error // Item.Write
	name    string                  // given (Item.Name) or fresh
	given   bool
	dst     string
	tmp     string // the staged file, until linked
	existed bool   // a given name the queue already held: not ours to take back
	size    int64  // bytes staged, for the queue's backlog count (limits.go)
	err     error
}

// stage writes the entry to the queue's staging directory and syncs its
// data; link then links it into the queue. The name is not durable
// until its directory is synced (syncNames).
func (p *pending) stage() {
	q := p.q
	if p.given {
		if !IsEntry(p.name) || p.name != filepath.Base(p.name) {
			p.err = fmt.Errorf("bad entry name %q", p.name)
			return
		}
		if _, err := os.Lstat(filepath.Join(q.dir, FailedDir, p.name)); err == nil {
			// Published before, and failed since: not again.
			p.existed = true
			return
		}
	}
	p.dst = filepath.Join(q.dir, p.name)
	staging := filepath.Join(q.dir, StagingDir)
	tmp := filepath.Join(staging, p.name)
	// The staging file's data is synced (fdatasync, in Stage) before its
	// name is linked into the queue: a name never points at data that a
	// power cut can lose.
	err := p.stageFile(tmp)
	if errors.Is(err, os.ErrExist) {
		// A leftover of a publisher that crashed with the same given
		// name: take its place.
		os.Remove(tmp)
		err = p.stageFile(tmp)
	}
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(q.dir); serr != nil {
			p.err = serr
			return
		}
		// The queue exists but its staging directory does not (yet).
		if merr := durable.MkdirAll(staging, DirMode); merr != nil {
			p.err = merr
			return
		}
		err = p.stageFile(tmp)
	}
	if err != nil {
		p.err = err
		return
	}
	p.tmp = tmp
}

// link links a staged entry into the queue under its name, never
// replacing a file.
func (p *pending) link() {
	if p.tmp == "" {
		return // not staged: failed, or a given name that failed before
	}
	tmp := p.tmp
	err := durable.Link(tmp, p.dst)
	if errors.Is(err, os.ErrExist) && p.given {
		// Only a given name can be taken (fresh ones are unique): the
		// queue holds this entry already.
		os.Remove(tmp)
		p.existed = true
		return
	}
	if err != nil {
		os.Remove(tmp)
		p.err = err
	}
	// The staging directory is not synced: a crash may leave the entry's
	// staging name too, which the consumer sweeps (sweepStaging).
}

// stageFile writes the entry's content to the new staging file tmp and
// syncs it (durable.Stage).
func (p *pending) stageFile(tmp string) error {
	if p.write != nil {
		var err error
		p.size, err = durable.StageFunc(tmp, EntryPerm, p.write)
		return err
	}
	p.size = int64(len(p.data))
	return durable.Stage(tmp, p.data, EntryPerm)
}

// syncNames makes the names of a batch of entries linked into one queue
// durable with one fsync of the queue directory. An entry whose name could
// not be made durable is taken back (removed): a consumer that already saw
// it handles it once more than asked, never less. An entry that was
// already there (a given name) is synced too, since its first publisher
// may have crashed before its own directory fsync.
func syncNames(batch []*pending) {
	if len(batch) == 0 {
		return
	}
	err := durable.SyncDir(batch[0].q.dir)
	if err == nil {
		return
	}
	for _, p := range batch {
		if !p.existed {
			os.Remove(p.dst)
		}
		p.err = err
	}
}

// groupCommit batches the directory fsyncs of concurrent publishers to one
// queue. A publisher whose entries are linked joins the waiting batch. If
// no batch is being committed it leads: it takes the waiting batch
// (itself, and whoever joined before it), commits it, and returns. Who
// arrives while a batch commits waits; when that commit ends, its leader
// hands over to the first of them, who commits all that waited. So a
// leader commits exactly one batch, and no publisher waits for more than
// the batch in progress when it joined plus its own. Every member's link
// happened before it joined, hence before the fsync that reports to it
// started: that fsync covers its name.
type groupCommit struct {
	mu      sync.Mutex
	busy    bool
	waiting []*member
}

// member is one call of groupCommit.do.
type member struct {
	ps   []*pending
	turn chan bool // true: lead the next batch; false: your batch is committed
}

// do joins ps to the next batch and returns once a commit covered them
// (each pending has its own error). commit is syncNames, or a stand-in in
// tests.
func (g *groupCommit) do(ps []*pending, commit func([]*pending)) {
	m := &member{ps: ps, turn: make(chan bool, 1)}
	g.mu.Lock()
	g.waiting = append(g.waiting, m)
	if g.busy {
		g.mu.Unlock()
		if lead := <-m.turn; !lead {
			return
		}
		g.mu.Lock()
	}
	g.busy = true
	members := g.waiting
	g.waiting = nil
	g.mu.Unlock()

	var batch []*pending
	for _, b := range members {
		batch = append(batch, b.ps...)
	}
	commit(batch)

	// Release this batch's members first, then hand over: the goroutine
	// readied last runs next (the scheduler's runnext slot), and the next
	// batch, already waiting, should not queue behind the released ones
	// (measured: members waited 3.9 commits on average with the hand-over
	// first, 3.3 with it last, 16 publishers on a busy 2-CPU machine).
	for _, b := range members {
		if b != m {
			b.turn <- false
		}
	}
	g.mu.Lock()
	if len(g.waiting) > 0 {
		g.waiting[0].turn <- true // hand over; g stays busy
	} else {
		g.busy = false
	}
	g.mu.Unlock()
}

// IsEntry reports whether a directory entry name is a queue entry.
func IsEntry(name string) bool {
	return strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, ".") && len(name) > len(".json")
}

// List returns the names of the entries now in the queue, in order.
func (q *Queue) List() ([]string, error) {
	return listDir(q.dir)
}

// Failed returns the names of the regular files in the queue's failed/
// directory (a refused link or FIFO is there too, but not listed: readers
// of failed entries never open one).
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
		return nil, fmt.Errorf("list queue: %w", err)
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
// again), never failed without a reason. Both act relative to the checked
// queue directory and failed/ (guard.go), never following a link.
func (c *Consumer) fail(name string, cause error, attempts int) error {
	failed, err := openOwnDir(c.dir, FailedDir)
	if errors.Is(err, os.ErrNotExist) {
		// Removed by hand since Lock: make it again.
		if err := unix.Mkdirat(int(c.dir.Fd()), FailedDir, uint32(DirMode.Perm())); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("fail %s: create %s: %w", name, FailedDir, err)
		}
		if err := c.dir.Sync(); err != nil {
			return &durable.Error{Op: "fail " + name + ": sync dir", Path: c.q.dir, Err: err}
		}
		failed, err = openOwnDir(c.dir, FailedDir) // adds the sticky bit; setgid is inherited
	}
	if err != nil {
		return fmt.Errorf("fail %s: %w", name, err)
	}
	defer failed.Close()
	why, err := json.MarshalIndent(Failure{
		Entry: name, Queue: c.q.Name(), Error: cause.Error(),
		FailedAt: time.Now().UTC(), Attempts: attempts,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("fail %s: %w", name, err)
	}
	if err := durable.WriteFileAt(failed, name+WhySuffix, append(why, '\n'), EntryPerm); err != nil {
		return fmt.Errorf("fail %s: %w", name, err)
	}
	if err := durable.RenameAt(c.dir, name, failed, name); err != nil {
		return fmt.Errorf("fail %s: %w", name, err)
	}
	return nil
}

// list returns the names of the entries now in the queue, in order, read
// from the checked queue directory. Unlike List it keeps names that are
// not regular files: readEntry refuses them (to failed/).
func (c *Consumer) list() ([]string, error) {
	fd, err := unix.Openat(int(c.dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("list queue %s: %w", c.q.dir, err)
	}
	d := os.NewFile(uintptr(fd), c.q.dir)
	defer d.Close()
	all, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list queue %s: %w", c.q.dir, err)
	}
	names := all[:0]
	for _, n := range all {
		if IsEntry(n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// sweepStaging removes files in .tmp/ older than maxAge: leftovers of
// publishers that crashed before (or right after) linking their entry.
// It works in the checked .tmp/ directory (openOwnDir), looks at each name
// with fstatat(AT_SYMLINK_NOFOLLOW) and removes it with unlinkat, so a
// link there is removed itself, never followed.
func (c *Consumer) sweepStaging(maxAge time.Duration) error {
	dir, err := openOwnDir(c.dir, StagingDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil // the next start sweeps again
	}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(int(dir.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
			continue
		}
		if time.Since(time.Unix(st.Mtim.Unix())) > maxAge {
			unix.Unlinkat(int(dir.Fd()), n, 0)
		}
	}
	return nil
}
