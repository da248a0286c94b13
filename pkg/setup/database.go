package setup

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	migrations "github.com/dh-deployer/dh-deployer/sql"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// DB is the database of database_url, reached as the postgres superuser
// over the local unix socket.
type DB struct {
	Name string // database name
	Host string // socket directory
	Port string
	run  *Runner
}

var dbNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// OpenDB reads where the database is from dsn (a postgres:// URL).
func OpenDB(dsn string, r *Runner) (*DB, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, sysexits.Errorf(sysexits.Config, "database_url: not a postgres:// URL")
	}
	db := &DB{Name: strings.TrimPrefix(u.Path, "/"), Host: u.Query().Get("host"), Port: u.Port(), run: r}
	if db.Host == "" {
		db.Host = u.Hostname()
	}
	if db.Host == "" {
		db.Host = "/run/postgresql"
	}
	if db.Port == "" {
		db.Port = u.Query().Get("port")
	}
	if db.Port == "" {
		db.Port = "5432"
	}
	if !dbNameRE.MatchString(db.Name) {
		return nil, hint.With(sysexits.Errorf(sysexits.Config, "database_url: database name %q: want lowercase letters, digits and _", db.Name),
			`e.g. database_url = "postgres:///dh_deployer?host=/run/postgresql&sslmode=disable"`)
	}
	if !strings.HasPrefix(db.Host, "/") {
		return nil, hint.With(sysexits.Errorf(sysexits.Config, "database_url: host %q is not a local socket directory", db.Host),
			"setup and doctor use the postgres superuser by peer authentication: a local PostgreSQL (host=/run/postgresql)")
	}
	if _, err := strconv.Atoi(db.Port); err != nil {
		return nil, sysexits.Errorf(sysexits.Config, "database_url: port %q is not a number", db.Port)
	}
	return db, nil
}

// ReachDB is OpenDB, then Reachable.
func ReachDB(ctx context.Context, dsn string, r *Runner) (*DB, error) {
	db, err := OpenDB(dsn, r)
	if err != nil {
		return nil, err
	}
	return db, db.Reachable(ctx)
}

// SuperuserURL is the URL of the database for the postgres superuser.
func (db *DB) SuperuserURL() string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%s&sslmode=disable", db.Name, url.QueryEscape(db.Host), db.Port)
}

// Query runs sql (psql's language: :"var" quotes an identifier, :'var' a
// literal) in database as postgres, with vars as psql variables, and
// returns the rows unaligned, one per line.
func (db *DB) Query(ctx context.Context, database, sql string, vars ...string) (string, error) {
	args := []string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", db.Host, "-p", db.Port, "-d", database}
	for _, v := range vars {
		args = append(args, "-v", v)
	}
	return db.run.As(ctx, strings.NewReader(sql), "postgres", false, "psql", args...)
}

// Reachable checks that PostgreSQL answers.
func (db *DB) Reachable(ctx context.Context) error {
	if _, err := db.Query(ctx, "postgres", "SELECT 1;"); err != nil {
		// postgresql.service is Debian's umbrella: a restart reaches the
		// clusters (PartOf=), a start does not.
		fix := "systemctl restart postgresql"
		if !Booted() {
			fix = "service postgresql start"
		}
		return hint.With(queue.Retry(fmt.Errorf("PostgreSQL at %s port %s does not answer: %v", db.Host, db.Port, err)), fix)
	}
	return nil
}

// Exists reports whether the database exists.
func (db *DB) Exists(ctx context.Context) (bool, error) {
	out, err := db.Query(ctx, "postgres", "SELECT count(*) FROM pg_database WHERE datname = :'db';", "db="+db.Name)
	return strings.TrimSpace(out) == "1", err
}

// Create creates the database unless it exists; an existing one must be
// dh-deployer's (it has schema_migrations) or empty.
func (db *DB) Create(ctx context.Context) error {
	exists, err := db.Exists(ctx)
	if err != nil {
		return err
	}
	if !exists {
		if _, err := db.Query(ctx, "postgres", `CREATE DATABASE :"db";`, "db="+db.Name); err != nil {
			return fmt.Errorf("create database %s: %w", db.Name, err)
		}
		db.run.Say("created database %s", db.Name)
		return nil
	}
	out, err := db.Query(ctx, db.Name, `SELECT count(*) FILTER (WHERE tablename = 'schema_migrations'), count(*)
FROM pg_tables WHERE schemaname = 'public';`)
	if err != nil {
		return fmt.Errorf("inspect database %s: %w", db.Name, err)
	}
	if f := strings.Split(strings.TrimSpace(out), "|"); len(f) == 2 && f[0] == "0" && f[1] != "0" {
		return hint.With(sysexits.Errorf(sysexits.Config, "database %s exists and holds %s tables that are not dh-deployer's (no schema_migrations): refusing to use it", db.Name, f[1]),
			"name another database in database_url, or drop this one if it is unused: sudo -u postgres dropdb "+db.Name)
	}
	db.run.Say("database %s exists: kept", db.Name)
	return nil
}

// Migrate applies the embedded migrations as postgres, by running this
// binary's `migrate` command (the tables belong to postgres).
func (db *DB) Migrate(ctx context.Context, configFile string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := db.run.Run(ctx, nil, "runuser", "-u", "postgres", "-g", Group, "--", "/usr/bin/env",
		"DH_DATABASE_URL="+db.SuperuserURL(), exe, "-c", configFile, "migrate")
	if err != nil {
		return fmt.Errorf("migrate database %s: %w", db.Name, err)
	}
	db.run.Say("%s", strings.TrimSpace(out))
	return nil
}

// Version is the schema's migration version and whether it is dirty.
func (db *DB) Version(ctx context.Context) (uint, bool, error) {
	out, err := db.Query(ctx, db.Name, "SELECT version, dirty FROM schema_migrations;")
	if err != nil {
		return 0, false, err
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) != 2 {
		return 0, false, fmt.Errorf("schema_migrations holds %q", out)
	}
	v, err := strconv.ParseUint(f[0], 10, 32)
	return uint(v), f[1] == "t", err
}

// Latest is the newest migration the binary carries.
func Latest() uint { return store.Latest() }

// RolesSQL is sql/roles.sql, as embedded in the binary.
func RolesSQL() (string, error) {
	b, err := migrations.FS.ReadFile("roles.sql")
	return string(b), err
}

// ApplyRoles applies sql/roles.sql (idempotent) to the database.
func (db *DB) ApplyRoles(ctx context.Context) error {
	sql, err := RolesSQL()
	if err != nil {
		return err
	}
	if _, err := db.Query(ctx, db.Name, sql); err != nil {
		return fmt.Errorf("apply roles.sql to %s: %w", db.Name, err)
	}
	db.run.Say("applied the stages' roles and grants (roles.sql)")
	return nil
}

// DeployRole makes the login role of a deployment's user, a member of
// dh-deploy, unless it exists.
func (db *DB) DeployRole(ctx context.Context, usr string) error {
	_, err := db.Query(ctx, db.Name, `SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u') AS missing \gset
\if :missing
CREATE ROLE :"u" LOGIN IN ROLE "dh-deploy";
\else
GRANT "dh-deploy" TO :"u";
\endif
`, "u="+usr)
	if err != nil {
		return fmt.Errorf("database role %s: %w", usr, err)
	}
	db.run.Say("database role %s (member of dh-deploy)", usr)
	return nil
}
