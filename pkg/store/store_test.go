package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	neturl "net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func open(t *testing.T, url string, opts ...store.Option) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatalf("Open(%q) = %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawDB opens the database at url with database/sql alone, closed when
// the test ends: for rows a test writes or reads itself.
func rawDB(t testing.TB, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryInt runs a query returning one integer on a connection of its own.
func queryInt(t *testing.T, url, query string, args ...any) int {
	t.Helper()
	db := rawDB(t, url)
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// tables counts the tables of the schema that exist.
func tables(t *testing.T, url string) int {
	t.Helper()
	return queryInt(t, url, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('events', 'runs')`)
}

func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.New(t)
	if from, to, err := store.Migrate(ctx, url); from != 0 || to != store.Latest() || err != nil {
		t.Fatalf("Migrate() = %d, %d, %v; want 0, %d, nil", from, to, err, store.Latest())
	}
	if n := tables(t, url); n != 2 {
		t.Errorf("after Migrate: %d of events, runs exist; want 2", n)
	}
	if from, to, err := store.Migrate(ctx, url); from != store.Latest() || to != store.Latest() || err != nil {
		t.Errorf("Migrate() again = %d, %d, %v; want %d, %[4]d, nil", from, to, err, store.Latest())
	}
	if err := store.MigrateDown(ctx, url); err != nil {
		t.Fatalf("MigrateDown() = %v; want nil", err)
	}
	if n := tables(t, url); n != 0 {
		t.Errorf("after MigrateDown: %d of events, runs exist; want 0", n)
	}
	if from, to, err := store.Migrate(ctx, url); from != 0 || to != store.Latest() || err != nil {
		t.Fatalf("Migrate() after MigrateDown = %d, %d, %v; want 0, %d, nil", from, to, err, store.Latest())
	}
	if n := tables(t, url); n != 2 {
		t.Errorf("after Migrate again: %d of events, runs exist; want 2", n)
	}
}

func TestLatest(t *testing.T) {
	t.Parallel()
	if got := store.Latest(); got < 1 {
		t.Errorf("Latest() = %d; want at least 1", got)
	}
}

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.New(t)
	s := open(t, url)

	err := s.CheckSchema(ctx)
	want := fmt.Sprintf("database schema is at version 0, this binary needs %d", store.Latest())
	if !queue.IsRetry(err) || err.Error() != want || hint.Of(err) != "run: dh-route migrate" {
		t.Errorf("CheckSchema() on an empty database = %v (code %d, hint %q); want %q (code 75)",
			err, sysexits.Code(err), hint.Of(err), want)
	}

	if _, _, err := store.Migrate(ctx, url); err != nil {
		t.Fatalf("Migrate() = %v", err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Errorf("CheckSchema() after Migrate = %v; want nil", err)
	}

	for _, tc := range []struct {
		update string
		want   string
	}{
		{fmt.Sprintf("UPDATE schema_migrations SET version = %d", store.Latest()+1), "newer than this binary"},
		{fmt.Sprintf("UPDATE schema_migrations SET version = %d, dirty = true", store.Latest()), "dirty"},
	} {
		queryInt(t, url, tc.update+" RETURNING 1")
		err := s.CheckSchema(ctx)
		if !queue.IsRetry(err) || !strings.Contains(fmt.Sprint(err), tc.want) || hint.Of(err) == "" {
			t.Errorf("CheckSchema() after %s = %v (code %d, hint %q); want an error containing %q, code 75, a hint",
				tc.update, err, sysexits.Code(err), hint.Of(err), tc.want)
		}
	}
}

func testEvent(delivery string) store.Event {
	return store.Event{
		Delivery:   delivery,
		Event:      "push",
		HookID:     42,
		Repository: "ducompsoc/durhack",
		Ref:        "refs/heads/main",
		Before:     strings.Repeat("a", 40),
		After:      strings.Repeat("b", 40),
		ReceivedAt: time.Date(2025, 11, 22, 9, 30, 0, 0, time.UTC),
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, storetest.NewMigrated(t))
	e := testEvent("7a1e5c10-0000-11f0-8000-000000000001")

	if d, err := s.RecordDelivery(ctx, e); !d.Inserted || err != nil {
		t.Fatalf("RecordDelivery(%q) = %+v, %v; want inserted", e.Delivery, d, err)
	}
	got, err := s.GetEvent(ctx, e.Delivery)
	if err != nil {
		t.Fatalf("GetEvent(%q) = %v", e.Delivery, err)
	}
	if !got.ReceivedAt.Equal(e.ReceivedAt) {
		t.Errorf("GetEvent(%q).ReceivedAt = %v; want %v", e.Delivery, got.ReceivedAt, e.ReceivedAt)
	}
	got.ReceivedAt = e.ReceivedAt
	if got.Event != e || got.Status != store.StatusReceived || got.Deliveries != 1 ||
		len(got.Deployments) != 0 || !got.DecidedAt.IsZero() || !got.LastSeenAt.IsZero() || got.RecordedAt.IsZero() {
		t.Errorf("GetEvent(%q) = %+v; want %+v, received once, undecided", e.Delivery, got, e)
	}

	if d, err := s.RecordDelivery(ctx, e); d.Inserted || d.Status != store.StatusReceived || err != nil {
		t.Errorf("RecordDelivery(%q) again = %+v, %v; want not inserted, received", e.Delivery, d, err)
	}
	deployments := []string{"api", "sites"}
	if err := s.Decide(ctx, e.Delivery, store.StatusRouted, "", "entry.json", deployments); err != nil {
		t.Fatalf("Decide(%q) = %v", e.Delivery, err)
	}
	got, err = s.GetEvent(ctx, e.Delivery)
	if err != nil || got.Status != store.StatusRouted || got.Reason != "" || !slices.Equal(got.Deployments, deployments) ||
		got.Deliveries != 2 || got.LastSeenAt.IsZero() || got.DecidedAt.IsZero() {
		t.Errorf("GetEvent(%q) after Decide = %+v, %v; want routed to %v, 2 deliveries, decided", e.Delivery, got, err, deployments)
	}

	if err := s.Decide(ctx, e.Delivery, "bogus", "", "entry.json", nil); err == nil || store.Temporary(err) {
		t.Errorf("Decide(%q, bogus) = %v; want a permanent error", e.Delivery, err)
	}
	if err := s.Decide(ctx, "missing", store.StatusVoided, "no deployment", "entry.json", nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Decide(%q) = %v; want ErrNotFound", "missing", err)
	}
	if _, err := s.GetEvent(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEvent(%q) = %v; want ErrNotFound", "missing", err)
	}
}

func TestRecordDeliveryConcurrent(t *testing.T) {
	t.Parallel()
	const n = 16
	ctx := context.Background()
	url := storetest.NewMigrated(t)
	s := open(t, url)
	e := testEvent("7a1e5c10-0000-11f0-8000-000000000016")

	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		inserted = make([]bool, n)
		errs     = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			var d store.Delivery
			d, errs[i] = s.RecordDelivery(ctx, e)
			inserted[i] = d.Inserted
		})
	}
	close(start)
	wg.Wait()

	wins := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("RecordDelivery(%q) = %v; want nil", e.Delivery, errs[i])
		}
		if inserted[i] {
			wins++
		}
	}
	if wins != 1 {
		t.Errorf("RecordDelivery(%q) from %d goroutines: %d returned inserted=true; want 1", e.Delivery, n, wins)
	}
	if rows := queryInt(t, url, `SELECT count(*) FROM events WHERE delivery = $1`, e.Delivery); rows != 1 {
		t.Errorf("after %d RecordDelivery(%q): %d rows; want 1", n, e.Delivery, rows)
	}
	if got, err := s.GetEvent(ctx, e.Delivery); err != nil || got.Deliveries != n {
		t.Errorf("GetEvent(%q) = deliveries %d, %v; want %d", e.Delivery, got.Deliveries, err, n)
	}
}

func TestRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, storetest.NewMigrated(t))

	var ids []int64
	for i, sha := range []string{"c1", "c2", "c3"} {
		id, err := s.InsertRun(ctx, store.Run{
			Delivery: fmt.Sprintf("d%d", i), Deployment: "api", Commit: sha, State: store.RunRunning,
			StartedAt: time.Now(), LogPath: "/var/lib/dh-deployer/logs/" + sha,
		})
		if err != nil {
			t.Fatalf("InsertRun(%s) = %v", sha, err)
		}
		ids = append(ids, id)
	}
	if _, err := s.InsertRun(ctx, store.Run{Delivery: "d0", Deployment: "api", State: store.RunQueued}); err == nil {
		t.Errorf("InsertRun(d0, api, attempt 1) twice = nil; want a uniqueness error")
	}
	// A retry whose first reply was lost (the row committed, the
	// connection dropped) finds its own row by its log: same id.
	again, err := s.InsertRun(ctx, store.Run{Delivery: "d0", Deployment: "api", Commit: "c1", State: store.RunRunning,
		StartedAt: time.Now(), LogPath: "/var/lib/dh-deployer/logs/c1"})
	if err != nil || again != ids[0] {
		t.Errorf("InsertRun(d0, api, its own log) again = %d, %v; want %d, nil", again, err, ids[0])
	}
	if _, err := s.InsertRun(ctx, store.Run{Delivery: "d0", Deployment: "api", State: store.RunRunning,
		LogPath: "/var/lib/dh-deployer/logs/other"}); err == nil {
		t.Errorf("InsertRun(d0, api, another log) = nil; want a uniqueness error")
	}
	// InsertSuperseded retried after a lost reply leaves its rows alone.
	sup := []store.Run{{Delivery: "s1", Commit: "c9", Error: "superseded by delivery d2"}}
	for range 2 {
		if err := s.InsertSuperseded(ctx, "sup", sup); err != nil {
			t.Errorf("InsertSuperseded(s1) = %v", err)
		}
	}
	if _, err := s.InsertRun(ctx, store.Run{Delivery: "d9", Deployment: "web", State: store.RunQueued}); err != nil {
		t.Errorf("InsertRun(d9, web) = %v", err)
	}
	two := 2
	if err := s.FinishRun(ctx, ids[2], store.RunResult{State: store.RunFailed, ExitCode: &two, Error: "step 1 failed"}); err != nil {
		t.Fatalf("FinishRun(%d) = %v", ids[2], err)
	}
	if err := s.FinishRun(ctx, -1, store.RunResult{State: store.RunFailed}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishRun(-1) = %v; want ErrNotFound", err)
	}

	runs, err := s.ListRuns(ctx, "api", 2)
	if err != nil || len(runs) != 2 || runs[0].ID != ids[2] || runs[1].ID != ids[1] {
		t.Fatalf("ListRuns(api, 2) = %+v, %v; want runs %d, %d", runs, err, ids[2], ids[1])
	}
	r := runs[0]
	if r.State != store.RunFailed || r.ExitCode == nil || *r.ExitCode != 2 || r.Error != "step 1 failed" ||
		r.FinishedAt.IsZero() || r.StartedAt.IsZero() || r.QueuedAt.IsZero() || r.Commit != "c3" ||
		r.Attempt != 1 || r.Trigger != "webhook" || r.LogPath == "" {
		t.Errorf("ListRuns(api, 2)[0] = %+v; want the finished, failed run of c3", r)
	}
	if runs[1].ExitCode != nil || !runs[1].FinishedAt.IsZero() {
		t.Errorf("ListRuns(api, 2)[1] = %+v; want an unfinished run", runs[1])
	}
	if all, err := s.ListRuns(ctx, "api", 0); err != nil || len(all) != 3 {
		t.Errorf("ListRuns(api, 0) = %d runs, %v; want 3", len(all), err)
	}
}

// logBuffer is an io.Writer safe for a logger and a reader at once.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOutage stops the database under a running Retry(RecordDelivery) and
// shows the call waits, then completes once, when the database is back.
func TestOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, url := storetest.Private(t)
	if _, _, err := store.Migrate(ctx, url); err != nil {
		t.Fatalf("Migrate() = %v", err)
	}
	s := open(t, url, store.WithTimeout(2*time.Second))
	cluster.Stop(t)

	// Open while down: TempFail, names the socket, never the password.
	withPassword := strings.Replace(url, "postgres@", "postgres:hunter2@", 1)
	if _, err := store.Open(ctx, withPassword); !queue.IsRetry(err) ||
		!strings.Contains(err.Error(), "/.s.PGSQL.") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open() while stopped = %v (code %d); want code 75 naming the socket, without the password", err, sysexits.Code(err))
	}

	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	e := testEvent("7a1e5c10-0000-11f0-8000-00000000dead")
	type result struct {
		inserted bool
		err      error
	}
	done := make(chan result, 1)
	go func() {
		var inserted bool
		err := store.Retry(ctx, logger, "insert event", func(ctx context.Context) (err error) {
			var d store.Delivery
			d, err = s.RecordDelivery(ctx, e)
			inserted = d.Inserted
			return err
		})
		done <- result{inserted, err}
	}()

	select {
	case r := <-done:
		t.Fatalf("Retry(RecordDelivery(%q)) while stopped = %v, %v; want it still waiting", e.Delivery, r.inserted, r.err)
	case <-time.After(time.Second):
	}
	cluster.Start(t)
	select {
	case r := <-done:
		if !r.inserted || r.err != nil {
			t.Errorf("Retry(RecordDelivery(%q)) = %v, %v; want true, nil", e.Delivery, r.inserted, r.err)
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("Retry(RecordDelivery(%q)) still waiting 45 s after the database came back", e.Delivery)
	}
	if rows := queryInt(t, url, `SELECT count(*) FROM events WHERE delivery = $1`, e.Delivery); rows != 1 {
		t.Errorf("after the outage: %d rows for %q; want 1", rows, e.Delivery)
	}
	out := logs.String()
	if strings.Count(out, "database unavailable") != 1 || strings.Count(out, "database available again") != 1 {
		t.Errorf("Retry logged:\n%s\nwant one \"database unavailable\" and one \"database available again\" line", out)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	down := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	permanent := errors.New("permanent")

	t.Run("recovers", func(t *testing.T) {
		var logs logBuffer
		calls := 0
		err := store.Retry(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)), "test", func(context.Context) error {
			if calls++; calls <= 3 {
				return down
			}
			return nil
		})
		if err != nil || calls != 4 {
			t.Errorf("Retry() = %v after %d calls; want nil after 4", err, calls)
		}
		out := logs.String()
		if strings.Count(out, "\n") != 2 || !strings.Contains(out, "database unavailable") || !strings.Contains(out, "database available again") {
			t.Errorf("Retry() logged:\n%s\nwant exactly one unavailable and one available line", out)
		}
	})
	t.Run("permanent", func(t *testing.T) {
		calls := 0
		err := store.Retry(context.Background(), slog.New(slog.DiscardHandler), "test", func(context.Context) error {
			calls++
			return permanent
		})
		if err != permanent || calls != 1 {
			t.Errorf("Retry() = %v after %d calls; want %v after 1", err, calls, permanent)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := store.Retry(ctx, slog.New(slog.DiscardHandler), "test", func(context.Context) error { return down })
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.ECONNREFUSED) || !queue.IsRetry(err) {
			t.Errorf("Retry() = %v (code %d); want the deadline and the last error, code 75", err, sysexits.Code(err))
		}
	})
}

func TestTemporary(t *testing.T) {
	t.Parallel()
	noSocket := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("boom"), false},
		{"no such socket", noSocket, true},
		{"refused", fmt.Errorf("connect: %w", syscall.ECONNREFUSED), true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"eof", fmt.Errorf("read: %w", io.EOF), true},
		{"unexpected eof", io.ErrUnexpectedEOF, true},
		{"deadline", fmt.Errorf("insert: %w", context.DeadlineExceeded), true},
		{"cancelled", context.Canceled, false},
		{"connection failure 08006", &pq.Error{Code: "08006"}, true},
		{"too many connections 53300", &pq.Error{Code: "53300"}, true},
		{"admin shutdown 57P01", &pq.Error{Code: "57P01"}, true},
		{"crash shutdown 57P02", &pq.Error{Code: "57P02"}, true},
		{"starting up 57P03", &pq.Error{Code: "57P03"}, true},
		{"serialization 40001", &pq.Error{Code: "40001"}, true},
		{"deadlock 40P01", &pq.Error{Code: "40P01"}, true},
		{"unique violation 23505", &pq.Error{Code: "23505"}, false},
		{"check violation 23514", fmt.Errorf("set status: %w", &pq.Error{Code: "23514"}), false},
		{"undefined table 42P01", &pq.Error{Code: "42P01"}, false},
		{"bad password 28P01", &pq.Error{Code: "28P01"}, false},
		{"migrate wraps 57P03", database.Error{OrigErr: &pq.Error{Code: "57P03"}}, true},
		{"migrate wraps 42601", &database.Error{OrigErr: &pq.Error{Code: "42601"}}, false},
		{"classified", queue.Retry(noSocket), true},
	} {
		if got := store.Temporary(tc.err); got != tc.want {
			t.Errorf("Temporary(%s: %v) = %v; want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// OpenWait waits while the schema is behind (the daemon starts before
// dh-route migrate ran) and opens once it is current; it gives up with
// ctx's error when ctx ends, and does not wait for what time cannot fix
// (no such database).
func TestOpenWait(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := storetest.New(t)
	var reasons []string
	migrated := make(chan error, 1)
	st, err := store.OpenWait(ctx, url, func(err error, retry time.Duration) {
		reasons = append(reasons, err.Error()+"; hint: "+hint.Of(err))
		if len(reasons) == 2 {
			go func() { _, _, err := store.Migrate(ctx, url); migrated <- err }()
		}
	})
	if err != nil {
		t.Fatalf("OpenWait = %v; want it to wait for the migration", err)
	}
	st.Close()
	if err := <-migrated; err != nil {
		t.Fatal(err)
	}
	if len(reasons) < 2 || !strings.Contains(reasons[0], "this binary needs") || !strings.Contains(reasons[0], "hint: run: dh-route migrate") {
		t.Errorf("OpenWait waited for %q; want the schema and the migrate hint", reasons)
	}

	short, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	begun := time.Now()
	_, err = store.OpenWait(short, storetest.New(t), func(error, time.Duration) {})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(begun) > 5*time.Second {
		t.Errorf("OpenWait until ctx ends = %v after %s; want ctx's error, promptly", err, time.Since(begun))
	}

	u, _ := neturl.Parse(url)
	u.Path = "/no_such_database"
	_, err = store.OpenWait(ctx, u.String(), func(err error, _ time.Duration) { t.Errorf("OpenWait waited for %v", err) })
	if sysexits.Code(err) != sysexits.Config {
		t.Errorf("OpenWait(no such database) = %v (exit %d); want a Config error at once", err, sysexits.Code(err))
	}
}

// TestNotices: a notice is claimed once; forgetting keeps the failed
// entries still seen, and those of queues not read, and drops the others.
func TestNotices(t *testing.T) {
	st := open(t, storetest.NewMigrated(t))
	ctx := context.Background()
	for _, c := range []struct {
		key  string
		want bool
	}{{"failed/main/a", true}, {"failed/main/a", false}, {"failed/main/b", true}, {"failed/nginx/c", true}, {"cert/api/2026-12-06", true}} {
		if got, err := st.ClaimNotice(ctx, c.key); err != nil || got != c.want {
			t.Errorf("ClaimNotice(%q) = %v, %v; want %v", c.key, got, err, c.want)
		}
	}
	// queues/main was read (nginx's not): a is gone from its failed/.
	if err := st.ForgetNotices(ctx, []string{"main"}, []string{"failed/main/b"}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"failed/main/a": true, "failed/main/b": false, "failed/nginx/c": false, "cert/api/2026-12-06": false} {
		if got, err := st.ClaimNotice(ctx, key); err != nil || got != want {
			t.Errorf("after ForgetNotices, ClaimNotice(%q) = %v, %v; want %v", key, got, err, want)
		}
	}
}
