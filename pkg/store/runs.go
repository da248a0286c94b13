package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lib/pq"
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
	RunUnchanged   = "unchanged"   // its commit was already live: no step ran
)

// Run is one deployment attempt: a row of the deployment history.
type Run struct {
	ID           int64     `json:"id"` // set by InsertRun
	Delivery     string    `json:"delivery"`
	Deployment   string    `json:"deployment"`
	Attempt      int       `json:"attempt"`                // 0 means 1
	Trigger      string    `json:"trigger"`                // webhook (default), manual, rollback, replay, token, hook
	TriggeredBy  string    `json:"triggered_by,omitempty"` // who: pusher=, sender= (a push), token= (its name), user= (Unix)
	Ref          string    `json:"ref"`
	Commit       string    `json:"commit"`
	Previous     string    `json:"previous_commit,omitempty"` // the commit checked out before
	State        string    `json:"state"`
	QueuedAt     time.Time `json:"queued_at"` // set by the database
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"` // set by FinishRun
	ExitCode     *int      `json:"exit_code,omitempty"`
	FailedStep   *int      `json:"failed_step,omitempty"`
	LogPath      string    `json:"log_path,omitempty"`
	Error        string    `json:"error,omitempty"`
	Note         string    `json:"note,omitempty"`          // why it waited, or that it was forced past a pause
	SupersededBy int64     `json:"superseded_by,omitempty"` // 0 for none
	// The commit's subject line and author ("Name <email>"), as dh-deploy
	// read them from the repository; "" if it could not.
	CommitSubject string `json:"commit_subject,omitempty"`
	CommitAuthor  string `json:"commit_author,omitempty"`
}

// Ended reports whether the run is over: neither waiting nor running.
// Its log is then complete (an interrupted run that runs again gets a new
// run and a new log).
func (r Run) Ended() bool { return r.State != RunQueued && r.State != RunRunning }

// OverdueGrace is how long past its deployment's timeout a run may still
// be recorded as running before Overdue says its worker has stopped: the
// timeout bounds the run's work, not its recording.
const OverdueGrace = 5 * time.Minute

// Overdue returns an error saying so when r is still recorded as running
// longer than timeout (its deployment's bound on a whole run) plus
// OverdueGrace at now: the worker that ran it has stopped, its log will
// not grow, and the run is marked interrupted only when the worker
// starts again. Following such a log would never end; nil otherwise.
func (r Run) Overdue(timeout time.Duration, now time.Time) error {
	took := now.Sub(r.StartedAt)
	if r.State != RunRunning || timeout <= 0 || r.StartedAt.IsZero() || took <= timeout+OverdueGrace {
		return nil
	}
	return fmt.Errorf("run %d has been running for %s, longer than the deployment's timeout (%s): its worker has stopped; "+
		"it is marked interrupted when dh-deploy@%s starts again", r.ID, took.Round(time.Second), timeout, r.Deployment)
}

// InsertRun records a new run and returns its id. (Delivery, Deployment,
// Attempt) is unique: inserting the same attempt twice is an error, unless
// both name the same log (a retry after a lost reply): then it returns the
// first row's id, so a retried InsertRun is safe.
func (s *Store) InsertRun(ctx context.Context, r Run) (id int64, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if r.Attempt == 0 {
		r.Attempt = 1
	}
	if r.Trigger == "" {
		r.Trigger = "webhook"
	}
	err = s.db.QueryRowContext(ctx, qInsertRun,
		r.Delivery, r.Deployment, r.Attempt, r.Trigger, nullString(r.Ref), nullString(r.Commit),
		nullString(r.Previous), r.State, nullTime(r.StartedAt), nullString(r.LogPath), nullString(r.Note),
		nullString(r.TriggeredBy), nullString(r.CommitSubject), nullString(r.CommitAuthor)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("attempt %d is already recorded with another log", r.Attempt)
	}
	if err != nil {
		return 0, classify(notOwnDeployment(fmt.Errorf("insert run of %s for %s: %w", r.Deployment, r.Delivery, err), r.Deployment))
	}
	return id, nil
}

