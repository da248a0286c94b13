package deploy_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// host is n deployments of one repository, each worked by its own real
// dh-deploy run process, against a private PostgreSQL with the default
// max_connections (100).
type host struct {
	t       testing.TB
	dir     string
	file    string
	url     string
	db      *sql.DB
	sha     string
	names   []string
	workers map[string]*exec.Cmd
	logs    map[string]*strings.Builder
}

func newHost(t testing.TB, n int) *host {
	t.Helper()
	testenv.Command(t, "git")
	bin := testenv.Build(t, "dh-deploy")
	_, url := storetest.Private(t)
	if _, _, err := store.Migrate(context.Background(), url); err != nil {
		t.Fatalf("Migrate() = %v", err)
	}
	h := &host{t: t, dir: testenv.ShortTempDir(t, "dh-many"), url: url, workers: map[string]*exec.Cmd{}, logs: map[string]*strings.Builder{}}
	remote, work := filepath.Join(h.dir, "remote.git"), filepath.Join(h.dir, "work")
	testenv.Git(t, "", "init", "-q", "--bare", "-b", "main", remote)
	testenv.Git(t, "", "init", "-q", "-b", "main", work)
	testenv.Git(t, work, "commit", "-q", "--allow-empty", "-m", "one")
	testenv.Git(t, work, "push", "-q", remote, "HEAD:refs/heads/main")
	h.sha = testenv.Git(t, work, "rev-parse", "HEAD")
	var doc strings.Builder
	fmt.Fprintf(&doc, "queue_dir = %q\nstate_dir = %q\ndatabase_url = %q\n", filepath.Join(h.dir, "queues"), filepath.Join(h.dir, "state"), url)
	for k := range n {
		name := fmt.Sprintf("d%03d", k)
		h.names = append(h.names, name)
		fmt.Fprintf(&doc, "\n[deployments.%s]\nrepository = \"acme/app\"\nbranches = [\"main\"]\npath = %q\nclone_url = %q\nsteps = [[\"true\"]]\n",
			name, filepath.Join(h.dir, "co", name), remote)
	}
	h.file = filepath.Join(h.dir, "config.toml")
	if err := os.WriteFile(h.file, []byte(doc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range h.names { // as dh-deployer-acl deployment NAME makes them
		if err := queue.Open(filepath.Join(h.dir, "queues", name)).Init(); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if h.db, err = sql.Open("postgres", url); err != nil {
		t.Fatal(err)
	}
	h.db.SetMaxOpenConns(1)
	t.Cleanup(func() { h.db.Close() })
	t.Cleanup(h.stop)
	for _, name := range h.names {
		cmd := exec.Command(bin, "-c", h.file, "run", name)
		h.logs[name] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = h.logs[name], h.logs[name]
		if err := cmd.Start(); err != nil {
			t.Fatalf("start worker %s: %v", name, err)
		}
		h.workers[name] = cmd
	}
	// A worker waiting on its queue has made its wake pipe.
	h.until("every worker waits on its queue", 3*time.Minute, func() bool {
		for _, name := range h.names {
			if _, err := os.Lstat(filepath.Join(h.dir, "queues", name, queue.WakeFile)); err != nil {
				return false
			}
		}
		return true
	})
	return h
}

// until polls cond until it holds, failing the test after limit.
func (h *host) until(what string, limit time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		for _, name := range h.names {
			if cmd := h.workers[name]; cmd.ProcessState != nil || syscall.Kill(cmd.Process.Pid, 0) != nil {
				h.t.Fatalf("worker %s exited; it said:\n%s", name, h.logs[name])
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("not in %s: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// push puts a routed push of the commit into every deployment's queue
// and wakes its worker, as dh-route does.
func (h *host) push(delivery string) {
	h.t.Helper()
	for _, name := range h.names {
		payload := fmt.Sprintf(`{"ref":"refs/heads/main","before":"%040d","after":%q,"repository":{"full_name":"acme/app"}}`, 0, h.sha)
		ev := event.GitHubEvent{Delivery: delivery, Event: "push", ReceivedAt: time.Now(), Deployment: name, Payload: []byte(payload)}
		data, err := ev.Encode()
		if err != nil {
			h.t.Fatal(err)
		}
		q := queue.Open(filepath.Join(h.dir, "queues", name))
		if _, err := q.Publish(data); err != nil {
			h.t.Fatal(err)
		}
		q.Wake()
	}
}

// count runs one counting query.
func (h *host) count(query string) int {
	h.t.Helper()
	var n int
	if err := h.db.QueryRow(query).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// clients counts the database's client connections but the test's own.
func (h *host) clients() int {
	return h.count(`SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`)
}

// inotify counts the workers' inotify instances.
func (h *host) inotify() int {
	n := 0
	for _, cmd := range h.workers {
		dir := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if target, _ := os.Readlink(filepath.Join(dir, fd.Name())); target == "anon_inode:inotify" {
				n++
			}
		}
	}
	return n
}

// deployAll pushes to every deployment and waits until each has deployed
// it; nothing may fail.
func (h *host) deployAll(delivery string, limit time.Duration) time.Duration {
	h.t.Helper()
	start := time.Now()
	h.push(delivery)
	want := len(h.names)
	h.until(fmt.Sprintf("%d deployments deploy %s", want, delivery), limit, func() bool {
		return h.count(fmt.Sprintf(`SELECT count(*) FROM runs WHERE delivery = '%s' AND state IN ('succeeded', 'unchanged')`, delivery)) == want
	})
	took := time.Since(start)
	if n := h.count(`SELECT count(*) FROM runs WHERE state NOT IN ('succeeded', 'unchanged')`); n != 0 {
		h.t.Errorf("%d runs did not succeed", n)
	}
	for _, name := range h.names {
		if failed, _ := queue.Open(filepath.Join(h.dir, "queues", name)).Failed(); len(failed) > 0 {
			h.t.Errorf("queues/%s/failed holds %v", name, failed)
		}
		if log := h.logs[name].String(); strings.Contains(log, "too many clients") || strings.Contains(log, "level=ERROR") {
			h.t.Errorf("worker %s logged trouble:\n%s", name, log)
		}
	}
	return took
}

func (h *host) stop() {
	for _, cmd := range h.workers {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, cmd := range h.workers {
		if cmd.ProcessState == nil {
			cmd.Wait()
		}
	}
}

// An idle worker holds no database connection and no inotify instance,
// and still deploys a push at once (woken by its queue's wake pipe).
func TestWorkerIdleHoldsNothing(t *testing.T) {
	t.Parallel()
	h := newHost(t, 3)
	time.Sleep(500 * time.Millisecond)
	if n := h.clients(); n != 0 {
		t.Errorf("idle workers hold %d database connections; want 0", n)
	}
	if n := h.inotify(); n != 0 {
		t.Errorf("idle workers hold %d inotify instances; want 0", n)
	}
	if took := h.deployAll("push-1", time.Minute); took > 20*time.Second {
		t.Errorf("3 deployments took %s to deploy a push", took)
	}
	time.Sleep(500 * time.Millisecond)
	if n := h.clients(); n != 0 {
		t.Errorf("after the runs, the workers hold %d database connections; want 0", n)
	}
}

// BenchmarkManyDeployments runs 300 deployments on one host, each its own
// dh-deploy run process (as one Unix user, so that they share the
// per-user inotify limit, 128 instances by default) against a PostgreSQL
// with the default max_connections (100), pushes to all of them at once
// (a trivial step) and reports how long until every one deployed, none
// failing, and an idle worker's resident memory, all of it and its private
// (anonymous) part: the binary's pages are shared by every worker.
func BenchmarkManyDeployments(b *testing.B) {
	const n = 300
	h := newHost(b, n)
	time.Sleep(time.Second)
	idleClients, idleInotify := h.clients(), h.inotify()
	var took time.Duration
	for i := range b.N {
		took += h.deployAll(fmt.Sprintf("push-%d", i), 10*time.Minute)
	}
	// Idle again after its deployment: the resident memory of a worker
	// (its binary's pages, mapped from the file, are shared by all of them)
	// and the private part, what each deployment adds.
	time.Sleep(time.Second)
	var rss, private []float64
	for _, name := range h.names[:9] {
		pid := h.workers[name].Process.Pid
		rss = append(rss, testenv.ProcStatus(b, pid, "VmRSS")/1024)
		private = append(private, testenv.ProcStatus(b, pid, "RssAnon")/1024)
	}
	slices.Sort(rss)
	slices.Sort(private)
	b.ReportMetric(n, "deployments")
	b.ReportMetric(float64(h.count(`SELECT count(*) FROM runs WHERE state IN ('succeeded', 'unchanged')`)), "deployed")
	b.ReportMetric(float64(h.count(`SELECT count(*) FROM runs WHERE state NOT IN ('succeeded', 'unchanged')`)), "failed")
	b.ReportMetric(took.Seconds()/float64(b.N), "s-to-deploy-all")
	b.ReportMetric(rss[len(rss)/2], "worker-idle-RSS-MB")
	b.ReportMetric(private[len(private)/2], "worker-idle-private-MB")
	b.ReportMetric(float64(idleClients), "idle-db-connections")
	b.ReportMetric(float64(idleInotify), "inotify-instances")
	b.ReportMetric(0, "ns/op")
}
