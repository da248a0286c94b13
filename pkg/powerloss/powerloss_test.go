package powerloss_test

import (
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/crashfs"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// budget is how far a test may go: DH_CRASH_ROUNDS cuts and DH_CRASH_TIME
// (make crash), or a few rounds; the time counts from began and covers
// everything after it, the recovery after the last cut included.
type budget struct {
	rounds int
	limit  time.Duration
	began  time.Time
}

// bounds returns the test's budget, counting from now.
func bounds(t *testing.T) budget {
	t.Helper()
	b := budget{rounds: 4, limit: 20 * time.Second}
	if v := os.Getenv("DH_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DH_CRASH_ROUNDS=%q: want a positive number", v)
		}
		b.rounds = n
	}
	if v := os.Getenv("DH_CRASH_TIME"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("DH_CRASH_TIME=%q: want a Go duration such as 5m", v)
		}
		b.limit = d
	}
	b.began = time.Now()
	return b
}

// another reports whether a round may start after done rounds: the first
// always does; a later one if fewer than b.rounds were done and the time
// spent so far plus then (the longest the round and everything after it
// can take: its cut, the recovery of what will be queued) stays within
// b.limit.
func (b budget) another(done int, then time.Duration) bool {
	return done == 0 || done < b.rounds && time.Since(b.began)+then <= b.limit
}

// tally is what a test found over its rounds.
type tally struct {
	stage                                    string
	rounds, acked, lost, corrupt, duplicates int
}

// report logs the tally in the line make crash collects, with the time
// the cuts and the recovery took of b's, and fails the test if anything
// was lost, corrupt or doubled.
func (c *tally) report(t *testing.T, fs *crashfs.FS, b budget) {
	t.Helper()
	line := fmt.Sprintf("powerloss: %s: rounds=%d acknowledged=%d lost=%d corrupt=%d", c.stage, c.rounds, c.acked, c.lost, c.corrupt)
	if c.stage == "dh-route" || c.stage == "dh-deploy" {
		line += fmt.Sprintf(" duplicates=%d", c.duplicates)
	}
	n := fs.Counts()
	t.Logf("%s (%v of %v; file system: %d fsyncs, %d directory fsyncs, %d operations refused after cuts)", line,
		time.Since(b.began).Round(time.Second), b.limit, n.Fsyncs, n.DirFsyncs, n.AfterCut)
	if c.rounds == 0 || c.acked == 0 {
		t.Errorf("%s: nothing was tested", c.stage)
	}
	if c.lost+c.corrupt+c.duplicates > 0 {
		t.Errorf("%s: after power cuts, %d lost, %d corrupt, %d duplicates; want none", c.stage, c.lost, c.corrupt, c.duplicates)
	}
}

