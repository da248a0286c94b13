package store_test

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// sql/roles.sql gives each stage's role what it needs and nothing more;
// applying it twice is harmless.
func TestRoles(t *testing.T) {
	url := storetest.NewMigrated(t)
	roles, err := os.ReadFile("../../sql/roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for range 2 {
		if _, err := db.ExecContext(ctx, string(roles)); err != nil {
			t.Fatalf("apply roles.sql: %v", err)
		}
	}
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
		{"dh-deploy", run, true},
		{"dh-deploy", `UPDATE runs SET state = 'failed'`, true},
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
		if err != nil && !c.allowed && !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") {
			t.Errorf("%s: %s failed for another reason than privileges: %v", c.role, c.stmt, err)
		}
	}
}
