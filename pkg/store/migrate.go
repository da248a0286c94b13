package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"sync"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	migrations "github.com/dh-deployer/dh-deployer/sql"
)

// upFile matches an up migration's file name and captures its version.
var upFile = regexp.MustCompile(`^([0-9]+)_.*\.up\.sql$`)

// Latest returns the schema version this binary needs: the highest version
// among the embedded migrations.
func Latest() uint { return latest() }

var latest = sync.OnceValue(func() uint {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		panic(fmt.Sprintf("read embedded migrations: %v", err))
	}
	var latest uint
	for _, e := range entries {
		if m := upFile.FindStringSubmatch(e.Name()); m != nil {
			v, err := strconv.ParseUint(m[1], 10, 0)
			if err != nil {
				panic(fmt.Sprintf("migration %s: %v", e.Name(), err))
			}
			latest = max(latest, uint(v))
		}
	}
	return latest
})

// Migrate applies every embedded up migration not yet applied to the
// database at dsn and returns the schema version before and after (0 for
// none). Concurrent Migrate calls are serialised by golang-migrate's
// advisory lock. Each migration runs in one transaction. Migrate is not
// bounded by a per-call timeout; when ctx is done it stops after the
// migration that is running.
func Migrate(ctx context.Context, dsn string) (from, to uint, err error) {
	err = withMigrate(ctx, dsn, func(m *migrate.Migrate) error {
		if from, err = version(m); err != nil {
			return err
		}
		if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		to, err = version(m)
		return err
	})
	if err != nil {
		return from, to, fmt.Errorf("migrate database: %w", err)
	}
	return from, to, nil
}

// MigrateDown applies every down migration, leaving an empty schema. It is
// for tests; nothing in production calls it.
func MigrateDown(ctx context.Context, dsn string) error {
	err := withMigrate(ctx, dsn, func(m *migrate.Migrate) error {
		if err := m.Down(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate database down: %w", err)
	}
	return nil
}

// withMigrate runs fn with a golang-migrate instance over the embedded
// migrations and one connection to dsn, and asks it to stop gracefully
// (between migrations) when ctx is done.
func withMigrate(ctx context.Context, dsn string, fn func(*migrate.Migrate) error) error {
	db, err := connect(ctx, dsn, DefaultTimeout)
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return classify(err)
	}
	driver, err := postgres.WithConnection(ctx, conn, &postgres.Config{})
	if err != nil {
		conn.Close()
		return classify(err)
	}
	source, err := iofs.New(migrations.FS, ".")
	if err != nil {
		driver.Close()
		return fmt.Errorf("read embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", source, "postgres", driver)
	if err != nil {
		source.Close()
		driver.Close()
		return classify(err)
	}
	defer m.Close()

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			m.GracefulStop <- true
		case <-done:
		}
	}()
	return classify(fn(m))
}

// version returns m's current version, 0 for none; a dirty schema is an
// error.
func version(m *migrate.Migrate) (uint, error) {
	v, dirty, err := m.Version()
	switch {
	case errors.Is(err, migrate.ErrNilVersion):
		return 0, nil
	case err != nil:
		return 0, err
	case dirty:
		return v, dirtyError(v)
	}
	return v, nil
}

func dirtyError(v uint) error {
	return hint.With(
		queue.Retry(fmt.Errorf("database schema is dirty: migration %d did not finish", v)),
		"inspect the database, finish or undo that migration by hand, then set schema_migrations to the version the schema is at, with dirty = false")
}

// CheckSchema checks that the database schema is the one this binary was
// built for. A missing or older schema, a newer one (an old binary against
// an upgraded database) or a dirty one (a migration failed half-way) is a
// queue.Retry error with a hint: work waits in its queue until an operator
// migrates or upgrades.
func (s *Store) CheckSchema(ctx context.Context) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	var version int64 // golang-migrate writes -1 for "none yet"
	var dirty bool
	err := s.db.QueryRowContext(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&version, &dirty)
	switch {
	case errors.Is(err, sql.ErrNoRows) || pq.As(err, "42P01") != nil: // undefined_table
		version = 0
	case err != nil:
		return classify(fmt.Errorf("check database schema: %w", err))
	}
	v := uint(max(version, 0))
	if dirty {
		return dirtyError(v)
	}
	switch want := Latest(); {
	case v < want:
		return hint.With(
			queue.Retry(fmt.Errorf("database schema is at version %d, this binary needs %d", v, want)),
			hintMigrate)
	case v > want:
		return hint.With(
			queue.Retry(fmt.Errorf("database schema is at version %d, newer than this binary's %d", v, want)),
			"upgrade this binary to the release that migrated the database")
	}
	return nil
}
