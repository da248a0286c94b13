// Package pgtemp runs a private, throwaway PostgreSQL server, for tests
// (pkg/store/storetest) and the demo (pkg/demo): a cluster made by initdb
// in its own directory pg.* (under /tmp by default), and a postgres process
// listening only on a unix socket in that directory. Its role "postgres" is
// trusted without a password, and durability is off (fsync=off): never
// keep data that matters in it.
//
// initdb and postgres refuse to run as root: as root, they run as the
// postgres user (or nobody), see Unprivileged, and the cluster's directory
// belongs to that user. The server gets SIGQUIT from the kernel when the
// process that started it dies (Pdeathsig), so no server outlives its
// owner; only its directory is left behind.
//
// A Cluster is not safe for concurrent use.
package pgtemp

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/progpath"
)

// Port is the same for every cluster: each has its own socket directory.
const Port = 5432

// Timeout bounds how long a starting server may take to accept
// connections, a stopping one to exit, and an administrative statement.
const Timeout = 20 * time.Second

// Options tune New.
type Options struct {
	// Parent is where the cluster's directory pg.* is made (default /tmp).
	// The server's user must be able to reach it, and the socket's path,
	// PARENT/pg.NNNNNNNNNN/.s.PGSQL.5432, must stay within the 107 bytes
	// a unix socket path may have.
	Parent string
	// Template is a directory made by NewTemplate whose data directory is
	// copied instead of running initdb (about 0.3 s instead of 2 s).
	Template string
}

// A Cluster is a private PostgreSQL server: a directory holding the data
// directory (data/), the socket and the server log (postgres.log), and,
// while it runs, a postgres process.
type Cluster struct {
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// NewTemplate runs initdb into a new directory pg.* under parent ("" means
// /tmp) and returns that directory, for Options.Template. The caller
// removes it (os.RemoveAll) when no more clusters are made from it.
func NewTemplate(parent string) (string, error) {
	dir, err := newDir(parent)
	if err != nil {
		return "", err
	}
	if err := initdb(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// New makes a cluster, from the template or by running initdb, and starts
// it. Remove stops it and deletes its directory.
func New(opts Options) (*Cluster, error) {
	dir, err := newDir(opts.Parent)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	if opts.Template == "" {
		err = initdb(dir)
	} else {
		err = copyData(opts.Template, dir)
	}
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// Dir returns the cluster's directory, which is also the server's socket
// directory (the host of a libpq URL).
func (c *Cluster) Dir() string { return c.dir }

// LogPath returns the path of the server's log.
func (c *Cluster) LogPath() string { return filepath.Join(c.dir, "postgres.log") }

// URL returns the URL of the database on the cluster, as role postgres.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", database, c.dir, Port)
}

// Start starts a stopped server again on the same data and socket, and
// waits until it accepts connections.
func (c *Cluster) Start() error {
	if c.cmd != nil {
		return fmt.Errorf("start postgres in %s: already running", c.dir)
	}
	postgres, err := progpath.Find("postgres")
	if err != nil {
		return err
	}
	log, err := os.OpenFile(c.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command(postgres,
		"-D", filepath.Join(c.dir, "data"),
		"-k", c.dir,
		"-p", strconv.Itoa(Port),
		"-c", "listen_addresses=",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off")
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = log, log
	// SIGQUIT is an immediate shutdown: the server takes its backends down.
	if cmd.SysProcAttr, err = unprivileged(syscall.SIGQUIT); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(c.exited)

	db, err := sql.Open("postgres", c.URL("postgres")+"&connect_timeout=1")
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(Timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.exited:
			c.cmd = nil
			return fmt.Errorf("postgres exited (%v) before accepting connections; log:\n%s", cmd.ProcessState, c.LogTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return fmt.Errorf("postgres not ready after %v: %v; log:\n%s", Timeout, err, c.LogTail())
		}
	}
}

// Stop shuts the server down (fast shutdown: sessions are ended) and waits
// for it to exit, killing it if it takes longer than Timeout. Its socket
// disappears; clients get "no such file". Stopping a stopped cluster does
// nothing.
func (c *Cluster) Stop() error {
	if c.cmd == nil {
		return nil
	}
	defer func() { c.cmd = nil }()
	select {
	case <-c.exited:
		return nil
	default:
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
		return nil
	case <-time.After(Timeout):
		c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("postgres in %s ignored SIGINT for %v; killed it; log:\n%s", c.dir, Timeout, c.LogTail())
	}
}

// Remove stops the server and deletes the cluster's directory.
func (c *Cluster) Remove() error {
	return errors.Join(c.Stop(), os.RemoveAll(c.dir))
}

// LogTail returns the last few KiB of the server log, for error messages.
func (c *Cluster) LogTail() []byte {
	b, err := os.ReadFile(c.LogPath())
	if err != nil {
		return []byte(err.Error())
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
		b = b[bytes.IndexByte(b, '\n')+1:]
	}
	return b
}

// CreateDatabase creates the database name on the server at adminURL (a
// postgres:// URL of a role allowed to create databases, such as
// Cluster.URL("postgres")) and returns its URL.
func CreateDatabase(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("create database: the server's URL is not a postgres:// URL")
	}
	if err := exec1(adminURL, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops the database name on the server at adminURL, if it
// exists, ending the sessions still connected to it.
func DropDatabase(adminURL, name string) error {
	return exec1(adminURL, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)")
}

// exec1 runs one statement on a new connection to adminURL.
func exec1(adminURL, stmt string) error {
	db, err := sql.Open("postgres", adminURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

// initdb makes the data directory dir/data.
func initdb(dir string) error {
	initdb, err := progpath.Find("initdb")
	if err != nil {
		return err
	}
	cmd := exec.Command(initdb, "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres",
		"--no-sync", "-E", "UTF8", "--locale=C")
	cmd.Dir = dir
	if cmd.SysProcAttr, err = unprivileged(syscall.SIGKILL); err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// copyData copies the template's data directory into dir.
func copyData(template, dir string) error {
	cp, err := progpath.Find("cp")
	if err != nil {
		return err
	}
	// -a keeps the owner (the unprivileged user) and the 0700 mode postgres
	// insists on.
	if out, err := exec.Command(cp, "-a", filepath.Join(template, "data"), filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		return fmt.Errorf("copy template cluster: %v\n%s", err, out)
	}
	return nil
}

// newDir creates a directory pg.* under parent ("" means /tmp), owned by
// the user the server runs as.
func newDir(parent string) (string, error) {
	if parent == "" {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "pg.")
	if err != nil {
		return "", err
	}
	if os.Geteuid() == 0 {
		uid, gid, err := Unprivileged()
		if err == nil {
			err = os.Chown(dir, int(uid), int(gid))
		}
		if err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// unprivileged returns the process attributes for initdb and postgres:
// killed with sig if their parent dies, and run as an unprivileged user
// when we are root.
func unprivileged(sig syscall.Signal) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{Pdeathsig: sig}
	if os.Geteuid() == 0 {
		uid, gid, err := Unprivileged()
		if err != nil {
			return nil, err
		}
		// Go sets the parent-death signal after changing the credentials,
		// which would otherwise clear it.
		attr.Credential = &syscall.Credential{Uid: uid, Gid: gid}
	}
	return attr, nil
}

// Unprivileged returns the uid and gid of the user that initdb and
// postgres run as when we are root: "postgres" where it exists, else
// "nobody".
func Unprivileged() (uid, gid uint32, err error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return uint32(uid), uint32(gid), nil
	}
	return 0, 0, errors.New("no unprivileged user: neither postgres nor nobody exists")
}
