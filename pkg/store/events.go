package store

import (
	"context"
	"database/sql"
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

// GetEvent returns the event with the given delivery GUID, or an error
// wrapping ErrNotFound.
func (s *Store) GetEvent(ctx context.Context, delivery string) (EventRow, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, qGetEvent, delivery)
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
