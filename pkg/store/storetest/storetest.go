// Package storetest gives tests a real, throwaway PostgreSQL.
//
// New returns a fresh empty database, dropped when the test ends. The
// databases live on the server named by $DH_TEST_DATABASE_URL (a postgres://
// URL of a role allowed to create databases) if it is set; otherwise on one
// private cluster per test binary (pkg/pgtemp), started on first use from
// initdb and listening only on a unix socket in its own /tmp/pg.*
// directory. Private gives a test a cluster of its own, which it may stop
// and start to simulate an outage.
//
// A package using storetest must call Main from TestMain so that its
// clusters are stopped and their directories removed. If the test binary
// dies anyway, the kernel sends each postgres SIGQUIT (Pdeathsig), so no
// server outlives it; only its /tmp/pg.* directory is left behind.
//
// initdb and postgres refuse to run as root: as root, they run as the
// postgres user (or nobody), see pgtemp.Unprivileged.
package storetest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/pgtemp"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

var (
	// template is a data directory made by initdb once per test binary;
	// each cluster starts from a copy (~0.3 s instead of ~2 s).
	template = sync.OnceValues(initTemplate)

	// shared is the server New uses: its admin URL and, unless it came from
	// $DH_TEST_DATABASE_URL, its cluster.
	shared = sync.OnceValues(startShared)

	mu          sync.Mutex
	clusters    = map[*pgtemp.Cluster]bool{} // every cluster not yet removed
	templateDir string                       // the template's directory, once made

	databases atomic.Int64 // numbers database names
)

// Main runs the tests, then stops every cluster still running, removes the
// directories, runs the package's own cleanups and exits with the tests'
// status.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	mu.Lock()
	left := make([]*pgtemp.Cluster, 0, len(clusters))
	for c := range clusters {
		left = append(left, c)
	}
	mu.Unlock()
	for _, c := range left {
		if err := remove(c); err != nil {
			fmt.Fprintf(os.Stderr, "storetest: %v\n", err)
			code = max(code, 1)
		}
	}
	mu.Lock()
	if templateDir != "" {
		os.RemoveAll(templateDir)
	}
	mu.Unlock()
	for _, f := range cleanups {
		f()
	}
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

// Deployed records, in the database at url, a succeeded run of deployment
// at commit, as dh-deploy does once it verified and checked it out (what
// dh-nginx requires of an nginx-sites entry), and returns the run's id.
func Deployed(t testing.TB, url, deployment, commit string) int64 {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, err := st.InsertRun(ctx, store.Run{Delivery: fmt.Sprintf("deployed-%d", runs.Add(1)), Deployment: deployment,
		Ref: "refs/heads/main", Commit: commit, State: store.RunRunning})
	if err == nil {
		err = st.FinishRun(ctx, id, store.RunResult{State: store.RunSucceeded})
	}
	if err != nil {
		t.Fatalf("record a run of %s at %s: %v", deployment, commit, err)
	}
	return id
}

// runs numbers the deliveries of the runs Deployed records.
var runs atomic.Int64

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
		if err := remove(c); err != nil {
			t.Errorf("%v", err)
		}
	})
	return &Cluster{c: c}, createDatabase(t, c.URL("postgres"))
}

// createDatabase creates a database on the server at adminURL and returns
// its URL; it is dropped when the test ends.
func createDatabase(t testing.TB, adminURL string) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), databases.Add(1))
	u, err := pgtemp.CreateDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("test database server: %v", err)
	}
	t.Cleanup(func() {
		// A server that is gone (stopped by the test, or its cluster
		// removed) has nothing to drop.
		if err := pgtemp.DropDatabase(adminURL, name); err != nil && !store.Temporary(err) {
			t.Errorf("drop test database: %v", err)
		}
	})
	return u
}

type sharedServer struct {
	url     string // admin URL
	cluster *pgtemp.Cluster
}

func startShared() (sharedServer, error) {
	if u := os.Getenv("DH_TEST_DATABASE_URL"); u != "" {
		return sharedServer{url: u}, nil
	}
	c, err := startCluster()
	if err != nil {
		return sharedServer{}, err
	}
	return sharedServer{url: c.URL("postgres"), cluster: c}, nil
}

// A Cluster is a PostgreSQL server of the test alone (see Private).
type Cluster struct {
	c *pgtemp.Cluster
}

// Stop shuts the server down (fast shutdown: sessions are ended) and
// waits for it to exit. Its socket disappears; clients get "no such file".
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.c.Stop(); err != nil {
		t.Fatalf("%v", err)
	}
}

// Start starts a stopped server again on the same data and socket.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.c.Start(); err != nil {
		t.Fatalf("%v", err)
	}
}

// initTemplate runs initdb once for the test binary.
func initTemplate() (string, error) {
	dir, err := pgtemp.NewTemplate("")
	if err != nil {
		return "", err
	}
	mu.Lock()
	templateDir = dir
	mu.Unlock()
	return dir, nil
}

// startCluster starts a cluster from the template and registers it for
// Main to remove.
func startCluster() (*pgtemp.Cluster, error) {
	tmpl, err := template()
	if err != nil {
		return nil, err
	}
	c, err := pgtemp.New(pgtemp.Options{Template: tmpl})
	if err != nil {
		return nil, err
	}
	mu.Lock()
	clusters[c] = true
	mu.Unlock()
	return c, nil
}

// remove stops the cluster, deletes its directory and forgets it.
func remove(c *pgtemp.Cluster) error {
	mu.Lock()
	delete(clusters, c)
	mu.Unlock()
	return c.Remove()
}