// RunResult is how a run ended, for FinishRun.
type RunResult struct {
	State        string // a final state: succeeded, failed, superseded, refused, interrupted, unchanged
	ExitCode     *int   // of the failed step, 0 on success; nil if no step ran or it died by a signal
	FailedStep   *int   // number (from 1) of the step that failed
	Error        string // why it failed or was refused; "" for none
	SupersededBy int64  // the run that replaced it; 0 for none
}

// FinishRun records the end of run id and stamps finished_at. It fails
// with ErrNotFound for an unknown id.
func (s *Store) FinishRun(ctx context.Context, id int64, r RunResult) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err := s.update(ctx, qFinishRun,
		id, r.State, r.ExitCode, r.FailedStep, nullString(r.Error),
		sql.NullInt64{Int64: r.SupersededBy, Valid: r.SupersededBy != 0})
	if err != nil {
		return fmt.Errorf("finish run %d: %w", id, err)
	}
	return nil
}

// WaitRun records that attempt r.Attempt of (r.Delivery, r.Deployment) is
// waiting (state queued) and why (r.Note): inserted the first time,
// the note updated afterwards. It returns the run's id; ErrNotFound if the
// attempt exists and no longer waits.
func (s *Store) WaitRun(ctx context.Context, r Run) (int64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	var id int64
	err := s.db.QueryRowContext(ctx, qWaitRun,
		r.Delivery, r.Deployment, r.Attempt, r.Trigger, nullString(r.Ref), nullString(r.Commit), nullString(r.Note),
		nullString(r.TriggeredBy)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, classify(notOwnDeployment(fmt.Errorf("record waiting run of %s for %s: %w", r.Deployment, r.Delivery, err), r.Deployment))
	}
	return id, nil
}

// StartWaitingRun turns the waiting run id into a running one with r's
// fields (trigger and who, commit, previous commit, start, log, note).
func (s *Store) StartWaitingRun(ctx context.Context, id int64, r Run) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err := s.update(ctx, qStartWaitingRun,
		id, r.Trigger, nullString(r.Ref), nullString(r.Commit), nullString(r.Previous), nullTime(r.StartedAt),
		nullString(r.LogPath), nullString(r.Note), nullString(r.TriggeredBy), nullString(r.CommitSubject), nullString(r.CommitAuthor))
	if err != nil {
		return fmt.Errorf("start waiting run %d: %w", id, err)
	}
	return nil
}

// InterruptRuns marks every running run of a deployment interrupted, and
// returns how many. The deployment's worker calls it when it starts: it is
// the only one, so any running run is the leftover of a worker that died.
// Waiting (queued) runs stay: their entries still wait.
func (s *Store) InterruptRuns(ctx context.Context, deployment string) (int64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	res, err := s.db.ExecContext(ctx, qInterruptRuns, deployment)
	if err != nil {
		return 0, classify(fmt.Errorf("interrupt runs of %s: %w", deployment, err))
	}
	n, err := res.RowsAffected()
	return n, classify(err)
}

// LinkSuperseded points the superseded runs of a deployment that do not
// name their successor yet at run id.
func (s *Store) LinkSuperseded(ctx context.Context, deployment string, id int64) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.db.ExecContext(ctx, qLinkSuperseded, deployment, id)
	if err != nil {
		return classify(fmt.Errorf("link superseded runs of %s: %w", deployment, err))
	}
	return nil
}

const runColumns = `id, delivery, deployment, attempt, trigger, ref, commit_sha, previous_sha, state,
	queued_at, started_at, finished_at, exit_code, failed_step, log_path, error, superseded_by, note, triggered_by,
	commit_subject, commit_author`

// ListRuns returns the newest runs of a deployment, newest first; at most
// limit of them, or all if limit <= 0 (prefer a limit, or EachRun: all of
// a long history is large).
func (s *Store) ListRuns(ctx context.Context, deployment string, limit int) ([]Run, error) {
	return s.RunsBefore(ctx, deployment, 0, limit)
}

