// Package setup prepares a host for dh-deployer once its files are
// installed (the Debian package, or make install): the database, its roles
// and the webhook secret (`dh-route setup`, Database and Secret), and a
// deployment end to end (`dh-deploy add`, AddDeployment). pkg/doctor checks
// what it makes.
//
// Guarantees:
//
//   - It runs as root and drives the host's own tools (runuser, psql,
//     useradd, systemctl, git, dh-deployer-acl) with argv lists, never a
//     shell; every name that reaches one of them (database, role, user,
//     deployment, path, URL) is checked first, and SQL identifiers are
//     quoted by psql itself (:"name").
//   - Idempotent: what exists and is as it should be is kept; running it
//     again changes nothing. What exists but differs (a database holding
//     other tables, a secret file with loose modes, a deployment already in
//     the configuration, a drop-in of other content, a checkout of another
//     owner) is refused with an error naming it and the fix, never
//     overwritten.
//   - The configuration file changes last, after every check passed,
//     through a new file validated by the strict loader and renamed over
//     the old one (owner and mode kept, directory synced).
//
// Not supported: a PostgreSQL that is not local (it uses the postgres
// superuser through peer authentication on the unix socket); adding a
// deployment of kind nginx or self (AddDeployment makes kind steps: the
// others need the extra rights docs/operations.md grants by hand).
package setup

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/systemd"
)

// Group is the group of every stage and deployment user.
const Group = "dh-deployer"

// Units are the units the package enables: dh-receive.service starts
// through its socket, dh-cert-renew.service through its timer.
var Units = []string{"dh-receive.socket", "dh-route.service", "dh-nginx.service", "dh-cert.service", "dh-cert-renew.timer"}

// Installed is where an installation keeps its files, relative to the
// running binary: /usr/bin/dh-route finds /usr/lib/dh-deployer/... (the
// package), /usr/local/bin/dh-route /usr/local/lib/... (make install).
type Installed struct {
	ACLScript string // dh-deployer-acl
	Tmpfiles  string // the tmpfiles.d file (always under /usr/lib)
	Sysusers  string // the sysusers.d file
}

// Locate finds the installation of the running binary.
func Locate() Installed {
	prefix := "/usr"
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			prefix = filepath.Dir(filepath.Dir(exe))
		}
	}
	return Installed{
		ACLScript: filepath.Join(prefix, "lib/dh-deployer/dh-deployer-acl"),
		Tmpfiles:  "/usr/lib/tmpfiles.d/dh-deployer.conf",
		Sysusers:  "/usr/lib/sysusers.d/dh-deployer.conf",
	}
}

// Runner runs the host's tools for setup and doctor.
type Runner struct {
	Out     io.Writer // what the operator reads: one line per action
	Timeout time.Duration
}

// Run runs name (found with progpath) with args and returns its output.
// A failure is an error naming the command, with the end of its output.
func (r *Runner) Run(ctx context.Context, stdin io.Reader, name string, args ...string) (string, error) {
	path, err := progpath.Find(name)
	if err != nil {
		return "", sysexits.New(sysexits.Unavailable, err)
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	res, err := sysexec.Run(ctx, sysexec.Cmd{Path: path, Args: args, Stdin: stdin, Timeout: timeout,
		Env: []string{"PATH=" + progpath.SystemPATH, "LANG=C.UTF-8"}, Dir: "/"})
	out := string(res.Output)
	if err != nil {
		if tail := strings.TrimSpace(out); tail != "" {
			return out, fmt.Errorf("%w: %s", err, lastLines(tail, 3))
		}
		return out, err
	}
	return out, nil
}

// As runs name as user (runuser -u USER -g dh-deployer when group).
func (r *Runner) As(ctx context.Context, stdin io.Reader, usr string, group bool, name string, args ...string) (string, error) {
	path, err := progpath.Find(name)
	if err != nil {
		return "", sysexits.New(sysexits.Unavailable, err)
	}
	argv := []string{"-u", usr}
	if group {
		argv = append(argv, "-g", Group)
	}
	return r.Run(ctx, stdin, "runuser", append(append(argv, "--", path), args...)...)
}

// Say prints one line for the operator.
func (r *Runner) Say(format string, args ...any) {
	if r.Out != nil {
		fmt.Fprintf(r.Out, format+"\n", args...)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// RequireRoot refuses to go on unless the process runs as root.
func RequireRoot(what string) error {
	if os.Geteuid() != 0 {
		return hint.With(sysexits.Errorf(sysexits.NoPerm, "%s: must run as root (it creates users, roles and files)", what),
			"run it with sudo")
	}
	return nil
}

// Booted reports whether systemd runs this host (units can be started).
func Booted() bool { return systemd.Booted() }

// UserExists reports whether the Unix user exists.
func UserExists(name string) bool {
	_, err := user.Lookup(name)
	return err == nil
}

// InGroup reports whether the user is a member of group (primary or
// supplementary).
func InGroup(name, group string) bool {
	u, err := user.Lookup(name)
	if err != nil {
		return false
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return false
	}
	ids, err := u.GroupIds()
	if err != nil {
		return false
	}
	for _, id := range ids {
		if id == g.Gid {
			return true
		}
	}
	return false
}
