// Package store is the PostgreSQL side of dh-deployer: the event table, the
// deployment runs and the schema migrations embedded from sql/.
//
// Guarantees:
//   - Every method is bounded by the Store's per-call timeout (10 s by
//     default) on top of the caller's context.
//   - RecordDelivery and InsertDecided are idempotent and race-free: however
//     many times and from however many processes one delivery GUID is
//     recorded, there is one row.
//   - Nothing is retried behind the caller's back; Retry does it explicitly.
//   - No statement of the stages or the status page reads a deployment's
//     whole history or a whole table: each is named in queries.go and
//     served by an index (TestQueryPlans checks them on a million runs).
//   - Prune deletes only what config.Retention lets go, never an undecided
//     delivery, a waiting or running run, the runs a deployment still
//     needs, nor anything younger than GitHub's redelivery window.
//
// Failure modes: an unreachable server, a lost connection, a timeout, a
// server shutting down or overloaded, a serialization failure or deadlock
// are temporary (Temporary reports true; the error is a queue.Retry, which
// pkg/cli makes exit 75):
// the caller leaves its work queued and tries again later. A schema older
// or newer than this binary, or a half-applied migration, is a Retry too
// (see CheckSchema): the work waits until an operator migrates or upgrades.
// Other errors (a constraint violation, a bad status) are bugs or bad data.
// Error messages name the server's host or socket, never a password.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// DefaultTimeout bounds each method call.
const DefaultTimeout = 10 * time.Second

// ErrNotFound is returned (wrapped) when a row asked for does not exist.
var ErrNotFound = errors.New("not found")

// Store is a pool of connections to one database. It is safe for
// concurrent use.
type Store struct {
	pool    *sql.DB // nil in a transaction's Store
	db      querier // the pool, or the transaction
	timeout time.Duration
	noIdle  bool
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Option configures Open (the tests' WithTimeout).
type Option func(*Store)

// NoIdle makes the Store keep no connection open between calls: each
// call connects and closes its connection when it is done (a transaction
// keeps one until it ends). For a daemon idle most of the time of which a
// host runs hundreds, such as the deployment workers: PostgreSQL allows
// 100 clients by default, and an idle connection costs it a process.
func NoIdle() Option {
	return func(s *Store) { s.noIdle = true }
}

// Open connects to the database at dsn (a postgres:// URL or a lib/pq
// key=value string) and pings it. An unreachable server is a queue.Retry error
// that names the host or socket.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s := &Store{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(s)
	}
	db, err := connect(ctx, dsn, s.timeout)
	if err != nil {
		return nil, err
	}
	if s.noIdle {
		db.SetMaxIdleConns(0) // closes the ping's connection too
	}
	s.pool, s.db = db, db
	return s, nil
}

