package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// Certificate states, as allowed by the certs table's CHECK constraint.
const (
	CertIssued  = "issued"  // certbot succeeded for the last request
	CertWaiting = "waiting" // the last attempt failed; retried at NextTry
	CertFailed  = "failed"  // gave up on the request (its entry is in failed/)
)

// Cert is dh-cert's record of one certificate name: a row of certs.
type Cert struct {
	Name      string    `json:"name"`
	Domains   []string  `json:"domains"`
	State     string    `json:"state"`
	Entry     string    `json:"entry,omitempty"` // the queues/cert entry last handled for it
	Attempts  int       `json:"attempts"`        // consecutive failed attempts of Entry
	LastError string    `json:"last_error,omitempty"`
	NextTry   time.Time `json:"next_try,omitzero"`  // no certbot run for it before
	UpdatedAt time.Time `json:"updated_at"`         // set by the database
	IssuedAt  time.Time `json:"issued_at,omitzero"` // when certbot last succeeded
	// NotAfter is when the certificate expires, as dh-cert last read it
	// from the certificate itself; zero until it has.
	NotAfter time.Time `json:"not_after,omitzero"`
}

// PutCert inserts or replaces the row of c.Name and stamps updated_at.
func (s *Store) PutCert(ctx context.Context, c Cert) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO certs (name, domains, state, entry, attempts, last_error, next_try, issued_at, not_after, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
		ON CONFLICT (name) DO UPDATE SET domains = $2, state = $3, entry = $4, attempts = $5,
		       last_error = $6, next_try = $7, issued_at = $8, not_after = $9, updated_at = now()`,
		c.Name, pq.Array(nonNil(c.Domains)), c.State, nullString(c.Entry), c.Attempts, nullString(c.LastError),
		nullTime(c.NextTry), nullTime(c.IssuedAt), nullTime(c.NotAfter))
	if err != nil {
		return classify(fmt.Errorf("record certificate %s: %w", c.Name, err))
	}
	return nil
}

// SetCertExpiry records notAfter as the expiry of the certificate name,
// if dh-cert records it (a row of certs); it reports whether it did.
func (s *Store) SetCertExpiry(ctx context.Context, name string, notAfter time.Time) (bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	res, err := s.db.ExecContext(ctx, `UPDATE certs SET not_after = $2 WHERE name = $1`, name, notAfter)
	if err != nil {
		return false, classify(fmt.Errorf("record the expiry of certificate %s: %w", name, err))
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// GetCert returns the row of the certificate name; ErrNotFound if there is
// none.
func (s *Store) GetCert(ctx context.Context, name string) (Cert, error) {
	cs, err := s.certs(ctx, `WHERE name = $1`, name)
	if err == nil && len(cs) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return Cert{}, fmt.Errorf("certificate %s: %w", name, err)
	}
	return cs[0], nil
}

// ListCerts returns every certificate's row, by name.
func (s *Store) ListCerts(ctx context.Context) ([]Cert, error) {
	cs, err := s.certs(ctx, `ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	return cs, nil
}

func (s *Store) certs(ctx context.Context, clause string, args ...any) ([]Cert, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT name, domains, state, entry, attempts, last_error, next_try,
		updated_at, issued_at, not_after FROM certs `+clause, args...)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var cs []Cert
	for rows.Next() {
		var (
			c                         Cert
			entry, lastErr            sql.NullString
			nextTry, issued, notAfter sql.NullTime
		)
		if err := rows.Scan(&c.Name, pq.Array(&c.Domains), &c.State, &entry, &c.Attempts, &lastErr, &nextTry,
			&c.UpdatedAt, &issued, &notAfter); err != nil {
			return nil, classify(err)
		}
		c.Entry, c.LastError, c.NextTry, c.IssuedAt = entry.String, lastErr.String, nextTry.Time, issued.Time
		c.NotAfter = notAfter.Time
		cs = append(cs, c)
	}
	return cs, classify(rows.Err())
}

// Certbot commands, as the cert_attempts table records them.
const (
	CertCommandCertonly = "certonly"
	CertCommandRenew    = "renew"
)

// CertAttempt is one run of certbot: a row of cert_attempts.
type CertAttempt struct {
	ID         int64     `json:"id"`             // set by InsertCertAttempt
	Name       string    `json:"name,omitempty"` // "" for a renew run
	Domains    []string  `json:"domains,omitempty"`
	Command    string    `json:"command"` // CertCommand*
	Entry      string    `json:"entry,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"` // set by the database
	OK         bool      `json:"ok"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// InsertCertAttempt records a finished certbot run and returns its id.
func (s *Store) InsertCertAttempt(ctx context.Context, a CertAttempt) (id int64, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err = s.db.QueryRowContext(ctx, `
		INSERT INTO cert_attempts (name, domains, command, entry, started_at, ok, exit_code, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		RETURNING id`,
		nullString(a.Name), pq.Array(nonNil(a.Domains)), a.Command, nullString(a.Entry), a.StartedAt, a.OK,
		a.ExitCode, nullString(a.Error)).Scan(&id)
	if err != nil {
		return 0, classify(fmt.Errorf("record certbot %s run: %w", a.Command, err))
	}
	return id, nil
}

// ListCertAttempts returns the newest certbot runs, newest first: of the
// certificate name, or of every certificate and renewal if name is "";
// at most limit of them, or all if limit <= 0.
func (s *Store) ListCertAttempts(ctx context.Context, name string, limit int) ([]CertAttempt, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, name, domains, command, entry, started_at, finished_at, ok, exit_code, error
		FROM cert_attempts WHERE $1 = '' OR name = $1 ORDER BY id DESC LIMIT $2`,
		name, sql.NullInt64{Int64: int64(limit), Valid: limit > 0})
	if err != nil {
		return nil, classify(fmt.Errorf("list certbot runs: %w", err))
	}
	defer rows.Close()
	var as []CertAttempt
	for rows.Next() {
		var (
			a               CertAttempt
			certName, entry sql.NullString
			why             sql.NullString
			code            sql.NullInt64
		)
		if err := rows.Scan(&a.ID, &certName, pq.Array(&a.Domains), &a.Command, &entry, &a.StartedAt,
			&a.FinishedAt, &a.OK, &code, &why); err != nil {
			return nil, classify(err)
		}
		a.Name, a.Entry, a.Error, a.ExitCode = certName.String, entry.String, why.String, intPtr(code)
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("list certbot runs: %w", err))
	}
	return as, nil
}

// nonNil makes a nil slice empty, for NOT NULL array columns.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
