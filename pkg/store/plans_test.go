package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// planRuns is how many runs TestQueryPlans fills in.
const planRuns = 1_000_000

// fillHistory fills the database at url with n runs over 100 deployments
// (dep0..dep99, mostly succeeded, failed and superseded runs) and one
// deployment, "never", holding a tenth of them and never succeeding (the
// case that made a backward scan read everything), n/5 events and as many
// routes, then ANALYZEs the tables.
func fillHistory(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("fill: %v\n%s", err, q)
		}
	}
	// Filling is quicker with the migrations' secondary indexes built
	// after the rows than kept up row by row: drop them, fill, and create
	// them again from their very definitions.
	rows, err := conn.QueryContext(ctx, `SELECT indexname, indexdef FROM pg_indexes i
		WHERE tablename IN ('runs', 'events', 'routes')
		  AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conname = i.indexname)`)
	if err != nil {
		t.Fatal(err)
	}
	var names, defs []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		names, defs = append(names, name), append(defs, def)
	}
	rows.Close()
	exec(`SET maintenance_work_mem = '256MB'`)
	exec(`SET synchronous_commit = off`)
	for _, name := range names {
		exec(`DROP INDEX ` + pq.QuoteIdentifier(name))
	}
	// Nor does this throwaway history need the WAL (routes first: a logged
	// table may not reference an unlogged one).
	exec(`ALTER TABLE routes SET UNLOGGED`)
	exec(`ALTER TABLE events SET UNLOGGED`)
	exec(`ALTER TABLE runs SET UNLOGGED`)
	for _, q := range []string{
		`INSERT INTO events (delivery, event, repository, ref, after_sha, received_at, recorded_at, status,
		                     deployments, decided_at)
		 SELECT 'd' || i, 'push', 'o/r' || (i % 100), 'refs/heads/main', md5(i::text),
		        now() - make_interval(secs => $1 - i), now() - make_interval(secs => $1 - i), 'routed',
		        ARRAY['dep' || (i % 100)], now() - make_interval(secs => $1 - i)
		 FROM generate_series(1, $1 / 5) AS i`,
		`INSERT INTO routes (delivery, deployment, entry, routed_at)
		 SELECT 'd' || i, 'dep' || (i % 100), 'e' || i, now() - make_interval(secs => $1 - i)
		 FROM generate_series(1, $1 / 5) AS i`,
		`INSERT INTO runs (delivery, deployment, ref, commit_sha, state, queued_at, started_at, finished_at,
		                   superseded_by)
		 SELECT 'd' || i, CASE WHEN i % 10 = 0 THEN 'never' ELSE 'dep' || (i % 100) END, 'refs/heads/main',
		        md5(i::text), s,
		        now() - make_interval(secs => $1 - i), now() - make_interval(secs => $1 - i),
		        now() - make_interval(secs => $1 - i),
		        CASE WHEN s = 'superseded' AND i < $1 - 1000 THEN i + 1 END
		 FROM generate_series(1, $1) AS i,
		      LATERAL (SELECT CASE WHEN i % 10 = 0 THEN 'failed' WHEN i % 7 = 0 THEN 'superseded'
		                           WHEN i % 5 = 0 THEN 'failed' ELSE 'succeeded' END) AS st(s)`,
		`SELECT setval('runs_id_seq', $1)`,
	} {
		exec(q, n)
	}
	for _, def := range defs {
		exec(def)
	}
	exec(`ANALYZE runs, events, routes`)
	t.Logf("filled %d runs and %d events and routes in %s", n, n/5, time.Since(start).Round(time.Millisecond))
}

// TestQueryPlans checks that no statement of store.HotQueries reads a
// whole table of the history: on a million runs, no plan (EXPLAIN
// ANALYZE) has a Seq Scan of runs, events or routes, nor an index scan
// that walks backward filtering rows out (what reading "the newest X" of
// a deployment that has none did), nor any scan of them that removes more
// than maxFiltered rows by its filter.
func TestQueryPlans(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewMigrated(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fillHistory(t, db, planRuns)

	some := make([]string, 10)
	for i := range some {
		some[i] = fmt.Sprintf("dep%d", i)
	}
	some = append(some, "never", "nothing")
	args := map[string][]any{
		"RunsOf":         {"d12345", "dep45"},
		"RunsBefore":     {"dep3", 900_000, 20},
		"GetRun":         {"dep1", 100_001},
		"CommitRuns":     {"dep1", "0123456789abcdef0123456789abcdef01234567"},
		"SucceededRuns":  {"never"},
		"LastRuns":       {pq.Array(some), 10},
		"InterruptRuns":  {"never"},
		"LinkSuperseded": {"dep7", planRuns},
		"RoutesOf":       {"d12345"},
		"RecentEvents":   {20},
	}
	for _, q := range store.HotQueries {
		t.Run(q.Name, func(t *testing.T) {
			a, ok := args[q.Name]
			if !ok {
				t.Fatalf("no arguments for %s: add a row to TestQueryPlans' args", q.Name)
			}
			// ANALYZE runs the statement: in a transaction rolled back,
			// so that writes change nothing.
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			var out []byte
			if err := tx.QueryRowContext(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+q.SQL, a...).Scan(&out); err != nil {
				t.Fatalf("EXPLAIN %s: %v", q.Name, err)
			}
			var plans []struct{ Plan plan }
			if err := json.Unmarshal(out, &plans); err != nil {
				t.Fatal(err)
			}
			if bad := plans[0].Plan.scans(); len(bad) > 0 {
				t.Errorf("%s reads the history:\n  %s\n%s", q.Name, strings.Join(bad, "\n  "), out)
			}
		})
	}
}

// maxFiltered is how many rows a scan of the history may read and throw
// away.
const maxFiltered = 100

// plan is a node of EXPLAIN (ANALYZE, FORMAT JSON)'s output.
type plan struct {
	NodeType  string `json:"Node Type"`
	Removed   int64  `json:"Rows Removed by Filter"`
	Loops     int64  `json:"Actual Loops"`
	Relation  string `json:"Relation Name"`
	Index     string `json:"Index Name"`
	Direction string `json:"Scan Direction"`
	Filter    string `json:"Filter"`
	Plans     []plan `json:"Plans"`
}

// scans describes the nodes of p that read runs, events or routes
// without an index that leads them to the rows wanted.
func (p plan) scans() []string {
	var bad []string
	switch p.Relation {
	case "runs", "events", "routes":
		switch {
		case p.NodeType == "Seq Scan":
			bad = append(bad, fmt.Sprintf("Seq Scan on %s", p.Relation))
		case strings.HasPrefix(p.NodeType, "Index") && p.Direction == "Backward" && p.Filter != "":
			bad = append(bad, fmt.Sprintf("%s Backward using %s on %s, Filter: %s", p.NodeType, p.Index, p.Relation, p.Filter))
		case p.Removed*max(p.Loops, 1) > maxFiltered:
			bad = append(bad, fmt.Sprintf("%s using %s on %s removes %d rows by its filter (%s)", p.NodeType, p.Index,
				p.Relation, p.Removed*max(p.Loops, 1), p.Filter))
		}
	}
	for _, c := range p.Plans {
		bad = append(bad, c.scans()...)
	}
	return bad
}
