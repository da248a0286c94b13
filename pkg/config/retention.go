package config

import (
	"time"
)

// MinRetention is the shortest retention of deliveries, routes and runs:
// GitHub redelivers a delivery for up to three days, and dh-route needs
// its row and routes to recognise it (docs/route.md, the duplicate rule).
const MinRetention = 72 * time.Hour

// Retention is the [retention] table: how long dh-route run keeps the
// history before it deletes it, in small batches beside its routing
// (docs/operations.md, "Retention"). A duration of 0 keeps forever.
type Retention struct {
	// Deliveries is how long a delivery (its row in events, and its
	// routes) is kept after it last arrived: 90 days by default, at least
	// 72h. Deliveries not yet decided are kept.
	Deliveries time.Duration `toml:"deliveries"`

	// Routes is how long a delivery's routes (which deployments it was
	// forwarded to, for the duplicate rule) are kept after it was last
	// forwarded: 30 days by default, at least 72h. They go with their
	// delivery at the latest.
	Routes time.Duration `toml:"routes"`

	// Runs is how long a run is kept after it was queued: 365 days by
	// default, at least 72h. Whatever its age, a deployment keeps its
	// waiting and running runs, its last keep_succeeded succeeded runs
	// (the live commit, rollback and kept releases) and its newest run
	// that touched the checkout.
	Runs time.Duration `toml:"runs"`

	// KeepSucceeded is how many succeeded runs of each deployment are kept
	// whatever their age: 5 by default, at least 1. Keep it at least the
	// number of releases a deployment keeps.
	KeepSucceeded int `toml:"keep_succeeded"`

	// Batch is how many rows one DELETE removes (1000 by default): each
	// batch is one short statement, so routing never waits long for it.
	Batch int `toml:"batch"`

	// Interval is the time between two pruning passes (1h by default).
	Interval time.Duration `toml:"interval"`
}

func defaultRetention() Retention {
	return Retention{Deliveries: 90 * 24 * time.Hour, Routes: 30 * 24 * time.Hour, Runs: 365 * 24 * time.Hour,
		KeepSucceeded: 5, Batch: 1000, Interval: time.Hour}
}

func (r *Retention) validate(ck *checker) {
	for _, c := range []struct {
		key string
		d   time.Duration
	}{{"deliveries", r.Deliveries}, {"routes", r.Routes}, {"runs", r.Runs}} {
		if c.d != 0 && c.d < MinRetention {
			ck.add(k("retention", c.key), "%s is shorter than GitHub's redelivery window", c.d)
			ck.hint(`use at least "72h" (or "0s" to keep forever)`)
		}
	}
	if r.KeepSucceeded < 1 {
		ck.add(k("retention", "keep_succeeded"), "must be at least 1: each deployment keeps its live run")
	}
	if r.Batch < 1 || r.Batch > 100_000 {
		ck.add(k("retention", "batch"), "must be from 1 to 100000 rows")
	}
	ck.positive(k("retention", "interval"), r.Interval)
}