// RunsBefore returns the runs of a deployment older than run before
// (0: the newest), newest first, at most limit (all if limit <= 0): one
// page of the history, read from the index, however long it is.
func (s *Store) RunsBefore(ctx context.Context, deployment string, before int64, limit int) ([]Run, error) {
	var runs []Run
	err := s.eachRun(ctx, func(r Run) error { runs = append(runs, r); return nil }, qRunsBefore,
		deployment, sql.NullInt64{Int64: before, Valid: before > 0}, sql.NullInt64{Int64: int64(limit), Valid: limit > 0})
	if err != nil {
		return nil, fmt.Errorf("list runs of %s: %w", deployment, err)
	}
	return runs, nil
}

// EachRun calls fn with every run of a deployment older than run before
// (0: all), newest first, reading them a page (EachRunPage runs) at a
// time: memory stays the same however long the history is, and each page
// is one short statement. An error of fn stops it and is returned.
func (s *Store) EachRun(ctx context.Context, deployment string, before int64, fn func(Run) error) error {
	for {
		runs, err := s.RunsBefore(ctx, deployment, before, EachRunPage)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(runs) < EachRunPage {
			return nil
		}
		before = runs[len(runs)-1].ID
	}
}

// EachRunPage is how many runs EachRun reads at a time.
const EachRunPage = 500

// SucceededRuns returns the newest limit succeeded runs of a deployment,
// oldest first: what rollback chooses from.
func (s *Store) SucceededRuns(ctx context.Context, deployment string, limit int) ([]Run, error) {
	var runs []Run
	err := s.eachRun(ctx, func(r Run) error { runs = append(runs, r); return nil }, qSucceededRuns, deployment, limit)
	if err != nil {
		return nil, fmt.Errorf("list succeeded runs of %s: %w", deployment, err)
	}
	slices.Reverse(runs)
	return runs, nil
}

// RunsOf returns the runs of one (delivery, deployment) pair, first
// attempt first.
func (s *Store) RunsOf(ctx context.Context, delivery, deployment string) ([]Run, error) {
	runs, err := s.runs(ctx, qRunsOf, delivery, deployment)
	if err != nil {
		return nil, fmt.Errorf("list runs of %s for %s: %w", deployment, delivery, err)
	}
	return runs, nil
}

// MaxDeliveryRuns bounds the runs DeliveryRuns returns: a delivery has
// one run per deployment it reached and attempt.
const MaxDeliveryRuns = 200

// DeliveryRuns returns the runs of one delivery, every deployment's (at
// most MaxDeliveryRuns), by deployment, first attempt first.
func (s *Store) DeliveryRuns(ctx context.Context, delivery string) ([]Run, error) {
	runs, err := s.runs(ctx, qDeliveryRuns, delivery, MaxDeliveryRuns)
	if err != nil {
		return nil, fmt.Errorf("list runs of delivery %s: %w", delivery, err)
	}
	return runs, nil
}

// CommitRuns returns the runs of a deployment that deployed commit,
// newest first.
func (s *Store) CommitRuns(ctx context.Context, deployment, commit string) ([]Run, error) {
	runs, err := s.runs(ctx, qCommitRuns, deployment, commit)
	if err != nil {
		return nil, fmt.Errorf("list runs of %s at %s: %w", deployment, commit, err)
	}
	return runs, nil
}

// GetRun returns run id of a deployment; ErrNotFound if there is none.
func (s *Store) GetRun(ctx context.Context, deployment string, id int64) (Run, error) {
	runs, err := s.runs(ctx, qGetRun, deployment, id)
	if err == nil && len(runs) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return Run{}, fmt.Errorf("run %d of %s: %w", id, deployment, err)
	}
	return runs[0], nil
}

// Recent is one deployment's newest runs and its live run, for LastRuns.
type Recent struct {
	Runs []Run // newest first
	Live *Run  // the newest succeeded run; nil if none
}

// LastRuns returns, in one statement, the newest limit runs and the
// newest succeeded run of each of deployments, by name. Its cost grows
// with len(deployments) and limit, never with the length of the history.
func (s *Store) LastRuns(ctx context.Context, deployments []string, limit int) (map[string]Recent, error) {
	out := make(map[string]Recent, len(deployments))
	if len(deployments) == 0 {
		return out, nil
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, qLastRuns, pq.Array(deployments), limit)
	if err != nil {
		return nil, classify(fmt.Errorf("list the last runs of %d deployments: %w", len(deployments), err))
	}
	defer rows.Close()
	for rows.Next() {
		var live bool
		r, err := scanRun(rows, &live)
		if err != nil {
			return nil, classify(fmt.Errorf("list the last runs of %d deployments: %w", len(deployments), err))
		}
		rec := out[r.Deployment]
		if live {
			rec.Live = &r
		} else {
			rec.Runs = append(rec.Runs, r)
		}
		out[r.Deployment] = rec
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("list the last runs of %d deployments: %w", len(deployments), err))
	}
	return out, nil
}

