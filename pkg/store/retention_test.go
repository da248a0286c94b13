package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// TestPrune deletes the old deliveries, routes and runs in small batches
// and keeps what a stage still needs.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewMigrated(t)
	st := open(t, url)
	db := rawDB(t, url)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	// Deliveries: old and decided (gone, with their routes), old but not
	// decided, old but redelivered lately, recent (all kept); a recent one
	// whose route is old (the route goes, the delivery stays).
	for _, e := range []struct {
		id, status string
		age, seen  int // days
		routed     int // days since its route; -1 for none
	}{
		{"old-1", "routed", 100, -1, 100}, {"old-2", "voided", 100, -1, -1}, {"old-3", "routed", 95, -1, 95},
		{"old-undecided", "received", 100, -1, -1}, {"old-redelivered", "routed", 100, 1, 100},
		{"new-1", "routed", 1, -1, 1}, {"new-oldroute", "routed", 40, -1, 40},
	} {
		exec(`INSERT INTO events (delivery, event, received_at, status, last_seen_at)
			VALUES ($1, 'push', now() - make_interval(days => $2), $3,
			        CASE WHEN $4 >= 0 THEN now() - make_interval(days => $4) END)`, e.id, e.age, e.status, e.seen)
		if e.routed >= 0 {
			exec(`INSERT INTO routes (delivery, deployment, entry, routed_at)
				VALUES ($1, 'a', 'e', now() - make_interval(days => $2))`, e.id, e.routed)
		}
	}
	// Runs of a: 8 old succeeded, old failed, superseded and refused ones,
	// an old queued and an old running one (kept), then a recent succeeded
	// and failed one: of the succeeded, the newest 5 are kept (the recent
	// one and 4 old ones). b never succeeded: its newest failed run, the
	// last that touched its checkout, is kept.
	run := func(deployment, state string, age int) {
		exec(`INSERT INTO runs (delivery, deployment, state, queued_at) VALUES
			('r' || nextval('runs_id_seq'), $1, $2, now() - make_interval(days => $3))`, deployment, state, age)
	}
	for i := range 8 {
		run("a", "succeeded", 400-i) // runs 1..8 (ids skip: nextval in the delivery)
	}
	run("a", "superseded", 390)
	run("a", "failed", 389)
	run("a", "superseded", 388)
	run("a", "queued", 387)
	run("a", "running", 386)
	run("a", "refused", 385)
	run("a", "succeeded", 2)
	run("a", "failed", 1)
	run("b", "failed", 400)
	run("b", "failed", 399)
	exec(`UPDATE runs SET superseded_by = (SELECT max(id) FROM runs WHERE state = 'failed' AND deployment = 'a')
		WHERE state = 'superseded'`)
	r := config.Retention{Deliveries: 90 * 24 * time.Hour, Routes: 30 * 24 * time.Hour, Runs: 365 * 24 * time.Hour,
		KeepSucceeded: 5, Batch: 2}
	got, err := st.Prune(ctx, r, 0)
	if err != nil {
		t.Fatalf("Prune() = %v", err)
	}
	// 3 old decided deliveries (and their routes); then the old routes of
	// new-oldroute and old-redelivered; then a's 4 oldest succeeded runs,
	// both superseded, the failed and the refused one and b's older run.
	if got.Events != 3 || got.Routes != 2 || got.Runs != 9 {
		t.Errorf("Prune() = %+v; want 3 events, 2 routes (besides theirs), 9 runs", got)
	}
	strs := func(q string) []string {
		t.Helper()
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	if got, want := strs(`SELECT delivery FROM events ORDER BY delivery`),
		[]string{"new-1", "new-oldroute", "old-redelivered", "old-undecided"}; !slices.Equal(got, want) {
		t.Errorf("events kept = %q; want %q", got, want)
	}
	if got, want := strs(`SELECT delivery FROM routes ORDER BY delivery`), []string{"new-1"}; !slices.Equal(got, want) {
		t.Errorf("routes kept = %q; want %q", got, want)
	}
	if got, want := strs(`SELECT deployment || ' ' || state || ' ' || extract(day from now() - queued_at)::int
			FROM runs ORDER BY id`), []string{
		"a succeeded 396", "a succeeded 395", "a succeeded 394", "a succeeded 393", "a queued 387", "a running 386", "a succeeded 2", "a failed 1", "b failed 399",
	}; !slices.Equal(got, want) {
		t.Errorf("runs kept =\n  %q\nwant\n  %q", got, want)
	}
	// Again: nothing more goes.
	if got, err := st.Prune(ctx, r, 0); err != nil || got != (store.Pruned{}) {
		t.Errorf("Prune() again = %+v, %v; want nothing", got, err)
	}
	r.Runs = time.Hour
	if _, err := st.Prune(ctx, r, 0); err == nil {
		t.Errorf("Prune(runs 1h) = nil; want an error: shorter than GitHub's redelivery window")
	}
}

// TestPruneBesideRouting: a delivery routing holds (a redelivery being
// recorded) is skipped, not waited for, and pruned at the next pass.
func TestPruneBesideRouting(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewMigrated(t)
	st := open(t, url)
	db := rawDB(t, url)
	if _, err := db.Exec(`INSERT INTO events (delivery, event, received_at, status)
		SELECT 'old-' || i, 'push', now() - interval '100 days', 'routed' FROM generate_series(1, 3) AS i`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`UPDATE events SET deliveries = deliveries + 1 WHERE delivery = 'old-2'`); err != nil {
		t.Fatal(err)
	}
	r := config.Default().Retention
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if got, err := st.Prune(short, r, 0); err != nil || got.Events != 2 {
		t.Fatalf("Prune() beside a transaction holding old-2 = %+v, %v; want old-1 and old-3 pruned at once", got, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Prune(ctx, r, 0); err != nil || got.Events != 1 {
		t.Errorf("Prune() after = %+v, %v; want old-2 pruned", got, err)
	}
}

// BenchmarkPrune fills a million deliveries (each with its route) and a
// million runs over 100 deployments, spread over the last 400 days, and
// reports the size of the three tables with their indexes per million
// deliveries (MB-per-1M-deliveries), then prunes them with the default
// retention (deliveries 90 days, routes 30, runs 365), without the pause
// dh-route makes between batches, and reports the rows deleted and the
// rate (rows/s).
func BenchmarkPrune(b *testing.B) {
	const n = 1_000_000
	url := storetest.NewMigrated(b)
	storetest.Fill(b, url, storetest.History{Runs: n, Events: n, Span: 400 * 24 * time.Hour})
	db := rawDB(b, url)
	size := func() float64 {
		var bytes int64
		if err := db.QueryRow(`SELECT pg_total_relation_size('events') + pg_total_relation_size('routes') +
			pg_total_relation_size('runs')`).Scan(&bytes); err != nil {
			b.Fatal(err)
		}
		return float64(bytes) / (1 << 20)
	}
	mb := size() * 1e6 / n
	st, err := store.Open(context.Background(), url, store.WithTimeout(time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cfg := config.Default()
	var rows int64
	var took time.Duration
	for b.Loop() {
		start := time.Now()
		p, err := st.Prune(context.Background(), cfg.Retention, 0)
		if err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		rows += p.Events + p.Routes + p.Runs
		b.Logf("pruned %+v in %s", p, time.Since(start).Round(time.Millisecond))
	}
	b.ReportMetric(mb, "MB-per-1M-deliveries") // after b.Loop, which resets the metrics
	b.ReportMetric(float64(rows), "rows-pruned")
	b.ReportMetric(float64(rows)/took.Seconds(), "rows/s")
}
