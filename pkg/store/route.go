package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"
)

// Route is one (delivery, deployment) pair dh-route forwarded, with what
// became of it since it was last forwarded.
type Route struct {
	Deployment string
	Entry      string    // the queues/main entry whose handling forwarded it last
	RoutedAt   time.Time // when it was last forwarded
	Forwards   int
	// LastRun is the state of the newest run of the pair queued since
	// RoutedAt, "" if dh-deploy has not started one yet (the entry is still
	// waiting in the deployment queue).
	LastRun string
}

// Delivery is what RecordDelivery found.
type Delivery struct {
	Inserted bool   // this call created the row
	Status   string // the row's status before this call (StatusReceived if inserted)
	Routes   []Route
}

// RecordDelivery records e with status "received", race-free, or, if its
// GUID is already recorded, counts one more delivery. It returns what was
// there before: the status and, for a delivery seen before, its routes.
// Concurrent calls with one GUID create exactly one row.
func (s *Store) RecordDelivery(ctx context.Context, e Event) (Delivery, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	var d Delivery
	// ON CONFLICT DO UPDATE takes the row lock, so the count is exact; xmax
	// is 0 only in a row version this statement inserted.
	err := s.db.QueryRowContext(ctx, qRecordDelivery,
		e.Delivery, e.Event, sql.NullInt64{Int64: e.HookID, Valid: e.HookID != 0},
		nullString(e.Repository), nullString(e.Ref), nullString(e.Before), nullString(e.After),
		e.ReceivedAt).Scan(&d.Inserted, &d.Status)
	if err != nil {
		return d, classify(fmt.Errorf("record event %s: %w", e.Delivery, err))
	}
	if d.Inserted {
		return d, nil
	}
	rows, err := s.db.QueryContext(ctx, qRoutesOf, e.Delivery)
	if err != nil {
		return d, classify(fmt.Errorf("read routes of event %s: %w", e.Delivery, err))
	}
	defer rows.Close()
	for rows.Next() {
		var r Route
		if err := rows.Scan(&r.Deployment, &r.Entry, &r.RoutedAt, &r.Forwards, &r.LastRun); err != nil {
			return d, classify(fmt.Errorf("read routes of event %s: %w", e.Delivery, err))
		}
		d.Routes = append(d.Routes, r)
	}
	if err := rows.Err(); err != nil {
		return d, classify(fmt.Errorf("read routes of event %s: %w", e.Delivery, err))
	}
	return d, nil
}

// Decide records, in one statement, what became of a recorded delivery:
// its status and reason, and a route for each deployment in forward
// (inserted, or for a pair forwarded before: entry, routed_at and forwards
// updated). The event's deployments become every deployment it has ever
// been forwarded to. Call it before publishing to the deployment queues:
// a crash afterwards finds the routes (by entry) and completes them.
func (s *Store) Decide(ctx context.Context, delivery, status, reason, entry string, forward []string) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if forward == nil {
		forward = []string{}
	}
	err := s.update(ctx, qDecide,
		delivery, status, nullString(reason), entry, pq.Array(forward))
	if err != nil {
		return fmt.Errorf("record decision %s for event %s: %w", status, delivery, err)
	}
	return nil
}

// Decided is a new delivery together with its decision, for
// InsertDecided.
type Decided struct {
	Event
	Status      string
	Reason      string
	Entry       string   // the queues/main entry that decided it
	Deployments []string // forwarded to (status routed)
}

// InsertDecided records, in two statements whatever their number, each
// delivery whose GUID is not recorded yet, with its decision and routes:
// the same rows RecordDelivery then Decide would make. It returns which of
// ds it inserted; a GUID already recorded (before, or earlier in ds) is
// left alone, for the caller to handle with RecordDelivery and Decide.
func (s *Store) InsertDecided(ctx context.Context, ds []Decided) ([]bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	n := len(ds)
	texts := func() []string { return make([]string, n) }
	nulls := func() []sql.NullString { return make([]sql.NullString, n) }
	delivery, event, received, status, deployments := texts(), texts(), texts(), texts(), texts()
	repo, ref, before, after, reason := nulls(), nulls(), nulls(), nulls(), nulls()
	hook := make([]sql.NullInt64, n)
	for i, d := range ds {
		delivery[i], event[i], hook[i] = d.Delivery, d.Event.Event, sql.NullInt64{Int64: d.HookID, Valid: d.HookID != 0}
		repo[i], ref[i], before[i], after[i] = nullString(d.Repository), nullString(d.Ref), nullString(d.Before), nullString(d.After)
		received[i] = d.ReceivedAt.Format(time.RFC3339Nano)
		status[i], reason[i], deployments[i] = d.Status, nullString(d.Reason), strings.Join(d.Deployments, ",")
	}
	// Rows are inserted in the order of ds, so of two with one GUID the
	// first is inserted and the second skipped.
	rows, err := s.db.QueryContext(ctx, qInsertDecided,
		pq.Array(delivery), pq.Array(event), pq.Array(hook), pq.Array(repo), pq.Array(ref), pq.Array(before),
		pq.Array(after), pq.Array(received), pq.Array(status), pq.Array(reason), pq.Array(deployments))
	if err != nil {
		return nil, classify(fmt.Errorf("record %d events: %w", n, err))
	}
	inserted := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, classify(fmt.Errorf("record %d events: %w", n, err))
		}
		inserted[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("record %d events: %w", n, err))
	}
	done := make([]bool, n)
	var rd, rdep, rentry []string
	for i, d := range ds {
		if !inserted[d.Delivery] {
			continue
		}
		delete(inserted, d.Delivery) // a later duplicate in ds was not inserted
		done[i] = true
		for _, dep := range d.Deployments {
			rd, rdep, rentry = append(rd, d.Delivery), append(rdep, dep), append(rentry, d.Entry)
		}
	}
	if len(rd) > 0 {
		_, err := s.db.ExecContext(ctx, qInsertRoutes,
			pq.Array(rd), pq.Array(rdep), pq.Array(rentry))
		if err != nil {
			return nil, classify(fmt.Errorf("record routes of %d events: %w", n, err))
		}
	}
	return done, nil
}

// RecordFailure records that a delivery could not be handled: a new row
// with status "failed" and the reason, or, for a GUID already recorded,
// one more delivery and (only if it was still undecided or failed) the
// failure. A delivery decided before keeps its decision.
func (s *Store) RecordFailure(ctx context.Context, e Event, reason string) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.db.ExecContext(ctx, qRecordFailure,
		e.Delivery, e.Event, sql.NullInt64{Int64: e.HookID, Valid: e.HookID != 0},
		nullString(e.Repository), nullString(e.Ref), nullString(e.Before), nullString(e.After),
		e.ReceivedAt, nullString(reason))
	if err != nil {
		return classify(fmt.Errorf("record failure of event %s: %w", e.Delivery, err))
	}
	return nil
}

// RecentEvents returns the last limit events, newest decision first, then
// undecided ones, in one statement (for status output).
func (s *Store) RecentEvents(ctx context.Context, limit int) ([]EventRow, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, qRecentEvents, limit)
	if err != nil {
		return nil, classify(fmt.Errorf("list recent events: %w", err))
	}
	defer rows.Close()
	var out []EventRow
	for rows.Next() {
		r, err := scanEvent(rows)
		if err != nil {
			return nil, classify(fmt.Errorf("list recent events: %w", err))
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("list recent events: %w", err))
	}
	return out, nil
}