// OpenCurrent is Open, then CheckSchema: what every stage does at start.
func OpenCurrent(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s, err := Open(ctx, dsn, opts...)
	if err != nil {
		return nil, err
	}
	if err := s.CheckSchema(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenWait is OpenCurrent for a daemon starting: as long as the database
// is unavailable or its schema is not the one this binary needs (a
// queue.Retry: unreachable, shutting down, not migrated yet, migrated by a
// newer release), it calls waiting with the reason and the time until the
// next attempt, waits (up to 1 s, doubling to up to 30 s; jittered) and
// tries again, until it opens the store or ctx ends. Then it returns ctx's
// error. Any other error (a bad URL, a refused login, no such database:
// sysexits Config) is returned at once. With waiting nil (run --once,
// one-shot commands) OpenWait is OpenCurrent.
func OpenWait(ctx context.Context, dsn string, waiting func(err error, retry time.Duration), opts ...Option) (*Store, error) {
	if waiting == nil {
		return OpenCurrent(ctx, dsn, opts...)
	}
	b := backoff{next: time.Second, max: maxBackoff}
	for {
		s, err := OpenCurrent(ctx, dsn, opts...)
		if ctx.Err() != nil {
			if s != nil {
				s.Close()
			}
			return nil, ctx.Err()
		}
		if !queue.IsRetry(err) {
			return s, err
		}
		wait := b.step()
		waiting(err, wait)
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

// Load loads the configuration file path and opens its database with
// OpenCurrent: how every stage but dh-receive starts.
func Load(ctx context.Context, path string) (*config.Config, *Store, error) {
	return LoadWait(ctx, path, nil)
}

// LoadWait is Load for a daemon's run command: it opens the database with
// OpenWait, with opts.
func LoadWait(ctx context.Context, path string, waiting func(err error, retry time.Duration), opts ...Option) (*config.Config, *Store, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := OpenWait(ctx, cfg.DatabaseURL, waiting, opts...)
	if err != nil {
		return nil, nil, err
	}
	return cfg, st, nil
}

// connect opens a pool and pings it within timeout.
func connect(ctx context.Context, dsn string, timeout time.Duration) (*sql.DB, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		// A url.Error quotes the whole URL, password included: keep only
		// its reason.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, sysexits.Errorf(sysexits.Config, "parse database url: %v", err)
	}
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, sysexits.Errorf(sysexits.Config, "parse database url: %v", err)
	}
	db := sql.OpenDB(connector)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		err = fmt.Errorf("connect to %s: %w", describe(cfg), err)
		switch pqErr := pq.As(err); {
		case pqErr != nil && pqErr.Code.Class() == "28": // authentication failed, or no such role
			return nil, hint.With(sysexits.New(sysexits.Config, err), hintLogin)
		case pqErr != nil && pqErr.Code.Class() == "3D": // no such database
			return nil, hint.With(sysexits.New(sysexits.Config, err), hintNoDatabase)
		case pqErr == nil && Temporary(err):
			return nil, hint.With(classify(err), fmt.Sprintf(hintUnreachable, where(cfg)))
		}
		return nil, classify(err)
	}
	return db, nil
}

// What to check when the database fails: the hints its errors carry.
const (
	hintUnreachable = "is PostgreSQL running and listening on %s? check database_url (or $DH_DATABASE_URL)"
	hintLogin       = "check the user (each stage logs in as its own role) and password of database_url, " +
		"and pg_hba.conf; dh-route setup --host makes the roles (sql/roles.sql)"
	hintNoDatabase = "dh-route setup --host creates it, then dh-route migrate makes its tables"
	hintMigrate    = "run: dh-route migrate"
	hintGrant      = "the stage's role lacks a grant: apply sql/roles.sql again (dh-route setup --host does)"
)

// describe names the server for error messages: database, user and socket
// or host, never the password.
func describe(cfg pq.Config) string {
	return fmt.Sprintf("database %q as user %q on %s", cfg.Database, cfg.User, where(cfg))
}

// where is the server's socket or host and port.
func where(cfg pq.Config) string {
	if strings.HasPrefix(cfg.Host, "/") {
		return "socket " + filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	return fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
}

// Close closes the pool.
func (s *Store) Close() error { return s.pool.Close() }

// InTx runs fn with a Store whose methods all run in one transaction,
// committed when fn returns nil and rolled back otherwise. The whole
// transaction is bounded by one per-call timeout. Many small writes in one
// transaction cost one commit (one WAL flush) instead of one each. fn may
// run only statements through tx, and must not call InTx on it.
func (s *Store) InTx(ctx context.Context, fn func(tx *Store) error) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	t, err := s.pool.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("begin transaction: %w", err))
	}
	if err := fn(&Store{db: t, timeout: s.timeout}); err != nil {
		t.Rollback()
		return err
	}
	if err := t.Commit(); err != nil {
		return classify(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// call bounds ctx by the per-call timeout.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// update runs an UPDATE meant to change one row; changing none is
// ErrNotFound.
func (s *Store) update(ctx context.Context, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return classify(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return classify(err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// classify marks a temporary error as a queue.Retry, and gives a missing
// table or a refused grant the hint of what to run.
func classify(err error) error {
	if Temporary(err) {
		return queue.Retry(err)
	}
	if pq.As(err, "42P01") != nil { // undefined_table: not migrated
		return hint.With(err, hintMigrate)
	}
	if pq.As(err, "42501") != nil { // insufficient_privilege
		return hint.With(err, hintGrant)
	}
	return err
}

// nullString stores "" as NULL.
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) sql.NullTime { return sql.NullTime{Time: t, Valid: !t.IsZero()} }