// runs collects the runs a query selects.
func (s *Store) runs(ctx context.Context, query string, args ...any) ([]Run, error) {
	var runs []Run
	err := s.eachRun(ctx, func(r Run) error { runs = append(runs, r); return nil }, query, args...)
	return runs, err
}

// eachRun calls fn with each run a query of runColumns selects.
func (s *Store) eachRun(ctx context.Context, fn func(Run) error, query string, args ...any) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return classify(err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return classify(rows.Err())
}

// scanRun reads a row of runColumns, then the extra columns after them.
func scanRun(rows *sql.Rows, extra ...any) (Run, error) {
	var (
		r                                             Run
		ref, commit, previous, logPath, why, note, by sql.NullString
		subject, author                               sql.NullString
		started, finished                             sql.NullTime
		exitCode, failedStep, superseded              sql.NullInt64
	)
	dest := append([]any{&r.ID, &r.Delivery, &r.Deployment, &r.Attempt, &r.Trigger, &ref, &commit,
		&previous, &r.State, &r.QueuedAt, &started, &finished, &exitCode, &failedStep, &logPath,
		&why, &superseded, &note, &by, &subject, &author}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return Run{}, err
	}
	r.Ref, r.Commit, r.Previous, r.LogPath, r.Error = ref.String, commit.String, previous.String, logPath.String, why.String
	r.StartedAt, r.FinishedAt = started.Time, finished.Time
	r.ExitCode, r.FailedStep = intPtr(exitCode), intPtr(failedStep)
	r.SupersededBy, r.Note, r.TriggeredBy = superseded.Int64, note.String, by.String
	r.CommitSubject, r.CommitAuthor = subject.String, author.String
	return r, nil
}

func intPtr(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	i := int(n.Int64)
	return &i
}

// RunsOfDeliveries returns the runs of many deliveries to one deployment,
// by delivery, first attempt first: RunsOf for a whole waiting queue in
// one statement.
func (s *Store) RunsOfDeliveries(ctx context.Context, deployment string, deliveries []string) (map[string][]Run, error) {
	runs, err := s.runs(ctx, qRunsOfDeliveries, deployment, pq.Array(deliveries))
	if err != nil {
		return nil, fmt.Errorf("list runs of %s for %d deliveries: %w", deployment, len(deliveries), err)
	}
	by := make(map[string][]Run, len(deliveries))
	for _, r := range runs {
		by[r.Delivery] = append(by[r.Delivery], r)
	}
	return by, nil
}

// InsertSuperseded records runs that ended superseded before they started,
// all in one statement (coalescing a waiting set): each r as InsertRun
// would, then finished now with state superseded and r.Error. An attempt
// already recorded is left alone, so a retry after a lost reply is safe.
func (s *Store) InsertSuperseded(ctx context.Context, deployment string, runs []Run) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	n := len(runs)
	del, trig, ref, commit, why, by := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	att := make([]int64, n)
	for i, r := range runs {
		del[i], att[i], trig[i], ref[i], commit[i], why[i], by[i] = r.Delivery, int64(max(r.Attempt, 1)), r.Trigger, r.Ref, r.Commit, r.Error, r.TriggeredBy
		if trig[i] == "" {
			trig[i] = "webhook"
		}
	}
	_, err := s.db.ExecContext(ctx, qInsertSuperseded,
		deployment, pq.Array(del), pq.Array(att), pq.Array(trig), pq.Array(ref), pq.Array(commit), pq.Array(why), pq.Array(by))
	if err != nil {
		return classify(fmt.Errorf("insert %d superseded runs of %s: %w", n, deployment, err))
	}
	return nil
}
