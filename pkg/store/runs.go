package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Run states, as allowed by the runs table's CHECK constraint.
const (
	RunQueued      = "queued"
	RunRunning     = "running"
	RunSucceeded   = "succeeded"
	RunFailed      = "failed"
	RunSuperseded  = "superseded"  // a newer commit replaced it before it ran
	RunRefused     = "refused"     // e.g. the commit is not on the branch, or is older
	RunInterrupted = "interrupted" // the worker stopped mid-run
)

// Run is one deployment attempt: a row of the deployment history.
type Run struct {
	ID           int64 // set by InsertRun
	Delivery     string
	Deployment   string
	Attempt      int    // 0 means 1
	Trigger      string // webhook (default), manual, rollback, replay
	Ref          string
	Commit       string
	Previous     string // the commit checked out before
	State        string
	QueuedAt     time.Time // set by the database
	StartedAt    time.Time
	FinishedAt   time.Time // set by FinishRun
	ExitCode     *int
	FailedStep   *int
	LogPath      string
	Error        string
	SupersededBy int64 // 0 for none
}

// InsertRun records a new run and returns its id. (Delivery, Deployment,
// Attempt) is unique: inserting the same attempt twice is an error.
func (s *Store) InsertRun(ctx context.Context, r Run) (id int64, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if r.Attempt == 0 {
		r.Attempt = 1
	}
	if r.Trigger == "" {
		r.Trigger = "webhook"
	}
	err = s.db.QueryRowContext(ctx, `
		INSERT INTO runs (delivery, deployment, attempt, trigger, ref, commit_sha, previous_sha,
		                  state, started_at, log_path)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		RETURNING id`,
		r.Delivery, r.Deployment, r.Attempt, r.Trigger, nullString(r.Ref), nullString(r.Commit),
		nullString(r.Previous), r.State, nullTime(r.StartedAt), nullString(r.LogPath)).Scan(&id)
	if err != nil {
		return 0, classify(fmt.Errorf("insert run of %s for %s: %w", r.Deployment, r.Delivery, err))
	}
	return id, nil
}

// FinishRun records the end of run id: its final state, the exit code (nil
// if no step ran or it died by a signal) and the error text ("" for none),
// and stamps finished_at. It fails with ErrNotFound for an unknown id.
func (s *Store) FinishRun(ctx context.Context, id int64, state string, exitCode *int, errText string) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err := s.update(ctx, `
		UPDATE runs SET state = $2, exit_code = $3, error = $4, finished_at = now()
		WHERE id = $1`,
		id, state, exitCode, nullString(errText))
	if err != nil {
		return fmt.Errorf("finish run %d: %w", id, err)
	}
	return nil
}

// ListRuns returns the newest runs of a deployment, newest first; at most
// limit of them, or all if limit <= 0.
func (s *Store) ListRuns(ctx context.Context, deployment string, limit int) ([]Run, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, delivery, deployment, attempt, trigger, ref, commit_sha, previous_sha, state,
		       queued_at, started_at, finished_at, exit_code, failed_step, log_path, error, superseded_by
		FROM runs WHERE deployment = $1
		ORDER BY id DESC
		LIMIT $2`,
		deployment, sql.NullInt64{Int64: int64(limit), Valid: limit > 0})
	if err != nil {
		return nil, classify(fmt.Errorf("list runs of %s: %w", deployment, err))
	}
	defer rows.Close()
	var runs []Run
	for rows.Next() {
		var (
			r                                   Run
			ref, commit, previous, logPath, why sql.NullString
			started, finished                   sql.NullTime
			exitCode, failedStep, superseded    sql.NullInt64
		)
		err := rows.Scan(&r.ID, &r.Delivery, &r.Deployment, &r.Attempt, &r.Trigger, &ref, &commit,
			&previous, &r.State, &r.QueuedAt, &started, &finished, &exitCode, &failedStep, &logPath,
			&why, &superseded)
		if err != nil {
			return nil, classify(fmt.Errorf("list runs of %s: %w", deployment, err))
		}
		r.Ref, r.Commit, r.Previous, r.LogPath, r.Error = ref.String, commit.String, previous.String, logPath.String, why.String
		r.StartedAt, r.FinishedAt = started.Time, finished.Time
		r.ExitCode, r.FailedStep = intPtr(exitCode), intPtr(failedStep)
		r.SupersededBy = superseded.Int64
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("list runs of %s: %w", deployment, err))
	}
	return runs, nil
}

func intPtr(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	i := int(n.Int64)
	return &i
}