// makeQueues creates the queues' directories durably (as tmpfiles does on
// a real host before any stage runs): each directory, then its parent, is
// fsynced.
func makeQueues(t *testing.T, fs *crashfs.FS, names ...string) string {
	t.Helper()
	spool := filepath.Join(fs.Dir(), "queues")
	dirs := []string{spool}
	for _, n := range names {
		q := filepath.Join(spool, n)
		dirs = append(dirs, q, filepath.Join(q, queue.StagingDir), filepath.Join(q, queue.FailedDir))
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, os.ModeSetgid|0o770); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{d, filepath.Dir(d)} {
			if err := durable.SyncDir(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	return spool
}

// contents is what a queue holds: its entries' names, in order, and
// their content.
type contents struct {
	names []string
	data  map[string][]byte
}

// read reads every entry of q after a cut.
func read(t *testing.T, q *queue.Queue) contents {
	t.Helper()
	names, err := q.List()
	if err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	c := contents{names: names, data: map[string][]byte{}}
	for _, name := range names {
		if c.data[name], err = os.ReadFile(filepath.Join(q.Dir(), name)); err != nil {
			t.Fatalf("after the cut: %v", err)
		}
	}
	return c
}

// found is what a queue directory holds after a cut.
type found struct {
	entries map[string][]*event.GitHubEvent // by delivery
	corrupt []string                        // entries that do not decode: "name (N bytes): why"
}

// scan reads every entry of dir (and of dir/failed/ if failed): a partial
// or empty entry is corrupt.
func scan(t *testing.T, dir string, failed bool) found {
	t.Helper()
	f := found{entries: map[string][]*event.GitHubEvent{}}
	dirs := []string{dir}
	if failed {
		dirs = append(dirs, filepath.Join(dir, queue.FailedDir))
	}
	for _, d := range dirs {
		des, err := os.ReadDir(d)
		if err != nil {
			t.Fatalf("after the cut: %v", err)
		}
		for _, de := range des {
			if !de.Type().IsRegular() || !queue.IsEntry(de.Name()) {
				continue
			}
			data, err := os.ReadFile(filepath.Join(d, de.Name()))
			if err != nil {
				t.Fatalf("after the cut: %v", err)
			}
			ev, err := event.DecodeGitHubEvent(data)
			if err != nil {
				rel, _ := filepath.Rel(dir, filepath.Join(d, de.Name()))
				f.corrupt = append(f.corrupt, fmt.Sprintf("%s (%d bytes): %v", rel, len(data), err))
				continue
			}
			f.entries[ev.Delivery] = append(f.entries[ev.Delivery], ev)
		}
	}
	return f
}

// runAndCut starts a stage (argv), lets it work for a random time between
// least and least+spread, and cuts the power under it.
func runAndCut(t *testing.T, fs *crashfs.FS, least, spread time.Duration, argv ...string) {
	t.Helper()
	var out testenv.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/" // not on the mount, which is remounted under it
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(least + time.Duration(mrand.Int64N(int64(spread))))
	cut(t, fs, cmd)
}

// cut cuts the power under a running stage: the file system first, then
// SIGKILL of the stage and of every process it started (certbot, nginx
// -t: each in its own process group), as a power loss stops them all at
// once; then the durable state is mounted again.
func cut(t *testing.T, fs *crashfs.FS, cmd *exec.Cmd) {
	t.Helper()
	fs.Cut()
	killTree(cmd.Process.Pid)
	cmd.Wait()
	if err := fs.Remount(); err != nil {
		t.Fatal(err)
	}
}

// killTree stops pid, then each of its descendants as it finds them (a
// stopped process starts no more), and kills them all.
func killTree(pid int) {
	stopped := map[int]bool{pid: true}
	syscall.Kill(pid, syscall.SIGSTOP)
	for found := true; found; {
		found = false
		for child, parent := range parents() {
			if stopped[parent] && !stopped[child] {
				syscall.Kill(child, syscall.SIGSTOP)
				stopped[child], found = true, true
			}
		}
	}
	for p := range stopped {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// parents returns the parent of each running process, by pid.
func parents() map[int]int {
	m := map[int]int{}
	des, _ := os.ReadDir("/proc")
	for _, de := range des {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", de.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if f := strings.Fields(string(b[i+1:])); i > 0 && len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				m[pid] = ppid
			}
		}
	}
	return m
}

// some returns up to n of list, for messages.
func some(list []string, n int) string {
	if len(list) > n {
		return strings.Join(list[:n], "\n") + fmt.Sprintf("\n... and %d more", len(list)-n)
	}
	return strings.Join(list, "\n")
}

// TestBudget checks that a round starts only if it and what follows it
// fit in the time left (make crash's CRASH_TIME), and never after
// DH_CRASH_ROUNDS; the first round always starts.
func TestBudget(t *testing.T) {
	b := budget{rounds: 50, limit: 20 * time.Second, began: time.Now().Add(-15 * time.Second)}
	for _, tc := range []struct {
		done int
		then time.Duration
		want bool
	}{
		{0, time.Minute, true},      // the first round
		{3, 0, true},                // 15 s spent of 20
		{3, 4 * time.Second, true},  // and 4 s more fit
		{3, 6 * time.Second, false}, // the recovery after it would end past the limit
		{50, 0, false},              // DH_CRASH_ROUNDS done
	} {
		if got := b.another(tc.done, tc.then); got != tc.want {
			t.Errorf("another(%d, %v) 15s into a 20s budget = %v; want %v", tc.done, tc.then, got, tc.want)
		}
	}
}
