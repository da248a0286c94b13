package store

import (
	"context"
	"fmt"

	"github.com/lib/pq"
)

// Statements of the notices table (migration 000013): a handful of rows,
// one per certificate and day and one per failed entry.
const (
	qClaimNotice  = `INSERT INTO notices (key) VALUES ($1) ON CONFLICT (key) DO NOTHING`
	qForgetFailed = `DELETE FROM notices WHERE key LIKE 'failed/%' AND split_part(key, '/', 2) = ANY($1::text[])
		AND key <> ALL($2::text[])`
	qForgetCerts = `DELETE FROM notices WHERE key LIKE 'cert/%' AND sent_at < now() - interval '2 days'`
)

// ClaimNotice records that the notice key is being sent and reports
// whether it is new: false if it was recorded before (by this or another
// process), so that each notice is sent once.
func (s *Store) ClaimNotice(ctx context.Context, key string) (bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	res, err := s.db.ExecContext(ctx, qClaimNotice, key)
	if err != nil {
		return false, classify(fmt.Errorf("record notice %s: %w", key, err))
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ForgetNotices deletes the records of failed-entry notices of the
// queues read ("failed/QUEUE/ENTRY") whose key is not in failed (the entry
// left failed/: if it fails again, it is told again), and of certificate
// notices older than two days.
func (s *Store) ForgetNotices(ctx context.Context, read, failed []string) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, qForgetFailed, pq.Array(nonNil(read)), pq.Array(nonNil(failed))); err != nil {
		return classify(fmt.Errorf("forget notices: %w", err))
	}
	if _, err := s.db.ExecContext(ctx, qForgetCerts); err != nil {
		return classify(fmt.Errorf("forget notices: %w", err))
	}
	return nil
}
