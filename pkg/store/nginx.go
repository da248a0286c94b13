package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// Kinds and outcomes of nginx installs, as the nginx_installs table's
// CHECK constraints allow them.
const (
	NginxKindSites  = "sites"  // an nginx-sites entry: converge a deployment's sites
	NginxKindReload = "reload" // an nginx-reload entry: test and reload

	NginxRunning     = "running"
	NginxSucceeded   = "succeeded"   // changes installed, tested and reloaded (or reload done)
	NginxUnchanged   = "unchanged"   // conf.d already matched the commit
	NginxPartial     = "partial"     // the rest converged; some sites refused or in conflict
	NginxFailed      = "failed"      // nginx -t or the reload failed; previous files restored
	NginxStale       = "stale"       // the checkout is no longer at the entry's commit
	NginxInterrupted = "interrupted" // dh-nginx stopped during it
)

// NginxInstall is one row of dh-nginx's history.
type NginxInstall struct {
	ID         int64     `json:"id"`
	Kind       string    `json:"kind"`
	Deployment string    `json:"deployment,omitempty"`
	Commit     string    `json:"commit,omitempty"`
	Delivery   string    `json:"delivery,omitempty"`
	RunID      int64     `json:"run_id,omitempty"`
	Outcome    string    `json:"outcome"`
	Installed  []string  `json:"installed,omitempty"`
	Removed    []string  `json:"removed,omitempty"`
	Pending    []string  `json:"pending,omitempty"`
	Rejected   []string  `json:"rejected,omitempty"`
	Conflicts  []string  `json:"conflicts,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at"`  // set by the database
	FinishedAt time.Time `json:"finished_at"` // set by FinishNginxInstall
}

// StartNginxInstall records the start of an install (outcome running) and
// returns its id.
func (s *Store) StartNginxInstall(ctx context.Context, n NginxInstall) (id int64, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err = s.db.QueryRowContext(ctx, `
		INSERT INTO nginx_installs (kind, deployment, commit_sha, delivery, run_id, outcome)
		VALUES ($1, $2, $3, $4, $5, 'running')
		RETURNING id`,
		n.Kind, nullString(n.Deployment), nullString(n.Commit), nullString(n.Delivery),
		sql.NullInt64{Int64: n.RunID, Valid: n.RunID != 0}).Scan(&id)
	if err != nil {
		return 0, classify(fmt.Errorf("record nginx install of %q: %w", n.Deployment, err))
	}
	return id, nil
}

// FinishNginxInstall records how install id ended: n's outcome, file
// lists and error; finished_at is stamped. An unknown id is ErrNotFound.
func (s *Store) FinishNginxInstall(ctx context.Context, id int64, n NginxInstall) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err := s.update(ctx, `
		UPDATE nginx_installs SET outcome = $2, installed = $3, removed = $4, pending = $5,
		       rejected = $6, conflicts = $7, error = $8, finished_at = now()
		WHERE id = $1`,
		id, n.Outcome, pq.Array(nonNil(n.Installed)), pq.Array(nonNil(n.Removed)), pq.Array(nonNil(n.Pending)),
		pq.Array(nonNil(n.Rejected)), pq.Array(nonNil(n.Conflicts)), nullString(n.Error))
	if err != nil {
		return fmt.Errorf("finish nginx install %d: %w", id, err)
	}
	return nil
}

// InterruptNginxInstalls marks every running install interrupted and
// returns how many. dh-nginx calls it when it starts: it is the only
// installer, so a running row is the leftover of one that died.
func (s *Store) InterruptNginxInstalls(ctx context.Context) (int64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	res, err := s.db.ExecContext(ctx, `
		UPDATE nginx_installs SET outcome = 'interrupted', finished_at = now(),
		       error = coalesce(error, 'dh-nginx stopped during the install')
		WHERE outcome = 'running'`)
	if err != nil {
		return 0, classify(fmt.Errorf("interrupt nginx installs: %w", err))
	}
	n, err := res.RowsAffected()
	return n, classify(err)
}

// NginxInstalls returns the newest installs, newest first: of one
// deployment, or of all ("" ) including reloads. limit <= 0 means all.
func (s *Store) NginxInstalls(ctx context.Context, deployment string, limit int) ([]NginxInstall, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	lim := sql.NullInt64{Int64: int64(limit), Valid: limit > 0}
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, kind, coalesce(deployment, ''), coalesce(commit_sha, ''), coalesce(delivery, ''),
		       coalesce(run_id, 0), outcome, installed, removed, pending, rejected, conflicts,
		       coalesce(error, ''), started_at, finished_at
		FROM nginx_installs
		WHERE $1 = '' OR deployment = $1
		ORDER BY id DESC
		LIMIT $2`, deployment, lim)
	if err != nil {
		return nil, classify(fmt.Errorf("list nginx installs: %w", err))
	}
	defer rows.Close()
	var out []NginxInstall
	for rows.Next() {
		var n NginxInstall
		var finished sql.NullTime
		if err := rows.Scan(&n.ID, &n.Kind, &n.Deployment, &n.Commit, &n.Delivery, &n.RunID, &n.Outcome,
			pq.Array(&n.Installed), pq.Array(&n.Removed), pq.Array(&n.Pending), pq.Array(&n.Rejected),
			pq.Array(&n.Conflicts), &n.Error, &n.StartedAt, &finished); err != nil {
			return nil, classify(fmt.Errorf("list nginx installs: %w", err))
		}
		n.FinishedAt = finished.Time
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("list nginx installs: %w", err))
	}
	return out, nil
}
