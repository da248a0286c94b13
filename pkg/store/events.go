package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// Event statuses, as allowed by the events table's CHECK constraint.
const (
	StatusReceived  = "received"  // recorded, not yet decided
	StatusRouted    = "routed"    // queued for one or more deployments
	StatusVoided    = "voided"    // matched no deployment, or was refused; see reason
	StatusDuplicate = "duplicate" // the same delivery was already handled
	StatusPing      = "ping"      // GitHub's hook test
	StatusFailed    = "failed"    // could not be handled; see reason
)

// Event is one GitHub delivery as dh-receive accepted it.
type Event struct {
	Delivery   string // X-GitHub-Delivery GUID
	Event      string // X-GitHub-Event
	HookID     int64
	Repository string // owner/name
	Ref        string
	Before     string // commit before the push
	After      string // commit after the push
	ReceivedAt time.Time
}

// EventRow is an Event with what became of it.
type EventRow struct {
	Event
	RecordedAt  time.Time
	Status      string
	Reason      string   // why it was voided or failed
	Deployments []string // where it was routed
	Deliveries  int      // how many times the GUID arrived
	LastSeenAt  time.Time
	DecidedAt   time.Time // zero while Status is StatusReceived
}

// InsertEvent records e with status "received" and reports whether this
// call inserted it. If the delivery GUID is already recorded it counts one
// more delivery instead (deliveries, last_seen_at) and returns false.
// Concurrent calls with one GUID insert exactly one row and count every
// call.
//
// inserted=false does not mean the event was handled: a retried call whose
// first reply was lost finds its own row. Callers decide from GetEvent's
// Status (still "received" means not yet decided).
func (s *Store) InsertEvent(ctx context.Context, e Event) (inserted bool, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	// ON CONFLICT DO NOTHING waits for a concurrent insert of the same GUID
	// to commit or roll back, so exactly one caller inserts. The UPDATE is a
	// separate statement: under READ COMMITTED it takes a new snapshot that
	// sees the committed row, and "deliveries + 1" is applied under the row
	// lock, so concurrent increments are not lost.
	err = s.db.QueryRowContext(ctx, qInsertEvent,
		e.Delivery, e.Event, sql.NullInt64{Int64: e.HookID, Valid: e.HookID != 0},
		nullString(e.Repository), nullString(e.Ref), nullString(e.Before), nullString(e.After),
		e.ReceivedAt).Scan(&inserted)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, classify(fmt.Errorf("insert event %s: %w", e.Delivery, err))
	}
	res, err := s.db.ExecContext(ctx, qCountRedelivery, e.Delivery)
	if err != nil {
		return false, classify(fmt.Errorf("count redelivery of event %s: %w", e.Delivery, err))
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		// Retention deletes a row only days after it last arrived (and
		// takes it FOR UPDATE SKIP LOCKED), so this is a bug.
		return false, fmt.Errorf("count redelivery of event %s: %d rows updated: %v", e.Delivery, n, err)
	}
	return false, nil
}

// GetEvent returns the event with the given delivery GUID, or an error
// wrapping ErrNotFound.
func (s *Store) GetEvent(ctx context.Context, delivery string) (EventRow, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE delivery = $1`, delivery)
	if err != nil {
		return EventRow{}, classify(fmt.Errorf("get event %s: %w", delivery, err))
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return EventRow{}, classify(fmt.Errorf("get event %s: %w", delivery, err))
		}
		return EventRow{}, fmt.Errorf("get event %s: %w", delivery, ErrNotFound)
	}
	r, err := scanEvent(rows)
	if err != nil {
		return EventRow{}, classify(fmt.Errorf("get event %s: %w", delivery, err))
	}
	return r, nil
}

const eventColumns = `delivery, event, hook_id, repository, ref, before_sha, after_sha, received_at,
	recorded_at, status, reason, deployments, deliveries, last_seen_at, decided_at`

// scanEvent reads a row of eventColumns.
func scanEvent(rows *sql.Rows) (EventRow, error) {
	var (
		r                                   EventRow
		hookID                              sql.NullInt64
		repository, ref, before, after, why sql.NullString
		lastSeen, decided                   sql.NullTime
	)
	err := rows.Scan(&r.Delivery, &r.Event.Event, &hookID, &repository, &ref, &before, &after, &r.ReceivedAt,
		&r.RecordedAt, &r.Status, &why, pq.Array(&r.Deployments), &r.Deliveries, &lastSeen, &decided)
	if err != nil {
		return EventRow{}, err
	}
	r.HookID = hookID.Int64
	r.Repository, r.Ref, r.Before, r.After = repository.String, ref.String, before.String, after.String
	r.Reason = why.String
	r.LastSeenAt, r.DecidedAt = lastSeen.Time, decided.Time
	return r, nil
}

// SetEventStatus records what became of an event: its status, the reason
// (for voided or failed; "" for none) and the deployments it was routed to,
// and stamps decided_at. It fails with ErrNotFound if the event was never
// inserted.
func (s *Store) SetEventStatus(ctx context.Context, delivery, status, reason string, deployments []string) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if deployments == nil {
		deployments = []string{} // pq.Array(nil) would be NULL
	}
	err := s.update(ctx, qSetEventStatus,
		delivery, status, nullString(reason), pq.Array(deployments))
	if err != nil {
		return fmt.Errorf("set status of event %s to %s: %w", delivery, status, err)
	}
	return nil
}
