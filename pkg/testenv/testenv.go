// Package testenv is the one place tests find the real external programs
// they drive (PostgreSQL, nginx, certbot, sudo, git, ...).
//
// A missing program is a test failure, never a skip: the failure message
// names the Debian package to install, so a machine that lacks it is fixed
// rather than silently tested less.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// packages maps a program to the Debian package that installs it.
var packages = map[string]string{
	"initdb":          "postgresql",
	"postgres":        "postgresql",
	"pg_ctl":          "postgresql",
	"nginx":           "nginx",
	"certbot":         "certbot",
	"sudo":            "sudo",
	"visudo":          "sudo",
	"setfacl":         "acl",
	"getfacl":         "acl",
	"git":             "git",
	"systemd-analyze": "systemd",
}

// Command returns the absolute path of the program name, as found by
// LookPath, or fails the test with the command that installs it.
func Command(t testing.TB, name string) string {
	t.Helper()
	path, err := LookPath(name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return path
}

// LookPath returns the absolute path of the program name. It searches $PATH,
// then /usr/lib/postgresql/*/bin (highest version first, since Debian keeps
// the server programs there), then /usr/sbin and /sbin. The error says how
// to install a missing program; LookPath is for code that cannot call
// t.Fatalf, such as a sync.Once shared by several tests.
func LookPath(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return filepath.Abs(path)
	}
	for _, dir := range searchDirs() {
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", errors.New(installHint(name))
}

// searchDirs lists the directories searched after $PATH.
func searchDirs() []string {
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versions, func(a, b string) int {
		return pgVersion(b) - pgVersion(a)
	})
	return append(versions, "/usr/sbin", "/sbin")
}

// pgVersion returns the major version in /usr/lib/postgresql/VERSION/bin,
// or -1 if it is not a number.
func pgVersion(dir string) int {
	v, err := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	if err != nil {
		return -1
	}
	return v
}

func installHint(name string) string {
	pkg, ok := packages[name]
	if !ok {
		return fmt.Sprintf("%s not found; install the Debian package that provides it (or run: make deps)", name)
	}
	return fmt.Sprintf("%s not found; install it with: apt-get install -y %s (or run: make deps)", name, pkg)
}

// ShortTempDir creates a directory /tmp/PREFIX.NNNN and removes it, with
// everything in it, when the test ends. Unlike t.TempDir its path is short
// enough to hold a unix socket (at most 107 bytes for the whole path).
func ShortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", strings.TrimSuffix(prefix, ".")+".")
	if err != nil {
		t.Fatalf("create temporary directory: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove temporary directory: %v", err)
		}
	})
	return dir
}

// Unprivileged returns the uid and gid of the user that programs refusing
// to run as root (initdb, postgres) should run as: "postgres" where it
// exists, else "nobody".
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

// Build builds the tool cmd/NAME of this module (e.g. "dh-route") into a
// test directory, stripped as `make build` does, and returns the binary's
// path.
func Build(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/dh-deployer/dh-deployer/cmd/"+name)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}
