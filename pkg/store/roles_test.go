package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/store"

	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// withRoles returns a migrated database, and a connection to it as its
// owner, with sql/roles.sql applied.
func withRoles(t testing.TB) (string, *sql.DB) {
	t.Helper()
	url := storetest.NewMigrated(t)
	db := rawDB(t, url)
	applyRoles(t, db)
	return url, db
}

// applyRoles applies sql/roles.sql through db.
func applyRoles(t testing.TB, db *sql.DB) {
	t.Helper()
	roles, err := os.ReadFile("../../sql/roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(context.Background(), string(roles)); err != nil {
		t.Fatalf("apply roles.sql: %v", err)
	}
}

// sql/roles.sql gives each stage's role what it needs and nothing more;
// applying it twice is harmless.
func TestRoles(t *testing.T) {
	_, db := withRoles(t)
	ctx := context.Background()
	applyRoles(t, db) // twice
	try := func(role, stmt string, args ...any) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `SET LOCAL ROLE "`+role+`"`); err != nil {
			t.Fatal(err)
		}
		_, err = tx.ExecContext(ctx, stmt, args...)
		return err
	}
	// dh-route may run the retention's statements (store.Prune).
	for _, q := range store.HotQueries {
		args := map[string][]any{"PruneEvents": {259200, 10}, "PruneRoutes": {259200, 10},
			"PruneRuns": {259200, 10, 5, time.Time{}}}[q.Name]
		if args == nil {
			continue
		}
		if err := try("dh-route", q.SQL, args...); err != nil {
			t.Errorf("dh-route: %s: %v; want allowed", q.Name, err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO deployment_roles VALUES ('api', 'dh-deploy')`); err != nil {
		t.Fatal(err)
	}
	const event = `INSERT INTO events (delivery, event, received_at, status) VALUES ('r-1', 'push', now(), 'received')`
	const run = `INSERT INTO runs (delivery, deployment, state) VALUES ('r-1', 'api', 'running')`
	for _, c := range []struct {
		role, stmt string
		allowed    bool
	}{
		{"dh-route", event, true},
		{"dh-route", `SELECT version FROM schema_migrations`, true},
		{"dh-route", `SELECT count(*) FROM runs`, true},
		{"dh-route", run, false},
		{"dh-route", `DELETE FROM routes`, true}, // retention
		{"dh-route", `DELETE FROM runs`, true},
		{"dh-route", `UPDATE runs SET state = 'failed'`, false},
		{"dh-route", `DROP TABLE routes`, false},
		{"dh-route", `SELECT count(*) FROM certs`, true}, // the metrics' certificate expiry
		{"dh-route", `UPDATE certs SET attempts = 0`, false},
		{"dh-route", `INSERT INTO notices (key) VALUES ('failed/main/x')`, true}, // sent once
		{"dh-route", `DELETE FROM notices`, true},
		{"dh-deploy", `INSERT INTO notices (key) VALUES ('failed/main/y')`, false},
		{"dh-deploy", run, true},
		{"dh-deploy", `UPDATE runs SET state = 'failed'`, true},
		{"dh-deploy", `INSERT INTO runs (delivery, deployment, state) VALUES ('r-1', 'other', 'succeeded')`, false},
		{"dh-deploy", `INSERT INTO deployment_roles VALUES ('other', 'dh-deploy')`, false},
		{"dh-route", `INSERT INTO deployment_roles VALUES ('other', 'dh-deploy')`, true},
		{"dh-deploy", event, false},
		{"dh-deploy", `SELECT count(*) FROM events`, false},
		{"dh-deploy", `DELETE FROM runs`, false},
		{"dh-nginx", run, false},
		{"dh-nginx", `SELECT count(*) FROM runs`, true}, // the verified commits
		{"dh-nginx", `UPDATE runs SET state = 'succeeded'`, false},
		{"dh-nginx", `INSERT INTO nginx_installs (kind, deployment, outcome) VALUES ('sites', 'sites', 'running')`, true},
		{"dh-nginx", `SELECT count(*) FROM certs`, false},
		{"dh-cert", event, false},
		{"dh-cert", `INSERT INTO cert_attempts (command, started_at, ok) VALUES ('renew', now(), true)`, true},
		{"dh-cert", `SELECT count(*) FROM certs`, true},
		{"dh-cert", `SELECT count(*) FROM nginx_installs`, false},
	} {
		err := try(c.role, c.stmt)
		if (err == nil) != c.allowed {
			t.Errorf("%s: %s: %v; want allowed=%v", c.role, c.stmt, err, c.allowed)
		}
		if err != nil && !c.allowed && !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") &&
			!strings.Contains(err.Error(), "violates row-level security policy") {
			t.Errorf("%s: %s failed for another reason than privileges: %v", c.role, c.stmt, err)
		}
	}
}

// TestRunsRowSecurity is issue 17's forged history: as deployment a's own
// role (a login role in "dh-deploy", as docs/operations.md makes it), the
// runs of deployment b can be neither changed nor forged, so b's history,
// dh-route's duplicate rule and the status page read only what b's own
// worker wrote; a's own work still succeeds, and a role dh-route has not
// mapped to any deployment touches nothing.
func TestRunsRowSecurity(t *testing.T) {
	url, db := withRoles(t)
	ctx := context.Background()
	admin := open(t, url)
	for _, r := range []string{"rls-a", "rls-b", "rls-c"} {
		if _, err := db.ExecContext(ctx, fmt.Sprintf(`DO $$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[2]q LOGIN IN ROLE "dh-deploy"; END IF;
			END $$`, r, r)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Exec(fmt.Sprintf(`DROP ROLE IF EXISTS %q`, r)) })
	}
	as := func(role string) *store.Store {
		u, err := neturl.Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		u.User = neturl.User(role)
		return open(t, u.String())
	}
	// dh-route records the mapping from the configuration (RunsAs).
	if err := as("dh-route").SetDeploymentRoles(ctx, map[string]string{"a": "rls-a", "b": "rls-b"}); err != nil {
		t.Fatalf("SetDeploymentRoles as dh-route = %v", err)
	}
	const good, forged = "1111111111111111111111111111111111111111", "6666666666666666666666666666666666666666"

	// b's worker deploys good; dh-route forwarded the delivery first.
	if _, err := admin.RecordDelivery(ctx, store.Event{Delivery: "d-b", Event: "push", Repository: "o/b", ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Decide(ctx, "d-b", store.StatusRouted, "", "e-1", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	b := as("rls-b")
	idB, err := b.InsertRun(ctx, store.Run{Delivery: "d-b", Deployment: "b", Commit: good, State: store.RunRunning})
	if err != nil {
		t.Fatalf("InsertRun(b) as b's role = %v", err)
	}
	if err := b.FinishRun(ctx, idB, store.RunResult{State: store.RunFailed, Error: "step 1 failed"}); err != nil {
		t.Fatalf("FinishRun(b) as b's role = %v", err)
	}

	// a's role tries to rewrite b's history and to forge a success for
	// the delivery b's run failed (which would stop dh-route forwarding
	// GitHub's redelivery: the duplicate rule).
	a := as("rls-a")
	if _, err := a.InsertRun(ctx, store.Run{Delivery: "d-b", Deployment: "b", Attempt: 2, Commit: forged, State: store.RunSucceeded}); err == nil ||
		!strings.Contains(err.Error(), "row-level security") || !strings.Contains(err.Error(), "deployments.b.user") {
		t.Errorf("InsertRun(succeeded run of b) as a's role = %v; want refused by row-level security, with the hint", err)
	}
	if err := a.FinishRun(ctx, idB, store.RunResult{State: store.RunSucceeded}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishRun(b's run) as a's role = %v; want ErrNotFound (the row is invisible)", err)
	}
	rawA, err := sql.Open("postgres", strings.Replace(url, "postgres://postgres@", "postgres://rls-a@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer rawA.Close()
	for _, stmt := range []string{
		`UPDATE runs SET commit_sha = '` + forged + `', state = 'succeeded' WHERE deployment = 'b'`,
		`UPDATE runs SET deployment = 'a' WHERE deployment = 'b'`,
		`DELETE FROM runs WHERE deployment = 'b'`,
	} {
		if res, err := rawA.ExecContext(ctx, stmt); err == nil {
			if n, _ := res.RowsAffected(); n != 0 {
				t.Errorf("as a's role: %s changed %d rows; want 0", stmt, n)
			}
		}
	}
	if runs, err := a.ListRuns(ctx, "b", 10); err != nil || len(runs) != 0 {
		t.Errorf("ListRuns(b) as a's role = %d runs, %v; want none visible", len(runs), err)
	}

	// a's own work succeeds, and cannot be moved onto b.
	idA, err := a.InsertRun(ctx, store.Run{Delivery: "d-a", Deployment: "a", Commit: good, State: store.RunRunning})
	if err != nil {
		t.Fatalf("InsertRun(a) as a's role = %v", err)
	}
	if err := a.FinishRun(ctx, idA, store.RunResult{State: store.RunSucceeded}); err != nil {
		t.Errorf("FinishRun(a) as a's role = %v", err)
	}
	if _, err := rawA.ExecContext(ctx, `UPDATE runs SET deployment = 'b' WHERE deployment = 'a'`); err == nil ||
		!strings.Contains(err.Error(), "row-level security") {
		t.Errorf("as a's role, moving its run onto b = %v; want refused", err)
	}

	// dh-route still reads every run: b's history is b's own, so its
	// duplicate rule sees the failed run and GitHub's redelivery goes on.
	route := as("dh-route")
	d, err := route.RecordDelivery(ctx, store.Event{Delivery: "d-b", Event: "push", Repository: "o/b", ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Routes) != 1 || d.Routes[0].LastRun != store.RunFailed {
		t.Errorf("RecordDelivery(d-b) as dh-route: routes %+v; want b's last run failed (not forged)", d.Routes)
	}
	// The rollback choices: b has no succeeded run to go back to.
	for dep, want := range map[string]int{"a": 1, "b": 0} {
		if runs, err := route.SucceededRuns(ctx, dep, 10); err != nil || len(runs) != want {
			t.Errorf("SucceededRuns(%s) as dh-route = %d, %v; want %d", dep, len(runs), err, want)
		}
		if runs, err := as("rls-"+dep).SucceededRuns(ctx, dep, 10); err != nil || len(runs) != want {
			t.Errorf("SucceededRuns(%s) as its own role = %d, %v; want %d", dep, len(runs), err, want)
		}
	}
	if runs, err := as("dh-nginx").CommitRuns(ctx, "b", forged); err != nil || len(runs) != 0 {
		t.Errorf("CommitRuns(b, forged) as dh-nginx = %d, %v; want none", len(runs), err)
	}

	// A deployment role dh-route never mapped touches nothing (closed,
	// not open); a remapped deployment moves with its role.
	c := as("rls-c")
	if _, err := c.InsertRun(ctx, store.Run{Delivery: "d-c", Deployment: "c", State: store.RunRunning}); err == nil {
		t.Errorf("InsertRun(c) as an unmapped role = nil; want refused")
	}
	if runs, err := c.ListRuns(ctx, "a", 10); err != nil || len(runs) != 0 {
		t.Errorf("ListRuns(a) as an unmapped role = %d, %v; want none", len(runs), err)
	}
	if err := as("dh-route").SetDeploymentRoles(ctx, map[string]string{"a": "rls-c"}); err != nil {
		t.Fatal(err)
	}
	if got, err := admin.DeploymentRoles(ctx); err != nil || len(got) != 1 || got["a"] != "rls-c" {
		t.Errorf("DeploymentRoles after remapping = %v, %v; want only a → rls-c", got, err)
	}
	if runs, err := a.ListRuns(ctx, "a", 10); err != nil || len(runs) != 0 {
		t.Errorf("ListRuns(a) as a's former role = %d, %v; want none", len(runs), err)
	}
	if runs, err := c.ListRuns(ctx, "a", 10); err != nil || len(runs) != 1 {
		t.Errorf("ListRuns(a) as its new role = %d, %v; want 1", len(runs), err)
	}
}

// BenchmarkRunsRowSecurity is the cost of the runs table's row-level
// security: one scan of 200,000 runs of 50 deployments as the owner (who
// bypasses it), as dh-route (every row, the policy's subqueries evaluated
// once per statement) and as dh-deploy (5 of the deployments mapped to
// it). Compare the ns/op of one run.
func BenchmarkRunsRowSecurity(b *testing.B) {
	url, db := withRoles(b)
	if _, err := db.Exec(`INSERT INTO runs (delivery, deployment, state)
		SELECT 'd' || i, 'dep' || (i % 50), 'succeeded' FROM generate_series(1, 200000) AS i;
		INSERT INTO deployment_roles SELECT 'dep' || i, 'dh-deploy' FROM generate_series(0, 4) AS i;
		ANALYZE runs`); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, role string }{{"owner", ""}, {"dh-route", "dh-route"}, {"dh-deploy", "dh-deploy"}} {
		b.Run(c.name, func(b *testing.B) {
			u, err := neturl.Parse(url)
			if err != nil {
				b.Fatal(err)
			}
			if c.role != "" {
				u.User = neturl.User(c.role)
			}
			conn := rawDB(b, u.String())
			var n int
			for b.Loop() {
				if err := conn.QueryRow(`SELECT count(*) FROM runs WHERE state = 'succeeded'`).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
