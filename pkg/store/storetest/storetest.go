// Package storetest gives tests a real, throwaway PostgreSQL.
//
// New returns a fresh empty database, dropped when the test ends. The
// databases live on the server named by $DH_TEST_DATABASE_URL (a postgres://
// URL of a role allowed to create databases) if it is set; otherwise on one
// private cluster per test binary, started on first use from initdb and
// listening only on a unix socket in its own /tmp/pg.* directory. Private
// gives a test a cluster of its own, which it may stop and start to simulate
// an outage.
//
// A package using storetest must call Main from TestMain so that its
// clusters are stopped and their directories removed. If the test binary
// dies anyway, the kernel sends each postgres SIGQUIT (Pdeathsig), so no
// server outlives it; only its /tmp/pg.* directory is left behind.
//
// initdb and postgres refuse to run as root: as root, they run as the
// postgres user (or nobody), see testenv.Unprivileged.
package storetest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// port is the same for every cluster: each has its own socket directory.
const port = 5432

// startTimeout bounds how long a starting server may take to accept
// connections, and a stopping one to exit.
const startTimeout = 20 * time.Second

var (
	// template is a data directory made by initdb once per test binary;
	// each cluster starts from a copy (~0.3 s instead of ~2 s).
	template = sync.OnceValues(initTemplate)

	// shared is the server New uses: its admin URL and, unless it came from
	// $DH_TEST_DATABASE_URL, its cluster.
	shared = sync.OnceValues(startShared)

	mu          sync.Mutex
	clusters    = map[*Cluster]bool{} // every cluster not yet removed
	templateDir string                // the template's directory, once made

	databases atomic.Int64 // numbers database names
)

// Main runs the tests, then stops every cluster still running, removes the
// directories and exits with the tests' status.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	left := make([]*Cluster, 0, len(clusters))
	for c := range clusters {
		left = append(left, c)
	}
	mu.Unlock()
	for _, c := range left {
		if err := c.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "storetest: %v\n", err)
			code = max(code, 1)
		}
	}
	mu.Lock()
	os.RemoveAll(templateDir)
	mu.Unlock()
	os.Exit(code)
}

// New returns the URL of a fresh empty database, dropped when the test
// ends.
func New(t testing.TB) string {
	t.Helper()
	sh, err := shared()
	if err != nil {
		t.Fatalf("start test database server: %v", err)
	}
	return createDatabase(t, sh.url)
}

// NewMigrated is New with every migration applied.
func NewMigrated(t testing.TB) string {
	t.Helper()
	u := New(t)
	if _, _, err := store.Migrate(context.Background(), u); err != nil {
		t.Fatalf("Migrate(%q) = %v", u, err)
	}
	return u
}

