package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/lib/pq"
)

// History is what Fill puts into a database: a long history, made in SQL
// (generate_series), for the tests and benchmarks of its cost.
type History struct {
	// Runs are spread over the deployments dep0, dep1, … (mostly
	// succeeded, failed and superseded runs, each superseded one linked to
	// its successor), except every tenth, which goes to "never", a
	// deployment that never succeeded.
	Runs int
	// Deployments is how many depN deployments there are (100 if 0).
	Deployments int
	// Events is how many deliveries there are (DeliveryName(1), …, each
	// routed to one depN, with the fields of a push); run i has delivery
	// DeliveryName(i).
	Events int
	// Span is how far back the rows go: row i of n is Span×(n-i)/n old
	// (an hour if 0).
	Span time.Duration
}

// Fill fills the database at url with h and ANALYZEs it. To be quick it
// drops the secondary indexes of runs, events and routes, fills, and
// creates them again from their own definitions, and makes the three
// tables UNLOGGED (the database is a throwaway); the plans are the same.
// A million runs take 15 to 40 s.
func Fill(t testing.TB, url string, h History) {
	t.Helper()
	if h.Deployments == 0 {
		h.Deployments = 100
	}
	if h.Span == 0 {
		h.Span = time.Hour
	}
	ctx := context.Background()
	start := time.Now()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
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
	for _, name := range names {
		exec(`DROP INDEX ` + pq.QuoteIdentifier(name))
	}
	// routes first: a logged table may not reference an unlogged one.
	exec(`ALTER TABLE routes SET UNLOGGED`)
	exec(`ALTER TABLE events SET UNLOGGED`)
	exec(`ALTER TABLE runs SET UNLOGGED`)
	// $1 rows, $2 deployments, $3 the span in seconds; each row's time,
	// commit and delivery (as long as a GUID: DeliveryName) computed once.
	series := `generate_series(1, $1) AS i,
		LATERAL (SELECT now() - make_interval(secs => $3::float8 * ($1 - i) / $1),
		                md5(i::text) || substr(md5(i::text), 1, 8), 'd' || lpad(i::text, 35, '0')) AS v(t, sha, dl)`
	fill := func(n int, q string) { exec(q, n, h.Deployments, h.Span.Seconds()) }
	if h.Events > 0 {
		fill(h.Events, `INSERT INTO events (delivery, event, hook_id, repository, ref, before_sha, after_sha,
		                     received_at, recorded_at, status, deployments, decided_at)
		 SELECT dl, 'push', 123456789, 'ducompsoc/repo' || (i % $2), 'refs/heads/main', sha, sha, t, t, 'routed',
		        ARRAY['dep' || (i % $2)], t
		 FROM `+series)
		fill(h.Events, `INSERT INTO routes (delivery, deployment, entry, routed_at)
		 SELECT dl, 'dep' || (i % $2), '1764612345.123456789.' || i || '.0a1b2c3d', t
		 FROM `+series)
	}
	if h.Runs > 0 {
		fill(h.Runs, `INSERT INTO runs (delivery, deployment, ref, commit_sha, previous_sha, state, queued_at,
		                   started_at, finished_at, exit_code, log_path, triggered_by, superseded_by)
		 SELECT dl, d, 'refs/heads/main', sha, sha, s, t, t, t, 0, '/var/lib/dh-deployer/logs/' || d || '/' || i || '.log',
		        'pusher=alice sender=alice', CASE WHEN s = 'superseded' AND i <= $1 - 1000 THEN i + 1 END
		 FROM `+series+`,
		      LATERAL (SELECT CASE WHEN i % 10 = 0 THEN 'failed' WHEN i % 7 = 0 THEN 'superseded'
		                           WHEN i % 5 = 0 THEN 'failed' ELSE 'succeeded' END,
		                      CASE WHEN i % 10 = 0 THEN 'never' ELSE 'dep' || (i % $2) END) AS st(s, d)`)
		exec(`SELECT setval('runs_id_seq', $1)`, h.Runs)
	}
	for _, def := range defs {
		exec(def)
	}
	// VACUUM too, as autovacuum would soon: no benchmark should time it.
	exec(`VACUUM (ANALYZE) runs, events, routes`)
	t.Logf("filled %d runs over %d deployments and %d deliveries in %s", h.Runs, h.Deployments+1, h.Events,
		time.Since(start).Round(time.Millisecond))
}

// DeliveryName is the delivery of Fill's event i and run i.
func DeliveryName(i int) string { return fmt.Sprintf("d%035d", i) }

// DeploymentName is the name Fill gives deployment i.
func DeploymentName(i int) string { return fmt.Sprintf("dep%d", i) }