// Private starts a cluster for this test alone, removed when the test ends,
// and returns it with the URL of an empty database in it. Stopping it does
// not disturb other tests.
func Private(t testing.TB) (*Cluster, string) {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		t.Fatalf("start private PostgreSQL cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.remove(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return c, createDatabase(t, c.url("postgres"))
}

// createDatabase creates a database on the server at adminURL and returns
// its URL; it is dropped when the test ends.
func createDatabase(t testing.TB, adminURL string) string {
	t.Helper()
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("test database server: not a postgres:// URL")
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), databases.Add(1))
	if err := adminExec(adminURL, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		// FORCE ends the sessions a test left open. A server that is gone
		// (stopped by the test, or its cluster removed) has nothing to drop.
		err := adminExec(adminURL, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)")
		if err != nil && !store.Temporary(err) {
			t.Errorf("drop test database: %v", err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// adminExec runs one statement on a new connection to adminURL.
func adminExec(adminURL, stmt string) error {
	db, err := sql.Open("postgres", adminURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

type sharedServer struct {
	url     string // admin URL
	cluster *Cluster
}

func startShared() (sharedServer, error) {
	if u := os.Getenv("DH_TEST_DATABASE_URL"); u != "" {
		return sharedServer{url: u}, nil
	}
	c, err := startCluster()
	if err != nil {
		return sharedServer{}, err
	}
	return sharedServer{url: c.url("postgres"), cluster: c}, nil
}

// A Cluster is a PostgreSQL server owned by the test binary: a data
// directory, a socket directory and a postgres process. Its role is
// "postgres", trusted without a password.
type Cluster struct {
	dir    string // data/, the socket and postgres.log
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

func (c *Cluster) url(database string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", database, c.dir, port)
}

// Stop shuts the server down (fast shutdown: sessions are ended) and
// waits for it to exit. Its socket disappears; clients get "no such file".
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(); err != nil {
		t.Fatalf("%v", err)
	}
}

// Start starts a stopped server again on the same data and socket.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatalf("%v", err)
	}
}

// initTemplate runs initdb into a new /tmp/pg.* directory and returns the
// data directory.
func initTemplate() (string, error) {
	initdb, err := testenv.LookPath("initdb")
	if err != nil {
		return "", err
	}
	dir, err := newDir()
	if err != nil {
		return "", err
	}
	mu.Lock()
	templateDir = dir
	mu.Unlock()
	data := filepath.Join(dir, "data")
	cmd := exec.Command(initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
	cmd.Dir = dir
	if cmd.SysProcAttr, err = unprivileged(syscall.SIGKILL); err != nil {
		return "", err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return data, nil
}

// startCluster copies the template into a new directory and starts a
// server on it.
func startCluster() (*Cluster, error) {
	tmpl, err := template()
	if err != nil {
		return nil, err
	}
	cp, err := testenv.LookPath("cp")
	if err != nil {
		return nil, err
	}
	dir, err := newDir()
	if err != nil {
		return nil, err
	}
	// -a keeps the owner (the unprivileged user) and the 0700 mode postgres
	// insists on.
	if out, err := exec.Command(cp, "-a", tmpl, filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("copy template cluster: %v\n%s", err, out)
	}
	c := &Cluster{dir: dir}
	mu.Lock()
	clusters[c] = true
	mu.Unlock()
	if err := c.start(); err != nil {
		c.remove()
		return nil, err
	}
	return c, nil
}

// newDir creates a /tmp/pg.* directory owned by the user the server runs
// as. The path stays far below the 107-byte limit of a unix socket path.
func newDir() (string, error) {
	dir, err := os.MkdirTemp("/tmp", "pg.")
	if err != nil {
		return "", err
	}
	if os.Geteuid() == 0 {
		uid, gid, err := testenv.Unprivileged()
		if err == nil {
			err = os.Chown(dir, int(uid), int(gid))
		}
		if err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// unprivileged returns the process attributes for initdb and postgres:
// killed with sig if the test binary dies, and run as an unprivileged user
// when we are root.
func unprivileged(sig syscall.Signal) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{Pdeathsig: sig}
	if os.Geteuid() == 0 {
		uid, gid, err := testenv.Unprivileged()
		if err != nil {
			return nil, err
		}
		// Go sets the parent-death signal after changing the credentials,
		// which would otherwise clear it.
		attr.Credential = &syscall.Credential{Uid: uid, Gid: gid}
	}
	return attr, nil
}

// start starts postgres and waits until it accepts connections.
func (c *Cluster) start() error {
	if c.cmd != nil {
		return fmt.Errorf("start postgres in %s: already running", c.dir)
	}
	postgres, err := testenv.LookPath("postgres")
	if err != nil {
		return err
	}
	logPath := filepath.Join(c.dir, "postgres.log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command(postgres,
		"-D", filepath.Join(c.dir, "data"),
		"-k", c.dir,
		"-p", fmt.Sprint(port),
		"-c", "listen_addresses=",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off")
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = log, log
	// SIGQUIT is an immediate shutdown: the server takes its backends down.
	if cmd.SysProcAttr, err = unprivileged(syscall.SIGQUIT); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(c.exited)

	db, err := sql.Open("postgres", c.url("postgres")+"&connect_timeout=1")
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited (%v) before accepting connections; log:\n%s", cmd.ProcessState, readLog(logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return fmt.Errorf("postgres not ready after %v: %v; log:\n%s", startTimeout, err, readLog(logPath))
		}
	}
}

// stop sends postgres SIGINT (fast shutdown) and waits for it to exit,
// killing it if it takes too long. Stopping a stopped cluster is a no-op.
func (c *Cluster) stop() error {
	if c.cmd == nil {
		return nil
	}
	defer func() { c.cmd = nil }()
	select {
	case <-c.exited:
		return nil
	default:
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
		return nil
	case <-time.After(startTimeout):
		c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("postgres in %s ignored SIGINT for %v; killed it; log:\n%s", c.dir, startTimeout, readLog(filepath.Join(c.dir, "postgres.log")))
	}
}

// remove stops the cluster and deletes its directory.
func (c *Cluster) remove() error {
	mu.Lock()
	delete(clusters, c)
	mu.Unlock()
	return errors.Join(c.stop(), os.RemoveAll(c.dir))
}

// readLog returns the end of the server log, for failure messages.
func readLog(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return []byte(err.Error())
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
		b = b[bytes.IndexByte(b, '\n')+1:]
	}
	return b
}
